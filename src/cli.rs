//! The command line, as clap types only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::raw::ColorChoice;

/// OAuth 2.0 email accounts as code: plan, apply, prove the SMTP login.
#[derive(Debug, Parser)]
#[command(
    name = "mailform",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The desired-state file.
    #[arg(
        short,
        long,
        global = true,
        env = "MAILFORM_CONFIG",
        default_value = "assets.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// When to use colour [default: auto; env `MAILFORM_COLOR`; `NO_COLOR` is respected].
    #[arg(long, global = true, value_enum, value_name = "WHEN")]
    pub color: Option<ColorChoice>,

    /// Show each HTTP exchange and SMTP login on stderr: method, URL without its query, status, the provider's error; server, account and reply (never a token or secret).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// How long to wait for the state lock, e.g. 30s [env `MAILFORM_LOCK_TIMEOUT`].
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_timeout: Option<String>,

    #[command(subcommand)]
    pub command: Command,

    /// Where `--config` came from, for messages (set after parsing).
    #[arg(skip)]
    pub config_source: ConfigSource,
}

pub use crate::error::ConfigSource;

impl Cli {
    /// Whether the command prints JSON (its failures then print a JSON
    /// diagnostics document too).
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Validate { json, .. } | Command::Show { json, .. } => *json,
            Command::Plan(args) => args.json,
            _ => false,
        }
    }
}

