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

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::file::parse_state;
use super::journal::JournalLine;
use super::{Attempt, LockGuard, LockInfo, StateStore};
use crate::config::model::PostgresState;
use crate::config::state_url::{SslMode, StateUrl};
use crate::error::Error;
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

impl Shared {
    /// Runs `fut` to completion on the store's runtime, from a thread of
    /// its own when the caller is inside another runtime.
    fn block<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self.runtime.as_ref().expect("the runtime lives until drop");
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| rt.block_on(fut))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        } else {
            rt.block_on(fut)
        }
    }

    /// Runs one round trip (already bound to the client), bounded by
    /// [`CALL_TIMEOUT`], its error in words.
    fn run<T, F>(&self, fut: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>> + Send,
        T: Send,
    {
        match self.block(async { tokio::time::timeout(CALL_TIMEOUT, fut).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(&e)),
            Err(_) => {
                self.timed_out.store(true, Relaxed);
                Err(self.failed(format!(
                    "the server did not answer within {}s; the connection was closed (the server releases the state lock once it notices): nothing more is written (whether the last write was stored, the next command reads) — run the command again",
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Ends the session (a request may still be in flight after a timeout,
    /// and the lock must not outlive what this process knows of it).
    fn close(&self, conn: &mut Connection) {
        conn.client = None;
        if let Some(task) = conn.task.take() {
            task.abort();
            self.block(async move {
                let _ = task.await;
            });
        }
    }

    /// The connection is gone (the server ended it, or a timeout closed it).
    fn lost(&self, said: Option<&str>) -> Error {
        let said = said
            .map(|s| format!(" ({})", crate::diagnostic::shown_up_to(s, 300)))
            .unwrap_or_default();
        self.failed(if self.locked.load(Relaxed) {
            format!("the connection to the server was lost{said}, and the state lock with it: nothing more is written (whether the last write was stored, the next command reads) — run the command again")
        } else {
            format!("the connection to the server was lost{said}; run the command again")
        })
    }

    fn failed(&self, why: String) -> Error {
        Error::StateDb {
            location: self.location.clone(),
            why,
        }
    }

    /// The connection, opened (and the schema migrated) on first use.
    fn connection(&self) -> Result<MutexGuard<'_, Connection>, Error> {
        let mut conn = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        match &conn.client {
            Some(c) if !c.is_closed() => return Ok(conn),
            Some(_) => return Err(self.lost(None)),
            // A connection was made once; it is never made again.
            None if self.opened.load(Relaxed) => return Err(self.lost(None)),
            None => {}
        }
        let (mut client, task) = self.block(self.connect())?;
        self.opened.store(true, Relaxed);
        conn.task = Some(task);
        let migrated = self
            .block(async { tokio::time::timeout(CALL_TIMEOUT, self.migrate(&mut client)).await });
        conn.client = Some(client);
        match migrated {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.close(&mut conn);
                return Err(e);
            }
            Err(_) => {
                self.close(&mut conn);
                return Err(self
                    .failed("the server did not answer while mailform checked its tables".into()));
            }
        }
        Ok(conn)
    }

    async fn connect(&self) -> Result<(Client, tokio::task::JoinHandle<()>), Error> {
        let url = &self.url;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&url.host)
            .port(url.port)
            .user(&url.user)
            .dbname(&url.dbname)
            .application_name(&url.application_name)
            .connect_timeout(url.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            // The server, too, must notice a client that vanished (its
            // session holds the lock), and must not end an idle holder's
            // session while a person consents (PostgreSQL 14+).
            .options(format!(
                "-c statement_timeout={} -c idle_in_transaction_session_timeout=60000 -c idle_session_timeout=0 -c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3 -c tcp_user_timeout=60000",
                STATEMENT_TIMEOUT.as_millis()
            ))
            .ssl_mode(if url.sslmode == SslMode::Disable {
                tokio_postgres::config::SslMode::Disable
            } else {
                tokio_postgres::config::SslMode::Require
            });
        if let Some(p) = &url.password {
            config.password(p.expose());
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
            tls_config(url.sslmode, self.ca_file.as_deref()).map_err(|why| self.failed(why))?,
        );
        let (client, connection) = match tokio::time::timeout(
            url.connect_timeout,
            config.connect(tls),
        )
        .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(self.error(&e)),
            Err(_) => {
                return Err(self.failed(format!(
                        "the server did not answer within {}s (connect_timeout): is {} the PostgreSQL server, and reachable from here?",
                        url.connect_timeout.as_secs(),
                        crate::security::server_name(&url.host, url.port)
                    )));
            }
        };
        // Driven while the store's runtime runs (inside each call); a
        // broken connection shows as a closed client.
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, task))
    }

    /// Brings the schema to [`SCHEMA_VERSION`]: a fast read when it is
    /// there, else the missing steps in one transaction under a lock.
    async fn migrate(&self, client: &mut Client) -> Result<(), Error> {
        let s = &self.quoted;
        let current = format!("SELECT coalesce(max(version), 0) FROM {s}.schema_version");
        // Columns are read with try_get: tables an admin made may have
        // other types, which is an error in words, never a panic.
        match client
            .query_one(&current, &[])
            .await
            .and_then(|row| row.try_get::<_, i32>(0))
        {
            Ok(SCHEMA_VERSION) => return Ok(()),
            Ok(found) => self.newer(found)?,
            Err(e)
                if matches!(
                    e.code(),
                    Some(&SqlState::UNDEFINED_TABLE | &SqlState::INVALID_SCHEMA_NAME)
                ) => {}
            Err(e) => return Err(self.error(&e)),
        }
        let tx = client.transaction().await.map_err(|e| self.error(&e))?;
        let run = async {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.migrate_key])
                .await?;
            // CREATE SCHEMA IF NOT EXISTS wants the CREATE privilege even
            // when the schema exists (an admin may have made it for us).
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                    &[&self.schema],
                )
                .await?
                .is_some();
            if !exists {
                tx.batch_execute(&format!("CREATE SCHEMA {s}")).await?;
            }
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL)"
            ))
            .await?;
            tx.query_one(&current, &[]).await?.try_get::<_, i32>(0)
        };
        let found = run.await.map_err(|e| self.error(&e))?;
        self.newer(found)?;
        let by = format!("mailform {}", env!("CARGO_PKG_VERSION"));
        for (n, step) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(found).unwrap_or(0))
        {
            let version = i32::try_from(n + 1).expect("few migrations");
            tx.batch_execute(&step.replace("{s}", s))
                .await
                .map_err(|e| self.error(&e))?;
            tx.execute(
                &format!("INSERT INTO {s}.schema_version (version, applied_by) VALUES ($1, $2)"),
                &[&version, &by],
            )
            .await
            .map_err(|e| self.error(&e))?;
        }
        tx.commit().await.map_err(|e| self.error(&e))
    }

    fn newer(&self, found: i32) -> Result<(), Error> {
        if found > SCHEMA_VERSION {
            return Err(self.failed(format!(
                "the tables in schema {} were made by a newer mailform (schema version {found}; this one knows up to {SCHEMA_VERSION}); they were left untouched — upgrade mailform",
                self.schema
            )));
        }
        Ok(())
    }

    /// A driver error in words: what failed, naming the server, role and
    /// database (in the location), and what to do.
    fn error(&self, e: &tokio_postgres::Error) -> Error {
        let url = &self.url;
        let server = crate::security::server_name(&url.host, url.port);
        // A FATAL or PANIC ends the session (an admin's terminate, a
        // shutdown, a session timeout).
        let ended = e.as_db_error().filter(|db| {
            matches!(
                db.parsed_severity(),
                Some(
                    tokio_postgres::error::Severity::Fatal | tokio_postgres::error::Severity::Panic
                )
            )
        });
        if (e.is_closed() || ended.is_some()) && self.opened.load(Relaxed) {
            return self.lost(ended.map(tokio_postgres::error::DbError::message));
        }
        if let Some(db) = e.as_db_error() {
            let said = crate::diagnostic::shown_up_to(db.message(), 400);
            let why = match *db.code() {
                SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    format!(
                        "authentication failed for role {} ({said}): check the role and password in state.url",
                        url.user
                    )
                }
                SqlState::INVALID_CATALOG_NAME => format!(
                    "database {} does not exist on {server} ({said}): create it, or fix the database name in state.url",
                    url.dbname
                ),
                SqlState::INSUFFICIENT_PRIVILEGE => format!(
                    "role {} lacks a privilege ({said}): an admin can grant it, e.g. GRANT CREATE ON DATABASE {} TO {} (mailform makes its schema {} on first use), or, for tables an admin made, GRANT USAGE ON SCHEMA {} TO {} and GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}",
                    url.user,
                    url.dbname,
                    url.user,
                    self.schema,
                    self.schema,
                    url.user,
                    self.schema,
                    url.user
                ),
                SqlState::QUERY_CANCELED => format!(
                    "a statement took longer than {}s and was cancelled ({said}); is the database overloaded, or a table locked?",
                    STATEMENT_TIMEOUT.as_secs()
                ),
                SqlState::UNDEFINED_OBJECT if db.message().contains("idle_session_timeout") => {
                    format!("the server is older than PostgreSQL 14, which mailform needs ({said})")
                }
                SqlState::READ_ONLY_SQL_TRANSACTION => {
                    format!("the server is read-only ({said}): point state.url at the primary")
                }
                _ => format!(
                    "the server said: {} {}: {said}",
                    db.severity(),
                    db.code().code()
                ),
            };
            return self.failed(why);
        }
        self.failed(transport_words(e, &server, self.ca_file.is_some()))
    }
}

