//! The embedded state store: `.mailform/state.json`.
//!
//! - **Folder**: the state folder is mailform's own. It is created 0700, and
//!   every command refuses it when it is a symlink, belongs to someone else,
//!   or is writable by group or others: whoever can write there can delete or
//!   replace the state and plant a key. Files in it are created 0600, whatever
//!   the umask.
//! - **Files**: state, lock and backup are opened with `O_NOFOLLOW` and
//!   without blocking, then checked on the opened descriptor (a regular file
//!   of ours, of bounded size) rather than by path, so a planted symlink or
//!   FIFO is refused, never followed or waited on.
//! - **Lock**: an OS file lock on `state.json.lock`, which also holds the
//!   holder's [`LockInfo`]. The kernel drops the lock when its holder dies, so
//!   "locked" always means a live holder, and a lock file left by a dead one is
//!   taken over by the next command (which says so). `force-unlock` therefore
//!   only ever removes a dead holder's file: it takes the OS lock first and
//!   refuses while someone holds it, and it compares the ID and the inode on
//!   the same open file it then unlinks.
//! - **Write**: a compare-and-swap on (lineage, serial): the file on disk must
//!   still be the state the caller loaded. Then the previous state is kept as
//!   `state.json.backup` (a hard link: same bytes, same mode), the new one is
//!   written to a temp file (0600, fsync) and renamed over, and the folder is
//!   fsynced. A reader sees the old state or the new one.
//! - **Read**: a corrupt or newer-format file is an error and is never written
//!   over.
//! - **Journal** (`state.json.journal`): what must be durable *now* — tokens
//!   the moment a consent brings them, each asset's outcome during an apply —
//!   is appended as one line per asset record (its full record, or its
//!   removal), fsynced, tagged with the lineage and serial of the state file
//!   it amends. [`FileStore::load`] replays the lines that amend the file on
//!   disk (a torn last line from a crash is ignored; lines for an older
//!   serial were already folded in). [`StateStore::save`] folds everything
//!   into a new state file and then removes the journal, and `record` does so
//!   itself once the journal outgrows the state. So an apply of N assets
//!   writes O(N) bytes (N short appends plus a few whole states), not the
//!   O(N²) of rewriting the whole file after every asset, and a crash or
//!   `kill -9` loses no consent. Appends happen only under the state lock.

use std::fs::{File, TryLockError};
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::journal::JournalLine;
use super::{Attempt, LockGuard, LockInfo, StateStore};
use crate::error::Error;
use crate::files::{self, FileError, Links};
use crate::state::{STATE_FORMAT_VERSION, State};

/// How often a waiting command retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Largest state file read (10,000 assets with tokens take about 15 MB).
pub const MAX_STATE_BYTES: u64 = 256 * 1024 * 1024;

/// Largest lock file read (one small JSON object).
const MAX_LOCK_BYTES: u64 = 64 * 1024;

/// Largest journal read (it is folded in once it outgrows the state).
const MAX_JOURNAL_BYTES: u64 = MAX_STATE_BYTES;

#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    backup_path: PathBuf,
    journal_path: PathBuf,
    /// Bytes and writes this store made (state files and journal lines).
    written: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    /// The last load replayed journal lines (not yet folded in).
    replayed: std::sync::atomic::AtomicBool,
}

impl Clone for FileStore {
    fn clone(&self) -> Self {
        FileStore::new(self.path.clone())
    }
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let beside = |suffix: &str| {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        FileStore {
            lock_path: beside(".lock"),
            backup_path: beside(".backup"),
            journal_path: beside(".journal"),
            path,
            written: std::sync::atomic::AtomicU64::new(0),
            writes: std::sync::atomic::AtomicU64::new(0),
            replayed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// (writes, bytes) this store has made so far: whole states and journal lines.
    pub fn written(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.writes.load(Relaxed), self.written.load(Relaxed))
    }

    fn count(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.writes.fetch_add(1, Relaxed);
        self.written
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Relaxed);
    }