/// Terraform's single-dash spelling of a long flag (`-detailed-exitcode`,
/// `-out=plan`, `-no-color`), answered with mailform's. `None` when `arg` is
/// not one.
pub fn terraform_spelling(arg: &str) -> Option<String> {
    use clap::CommandFactory as _;
    fn longs(cmd: &clap::Command, name: &str) -> bool {
        cmd.get_arguments().any(|a| a.get_long() == Some(name))
            || cmd.get_subcommands().any(|c| longs(c, name))
    }
    let name = arg.strip_prefix('-').filter(|n| !n.starts_with('-'))?;
    let (name, value) = name
        .split_once('=')
        .map_or((name, None), |(n, v)| (n, Some(v)));
    if name.len() < 2 {
        return None;
    }
    if name == "no-color" {
        return Some("--color never".into());
    }
    longs(&Cli::command(), name).then(|| match value {
        Some(v) => format!("--{name}={v}"),
        None => format!("--{name}"),
    })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write assets.toml (from the example) and .mailform/ (state and key), and git-ignore .mailform/.
    Init,
    /// Check assets.toml offline: syntax, schema, lints.
    Validate {
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
        /// Print the findings as JSON (schema: `mailform schema diagnostics`).
        #[arg(long)]
        json: bool,
    },
    /// Show what apply would change, and why.
    Plan(PlanArgs),
    /// Make it so: consent where needed (the browser opens each mailbox's link), store the tokens, prove each SMTP login.
    Apply(ApplyArgs),
    /// Show what state holds (tokens redacted).
    Show {
        /// Only this asset.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a valid access token (refreshed first when it expires within 5 minutes), for msmtp's passwordeval and other SMTP clients.
    Token {
        /// The asset.
        name: String,
        /// Refresh first, even when the stored access token is still good.
        #[arg(long)]
        refresh: bool,
    },
    /// Adopt an existing grant (a refresh token from `mutt_oauth2`, oama, pizauth or a provider console): refreshed once to prove it, then sealed like a consent's.
    Import {
        /// The asset (in assets.toml, holding no grant yet).
        name: String,
        /// Read the refresh token from this file ("-": standard input, the default); never from an argument.
        #[arg(long, value_name = "FILE", default_value = "-")]
        from: PathBuf,
    },
    /// Send a real test message through the asset (proves the login and the sending), and print the server's reply.
    SendTest {
        /// The asset.
        name: String,
        /// The recipient.
        #[arg(long, value_name = "ADDR", required_unless_present = "round_trip")]
        to: Option<String>,
        /// The subject (default: "mailform test message from NAME").
        #[arg(long, value_name = "S")]
        subject: Option<String>,
        /// Send to the asset's own address, then wait until its IMAP login
        /// sees the message (the asset must declare `imap`).
        #[arg(long, conflicts_with = "to")]
        round_trip: bool,
        /// How long the round trip waits for the message (`30s`, `2m`).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::config::raw::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print the fields an email-asset form asks for.
    Export {
        /// The asset.
        name: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Webex)]
        format: ExportFormat,
    },
    /// Print a JSON Schema.
    Schema {
        #[arg(value_enum, default_value_t = SchemaKind::Config)]
        kind: SchemaKind,
    },
    /// Remove a lock file left by a mailform that died (a live holder's lock is never broken).
    ForceUnlock {
        /// The lock ID, as printed by the command that waited for it.
        id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Move state: print it, or replace it (tokens stay sealed), e.g. from the state file to PostgreSQL.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// The token-encryption key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `mailform key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new key and seal every stored token with it, in one state write.
    Rotate {
        /// Where to write the new key (needed when the key comes from `MAILFORM_KEY`; default: the key file it replaces).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `mailform state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the stored state as JSON (tokens stay sealed with the key), e.g. to back it up or move it.
    Pull,
    /// Replace the stored state with FILE ("-": standard input); refuses another lineage, a lower serial, or the same serial with other content, unless --force.
    Push {
        /// A state document, as `state pull` prints it or the file backend keeps it.
        file: PathBuf,
        /// Replace whatever is stored, whatever its lineage or serial.
        #[arg(long)]
        force: bool,
    },
    /// List the assets in state, one per line.
    List,
    /// Rename an asset in state, keeping its grant (no consent again), after renaming it in assets.toml.
    Mv {
        /// The name in state now.
        old: String,
        /// The new name (as in assets.toml).
        new: String,
    },
    /// Forget assets without revoking their grants (a mailbox handed to another tool).
    Rm {
        /// The assets.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // reason: each bool is an independent command-line flag
pub struct PlanArgs {
    /// Do not contact providers or SMTP servers; decide from state alone.
    #[arg(long)]
    pub offline: bool,
    /// Also prove each SMTP login (live plans only).
    #[arg(long, conflicts_with = "offline")]
    pub check_smtp: bool,
    /// Also prove each IMAP login an asset declares (live plans only).
    #[arg(long, conflicts_with = "offline")]
    pub check_imap: bool,
    /// Prove every login an asset declares: SMTP, and IMAP where declared.
    #[arg(long, conflicts_with = "offline")]
    pub check: bool,
    /// Print the plan as JSON (schema: `mailform schema plan`).
    #[arg(long)]
    pub json: bool,
    /// Save the plan for `apply`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 2 when there are changes or drift, 0 when none, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan only these assets (repeatable).
    #[arg(long, value_name = "NAME")]
    pub target: Vec<String>,
    /// Plan consent again for this asset although its tokens are fine (repeatable).
    #[arg(long, value_name = "NAME")]
    pub reconsent: Vec<String>,
    /// Network steps at once (default 10) [env `MAILFORM_PARALLELISM`].
    #[arg(long, value_name = "N")]
    pub parallelism: Option<u32>,
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // reason: each bool is an independent command-line flag
pub struct ApplyArgs {
    /// A plan saved by `plan --out`: apply exactly that, without planning or asking again.
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    /// Apply without asking (needed when not on a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// How a person consents: loopback, manual, device or never [env `MAILFORM_CONSENT`].
    #[arg(long, value_enum, value_name = "MODE")]
    pub consent: Option<crate::config::raw::ConsentMode>,
    /// How long to wait for the people consenting, e.g. 10m (default 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub consent_timeout: String,
    /// Apply only these assets (repeatable).
    #[arg(long, value_name = "NAME", conflicts_with = "plan")]
    pub target: Vec<String>,
    /// Consent again for this asset although its tokens are fine, e.g. after a password reset (repeatable).
    #[arg(long, value_name = "NAME", conflicts_with = "plan")]
    pub reconsent: Vec<String>,
    /// Print one JSON document of outcomes at the end (schema: `mailform schema apply`); the rest goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Network steps at once (default 10) [env `MAILFORM_PARALLELISM`].
    #[arg(long, value_name = "N")]
    pub parallelism: Option<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// Webex Contact Center "email asset" form.
    Webex,
    /// The same fields as JSON, keyed by their labels in `snake_case`.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// assets.toml
    Config,
    /// .mailform/state.json
    State,
    /// plan --json / plan --out
    Plan,
    /// validate --json, and the failures of every --json command
    Diagnostics,
    /// apply --json
    Apply,
}
