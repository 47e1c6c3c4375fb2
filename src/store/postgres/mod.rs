//! The team's state store: PostgreSQL (`[state] backend = "postgres"`).
//!
//! - **Tables** (in `state.schema`, default `mailform`), made by a versioned
//!   migration this module owns ([`MIGRATIONS`]), run in one transaction
//!   under a transaction advisory lock, so two processes starting at once
//!   on an empty database both succeed and the second finds the work done.
//!   A schema of a newer mailform is refused, never altered.
//!   - `states`: one row per state `name`: `lineage` and `serial` columns
//!     beside `doc`, the same JSON document as the file backend (tokens
//!     sealed with the key; the database never sees a token in clear).
//!   - `journal`: rows amending one (name, lineage, serial), like the file
//!     store's journal lines: an apply records each asset's outcome as one
//!     small row, and the next write folds them into `doc` in the same
//!     transaction that deletes them. O(N) bytes for N assets.
//!   - `locks`: the lock holder's [`LockInfo`] and backend pid, for waiters.
//! - **Write**: a compare-and-swap, `UPDATE … WHERE lineage = $ AND serial
//!   = $`: a writer whose serial moved on under it fails and writes nothing.
//! - **Lock**: `pg_try_advisory_lock` on a key derived from the schema and
//!   the state name, held by the connection for the command's life. The
//!   server drops it when the session ends, so a killed holder (`kill -9`,
//!   a lost laptop) releases it with its connection; its `locks` row is
//!   then taken over by the next holder, who says so. A waiter shows the
//!   row only while its backend pid still holds an advisory lock.
//! - **One connection**, opened on first use and never reopened: the lock
//!   lives in that session, so a command that lost its connection stops
//!   rather than writing without the lock. Every call is bounded (the URL's
//!   `connect_timeout`, a server-side `statement_timeout`, and a client-side
//!   limit on each round trip).
//! - **TLS** through rustls with ring: `verify-full` checks the certificate
//!   against the web's roots and `state.ca_file`, and the host name;
//!   `require` encrypts without that check; `disable` only on loopback.
//!
//! The store is called from inside the network runtime (apply records an
//! outcome while proofs are in flight), so it drives its own small runtime,
//! from a scoped thread when the caller is already in one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;

use super::journal::JournalLine;
use super::{Attempt, LockGuard, LockInfo, StateStore};
use crate::config::model::PostgresState;
use crate::config::state_url::StateUrl;
use crate::error::Error;
use crate::state::parse_state;
use crate::state::{STATE_FORMAT_VERSION, State};

/// Runs `$body` (a future using `$client`, the connection's client) as one
/// bounded round trip; `?` on a connection that cannot be made.
macro_rules! with_client {
    ($sh:expr, |$client:ident| $body:expr) => {{
        let mut conn = $sh.connection()?;
        let $client = conn.client.as_mut().expect("connected");
        let result = $sh.run($body);
        if result.is_err() && $sh.timed_out.load(Relaxed) {
            $sh.close(&mut conn);
        }
        result
    }};
}

mod errors;
mod session;
mod tls;

use errors::transport_words;
use tls::tls_config;

/// The schema version this mailform writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// Server-side limit on one statement.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Client-side limit on one round trip (the server's limit, plus the network).
const CALL_TIMEOUT: Duration = Duration::from_secs(40);