/// A connection failure in words: refused, unreachable, TLS.
fn transport_words(e: &tokio_postgres::Error, server: &str, has_ca: bool) -> String {
    if let Some(tls) = crate::security::rustls_error(e) {
        return tls_words(tls, server, has_ca);
    }
    match crate::security::io_kind(e) {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            return format!(
                "cannot connect to {server}: connection refused (nothing listens there: is PostgreSQL running, and are the host and port in state.url right?)"
            );
        }
        Some(std::io::ErrorKind::TimedOut) => {
            return format!("cannot connect to {server}: timed out");
        }
        Some(std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable) => {
            return format!("cannot connect to {server}: {}", crate::error::chain(e));
        }
        _ => {}
    }
    let text = crate::error::chain(e);
    if text.contains("server does not support TLS") {
        return format!(
            "{server} does not offer TLS, and state.url asks for it (sslmode=verify-full or require): enable ssl on the server; only a loopback server may use sslmode=disable"
        );
    }
    if text.contains("invalid dns name") || text.contains("failed to lookup") {
        return format!("cannot find the host of {server}: {text}");
    }
    format!(
        "cannot use the database at {server}: {}",
        crate::diagnostic::shown_up_to(&text, 400)
    )
}

fn tls_words(e: &rustls::Error, server: &str, has_ca: bool) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => if has_ca {
            "the server's certificate is not signed by an authority mailform trusts (nor by state.ca_file): is it the right server?"
        } else {
            "the server's certificate is not signed by an authority mailform trusts: if the server uses a private CA, set state.ca_file to it"
        }
        .to_string(),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the server's certificate is not valid for the host named in state.url (sslmode=verify-full checks it): connect by the name the certificate carries".to_string()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_string()
        }
        other => crate::diagnostic::shown_up_to(&other.to_string(), 300).into_owned(),
    };
    format!("TLS with {server} failed: {why}")
}

