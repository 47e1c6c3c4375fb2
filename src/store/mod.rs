//! Where state is kept. [`StateStore`] is the role; [`FileStore`] the embedded
//! default (a JSON file, an OS file lock, atomic replace). A `PostgreSQL` store
//! will implement the same trait (row/advisory lock, serial checked on write).
//!
//! The token-encryption key is found here too ([`key`]): it lives beside the
//! state, or comes from `MAILFORM_KEY`.

pub mod file;
pub mod key;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use file::FileStore;

use crate::error::Error;
use crate::state::State;

/// Who holds the state lock, recorded by the holder and shown to whoever waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    /// The command that took it, e.g. "apply".
    pub operation: String,
    /// `user@host`.
    pub who: String,
    pub pid: u32,
    pub created: DateTime<Utc>,
    pub version: String,
}

impl LockInfo {
    pub fn new(operation: &str) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_string(),
            who: format!("{user}@{host}"),
            pid: std::process::id(),
            created: Utc::now(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl LockInfo {
    /// What a waiter says when the holder's details cannot be read (it
    /// has not written them yet, or wrote something else).
    pub fn unknown() -> Self {
        LockInfo {
            id: "unknown".into(),
            operation: "unknown".into(),
            who: "another process".into(),
            pid: 0,
            created: Utc::now(),
            version: String::new(),
        }
    }
}

/// A held lock; released when dropped.
pub trait LockGuard {
    fn info(&self) -> &LockInfo;

    /// The holder whose lock was left behind when it died, if this lock took
    /// one over (for a note to the user).
    fn taken_over(&self) -> Option<&LockInfo>;
}

/// A place that keeps state.
pub trait StateStore {
    /// The state, or `None` when none was ever written.
    fn load(&self) -> Result<Option<State>, Error>;

    /// Writes `state` with its serial increased by one, if what is stored is
    /// still the state it was loaded from (same lineage and serial; nothing
    /// stored when the serial is 0). Otherwise [`Error::StateMoved`], and
    /// nothing is written.
    fn save(&self, state: &mut State) -> Result<(), Error>;

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
