//! The embedded state store: `.mailform/state.json`.
//!
//! - **Lock**: an OS file lock on `state.json.lock`, which also holds the
//!   holder's [`LockInfo`]. The kernel drops the lock when its process dies, so
//!   a crash leaves no lock behind; `force-unlock` exists for a holder that
//!   hangs, and works by unlinking the file (a later taker checks that the file
//!   it locked is still the one at the path).
//! - **Write**: temp file in the same folder, mode 0600, fsync, rename over the
//!   old file, fsync the folder. A reader sees the old state or the new one.
//! - **Read**: a corrupt or newer-format file is an error and is never written
//!   over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{LockGuard, LockInfo, StateStore};
use crate::error::Error;
use crate::state::{STATE_FORMAT_VERSION, State};

/// How often a waiting command retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        FileStore {
            path,
            lock_path: lock.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    fn read_lock_info(&self) -> Option<LockInfo> {
        let text = std::fs::read_to_string(&self.lock_path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// Parses state text, refusing what this mailform cannot read faithfully.
pub fn parse_state(path: &Path, text: &str) -> Result<State, Error> {
    #[derive(serde::Deserialize)]
    struct Probe {
        format_version: Option<u64>,
    }
    let corrupt = |why: String| Error::StateCorrupt {
        path: path.to_path_buf(),
        why,
    };
    let probe: Probe = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    match probe.format_version {
        None => return Err(corrupt("it has no format_version".into())),
        Some(0) => {
            return Err(corrupt(
                "format_version 0 is not a mailform state format".into(),
            ));
        }
        Some(v) if v > u64::from(STATE_FORMAT_VERSION) => {
            return Err(Error::StateTooNew {
                path: path.to_path_buf(),
                found: v,
                supported: STATE_FORMAT_VERSION,
            });
        }
        Some(_) => {}
    }
    serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))
}

impl StateStore for FileStore {
    fn load(&self) -> Result<Option<State>, Error> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io("read state file", &self.path)(e)),
        };
        parse_state(&self.path, &text).map(Some)
    }

    fn save(&self, state: &mut State) -> Result<(), Error> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(Self::io("create state folder", dir))?;
        state.serial += 1;
        let result = (|| {
            let mut tmp = tempfile::Builder::new()
                .prefix(".state-")
                .suffix(".tmp")
                .permissions(owner_only())
                .tempfile_in(dir)?;
            // One buffer, one write: serde_json writes token by token.
            let mut bytes = serde_json::to_vec_pretty(state)?;
            bytes.push(b'\n');
            tmp.as_file_mut().write_all(&bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&self.path).map_err(|e| e.error)?;
            sync_dir(dir)
        })();
        if let Err(e) = result {
            state.serial -= 1;
            return Err(Self::io("write state file", &self.path)(e));
        }
        Ok(())
    }

    fn lock(
        &self,
        operation: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&LockInfo),
    ) -> Result<Box<dyn LockGuard>, Error> {
        let dir = self
            .lock_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(Self::io("create state folder", dir))?;
        let started = Instant::now();
        let mut told = false;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.lock_path)
                .map_err(Self::io("open lock file", &self.lock_path))?;
            match file.try_lock() {
                Ok(()) if is_current(&file, &self.lock_path) => {
                    let info = LockInfo::new(operation);
                    write_info(&file, &info)
                        .map_err(Self::io("write lock file", &self.lock_path))?;
                    return Ok(Box::new(FileLock {
                        file,
                        path: self.lock_path.clone(),
                        info,
                    }));
                }
                // Unlinked by force-unlock or a releasing holder after we opened it: retry.
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let info = self.read_lock_info().unwrap_or_else(|| LockInfo {
                        id: "unknown".into(),
                        operation: "unknown".into(),
                        who: "another process".into(),
                        pid: 0,
                        created: chrono::Utc::now(),
                        version: String::new(),
                    });
                    if started.elapsed() >= timeout {
                        return Err(Error::Locked { info });
                    }
                    if !told {
                        waiting(&info);
                        told = true;
                    }
                    std::thread::sleep(LOCK_POLL.min(timeout.saturating_sub(started.elapsed())));
                }
                Err(TryLockError::Error(e)) => return Err(Self::io("lock", &self.lock_path)(e)),
            }
        }
    }

    fn force_unlock(&self, id: &str) -> Result<LockInfo, Error> {
        if !self.lock_path.exists() {
            return Err(Error::NotLocked {
                path: self.lock_path.clone(),
            });
        }
        let Some(info) = self.read_lock_info() else {
            return Err(Error::NotLocked {
                path: self.lock_path.clone(),
            });
        };
        if info.id != id {
            return Err(Error::LockIdMismatch {
                path: self.lock_path.clone(),
                given: id.to_string(),
                held: info.id,
            });
        }
        std::fs::remove_file(&self.lock_path)
            .map_err(Self::io("remove lock file", &self.lock_path))?;
        Ok(info)
    }
}

