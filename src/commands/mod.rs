//! One function per subcommand; each orchestrates the stages
//! (settings → config → store → plan → render) and returns an [`ExitStatus`].

mod apply;
mod completions;
mod export;
mod force_unlock;
mod import;
mod init;
mod key;
mod plan;
mod schema;
mod send_test;
mod show;
mod state;
mod token;
mod validate;

use std::cell::Cell;
use std::path::Path;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::diagnostic::{Diagnostics, Severity};
use crate::error::Error;
use crate::render::diagnostic::DiagnosticsDoc;
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
        consent: match &cli.command {
            Command::Apply(args) => args.consent,
            _ => None,
        },
        parallelism: match &cli.command {
            Command::Apply(args) => args.parallelism,
            Command::Plan(args) => args.parallelism,
            _ => None,
        },
    };
    if cli.verbose {
        crate::verbose::enable(render::verbose_line);
    }
    let ctx = Context {
        cli,
        flags,
        printer,
        doc_printed: Cell::new(false),
    };
    let result = match &cli.command {
        Command::Init => init::run(&ctx),
        Command::Validate { strict, .. } => validate::run(&ctx, *strict),
        Command::Plan(args) => plan::run(&ctx, args),
        Command::Apply(args) => apply::run(&ctx, args),
        Command::Show { name, json } => show::run(&ctx, name.as_deref(), *json),
        Command::Token { name, refresh } => token::run(&ctx, name, *refresh),
        Command::SendTest {
            name,
            to,
            subject,
            round_trip,
            timeout,
        } => send_test::run(
            &ctx,
            name,
            to.as_deref(),
            subject.as_deref(),
            round_trip.then_some(*timeout),
        ),
        Command::Export { name, format } => export::run(&ctx, name, *format),
        Command::Import { name, from } => import::run(&ctx, name, from),
        Command::Schema { kind } => schema::run(&ctx, *kind),
        Command::ForceUnlock { id, force } => force_unlock::run(&ctx, id, *force),
        Command::State { command } => match command {
            crate::cli::StateCommand::Pull => state::pull(&ctx),
            crate::cli::StateCommand::Push { file, force } => state::push(&ctx, file, *force),
            crate::cli::StateCommand::List => state::list(&ctx),
            crate::cli::StateCommand::Mv { old, new } => state::mv(&ctx, old, new),
            crate::cli::StateCommand::Rm { names } => state::rm(&ctx, names),
        },
        Command::Key { command } => match command {
            crate::cli::KeyCommand::Rotate { out } => key::rotate(&ctx, out.as_deref()),
        },
        Command::Completions { shell } => completions::run(&ctx, *shell),
    };
    // A --json command that failed before printing its findings still leaves
    // a document on stdout, so CI always has JSON to read.
    if let Err(e) = &result
        && cli.json()
        && !ctx.doc_printed.get()
    {
        let doc = DiagnosticsDoc::failure(&cli.config, &e.to_string());
        printer.out(&doc.to_json())?;
    }
    result
}

/// What every command may need.
pub struct Context<'a> {
    pub cli: &'a Cli,
    pub flags: Flags,
    pub printer: &'a Printer,
    /// Whether a JSON diagnostics document went to stdout already.
    doc_printed: Cell<bool>,
}

