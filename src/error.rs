//! mailform's errors. Each names the file, asset or holder it is about and says
//! what to do; none carries a secret value. `lib::run` is the one place they
//! become exit codes.

use std::path::PathBuf;

use crate::lock::LockInfo;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}", missing_config(path, *named_by))]
    ConfigMissing {
        path: PathBuf,
        named_by: ConfigSource,
    },

    #[error("{} has {errors} error{}", path.display(), if *errors == 1 { "" } else { "s" })]
    ConfigInvalid { path: PathBuf, errors: usize },

    #[error("{} has {warnings} warning{} and --strict is set", path.display(), if *warnings == 1 { "" } else { "s" })]
    StrictWarnings { path: PathBuf, warnings: usize },

    #[error("provider `{provider}`: client_secret: {why}")]
    Secret { provider: String, why: String },

    #[error("{count} client secret{} named in {} cannot be read", if *count == 1 { "" } else { "s" }, path.display())]
    SecretsUnavailable { path: PathBuf, count: usize },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("state {} is not valid: {why}; it was left untouched — restore it from a backup or fix it by hand", path.display())]
    StateCorrupt { path: PathBuf, why: String },

    #[error(
        "state {} has format version {found}, newer than this mailform reads ({supported}); it was left untouched — upgrade mailform",
        path.display()
    )]
    StateTooNew {
        path: PathBuf,
        found: u64,
        supported: u32,
    },

    #[error(
        "the state is locked by {} ({} since {}, pid {}, lock ID {}), which is still running; wait for it to finish (e.g. --lock-timeout 5m) or stop it — a lock left by a mailform that died is taken over automatically",
        info.who, info.operation, info.created.format("%Y-%m-%d %H:%M:%S UTC"), info.pid, info.id
    )]
    Locked { info: LockInfo },

    #[error(
        "lock ID {} is held by a running mailform ({}, {} since {}, pid {}); it was not removed: wait for it, or stop that process",
        info.id, info.who, info.operation, info.created.format("%Y-%m-%d %H:%M:%S UTC"), info.pid
    )]
    LockLive { info: LockInfo },

    #[error("refusing {}: {why}", path.display())]
    StateUnsafe { path: PathBuf, why: String },

    #[error("{}", state_moved(path, *expected, *found))]
    StateMoved {
        path: PathBuf,
        expected: Option<(uuid::Uuid, u64)>,
        found: Option<(uuid::Uuid, u64)>,
    },

    #[error("no lock is held on {}", path.display())]
    NotLocked { path: PathBuf },

    #[error("lock ID {given} does not match the lock held on {} (ID {held}); nothing was removed", path.display())]
    LockIdMismatch {
        path: PathBuf,
        given: String,
        held: String,
    },

    #[error("{why}")]
    Key { why: String },

    #[error(
        "the key ({source_name}, id {key_id}) is not the one this state was written with (id {state_key_id}); set MAILFORM_KEY to the original key or restore .mailform/key"
    )]
    WrongKey {
        source_name: String,
        key_id: String,
        state_key_id: String,
    },

    #[error("no asset named `{name}` in {}{}", path.display(), suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownAsset {
        name: String,
        path: PathBuf,
        suggestion: Option<String>,
    },

    #[error(
        "asset `{name}` is declared in {} (line {line}) but not applied yet: `mailform plan` shows what applying it will do",
        path.display()
    )]
    NotApplied {
        name: String,
        path: PathBuf,
        line: usize,
    },

    #[error(
        "git would commit {}: .gitignore does not ignore it (a later `!` rule, or the file is tracked already?); fix that before committing — git check-ignore -v {} shows the rules",
        path.display(), path.display()
    )]
    NotIgnored { path: PathBuf },

    #[error(
        "{count} live check{} could not decide (above): {} judged from state — run plan again when the provider answers, or fix what the error names",
        if *count == 1 { "" } else { "s" },
        if *count == 1 { "that asset was" } else { "those assets were" }
    )]
    ChecksFailed { count: usize },

    #[error("consent required for {name}: {why} — run `mailform apply` where a person can consent")]
    ConsentRequired { name: String, why: String },

    /// An organisation grant's asset has no token yet: apply obtains one,
    /// with no person.
    #[error(
        "{name} has no app token: {why} — run `mailform apply` (an app grant: no person needs to be present)"
    )]
    AppTokenMissing { name: String, why: String },

    #[error("{name}: SMTP login refused by {server} — {reply}{}", hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    SmtpRefused {
        name: String,
        server: String,
        reply: String,
        hint: Option<String>,
    },

    /// A provider or SMTP server could not be asked, or said no, in the
    /// edge's own words (kept as text: this leaf module knows no edge).
    #[error("{name}: {why}")]
    Network { name: String, why: String },

    #[error(
        "{count} asset{} failed to apply (above){}",
        if *count == 1 { "" } else { "s" },
        if *count < *total { "; the others were applied" } else { "" }
    )]
    ApplyFailed { count: usize, total: usize },

    #[error("saved plan {}: {why}", path.display())]
    SavedPlan {
        path: std::path::PathBuf,
        why: String,
    },

    #[error(
        "interrupted: {done} of {total} changes were made and stored; run mailform plan to see what is left"
    )]
    Interrupted { done: usize, total: usize },

    #[error(
        "interrupted during the live checks; nothing was changed (rotated tokens that arrived are stored)"
    )]
    ChecksInterrupted,

    /// The PostgreSQL state backend could not be used, in words that name
    /// the server, role and database (never the password).
    #[error("{location}: {why}")]
    StateDb { location: String, why: String },

    #[error("{0}")]
    Usage(String),

    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl Error {
    /// The process exit code for this error. Every error is 1; 2 is reserved
    /// for `plan --detailed-exitcode` reporting changes.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted { .. } | Error::ChecksInterrupted => crate::interrupt::EXIT_CODE,
            _ => 1,
        }
    }
}

