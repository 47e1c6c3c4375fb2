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

/// Network steps at once, unless set.
pub const DEFAULT_PARALLELISM: u32 = 10;

/// The settings keys that `MAILFORM_*` variables may set.
const ENV_KEYS: [&str; 4] = ["parallelism", "consent", "lock_timeout", "color"];

/// Effective settings for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub parallelism: u32,
    /// `None`: decide by whether stdin is a terminal.
    pub consent: Option<ConsentMode>,
    pub lock_timeout: Duration,
    pub color: ColorChoice,
}

#[derive(Debug, Serialize, Deserialize)]
struct Layered {
    parallelism: u32,
    consent: Option<ConsentMode>,
    lock_timeout: String,
    color: ColorChoice,
}

/// Settings given as flags (highest precedence).
#[derive(Debug, Default, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<String>,
}

impl Settings {
    /// Layers defaults, the config's `[settings]` (if read), environment and flags.
    pub fn resolve(file: Option<&RawSettings>, flags: &Flags) -> Result<Settings, Error> {
        let defaults = Layered {
            parallelism: DEFAULT_PARALLELISM,
            consent: None,
            lock_timeout: "0s".into(),
            color: ColorChoice::Auto,
        };
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(file) = file {
            figment = figment.merge(Serialized::defaults(file));
        }
        let layered: Layered = figment
            .merge(Env::prefixed("MAILFORM_").only(&ENV_KEYS))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| Error::Usage(format!("invalid setting: {e}")))?;
        if layered.parallelism == 0 {
            return Err(Error::Usage(
                "invalid setting: parallelism must be at least 1".into(),
            ));
        }
        let lock_timeout = humantime::parse_duration(&layered.lock_timeout).map_err(|e| {
            Error::Usage(format!(
                "invalid setting: lock_timeout `{}`: {e} (write e.g. 30s or 2m)",
                layered.lock_timeout
            ))
        })?;
        Ok(Settings {
            parallelism: layered.parallelism,
            consent: layered.consent,
            lock_timeout,
            color: layered.color,
        })
    }
}