    /// Applies the journal lines that amend `state` (same lineage and
    /// serial); how many did.
    fn replay(&self, state: &mut State) -> Result<usize, Error> {
        let Some(bytes) = Self::read(&self.journal_path, MAX_JOURNAL_BYTES, "read state journal")?
        else {
            return Ok(0);
        };
        let mut applied = 0;
        let corrupt = |line: usize, why: String| Error::StateCorrupt {
            path: self.journal_path.clone(),
            why: format!("line {line}: {why}"),
        };
        // Every append ends with a newline: text after the last one is a
        // line torn by a crash mid-append, and never counted.
        let whole = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(&bytes[..0], |end| &bytes[..end]);
        for (n, line) in whole.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let entry: JournalLine =
                serde_json::from_slice(line).map_err(|e| corrupt(n + 1, e.to_string()))?;
            // A line for an older serial is folded into the file already.
            applied += usize::from(entry.apply(state));
        }
        if let Some(why) = state.inconsistency() {
            return Err(Error::StateCorrupt {
                path: self.journal_path.clone(),
                why: format!("replayed onto the state, it makes it inconsistent: {why}"),
            });
        }
        Ok(applied)
    }

    fn journal_len(&self) -> u64 {
        std::fs::symlink_metadata(&self.journal_path).map_or(0, |m| m.len())
    }

    /// Whether the last load replayed journal lines that are not folded
    /// into the state file yet (a writer folds them first, so the serial a
    /// saved plan was made at tells whether anything changed since).
    pub fn has_journal(&self) -> bool {
        self.replayed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The identity of the state file now (it changes with every save).
    fn file_id(&self) -> Option<(u64, u64, std::time::SystemTime)> {
        let m = std::fs::symlink_metadata(&self.path).ok()?;
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        Some((ino, m.len(), m.modified().ok()?))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    pub fn backup_path(&self) -> &Path {
        &self.backup_path
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// Creates the state folder (0700) if needed and checks it is private.
    pub fn prepare_dir(&self) -> Result<(), Error> {
        files::create_private_dir(self.dir()).map_err(|e| unsafe_dir(self.dir(), &e))
    }

    /// Checks an existing state folder; `Ok(false)` when there is none.
    fn check_dir(&self) -> Result<bool, Error> {
        match files::check_private_dir(self.dir()) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(unsafe_dir(self.dir(), &e)),
        }
    }

    /// The lineage and serial of the file on disk, if there is one.
    fn on_disk(&self) -> Result<Option<(uuid::Uuid, u64)>, Error> {
        #[derive(serde::Deserialize)]
        struct Probe {
            lineage: uuid::Uuid,
            serial: u64,
        }
        let Some(bytes) = Self::read(&self.path, MAX_STATE_BYTES, "read state file")? else {
            return Ok(None);
        };
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| Error::StateCorrupt {
            path: self.path.clone(),
            why: e.to_string(),
        })?;
        Ok(Some((probe.lineage, probe.serial)))
    }

    /// Reads one of the store's files (which hold no secret in clear);
    /// `None` when it does not exist.
    fn read(path: &Path, limit: u64, action: &'static str) -> Result<Option<Vec<u8>>, Error> {
        let read = files::open(path, std::fs::OpenOptions::new().read(true), Links::Refuse)
            .and_then(|f| files::read_open_plain(&f, limit));
        match read {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(FileError::Io(source)) => Err(Error::Io {
                action,
                path: path.to_path_buf(),
                source,
            }),
            Err(e) => Err(Error::StateUnsafe {
                path: path.to_path_buf(),
                why: e.to_string(),
            }),
        }
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// Opens (creating, 0600) the lock file, checked on the descriptor.
    fn open_lock(&self, create: bool) -> Result<Option<File>, Error> {
        let mut options = files::private_create();
        options.create(create);
        match files::open(&self.lock_path, &options, Links::Refuse) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.is_not_found() && !create => Ok(None),
            Err(FileError::Io(source)) => Err(Self::io("open lock file", &self.lock_path)(source)),
            Err(e) => Err(Error::StateUnsafe {
                path: self.lock_path.clone(),
                why: e.to_string(),
            }),
        }
    }
}

