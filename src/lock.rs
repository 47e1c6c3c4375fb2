//! Who holds the state lock: recorded by the holder, shown to whoever waits.
//! A leaf, so that errors can name the holder without importing the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
        // The OS's name for this user first ($USER is unset under cron and
        // in many CI containers), the environment's after.
        let user = whoami::username()
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("USERNAME").ok())
            .unwrap_or_else(|| "unknown".into());
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