/// How often a waiting command retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// The migrations, in order: step `n` brings the schema to version `n + 1`.
/// `{s}` is the schema, quoted (a plain identifier, checked by the config).
const MIGRATIONS: [&str; 1] = [r"
CREATE TABLE {s}.states (
    name text PRIMARY KEY,
    lineage uuid NOT NULL,
    serial bigint NOT NULL CHECK (serial > 0),
    format_version integer NOT NULL,
    doc text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
CREATE TABLE {s}.journal (
    name text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    lineage uuid NOT NULL,
    serial bigint NOT NULL,
    entry text NOT NULL,
    PRIMARY KEY (name, seq)
);
CREATE TABLE {s}.locks (
    name text PRIMARY KEY,
    id text NOT NULL,
    backend_pid integer NOT NULL,
    info text NOT NULL
);
COMMENT ON TABLE {s}.states IS 'mailform state: one JSON document per state name (tokens sealed with the key)';
"];

pub struct PgStore {
    shared: Arc<Shared>,
    /// Bytes and writes this store made (documents and journal rows).
    written: AtomicU64,
    writes: AtomicU64,
    /// The last load replayed journal rows (not yet folded in).
    replayed: AtomicBool,
    /// Bytes of journal rows amending the loaded state, and its size.
    journal_bytes: AtomicU64,
    doc_bytes: AtomicU64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

/// What the store and its lock guard share: the connection and its runtime.
struct Shared {
    url: StateUrl,
    schema: String,
    /// The schema as SQL writes it (double-quoted).
    quoted: String,
    name: String,
    ca_file: Option<PathBuf>,
    location: String,
    lock_key: i64,
    migrate_key: i64,
    runtime: Option<tokio::runtime::Runtime>,
    client: Mutex<Connection>,
    /// A round trip timed out: its connection is closed.
    timed_out: AtomicBool,
    /// This session holds the state lock.
    locked: AtomicBool,
    /// A session was opened (errors after that may mean it was lost; it
    /// is never opened again).
    opened: AtomicBool,
}

#[derive(Default)]
struct Connection {
    client: Option<Client>,
    /// The task that drives the socket; aborted to end the session.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the socket ends the session (and any lock it holds). A
        // runtime may not be dropped inside another's context; this is safe.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A key for `pg_advisory_lock`: the first 8 bytes of a SHA-256.
fn advisory_key(parts: &[&str]) -> i64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, parts.join("\0").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    i64::from_be_bytes(first)
}

impl PgStore {
    /// The store the config names; reads the URL (from its variable or
    /// file) but connects only when a command first needs state.
    pub fn new(config: &PostgresState) -> Result<Self, Error> {
        if !crate::config::state_url::is_plain_identifier(&config.schema) {
            return Err(Error::Usage(format!(
                "state.schema `{}` is not a plain PostgreSQL name",
                crate::diagnostic::shown(&config.schema)
            )));
        }
        let url = config.url()?;
        let location = format!(
            "PostgreSQL {} (schema {}, state \"{}\")",
            url.shown(),
            config.schema,
            crate::diagnostic::shown(&config.name)
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::StateDb {
                location: location.clone(),
                why: format!("cannot start the database runtime: {e}"),
            })?;
        Ok(PgStore {
            shared: Arc::new(Shared {
                lock_key: advisory_key(&["mailform state lock", &config.schema, &config.name]),
                migrate_key: advisory_key(&["mailform migration", &config.schema]),
                url,
                schema: config.schema.clone(),
                quoted: format!("\"{}\"", config.schema),
                name: config.name.clone(),
                ca_file: config.ca_file.clone(),
                location,
                runtime: Some(runtime),
                client: Mutex::new(Connection::default()),
                timed_out: AtomicBool::new(false),
                locked: AtomicBool::new(false),
                opened: AtomicBool::new(false),
            }),
            written: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            replayed: AtomicBool::new(false),
            journal_bytes: AtomicU64::new(0),
            doc_bytes: AtomicU64::new(0),
        })
    }

    fn count(&self, bytes: usize) {
        self.writes.fetch_add(1, Relaxed);
        self.written
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Relaxed);
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(&self.shared.location)
    }
}

fn serial_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn sql_serial(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl StateStore for PgStore {
    fn location(&self) -> String {
        self.shared.location.clone()
    }

    fn prepare(&self) -> Result<(), Error> {
        self.shared.connection().map(drop)
    }

    fn has_pending(&self) -> bool {
        self.replayed.load(Relaxed)
    }

    fn written(&self) -> (u64, u64) {
        (self.writes.load(Relaxed), self.written.load(Relaxed))
    }

    fn load(&self) -> Result<Option<State>, Error> {
        let sh = &self.shared;
        let s = &sh.quoted;
        let name = &sh.name;
        // One statement, so one snapshot: the document and the journal
        // rows amending it, in one round trip.
        let read = with_client!(sh, |client| async move {
            let row = client
                .query_opt(
                    &format!(
                        "SELECT s.lineage, s.serial, s.doc, \
                         (SELECT array_agg(j.entry ORDER BY j.seq) FROM {s}.journal j \
                          WHERE j.name = s.name AND j.lineage = s.lineage AND j.serial = s.serial) \
                         FROM {s}.states s WHERE s.name = $1"
                    ),
                    &[name],
                )
                .await?;
            row.map(|row| {
                let lineage: uuid::Uuid = row.try_get(0)?;
                let serial: i64 = row.try_get(1)?;
                let doc: String = row.try_get(2)?;
                let entries: Option<Vec<String>> = row.try_get(3)?;
                Ok((lineage, serial, doc, entries.unwrap_or_default()))
            })
            .transpose()
        })?;
        let Some((lineage, serial, doc, entries)) = read else {
            self.replayed.store(false, Relaxed);
            return Ok(None);
        };
        let path = self.path();
        let mut state = parse_state(&path, doc.as_bytes())?;
        if (state.lineage, state.serial) != (lineage, serial_of(serial)) {
            return Err(Error::StateCorrupt {
                path,
                why: "its lineage and serial columns disagree with its document (was the row edited by hand?)".into(),
            });
        }
        let mut bytes = 0u64;
        for (n, entry) in entries.iter().enumerate() {
            let line: JournalLine =
                serde_json::from_str(entry).map_err(|e| Error::StateCorrupt {
                    path: path.clone(),
                    why: format!("journal row {} of {}: {e}", n + 1, entries.len()),
                })?;
            line.apply(&mut state);
            bytes += entry.len() as u64;
        }
        if let Some(why) = state.inconsistency() {
            return Err(Error::StateCorrupt {
                path,
                why: format!("its journal rows, replayed onto it, make it inconsistent: {why}"),
            });
        }
        self.replayed.store(!entries.is_empty(), Relaxed);
        self.journal_bytes.store(bytes, Relaxed);
        self.doc_bytes.store(doc.len() as u64, Relaxed);
        Ok(Some(state))
    }

    fn record(&self, state: &mut State, assets: &[&str]) -> Result<(), Error> {
        let (journal, stored) = (
            self.journal_bytes.load(Relaxed),
            self.doc_bytes.load(Relaxed),
        );
        if super::journal::write_instead(self, state, journal, stored)? {
            return Ok(());
        }
        let mut entries = Vec::with_capacity(assets.len());
        for asset in assets {
            entries.push(
                serde_json::to_string(&JournalLine::of(state, asset)).map_err(|e| {
                    self.shared
                        .failed(format!("cannot encode a journal row: {e}"))
                })?,
            );
        }
        let bytes: usize = entries.iter().map(String::len).sum();
        let sh = &self.shared;
        let s = &sh.quoted;
        let (lineage, serial) = (state.lineage, sql_serial(state.serial));
        let added = with_client!(sh, |client| {
            let entries = &entries;
            let name = &sh.name;
            async move {
                client
                    .execute(
                        &format!(
                            "INSERT INTO {s}.journal (name, lineage, serial, entry) \
                             SELECT $1, $2, $3, e FROM unnest($4::text[]) WITH ORDINALITY AS t(e, n) \
                             WHERE EXISTS (SELECT 1 FROM {s}.states WHERE name = $1 AND lineage = $2 AND serial = $3) \
                             ORDER BY n"
                        ),
                        &[name, &lineage, &serial, entries],
                    )
                    .await
            }
        })?;
        if added == 0 && !entries.is_empty() {
            return Err(Error::StateMoved {
                path: self.path(),
                expected: Some((state.lineage, state.serial)),
                found: self.stored()?,
            });
        }
        self.journal_bytes.fetch_add(bytes as u64, Relaxed);
        self.count(bytes);
        Ok(())
    }

    fn write(&self, state: &mut State, expected: Option<(uuid::Uuid, u64)>) -> Result<(), Error> {
        let previous = (state.serial, state.format_version);
        state.serial = state.serial.max(expected.map_or(0, |(_, s)| s)) + 1;
        state.format_version = STATE_FORMAT_VERSION;
        let doc = match serde_json::to_string(state) {
            Ok(d) => d,
            Err(e) => {
                (state.serial, state.format_version) = previous;
                return Err(self.shared.failed(format!("cannot encode the state: {e}")));
            }
        };
        let sh = &self.shared;
        let s = &sh.quoted;
        let by = LockInfo::new("write").who;
        let new = (
            state.lineage,
            sql_serial(state.serial),
            i32::try_from(state.format_version).unwrap_or(i32::MAX),
        );
        let old = expected.map(|(l, s)| (l, sql_serial(s)));
        let doc_ref = &doc;
        let wrote = with_client!(sh, |client| {
            let name = &sh.name;
            let by = &by;
            async move {
                let tx = client.transaction().await?;
                let rows = match old {
                    None => {
                        tx.execute(
                            &format!("INSERT INTO {s}.states (name, lineage, serial, format_version, doc, updated_by) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING"),
                            &[name, &new.0, &new.1, &new.2, doc_ref, by],
                        )
                        .await?
                    }
                    Some((lineage, serial)) => {
                        tx.execute(
                            &format!("UPDATE {s}.states SET lineage = $2, serial = $3, format_version = $4, doc = $5, updated_by = $6, updated_at = now() WHERE name = $1 AND lineage = $7 AND serial = $8"),
                            &[name, &new.0, &new.1, &new.2, doc_ref, by, &lineage, &serial],
                        )
                        .await?
                    }
                };
                if rows == 1 {
                    // Everything the journal held is in the new document.
                    tx.execute(&format!("DELETE FROM {s}.journal WHERE name = $1"), &[name])
                        .await?;
                    tx.commit().await?;
                }
                Ok(rows == 1)
            }
        });
        match wrote {
            Ok(true) => {
                self.count(doc.len());
                self.replayed.store(false, Relaxed);
                self.journal_bytes.store(0, Relaxed);
                self.doc_bytes.store(doc.len() as u64, Relaxed);
                Ok(())
            }
            Ok(false) => {
                (state.serial, state.format_version) = previous;
                Err(Error::StateMoved {
                    path: self.path(),
                    expected,
                    found: self.stored()?,
                })
            }
            Err(e) => {
                (state.serial, state.format_version) = previous;
                Err(e)
            }
        }
    }

    fn lock(
        &self,
        operation: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&LockInfo),
    ) -> Result<Box<dyn LockGuard>, Error> {
        let sh = &self.shared;
        let s = &sh.quoted;
        let key = sh.lock_key;
        super::wait_for_lock(timeout, LOCK_POLL, waiting, || {
            let held = sh.locked.load(Relaxed);
            let got = !held
                && with_client!(sh, |client| async move {
                    client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                        .await
                        .map(|r| r.get::<_, bool>(0))
                })?;
            if got {
                // The guard exists from here on: if writing the holder's row
                // fails, dropping it releases the lock.
                let mut guard = super::Held {
                    info: LockInfo::new(operation),
                    left_by: None,
                    release: PgLock {
                        shared: Arc::clone(&self.shared),
                    },
                };
                sh.locked.store(true, Relaxed);
                let text = serde_json::to_string(&guard.info).expect("lock info encodes");
                let id = &guard.info.id;
                let left: Option<String> = with_client!(sh, |client| {
                    let name = &sh.name;
                    let text = &text;
                    async move {
                        let left = client
                            .query_opt(
                                &format!("SELECT info FROM {s}.locks WHERE name = $1"),
                                &[name],
                            )
                            .await?
                            .map(|r| r.try_get(0))
                            .transpose()?;
                        client
                            .execute(
                                &format!("INSERT INTO {s}.locks (name, id, backend_pid, info) VALUES ($1, $2, pg_backend_pid(), $3) ON CONFLICT (name) DO UPDATE SET id = excluded.id, backend_pid = excluded.backend_pid, info = excluded.info"),
                                &[name, id, text],
                            )
                            .await?;
                        Ok(left)
                    }
                })?;
                guard.left_by = left.and_then(|t| serde_json::from_str(&t).ok());
                return Ok(Attempt::Got(Box::new(guard)));
            }
            Ok(Attempt::Busy(
                self.holder()?
                    .and_then(|(_, info)| info)
                    .unwrap_or_else(LockInfo::unknown),
            ))
        })
    }

    fn force_unlock(
        &self,
        id: &str,
        confirm: &mut dyn FnMut(&LockInfo) -> Result<bool, Error>,
    ) -> Result<LockInfo, Error> {
        let sh = &self.shared;
        let s = &sh.quoted;
        let key = sh.lock_key;
        let not_locked = || Error::NotLocked { path: self.path() };
        // Is a holder alive? Its session holds the advisory lock. Asked
        // first, and without keeping the lock while a person reads.
        let probe = |release: bool| {
            with_client!(sh, |client| async move {
                let free: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                    .await?
                    .get(0);
                if free && release {
                    client
                        .execute("SELECT pg_advisory_unlock($1)", &[&key])
                        .await?;
                }
                Ok(free)
            })
        };
        if !probe(true)? {
            return Err(self.live());
        }
        let row: Option<String> = with_client!(sh, |client| {
            let name = &sh.name;
            async move {
                client
                    .query_opt(
                        &format!("SELECT info FROM {s}.locks WHERE name = $1"),
                        &[name],
                    )
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()
            }
        })?;
        let Some(info) = row.and_then(|t| serde_json::from_str::<LockInfo>(&t).ok()) else {
            return Err(not_locked());
        };
        if info.id != id {
            return Err(Error::LockIdMismatch {
                path: self.path(),
                given: id.to_string(),
                held: info.id,
            });
        }
        if !confirm(&info)? {
            return Err(Error::Usage("nothing was removed".into()));
        }
        if !probe(false)? {
            return Err(Error::Usage(
                "another session took the state lock while you were asked; nothing was removed"
                    .into(),
            ));
        }
        let removed = with_client!(sh, |client| {
            let name = &sh.name;
            async move {
                let removed = client
                    .execute(
                        &format!("DELETE FROM {s}.locks WHERE name = $1 AND id = $2"),
                        &[name, &id],
                    )
                    .await;
                let unlocked = client
                    .execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await;
                unlocked.and(removed)
            }
        })?;
        if removed == 1 {
            Ok(info)
        } else {
            Err(Error::Usage(
                "the lock changed hands while you were asked; nothing was removed".into(),
            ))
        }
    }
}

impl PgStore {
    /// The lineage and serial stored now, for a compare-and-swap's error.
    fn stored(&self) -> Result<Option<(uuid::Uuid, u64)>, Error> {
        let sh = &self.shared;
        let s = &sh.quoted;
        with_client!(sh, |client| {
            let name = &sh.name;
            async move {
                client
                    .query_opt(
                        &format!("SELECT lineage, serial FROM {s}.states WHERE name = $1"),
                        &[name],
                    )
                    .await?
                    .map(|r| Ok((r.try_get::<_, uuid::Uuid>(0)?, serial_of(r.try_get(1)?))))
                    .transpose()
            }
        })
    }

    /// The session holding the state lock now, if any: its backend pid,
    /// and its row when that session wrote it (a row of a dead holder, or
    /// of another pid, is not shown as the holder's).
    fn holder(&self) -> Result<Option<(i32, Option<LockInfo>)>, Error> {
        let sh = &self.shared;
        let s = &sh.quoted;
        let key = sh.lock_key;
        let row: Option<(i32, Option<String>)> = with_client!(sh, |client| {
            let name = &sh.name;
            async move {
                client
                    .query_opt(
                        &format!(
                            "SELECT k.pid, l.info FROM pg_locks k \
                             LEFT JOIN {s}.locks l ON l.name = $1 AND l.backend_pid = k.pid \
                             WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1 \
                             AND k.classid = (($2::bigint >> 32) & 4294967295)::oid \
                             AND k.objid = ($2::bigint & 4294967295)::oid \
                             AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                             LIMIT 1"
                        ),
                        &[name, &key],
                    )
                    .await?
                    .map(|r| Ok((r.get(0), r.try_get(1)?)))
                    .transpose()
            }
        })?;
        Ok(row.map(|(pid, info)| (pid, info.and_then(|t| serde_json::from_str(&t).ok()))))
    }

    /// Why a live holder's lock is not removed, naming its session.
    fn live(&self) -> Error {
        let (who, backend) = match self.holder() {
            Ok(Some((pid, Some(info)))) => (
                format!(
                    "lock ID {} is held by a live session ({}, {} since {}, pid {}, database backend pid {pid})",
                    info.id,
                    info.who,
                    info.operation,
                    info.created.format("%Y-%m-%d %H:%M:%S UTC"),
                    info.pid
                ),
                pid.to_string(),
            ),
            Ok(Some((pid, None))) => (
                format!(
                    "the state lock is held by a live session (database backend pid {pid}) that has not said who it is"
                ),
                pid.to_string(),
            ),
            Ok(None) | Err(_) => (
                "the state lock is held by a live session".to_string(),
                "PID".to_string(),
            ),
        };
        self.shared.failed(format!(
            "{who}; it was not removed: wait for it, or stop that process — if it hangs, an admin can end its session with SELECT pg_terminate_backend({backend}), which releases the lock"
        ))
    }
}

/// The state lock, held by the store's session; released when dropped (and
/// by the server when the session ends).
struct PgLock {
    shared: Arc<Shared>,
}

impl super::Release for PgLock {
    fn release(&mut self, info: &LockInfo) {
        let sh = &self.shared;
        let s = &sh.quoted;
        let key = sh.lock_key;
        let id = &info.id;
        let release = || -> Result<u64, Error> {
            with_client!(sh, |client| {
                let name = &sh.name;
                async move {
                    // Unlocked first: a row that cannot be removed is only a
                    // record, which the next holder takes over.
                    let unlocked = client
                        .execute("SELECT pg_advisory_unlock($1)", &[&key])
                        .await;
                    let removed = client
                        .execute(
                            &format!("DELETE FROM {s}.locks WHERE name = $1 AND id = $2"),
                            &[name, id],
                        )
                        .await;
                    unlocked.and(removed)
                }
            })
        };
        // A lost connection took the lock with it.
        let _ = release();
        sh.locked.store(false, Relaxed);
    }
}

#[cfg(test)]
mod tests;
