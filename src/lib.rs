//! mailform manages OAuth 2.0 email accounts ("email assets") as code.
//!
//! The flow of every command is one way through:
//! settings → [`config`] → [`store`] → [`observe`] → [`plan`] → [`render`] →
//! (confirm → execute) → [`store`]. The pure core (`config`, `state`, `plan`)
//! does no I/O beyond reading the files it is pointed at; the edges do:
//! [`store`], [`render`], the OAuth client [`oauth`] and the SMTP client
//! [`smtp`]. [`observe`] sits one step above those two: it composes a token
//! refresh and an SMTP proof into one live check. Leaves every layer may use:
//! [`error`], [`secret`], [`diagnostic`], [`files`], [`lock`], [`security`],
//! [`digest`], [`progress`], [`parallel`], [`interrupt`], [`verbose`].
//!
//! [`run`] is the one place errors become exit codes: 0 success, 1 error, and
//! 2 from `plan --detailed-exitcode` when there are changes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod diagnostic;
pub mod digest;
pub mod error;
pub mod execute;
pub mod files;
pub mod gmail;
pub mod imap;
pub mod interrupt;
pub mod lock;
pub mod oauth;
pub mod observe;
pub mod parallel;
pub mod plan;
pub mod progress;
pub mod render;
pub mod schema;
pub mod secret;
pub mod security;
pub mod settings;
pub mod smtp;
pub mod state;
pub mod store;
pub mod stream;
pub mod verbose;

use std::ffi::OsString;

use clap::{CommandFactory as _, FromArgMatches as _};

pub use error::Error;

/// Runs mailform with these arguments and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let args: Vec<OsString> = args.into_iter().collect();
    let printer = render::Printer::new(config::raw::ColorChoice::Auto);
    if let Some(hint) = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .find_map(|a| cli::terraform_spelling(a).map(|h| (a, h)))
    {
        printer.error(&Error::Usage(format!(
            "unknown flag `{}`: did you mean {}? (mailform spells long flags with two dashes)",
            diagnostic::shown(hint.0),
            hint.1
        )));
        return 1;
    }
    let matches = match cli::Cli::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            // Usage errors exit 1, not clap's 2: 2 means "changes" to CI.
            return u8::from(e.use_stderr());
        }
    };
    let mut cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return 1;
        }
    };
    cli.config_source = match matches.value_source("config") {
        Some(clap::parser::ValueSource::CommandLine) => cli::ConfigSource::Flag,
        Some(clap::parser::ValueSource::EnvVariable) => cli::ConfigSource::Env,
        _ => cli::ConfigSource::Default,
    };
    render::use_color(cli.color.unwrap_or_default());
    match commands::dispatch(&cli, &printer) {
        Ok(status) => status.code(),
        Err(e) => {
            printer.error(&e);
            e.exit_code()
        }
    }
}
