//! mailform manages OAuth 2.0 email accounts ("email assets") as code.
//!
//! The flow of every command is one way through:
//! settings → [`config`] → [`store`] → (observe) → [`plan`] → [`render`] →
//! (confirm → execute) → [`store`]. The pure core (`config`, `state`, `plan`)
//! does no I/O beyond reading the files it is pointed at; the edges (`store`,
//! `render`, and later the OAuth and SMTP clients) do.
//!
//! [`run`] is the one place errors become exit codes: 0 success, 1 error, and
//! 2 from `plan --detailed-exitcode` when there are changes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod diagnostic;
pub mod error;
pub mod files;
pub mod plan;
pub mod render;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod state;
pub mod store;

use std::ffi::OsString;

use clap::Parser as _;

pub use error::Error;

/// Runs mailform with these arguments and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors exit 1, not clap's 2: 2 means "changes" to CI.
            return u8::from(e.use_stderr());
        }
    };
    let printer = render::Printer::new(cli.color.unwrap_or_default());
    match commands::dispatch(&cli, &printer) {
        Ok(status) => status.code(),
        Err(e) if e.is_broken_pipe() => 0,
        Err(e) => {
            printer.error(&e);
            e.exit_code()
        }
    }
}
