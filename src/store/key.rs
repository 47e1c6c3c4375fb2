//! The token-encryption key: `MAILFORM_KEY` (base64) if set, else the file
//! `key` in the state folder, created by `mailform init` with mode 0600.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::files::{self, FileError, Links};
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

/// Largest key file read (the key is 45 bytes of text).
const MAX_KEY_FILE: u64 = 4096;

/// Loads the key, or `Ok(None)` when there is none yet.
///
/// `MAILFORM_KEY` wins when set; set but empty or not UTF-8 is an error, not
/// a silent fall-back to the file. The key file must be a regular file (no
/// link), owned by the current user and readable by nobody else, all checked
/// on the opened file.
pub fn load(state_dir: &Path) -> Result<Option<(Key, KeySource)>, Error> {
    if let Some(raw) = std::env::var_os(KEY_ENV) {
        let Ok(text) = raw.into_string().map(zeroize::Zeroizing::new) else {
            return Err(Error::Key {
                why: format!(
                    "{KEY_ENV} is not valid text; it must be the base64 key that `mailform init` wrote"
                ),
            });
        };
        if text.trim().is_empty() {
            return Err(Error::Key {
                why: format!("{KEY_ENV} is set but empty (a CI secret that is not defined?)"),
            });
        }
        let key = Key::from_base64(&text).map_err(|e| Error::Key {
            why: format!("{KEY_ENV}: {e}"),
        })?;
        return Ok(Some((key, KeySource::Env)));
    }
    let path = state_dir.join(KEY_FILE);
    let refused = |why: String| Error::Key {
        why: format!("key file {}: {why}", path.display()),
    };
    match crate::files::check_private_dir(state_dir) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(Error::StateUnsafe {
                path: state_dir.to_path_buf(),
                why: e.to_string(),
            });
        }
    }
    let file = match files::open(&path, std::fs::OpenOptions::new().read(true), Links::Refuse) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(FileError::NotOwned { owner }) => {
            return Err(refused(format!(
                "it belongs to another user (uid {owner}), and only your own key is trusted; if it is yours, chown it to yourself, otherwise remove it"
            )));
        }
        Err(FileError::Io(source)) => {
            return Err(Error::Io {
                action: "read key file",
                path,
                source,
            });
        }
        Err(e) => return Err(refused(e.to_string())),
    };
    check_private(&file, &path)?;
    let bytes = files::read_open(&file, MAX_KEY_FILE).map_err(|e| refused(e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| refused("it is not base64 text".into()))?;
    let key = Key::from_base64(text).map_err(|e| refused(e.to_string()))?;
    Ok(Some((key, KeySource::File(path))))
}

/// Creates a new key file (mode 0600) atomically: written to a temp file,
/// fsynced, then linked into place only if no key is there. A full disk
/// leaves no empty key behind, and an existing key is never replaced (that
/// would make every stored token unreadable).
pub fn create(state_dir: &Path) -> Result<(Key, PathBuf), Error> {
    let path = state_dir.join(KEY_FILE);
    files::create_private_dir(state_dir).map_err(|e| Error::StateUnsafe {
        path: state_dir.to_path_buf(),
        why: e.to_string(),
    })?;
    let (key, text) = Key::generate();
    write_key_file(&path, &text)?;
    Ok((key, path))
}

#[cfg(unix)]
fn check_private(file: &std::fs::File, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file
        .metadata()
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
fn check_private(_file: &std::fs::File, _path: &Path) -> Result<(), Error> {
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
    if !state.has_tokens() {
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
    if let Err(e) = check_matches(state, &key, &source) {
        // A rotation that stopped after writing the state sealed with the
        // new key, before the new key file took the old one's place.
        if matches!(source, KeySource::File(_))
            && let Some(key) = finish_rotation(state_dir, state)
        {
            return Ok(Some(key));
        }
        return Err(e);
    }
    Ok(Some(key))
}

/// The new key file a rotation writes before anything is sealed with it.
pub const NEW_KEY_FILE: &str = "key.new";

/// Writes `text` (a new key) to `path`, mode 0600, atomically and never over
/// an existing file: a temp file, fsynced, linked into place, the folder
/// synced.
pub fn write_key_file(path: &Path, text: &str) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".key-")
        .suffix(".tmp")
        .permissions(files::owner_only())
        .tempfile_in(dir)
        .map_err(io("create key file"))?;
    std::io::Write::write_all(tmp.as_file_mut(), text.as_bytes())
        .and_then(|()| std::io::Write::write_all(tmp.as_file_mut(), b"\n"))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io("write key file"))?;
    tmp.persist_noclobber(path)
        .map_err(|e| io("create key file")(e.error))?;
    files::sync_dir(dir).map_err(io("sync the folder of"))
}

/// Puts the rotated key in place: `key.new` over `key`, the folder synced.
pub fn promote_new_key(state_dir: &Path) -> Result<(), Error> {
    let new = state_dir.join(NEW_KEY_FILE);
    let path = state_dir.join(KEY_FILE);
    std::fs::rename(&new, &path).map_err(|source| Error::Io {
        action: "put the new key in place of",
        path: path.clone(),
        source,
    })?;
    files::sync_dir(state_dir).map_err(|source| Error::Io {
        action: "sync the folder of",
        path,
        source,
    })
}

/// The key of `key.new` when it is the one `state` was sealed with (a
/// rotation that stopped halfway), put in place of the old key file.
fn finish_rotation(state_dir: &Path, state: &crate::state::State) -> Option<Key> {
    let new = state_dir.join(NEW_KEY_FILE);
    let file = files::open(&new, std::fs::OpenOptions::new().read(true), Links::Refuse).ok()?;
    check_private(&file, &new).ok()?;
    let bytes = files::read_open(&file, MAX_KEY_FILE).ok()?;
    let key = Key::from_base64(std::str::from_utf8(&bytes).ok()?).ok()?;
    (state.key_id.as_deref() == Some(key.id()) && promote_new_key(state_dir).is_ok()).then_some(key)
}

/// Where the key [`load_or_create`] returned came from.
#[derive(Debug)]
pub enum Origin {
    Loaded(KeySource),
    /// Made now, in this file.
    Created(std::path::PathBuf),
}

/// The key for a state about to be written: the existing one (checked
/// against `state`'s tokens), or a new one when there is none — never while
/// `state` holds tokens the new key could not open.
pub fn load_or_create(
    state_dir: &Path,
    state: Option<&crate::state::State>,
) -> Result<(Key, Origin), Error> {
    let with_tokens = state.filter(|s| s.has_tokens());
    if let Some((key, source)) = load(state_dir)? {
        if let Some(state) = with_tokens {
            check_matches(state, &key, &source)?;
        }
        return Ok((key, Origin::Loaded(source)));
    }
    // Checked before a key is made: a new key cannot open old tokens, and a
    // stray key file would only confuse the next attempt.
    if let Some(state) = with_tokens {
        return Err(Error::Key {
            why: format!(
                "the state holds tokens sealed with key id {}, but no key was found: set {KEY_ENV} or restore {}; no new key is made while tokens need the old one",
                state.key_id.as_deref().unwrap_or("unknown"),
                state_dir.join(KEY_FILE).display()
            ),
        });
    }
    let (key, path) = create(state_dir)?;
    Ok((key, Origin::Created(path)))
}