/// rustls settings for `mode`: the web's roots and `ca_file` for
/// verify-full; no certificate check (but the handshake's signatures) for
/// require.
fn tls_config(
    mode: SslMode,
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?;
    if mode == SslMode::Require {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    crate::security::verifying_tls_config(ca_file, "state.ca_file")
}

/// `sslmode=require`: encrypted, whoever the server is (libpq's meaning);
/// the handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_schema_and_name() {
        let a = advisory_key(&["mailform state lock", "mailform", "default"]);
        assert_eq!(
            a,
            advisory_key(&["mailform state lock", "mailform", "default"])
        );
        assert_ne!(
            a,
            advisory_key(&["mailform state lock", "mailform", "prod"])
        );
        assert_ne!(
            a,
            advisory_key(&["mailform state lock", "other", "default"])
        );
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            advisory_key(&["x", "ab", "c"]),
            advisory_key(&["x", "a", "bc"])
        );
    }

    #[test]
    fn tls_settings_for_each_mode() {
        assert!(tls_config(SslMode::VerifyFull, None).is_ok());
        assert!(tls_config(SslMode::Require, None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = tls_config(SslMode::VerifyFull, Some(&junk)).unwrap_err();
        assert!(e.contains("is not a PEM certificate file"), "{e}");
    }
}
