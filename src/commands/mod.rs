//! One function per subcommand; each orchestrates the stages
//! (settings → config → store → plan → render) and returns an [`ExitStatus`].

mod completions;
mod export;
mod force_unlock;
mod init;
mod plan;
mod schema;
mod show;
mod validate;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::error::Error;
use crate::render::{self, Printer};
use crate::settings::{Flags, Settings};
use crate::store::FileStore;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// `plan --detailed-exitcode` found changes or drift.
    Changes,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Changes => 2,
        }
    }
}

/// Runs the parsed command line.
pub fn dispatch(cli: &Cli, printer: &Printer) -> Result<ExitStatus, Error> {
    let flags = Flags {
        color: cli.color,
        lock_timeout: cli.lock_timeout.clone(),
    };
    let ctx = Context {
        cli,
        flags,
        printer,
    };
    match &cli.command {
        Command::Init => init::run(&ctx),
        Command::Validate { strict } => validate::run(&ctx, *strict),
        Command::Plan(args) => plan::run(&ctx, args),
        Command::Show { name, json } => show::run(&ctx, name.as_deref(), *json),
        Command::Export { name, format } => export::run(&ctx, name, *format),
        Command::Schema { kind } => schema::run(&ctx, *kind),
        Command::ForceUnlock { id } => force_unlock::run(&ctx, id),
        Command::Completions { shell } => completions::run(&ctx, *shell),
    }
}

/// What every command may need.
pub struct Context<'a> {
    pub cli: &'a Cli,
    pub flags: Flags,
    pub printer: &'a Printer,
}

impl Context<'_> {
    /// Loads the config, prints its diagnostics, and fails if it has errors.
    pub fn config(&self) -> Result<(Config, Settings), Error> {
        let mut loaded = config::load(&self.cli.config)?;
        // Notes (e.g. an unset secret) are validate's to tell; the commands
        // that need a secret say so in their own words.
        loaded
            .diagnostics
            .0
            .retain(|d| d.severity != crate::diagnostic::Severity::Note);
        let settings = Settings::resolve(loaded.config.as_ref().map(|c| &c.settings), &self.flags)?;
        render::use_color(settings.color);
        if !loaded.diagnostics.0.is_empty() {
            self.printer.err(&render::diagnostic::render(
                &loaded.path,
                &loaded.source,
                &loaded.diagnostics,
            ))?;
        }
        match loaded.config {
            Some(c) => Ok((c, settings)),
            None => Err(Error::ConfigInvalid {
                path: loaded.path,
                errors: loaded.diagnostics.error_count(),
            }),
        }
    }

    /// The state store the config names.
    pub fn store(config: &Config) -> FileStore {
        FileStore::new(&config.state.path)
    }
}

/// Fails with a suggestion when `name` is not an asset in `names`.
pub fn known_asset<'n>(
    name: &str,
    names: impl IntoIterator<Item = &'n str> + Clone,
    config: &Config,
) -> Result<(), Error> {
    if names.clone().into_iter().any(|n| n == name) {
        return Ok(());
    }
    Err(Error::UnknownAsset {
        name: name.to_string(),
        path: config.path.clone(),
        suggestion: crate::diagnostic::did_you_mean(name, names).map(str::to_string),
    })
}
