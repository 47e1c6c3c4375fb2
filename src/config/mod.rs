//! `assets.toml`: the desired state.
//!
//! [`load`] reads the file, resolves it ([`resolve`]) and lints it ([`lints`]),
//! returning the [`Config`] (when it has no errors) together with every
//! diagnostic. The raw serde types ([`raw`]) are also the source of the
//! config's JSON Schema.

pub mod grants;
pub mod lints;
pub mod model;
pub mod presets;
pub mod raw;
pub mod resolve;
pub mod scan;
pub mod state_url;

use std::path::{Path, PathBuf};

pub use model::{Asset, Config, Provider, SecretSource, SmtpEndpoint};
pub use raw::Security;

use crate::diagnostic::{Diagnostic, Diagnostics, Origin};
use crate::error::Error;
use crate::secret::Secret;

/// A config file read from disk, with what was found in it.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub source: String,
    /// `Some` when the file has no errors (warnings allowed).
    pub config: Option<Config>,
    pub diagnostics: Diagnostics,
}

/// Largest config file read (10,000 assets take about 2 MB).
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// Reads, resolves and lints a config file.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let bytes =
        crate::files::read(path, MAX_CONFIG_BYTES, crate::files::Links::Follow).map_err(|e| {
            Error::ConfigRead {
                path: path.to_path_buf(),
                source: match e {
                    crate::files::FileError::Io(e) => e,
                    other => std::io::Error::other(other.to_string()),
                },
            }
        })?;
    match String::from_utf8(bytes.to_vec()) {
        Ok(source) => Ok(parse(path, source)),
        Err(e) => Ok(not_utf8(path, e.as_bytes(), e.utf8_error())),
    }
}

/// A file that is not UTF-8: one error at the first bad byte, shown on the
/// text decoded with replacement characters.
fn not_utf8(path: &Path, bytes: &[u8], e: std::str::Utf8Error) -> Loaded {
    let good = e.valid_up_to();
    let bad = bytes.get(good).copied().unwrap_or_default();
    let source = String::from_utf8_lossy(bytes).into_owned();
    let mut diagnostics = Diagnostics::default();
    diagnostics.push(
        Diagnostic::error(format!(
            "not UTF-8 text: byte 0x{bad:02x} cannot start or continue a character"
        ))
        .at(Some(good..good + '\u{fffd}'.len_utf8()))
        .origin(Origin::Syntax)
        .help("TOML files are UTF-8; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"),
    );
    Loaded {
        path: path.to_path_buf(),
        source,
        config: None,
        diagnostics,
    }
}

/// Resolves and lints config text that was read from `path`. Every table
/// that resolved is linted, even beside another table's errors, so one run
/// reports everything; a config with any error is not returned.
pub fn parse(path: &Path, source: String) -> Loaded {
    let (mut config, mut diagnostics) = resolve::resolve(path, &source);
    if let Some(c) = &config {
        diagnostics.extend(lints::lint(c));
    }
    diagnostics.sort();
    if diagnostics.has_errors() {
        config = None;
    }
    Loaded {
        path: path.to_path_buf(),
        source,
        config,
        diagnostics,
    }
}

impl Provider {
    /// Reads the client secret from where the config points. `Ok(None)` for a
    /// public client (PKCE only).
    pub fn client_secret(&self) -> Result<Option<Secret>, Error> {
        let missing = |why: String| Error::Secret {
            provider: self.name.clone(),
            why,
        };
        match &self.client_secret {
            None => Ok(None),
            Some(SecretSource::Env(var)) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                Ok(_) => Err(missing(format!("environment variable {var} is empty"))),
                Err(_) => Err(missing(format!(
                    "environment variable {var} is not set (client_secret = {{ env = \"{var}\" }})"
                ))),
            },
            Some(SecretSource::File(path)) => match crate::files::read_secret_file(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                Ok(_) => Err(missing(format!("{} is empty", path.display()))),
                Err(e) => Err(missing(format!("cannot read {}: {e}", path.display()))),
            },
            Some(SecretSource::CredentialsFile { secret, .. }) => Ok(Some(secret.clone())),
        }
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
