//! Where state is kept. [`StateStore`] is the role; [`FileStore`] the embedded
//! default (a JSON file, an OS file lock, atomic replace); [`PgStore`] the
//! team's (one row per state name, a session advisory lock, the serial
//! compared and swapped on every write).
//!
//! The token-encryption key is found here too ([`key`]): it lives beside the
//! state, or comes from `MAILFORM_KEY`.

pub mod file;
mod journal;
pub mod key;
pub mod postgres;

use std::time::Duration;

pub use file::FileStore;
pub use postgres::PgStore;

pub use crate::lock::LockInfo;

use crate::error::Error;
use crate::state::State;

/// One try at the lock, by a store.
pub(crate) enum Attempt {
    Got(Box<dyn LockGuard>),
    /// Held by someone else (as far as can be told).
    Busy(LockInfo),
}

/// Tries for the lock every `poll` until `timeout`: `waiting` hears once
/// whom it waits for, and after the timeout the holder is named in
/// [`Error::Locked`]. The wait both stores share.
pub(crate) fn wait_for_lock(
    timeout: Duration,
    poll: Duration,
    waiting: &mut dyn FnMut(&LockInfo),
    mut attempt: impl FnMut() -> Result<Attempt, Error>,
) -> Result<Box<dyn LockGuard>, Error> {
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        let info = match attempt()? {
            Attempt::Got(guard) => return Ok(guard),
            Attempt::Busy(info) => info,
        };
        if started.elapsed() >= timeout {
            return Err(Error::Locked { info });
        }
        if !told {
            waiting(&info);
            told = true;
        }
        std::thread::sleep(poll.min(timeout.saturating_sub(started.elapsed())));
    }
}

/// A held lock; released when dropped.
pub trait LockGuard {
    fn info(&self) -> &LockInfo;

    /// The holder whose lock was left behind when it died, if this lock took
    /// one over (for a note to the user).
    fn taken_over(&self) -> Option<&LockInfo>;
}

/// How a store gives its lock back (unlink and unlock a file; unlock the
/// session's advisory lock and remove the holder's row).
pub(crate) trait Release: Send {
    fn release(&mut self, info: &LockInfo);
}

/// A held state lock, the one guard of every store: who holds it, whom it
/// was taken over from, and how it is given back when dropped.
pub(crate) struct Held<R: Release> {
    pub info: LockInfo,
    pub left_by: Option<LockInfo>,
    pub release: R,
}

impl<R: Release> LockGuard for Held<R> {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn taken_over(&self) -> Option<&LockInfo> {
        self.left_by.as_ref()
    }
}

impl<R: Release> Drop for Held<R> {
    fn drop(&mut self) {
        self.release.release(&self.info);
    }
}

/// A place that keeps state.
pub trait StateStore: Send + Sync {
    /// Where the state is, for messages (a path, or a database and name).
    fn location(&self) -> String;

    /// Makes the store ready for a first write (the file store's private folder).
    fn prepare(&self) -> Result<(), Error>;

    /// Whether the last load read changes not yet folded into the stored
    /// document (a writer saves first, so serials stay meaningful).
    fn has_pending(&self) -> bool;

    /// (writes, bytes) this store has made so far.
    fn written(&self) -> (u64, u64);

    /// The state, or `None` when none was ever written.
    fn load(&self) -> Result<Option<State>, Error>;

    /// Writes `state` with its serial increased by one, if what is stored is
    /// still the state it was loaded from (same lineage and serial; nothing
    /// stored when the serial is 0). Otherwise [`Error::StateMoved`], and
    /// nothing is written.
    fn save(&self, state: &mut State) -> Result<(), Error> {
        let expected = (state.serial > 0).then_some((state.lineage, state.serial));
        self.write(state, expected)
    }

    /// Writes `state` in place of what is stored, if that is still
    /// `expected` (lineage and serial; `None`: nothing stored), with a serial
    /// one above both `state`'s and `expected`'s; otherwise
    /// [`Error::StateMoved`], and nothing is written. `save` is this with
    /// the state's own lineage and serial; `state push` replaces a state.
    fn write(&self, state: &mut State, expected: Option<(uuid::Uuid, u64)>) -> Result<(), Error>;

    /// Makes the current records of `assets` in `state` durable now, as
    /// cheaply as the store can (the file store appends them to a journal
    /// that `load` replays and the next `save` folds in). Called only under
    /// the lock.
    fn record(&self, state: &mut State, assets: &[&str]) -> Result<(), Error>;

    /// [`StateStore::load`] for a writer holding the lock: changes read but
    /// not yet folded into the stored document (a killed apply's journal)
    /// are saved first, so the serial tells a saved plan whether anything
    /// changed since it was made.
    fn load_folded(&self) -> Result<Option<State>, Error> {
        let mut state = self.load()?;
        if let Some(s) = state.as_mut().filter(|s| s.serial > 0)
            && self.has_pending()
        {
            self.save(s)?;
        }
        Ok(state)
    }

    /// Takes the exclusive lock, waiting up to `timeout`; `waiting` is called
    /// once with the holder's details if the lock is busy.
    fn lock(
        &self,
        operation: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&LockInfo),
    ) -> Result<Box<dyn LockGuard>, Error>;

    /// Removes a lock whose holder is gone, if `id` names it and `confirm`
    /// agrees. A lock whose holder is alive is never removed.
    fn force_unlock(
        &self,
        id: &str,
        confirm: &mut dyn FnMut(&LockInfo) -> Result<bool, Error>,
    ) -> Result<LockInfo, Error>;
}