/// The lock held by this process.
struct FileLock {
    file: File,
    path: PathBuf,
    info: LockInfo,
}

impl LockGuard for FileLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Only remove the path if it is still our file (force-unlock may have
        // handed it to someone else). Unlink before unlocking so a waiter that
        // opened the old file notices and retries on a fresh one.
        if is_current(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

fn write_info(mut file: &File, info: &LockInfo) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    serde_json::to_writer(&mut file, info)?;
    file.sync_all()
}

#[cfg(unix)]
fn is_current(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_current(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(unix)]
fn owner_only() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::Permissions::from_mode(0o600)
}

#[cfg(not(unix))]
fn owner_only() -> std::fs::Permissions {
    std::fs::metadata(".")
        .map(|m| m.permissions())
        .expect("cwd has metadata")
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join(".mailform/state.json"));
        (dir, store)
    }

    #[test]
    fn missing_state_loads_as_none_and_save_bumps_serial() {
        let (_dir, store) = store();
        assert!(store.load().unwrap().is_none());
        let mut state = State::new();
        store.save(&mut state).unwrap();
        store.save(&mut state).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.serial, 2);
        assert_eq!(back.lineage, state.lineage);
    }

    #[cfg(unix)]
    #[test]
    fn state_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_dir, store) = store();
        store.save(&mut State::new()).unwrap();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_and_newer_files_are_refused_and_left_alone() {
        let (_dir, store) = store();
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(store.path(), "{ not json").unwrap();
        assert!(matches!(store.load(), Err(Error::StateCorrupt { .. })));
        let newer = r#"{"format_version": 99, "lineage": "x", "serial": 1}"#;
        std::fs::write(store.path(), newer).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, Error::StateTooNew { found: 99, .. }), "{err}");
        assert_eq!(std::fs::read_to_string(store.path()).unwrap(), newer);
    }

    #[test]
    fn second_lock_waits_then_names_the_holder() {
        let (_dir, store) = store();
        let held = store.lock("apply", Duration::ZERO, &mut |_| {}).unwrap();
        let mut seen = None;
        let Err(err) = store.lock("plan", Duration::from_millis(120), &mut |i| {
            seen = Some(i.clone());
        }) else {
            panic!("second lock must fail")
        };
        assert_eq!(seen.as_ref(), Some(held.info()));
        let Error::Locked { info } = &err else {
            panic!("{err}")
        };
        assert_eq!(info, held.info());
        assert!(err.to_string().contains(&held.info().id));
        drop(held);
        store.lock("plan", Duration::ZERO, &mut |_| {}).unwrap();
    }

    #[test]
    fn force_unlock_needs_the_right_id_and_frees_the_lock() {
        let (_dir, store) = store();
        let held = store.lock("apply", Duration::ZERO, &mut |_| {}).unwrap();
        let id = held.info().id.clone();
        assert!(matches!(
            store.force_unlock("nope"),
            Err(Error::LockIdMismatch { .. })
        ));
        assert_eq!(store.force_unlock(&id).unwrap().id, id);
        let next = store.lock("plan", Duration::ZERO, &mut |_| {}).unwrap();
        // The old holder's release must not remove the new holder's file.
        drop(held);
        assert!(store.lock_path().exists());
        assert!(matches!(
            store.lock("x", Duration::ZERO, &mut |_| {}),
            Err(Error::Locked { .. })
        ));
        drop(next);
        assert!(matches!(
            store.force_unlock(&id),
            Err(Error::NotLocked { .. })
        ));
    }
}