/// Who named the config file, for the advice when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigSource {
    /// `-c` / `--config`.
    Flag,
    /// `MAILFORM_CONFIG`.
    Env,
    /// Nobody: `./assets.toml`.
    #[default]
    Default,
}

fn missing_config(path: &std::path::Path, source: ConfigSource) -> String {
    let path = path.display();
    match source {
        ConfigSource::Default => format!(
            "no {path} in this folder: run `mailform init` to create one from the example, or name your file with -c PATH"
        ),
        ConfigSource::Flag => format!(
            "{path} does not exist: check the -c path, or run `mailform -c {path} init` to create it"
        ),
        ConfigSource::Env => format!(
            "{path} does not exist (the path comes from MAILFORM_CONFIG): fix or unset MAILFORM_CONFIG, or run `mailform init` to create it"
        ),
    }
}

fn state_moved(
    path: &std::path::Path,
    expected: Option<(uuid::Uuid, u64)>,
    found: Option<(uuid::Uuid, u64)>,
) -> String {
    let path = path.display();
    let what = match (expected, found) {
        (Some((l, a)), Some((m, b))) if l == m => {
            format!("it changed since it was read (serial {a}, now {b})")
        }
        (Some(_), Some(_)) => "it now holds another state (another lineage)".to_string(),
        (Some((_, a)), None) => format!("it was removed since it was read (serial {a})"),
        (None, Some((_, b))) => format!("a state (serial {b}) appeared there meanwhile"),
        (None, None) => "it changed meanwhile".to_string(),
    };
    format!("state {path} was not written: {what}; nothing was overwritten — run the command again")
}

/// An error with its causes, `: `-joined: reqwest's and lettre's own text
/// ("error sending request", "Connection error") stops at the first link,
/// and the reason sits below it. A cause already quoted is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let words = cause.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        next = cause.source();
    }
    text
}