impl Context<'_> {
    /// Reads the config, or explains how to get one.
    pub fn load(&self) -> Result<config::Loaded, Error> {
        let path = &self.cli.config;
        match config::load(path) {
            Err(Error::ConfigRead { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(Error::ConfigMissing {
                    path: path.clone(),
                    named_by: self.cli.config_source,
                })
            }
            other => other,
        }
    }

    /// Prints findings about a file: human text on stderr and, for a
    /// `--json` command, the document on stdout.
    pub fn report(
        &self,
        path: &Path,
        source: &str,
        diagnostics: &Diagnostics,
        ok: bool,
    ) -> Result<(), Error> {
        if !diagnostics.is_empty() {
            self.printer
                .err(&render::diagnostic::render(path, source, diagnostics))?;
        }
        if self.cli.json() && (!ok || matches!(self.cli.command, Command::Validate { .. })) {
            let doc = DiagnosticsDoc::new(path, source, diagnostics, ok);
            self.printer.out(&doc.to_json())?;
            self.doc_printed.set(true);
        }
        Ok(())
    }

    /// Loads the config, prints its diagnostics, and fails if it has errors.
    pub fn config(&self) -> Result<(Config, Settings), Error> {
        let mut loaded = self.load()?;
        // Notes (e.g. an unset secret) are validate's to tell; the commands
        // that need a secret say so in their own words.
        loaded
            .diagnostics
            .0
            .retain(|d| d.severity != Severity::Note);
        // A live plan and apply fail on a client secret they cannot read
        // with their own error (check_secrets): a warning at the same place
        // would say it twice.
        let checks_secrets = match &self.cli.command {
            Command::Apply(_) => true,
            Command::Plan(args) => !args.offline,
            _ => false,
        };
        if checks_secrets && let Some(config) = &loaded.config {
            let unreadable: Vec<_> = config
                .providers
                .values()
                .filter(|p| p.client_secret().is_err())
                .filter_map(|p| p.client_secret_span.clone())
                .collect();
            loaded.diagnostics.0.retain(|d| {
                d.severity != Severity::Warning
                    || d.span.as_ref().is_none_or(|s| !unreadable.contains(s))
            });
        }
        let settings = Settings::resolve(loaded.config.as_ref().map(|c| &c.settings), &self.flags)?;
        render::use_color(settings.color);
        self.report(
            &loaded.path,
            &loaded.source,
            &loaded.diagnostics,
            loaded.config.is_some(),
        )?;
        match loaded.config {
            Some(c) => Ok((c, settings)),
            None => Err(Error::ConfigInvalid {
                path: loaded.path,
                errors: loaded.diagnostics.error_count(),
            }),
        }
    }

    /// The state store the config names.
    pub fn store(config: &Config) -> Result<Box<dyn crate::store::StateStore>, Error> {
        match &config.state.postgres {
            Some(pg) => Ok(Box::new(crate::store::PgStore::new(pg)?)),
            None => Ok(Box::new(FileStore::new(&config.state.path))),
        }
    }

    /// Takes the state lock for `operation`, saying once on stderr whom it
    /// waits for, and noting a lock taken over from a holder that died.
    pub fn lock(
        &self,
        store: &dyn crate::store::StateStore,
        operation: &str,
        timeout: std::time::Duration,
    ) -> Result<Box<dyn crate::store::LockGuard>, Error> {
        let lock = store.lock(operation, timeout, &mut |info| {
            let _ = self.printer.err(&format!(
                "Waiting for the state lock held by {} ({})...\n",
                info.who, info.operation
            ));
        })?;
        if let Some(dead) = lock.taken_over() {
            self.printer.err(&format!(
                "Took over the state lock left by {} ({}, pid {}, lock ID {}), which is no longer running.\n",
                dead.who, dead.operation, dead.pid, dead.id
            ))?;
        }
        Ok(lock)
    }
}

impl Context<'_> {
    /// Asks a person on the terminal; `true` only for `yes`. Without a
    /// terminal it refuses to guess and names the flag that skips the
    /// question (`--auto-approve`, `--force`).
    pub fn confirm(&self, question: &str, what: &str, flag: &str) -> Result<bool, Error> {
        use std::io::IsTerminal as _;
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage(format!(
                "{what} asks for confirmation on a terminal; pass {flag} to go ahead without asking"
            )));
        }
        self.printer
            .err(&format!("{question} Only 'yes' will be accepted: "))?;
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|source| Error::Io {
                action: "read the answer from",
                path: "standard input".into(),
                source,
            })?;
        Ok(answer.trim() == "yes")
    }
}

pub use crate::parallel::runtime;

/// `--target` and `--reconsent` of plan and apply: each names an asset of
/// the config or of state, and a re-consent outside the targets (which
/// would be silently planned away) is refused.
pub fn check_selection(
    config: &Config,
    state: Option<&crate::state::State>,
    targets: &[String],
    reconsent: &[String],
) -> Result<(), Error> {
    let applied = state
        .into_iter()
        .flat_map(|s| s.assets.keys().map(String::as_str));
    for t in targets.iter().chain(reconsent) {
        known_asset(
            t,
            config
                .assets
                .keys()
                .map(String::as_str)
                .chain(applied.clone()),
            config,
        )?;
    }
    if !targets.is_empty()
        && let Some(r) = reconsent.iter().find(|r| !targets.contains(r))
    {
        return Err(Error::Usage(format!(
            "--reconsent {r} is outside the --target list, so nothing would be done for it: add --target {r}, or leave out --target"
        )));
    }
    Ok(())
}

pub use crate::config::known_asset;

/// Every secret a targeted asset will need must be reachable now, not half way
/// through an apply. Problems are shown at the `client_secret` line.
pub fn check_secrets(ctx: &Context<'_>, config: &Config, targets: &[String]) -> Result<(), Error> {
    let mut diags = crate::diagnostic::Diagnostics::default();
    let mut seen = std::collections::BTreeSet::new();
    for asset in config
        .assets
        .values()
        .filter(|a| targets.is_empty() || targets.contains(&a.name))
    {
        let provider = config.provider_of(asset);
        if !seen.insert(&provider.name) {
            continue;
        }
        if let Err(Error::Secret {
            provider: name,
            why,
        }) = provider.client_secret()
        {
            diags.push(
                crate::diagnostic::Diagnostic::error(format!(
                    "provider `{name}`: client_secret: {why}"
                ))
                .at(provider.client_secret_span.clone())
                .help("provide the secret where the config points before running plan or apply"),
            );
        }
    }
    if diags.is_empty() {
        return Ok(());
    }
    ctx.report(&config.path, &config.source, &diags, false)?;
    Err(Error::SecretsUnavailable {
        path: config.path.clone(),
        count: diags.error_count(),
    })
}