fn unsafe_dir(dir: &Path, e: &FileError) -> Error {
    match e {
        FileError::Io(source) if source.kind() != std::io::ErrorKind::PermissionDenied => {
            Error::Io {
                action: "use state folder",
                path: dir.to_path_buf(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            }
        }
        FileError::NotRegular => Error::StateUnsafe {
            path: dir.to_path_buf(),
            why: "it is not a folder".into(),
        },
        other => Error::StateUnsafe {
            path: dir.to_path_buf(),
            why: other.to_string(),
        },
    }
}

pub use crate::state::parse_state;

impl StateStore for FileStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn prepare(&self) -> Result<(), Error> {
        self.prepare_dir()
    }

    fn has_pending(&self) -> bool {
        self.has_journal()
    }

    fn written(&self) -> (u64, u64) {
        FileStore::written(self)
    }

    fn load(&self) -> Result<Option<State>, Error> {
        if !self.check_dir()? {
            return Ok(None);
        }
        // State file and journal are two reads: when a writer folds the
        // journal in between them, read both again.
        for _ in 0..5 {
            let before = self.file_id();
            let Some(bytes) = Self::read(&self.path, MAX_STATE_BYTES, "read state file")? else {
                return Ok(None);
            };
            let mut state = parse_state(&self.path, &bytes)?;
            let replayed = self.replay(&mut state)?;
            if self.file_id() == before {
                self.replayed
                    .store(replayed > 0, std::sync::atomic::Ordering::Relaxed);
                return Ok(Some(state));
            }
        }
        Err(Error::StateCorrupt {
            path: self.path.clone(),
            why: "it kept changing while it was read; is another mailform writing it without the lock?".into(),
        })
    }

    fn record(&self, state: &mut State, assets: &[&str]) -> Result<(), Error> {
        let state_len = std::fs::symlink_metadata(&self.path).map_or(0, |m| m.len());
        if super::journal::write_instead(self, state, self.journal_len(), state_len)? {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for asset in assets {
            let line = JournalLine::of(state, asset);
            serde_json::to_writer(&mut bytes, &line)
                .map_err(std::io::Error::from)
                .map_err(Self::io("write state journal", &self.journal_path))?;
            bytes.push(b'\n');
        }
        let mut options = files::private_create();
        options.append(true);
        let mut file = match files::open(&self.journal_path, &options, Links::Refuse) {
            Ok(f) => f,
            Err(FileError::Io(source)) => {
                return Err(Self::io("open state journal", &self.journal_path)(source));
            }
            Err(e) => {
                return Err(Error::StateUnsafe {
                    path: self.journal_path.clone(),
                    why: e.to_string(),
                });
            }
        };
        let len = file
            .metadata()
            .map_err(Self::io("read state journal", &self.journal_path))?
            .len();
        let fresh = len == 0;
        // A line torn by a crash mid-append is cut off first, so that only
        // a last line can ever be torn.
        if !fresh {
            cut_torn_line(&mut file, len)
                .map_err(Self::io("repair state journal", &self.journal_path))?;
        }
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(Self::io("write state journal", &self.journal_path))?;
        if fresh {
            files::sync_dir(self.dir()).map_err(Self::io(
                "fsync the folder after creating the journal",
                &self.journal_path,
            ))?;
        }
        self.count(bytes.len());
        Ok(())
    }

    fn write(&self, state: &mut State, expected: Option<(uuid::Uuid, u64)>) -> Result<(), Error> {
        self.prepare_dir()?;
        let dir = self.dir();
        let found = self.on_disk()?;
        if found != expected {
            return Err(Error::StateMoved {
                path: self.path.clone(),
                expected,
                found,
            });
        }
        let previous = (state.serial, state.format_version);
        state.serial = state.serial.max(expected.map_or(0, |(_, s)| s)) + 1;
        state.format_version = STATE_FORMAT_VERSION;
        let result = (|| {
            let mut tmp = tempfile::Builder::new()
                .prefix(".state-")
                .suffix(".tmp")
                .permissions(files::owner_only())
                .tempfile_in(dir)?;
            // One buffer, one write: serde_json writes token by token.
            let mut bytes = serde_json::to_vec_pretty(state)?;
            bytes.push(b'\n');
            tmp.as_file_mut().write_all(&bytes)?;
            self.count(bytes.len());
            tmp.as_file().sync_all()?;
            if found.is_some() {
                keep_backup(&self.path, &self.backup_path, dir)?;
            }
            tmp.persist(&self.path).map_err(|e| e.error)
        })();
        if let Err(e) = result {
            (state.serial, state.format_version) = previous;
            return Err(Self::io("write state file", &self.path)(e));
        }
        // The new state is in place (and the caller's serial with it); only
        // its durability across a power cut is in doubt if this fails.
        files::sync_dir(dir).map_err(Self::io(
            "fsync the folder after writing (the new state is in place)",
            &self.path,
        ))?;
        // Everything the journal held is in the new file; its lines name
        // the old serial, so a journal whose removal fails is harmless (it
        // is ignored on load), and the save stands.
        let _ = std::fs::remove_file(&self.journal_path);
        self.replayed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn lock(
        &self,
        operation: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&LockInfo),
    ) -> Result<Box<dyn LockGuard>, Error> {
        self.prepare_dir()?;
        super::wait_for_lock(timeout, LOCK_POLL, waiting, || {
            loop {
                let file = self.open_lock(true)?.expect("created");
                match file.try_lock() {
                    Ok(()) if is_current(&file, &self.lock_path) => {
                        // Content left in a lock file we could lock is a dead
                        // holder's: the kernel released its lock when it died.
                        let left_by = lock_info(&file);
                        let info = LockInfo::new(operation);
                        write_info(&file, &info)
                            .map_err(Self::io("write lock file", &self.lock_path))?;
                        return Ok(Attempt::Got(Box::new(super::Held {
                            info,
                            left_by,
                            release: FileLock {
                                file,
                                path: self.lock_path.clone(),
                            },
                        })));
                    }
                    // Unlinked by a releasing holder after we opened it: retry.
                    Ok(()) => {}
                    Err(TryLockError::WouldBlock) => {
                        return Ok(Attempt::Busy(
                            lock_info(&file).unwrap_or_else(LockInfo::unknown),
                        ));
                    }
                    Err(TryLockError::Error(e)) => {
                        return Err(Self::io("lock", &self.lock_path)(e));
                    }
                }
            }
        })
    }

    fn force_unlock(
        &self,
        id: &str,
        confirm: &mut dyn FnMut(&LockInfo) -> Result<bool, Error>,
    ) -> Result<LockInfo, Error> {
        let not_locked = || Error::NotLocked {
            path: self.lock_path.clone(),
        };
        if !self.check_dir()? {
            return Err(not_locked());
        }
        let Some(file) = self.open_lock(false)? else {
            return Err(not_locked());
        };
        // Is the holder alive? Asked without keeping the lock, so nobody
        // waits on us while a person reads the question.
        let probe = |file: &File| match file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Err(Error::LockLive {
                info: lock_info(file).unwrap_or_else(LockInfo::unknown),
            }),
            Err(TryLockError::Error(e)) => Err(Self::io("lock", &self.lock_path)(e)),
        };
        probe(&file)?;
        let _ = file.unlock();
        let Some(info) = lock_info(&file) else {
            return Err(not_locked());
        };
        if info.id != id {
            return Err(Error::LockIdMismatch {
                path: self.lock_path.clone(),
                given: id.to_string(),
                held: info.id,
            });
        }
        if !confirm(&info)? {
            return Err(Error::Usage("nothing was removed".into()));
        }
        // Now hold it, and make sure it is still that dead holder's file.
        probe(&file)?;
        let same = lock_info(&file).is_some_and(|now| now.id == info.id);
        let current = is_current(&file, &self.lock_path);
        if same && current {
            std::fs::remove_file(&self.lock_path)
                .map_err(Self::io("remove lock file", &self.lock_path))?;
        }
        let _ = file.unlock();
        match (same, current) {
            (true, true) => Ok(info),
            (false, _) => Err(Error::Usage(
                "the lock changed hands while you were asked; nothing was removed".into(),
            )),
            (true, false) => Err(not_locked()),
        }
    }
}

