//! The store's one session: connecting (TLS, timeouts, keepalives), the
//! versioned migration, and every round trip bounded and translated.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{
    CALL_TIMEOUT, Connection, MIGRATIONS, SCHEMA_VERSION, STATEMENT_TIMEOUT, Shared, tls_config,
    transport_words,
};
use crate::config::state_url::SslMode;
use crate::error::Error;

impl Shared {
    /// Runs `fut` to completion on the store's runtime, from a thread of
    /// its own when the caller is inside another runtime.
    pub(super) fn block<F>(&self, fut: F) -> F::Output
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
    pub(super) fn run<T, F>(&self, fut: F) -> Result<T, Error>
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
    pub(super) fn close(&self, conn: &mut Connection) {
        conn.client = None;
        if let Some(task) = conn.task.take() {
            task.abort();
            self.block(async move {
                let _ = task.await;
            });
        }
    }

    /// The connection is gone (the server ended it, or a timeout closed it).
    pub(super) fn lost(&self, said: Option<&str>) -> Error {
        let said = said
            .map(|s| format!(" ({})", crate::diagnostic::shown_up_to(s, 300)))
            .unwrap_or_default();
        self.failed(if self.locked.load(Relaxed) {
            format!("the connection to the server was lost{said}, and the state lock with it: nothing more is written (whether the last write was stored, the next command reads) — run the command again")
        } else {
            format!("the connection to the server was lost{said}; run the command again")
        })
    }

    pub(super) fn failed(&self, why: String) -> Error {
        Error::StateDb {
            location: self.location.clone(),
            why,
        }
    }

    /// The connection, opened (and the schema migrated) on first use.
    pub(super) fn connection(&self) -> Result<MutexGuard<'_, Connection>, Error> {
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

    pub(super) async fn connect(&self) -> Result<(Client, tokio::task::JoinHandle<()>), Error> {
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
    pub(super) async fn migrate(&self, client: &mut Client) -> Result<(), Error> {
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

    pub(super) fn newer(&self, found: i32) -> Result<(), Error> {
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
    pub(super) fn error(&self, e: &tokio_postgres::Error) -> Error {
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
