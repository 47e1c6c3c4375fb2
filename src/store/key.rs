//! The token-encryption key: `MAILFORM_KEY` (base64) if set, else the file
//! `key` in the state folder, created by `mailform init` with mode 0600.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::state::crypto::Key;

/// The environment variable that carries the key (CI, teams).
pub const KEY_ENV: &str = "MAILFORM_KEY";

/// The key file's name inside the state folder.
pub const KEY_FILE: &str = "key";

/// Where a key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => f.write_str(KEY_ENV),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Loads the key, or `Ok(None)` when there is none yet.
pub fn load(state_dir: &Path) -> Result<Option<(Key, KeySource)>, Error> {
    if let Ok(text) = std::env::var(KEY_ENV) {
        let key = Key::from_base64(&text).map_err(|e| Error::Key {
            why: format!("{KEY_ENV}: {e}"),
        })?;
        return Ok(Some((key, KeySource::Env)));
    }
    let path = state_dir.join(KEY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                action: "read key file",
                path,
                source,
            });
        }
    };
    check_private(&path)?;
    let key = Key::from_base64(&text).map_err(|e| Error::Key {
        why: format!("{}: {e}", path.display()),
    })?;
    Ok(Some((key, KeySource::File(path))))
}

/// Creates a new key file (mode 0600). Refuses to replace an existing one:
/// that would make every stored token unreadable.
pub fn create(state_dir: &Path) -> Result<(Key, PathBuf), Error> {
    let path = state_dir.join(KEY_FILE);
    std::fs::create_dir_all(state_dir).map_err(|source| Error::Io {
        action: "create state folder",
        path: state_dir.to_path_buf(),
        source,
    })?;
    let (key, text) = Key::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|source| Error::Io {
        action: "create key file",
        path: path.clone(),
        source,
    })?;
    std::io::Write::write_all(&mut file, format!("{}\n", text.as_str()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::Io {
            action: "write key file",
            path: path.clone(),
            source,
        })?;
    Ok((key, path))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|source| Error::Io {
            action: "inspect key file",
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Key {
            why: format!(
                "key file {} is readable by others (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), Error> {
    Ok(())
}

/// Refuses a key other than the one the state's tokens were sealed with.
pub fn check_matches(
    state: &crate::state::State,
    key: &Key,
    source: &KeySource,
) -> Result<(), Error> {
    match &state.key_id {
        Some(id) if id != key.id() => Err(Error::WrongKey {
            source_name: source.to_string(),
            key_id: key.id().to_string(),
            state_key_id: id.clone(),
        }),
        _ => Ok(()),
    }
}

/// The key that opens `state`'s tokens: `None` when it holds none yet; an
/// error when it holds some and the key is missing or another one.
pub fn for_state(state_dir: &Path, state: &crate::state::State) -> Result<Option<Key>, Error> {
    if !state.assets.values().any(|a| a.token.is_some()) {
        return Ok(None);
    }
    let Some((key, source)) = load(state_dir)? else {
        return Err(Error::Key {
            why: format!(
                "the state holds tokens but there is no key: set {KEY_ENV} or restore {}",
                state_dir.join(KEY_FILE).display()
            ),
        });
    };
    check_matches(state, &key, &source)?;
    Ok(Some(key))
}
