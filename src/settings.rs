//! The tool's own settings, layered with figment: built-in defaults, then the
//! `[settings]` table of `assets.toml`, then `MAILFORM_*` environment
//! variables, then flags. (`assets.toml` itself is parsed with toml for exact
//! error positions; only this small table goes through figment.)

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};

use crate::config::raw::{ColorChoice, ConsentMode, RawSettings};
use crate::error::Error;

pub use crate::config::raw::{DEFAULT_PARALLELISM, parse_duration};

/// The settings keys that `MAILFORM_*` variables may set.
const ENV_KEYS: [&str; 5] = [
    "parallelism",
    "consent",
    "lock_timeout",
    "smtp_timeout",
    "color",
];

/// Effective settings for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub parallelism: u32,
    /// `None`: decide by whether stdin is a terminal.
    pub consent: Option<ConsentMode>,
    pub lock_timeout: Duration,
    /// The bound on each SMTP step.
    pub smtp_timeout: Duration,
    pub color: ColorChoice,
}

#[derive(Debug, Serialize, Deserialize)]
struct Layered {
    parallelism: u32,
    consent: Option<ConsentMode>,
    /// `MAILFORM_LOCK_TIMEOUT=30` arrives from figment as a number.
    #[serde(deserialize_with = "text_or_number")]
    lock_timeout: String,
    #[serde(deserialize_with = "text_or_number")]
    smtp_timeout: String,
    color: ColorChoice,
}

/// Settings given as flags (highest precedence).
#[derive(Debug, Default, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
}

impl Settings {
    /// Layers defaults, the config's `[settings]` (if read), environment and flags.
    ///
    /// `NO_COLOR` is the user's own choice and outranks the team's committed
    /// `[settings] color`; `MAILFORM_COLOR` and `--color` still outrank it.
    pub fn resolve(file: Option<&RawSettings>, flags: &Flags) -> Result<Settings, Error> {
        let defaults = Layered {
            parallelism: DEFAULT_PARALLELISM,
            consent: None,
            lock_timeout: "0s".into(),
            smtp_timeout: "20s".into(),
            color: ColorChoice::Auto,
        };
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(file) = file {
            figment = figment.merge(Serialized::defaults(file));
        }
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            figment = figment.merge(Serialized::default("color", ColorChoice::Never));
        }
        let layered: Layered = figment
            .merge(Env::prefixed(ENV_PREFIX).only(&ENV_KEYS))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| Error::Usage(setting_error(&e)))?;
        crate::config::raw::rules::parallelism(layered.parallelism).map_err(|why| {
            Error::Usage(format!(
                "invalid {}: {why} (default {DEFAULT_PARALLELISM})",
                origin("parallelism", flags.parallelism.map(|_| "--parallelism"))
            ))
        })?;
        let lock_timeout =
            crate::config::raw::rules::lock_timeout(&layered.lock_timeout).map_err(|why| {
                Error::Usage(format!(
                    "invalid {}: `{}` {why} (write e.g. 30s or 2m, or a number of seconds)",
                    origin(
                        "lock_timeout",
                        flags.lock_timeout.as_ref().map(|_| "--lock-timeout")
                    ),
                    crate::diagnostic::shown(&layered.lock_timeout)
                ))
            })?;
        let smtp_timeout =
            crate::config::raw::rules::smtp_timeout(&layered.smtp_timeout).map_err(|why| {
                Error::Usage(format!(
                    "invalid {}: `{}` {why} (write e.g. 20s or 1m, or a number of seconds)",
                    origin("smtp_timeout", None),
                    crate::diagnostic::shown(&layered.smtp_timeout)
                ))
            })?;
        Ok(Settings {
            parallelism: layered.parallelism,
            consent: layered.consent,
            lock_timeout,
            smtp_timeout,
            color: layered.color,
        })
    }
}

impl Settings {
    /// Network steps at once, as a count of tasks.
    pub fn parallelism(&self) -> usize {
        usize::try_from(self.parallelism).unwrap_or(usize::MAX)
    }

    /// The consent mode: as set, else `loopback` where a person can consent
    /// (a terminal, or `$BROWSER` set) and `never` otherwise, so CI fails
    /// clearly instead of waiting.
    pub fn consent_mode(&self) -> ConsentMode {
        use std::io::IsTerminal as _;
        self.consent.unwrap_or_else(|| {
            if std::io::stdin().is_terminal()
                || std::env::var_os("BROWSER").is_some_and(|b| !b.is_empty())
            {
                ConsentMode::Loopback
            } else {
                ConsentMode::Never
            }
        })
    }
}

/// Where the value of setting `key` came from, for an error about it: the
/// `flag` when it was given, else its environment variable when set, else
/// the file's `[settings]`.
fn origin(key: &str, flag: Option<&str>) -> String {
    let var = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
    match flag {
        Some(flag) => flag.to_string(),
        None if std::env::var_os(&var).is_some() => format!("environment variable {var}"),
        None => format!("setting {key}"),
    }
}

/// The prefix of the environment variables that set settings.
const ENV_PREFIX: &str = "MAILFORM_";

/// A figment error in the user's words: which variable (or setting), what is
/// wrong with the value, and what is allowed.
fn setting_error(e: &figment::Error) -> String {
    use figment::error::Kind;
    let key = e.path.last().map_or("settings", String::as_str);
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let what = if from_env {
        format!(
            "environment variable {ENV_PREFIX}{}",
            key.to_ascii_uppercase()
        )
    } else {
        format!("setting {key}")
    };
    let why = match &e.kind {
        Kind::UnknownVariant(found, allowed) => format!(
            "`{}` is not one of {}",
            crate::diagnostic::shown(found),
            allowed.join(", ")
        ),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = match key {
                "parallelism" => "a whole number from 1 up",
                "lock_timeout" | "smtp_timeout" => {
                    "a duration such as 30s or 2m, or a number of seconds"
                }
                _ => expected.as_str(),
            };
            format!("expected {expected}, found {actual}")
        }
        other => other.to_string(),
    };
    format!("invalid {what}: {why}")
}

fn text_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    crate::config::raw::text_or_seconds(deserializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }
}