/// The holder's details in an opened lock file, if it holds any.
fn lock_info(mut file: &File) -> Option<LockInfo> {
    file.rewind().ok()?;
    files::read_open(file, MAX_LOCK_BYTES)
        .ok()
        .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok())
}

/// Cuts `file` (of `len` bytes) back to its last newline when it does not
/// end with one.
fn cut_torn_line(file: &mut File, len: u64) -> std::io::Result<()> {
    use std::io::{Read as _, SeekFrom};
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    file.seek(SeekFrom::Start(0))?;
    let mut all = Vec::new();
    file.read_to_end(&mut all)?;
    let keep = all.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    file.set_len(u64::try_from(keep).unwrap_or(0))
}

/// Keeps the current state file as the backup: a hard link to it under a
/// temp name, renamed over the old backup (so the backup is never missing or
/// half written, and has the state's own mode).
fn keep_backup(path: &Path, backup: &Path, dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join(format!(".backup-{}.tmp", uuid::Uuid::new_v4()));
    if std::fs::hard_link(path, &tmp).is_err() {
        // A file system without hard links: a private copy instead.
        let mut from = files::open(path, std::fs::OpenOptions::new().read(true), Links::Refuse)
            .map_err(|e| match e {
                FileError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            })?;
        let mut to = files::private_create().create_new(true).open(&tmp)?;
        std::io::copy(&mut from, &mut to)?;
        to.sync_all()?;
    }
    std::fs::rename(&tmp, backup).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The lock file held by this process.
struct FileLock {
    file: File,
    path: PathBuf,
}

impl super::Release for FileLock {
    fn release(&mut self, _: &LockInfo) {
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
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_current(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests;
