//! The SMTP login proof: connect, TLS (implicit or STARTTLS), EHLO, AUTH
//! XOAUTH2 with the asset's username and access token, QUIT. No message is
//! sent, except by [`send`] for `mailform send-test`.
//!
//! lettre's connection API carries the session over a stream of ours
//! ([`stream`]): TCP and TLS (rustls with ring, implicit or on STARTTLS)
//! under a reader that cuts off any line over 4 KiB and any answer over
//! 64 KiB, so a server that never ends a line cannot grow the process.
//! AUTH is driven by hand so a
//! refused token is reported in the server's own words: Gmail-style servers
//! answer `334 <base64 JSON status>` and want an empty line before the final
//! `535`, which lettre's XOAUTH2 mechanism gives up on. AUTH is never sent on
//! a connection that is not encrypted. Every step is bounded by a timeout
//! (lettre's own covers only the TCP connect), including a server that
//! accepts and never greets. Trust: the web's roots plus the provider's
//! `ca_file`.
//!
//! Known limit (lettre's STARTTLS): bytes a man in the middle injects after
//! the plain `220` to STARTTLS stay in lettre's read buffer and would be read
//! as if they came over TLS. The token still goes out only over TLS to a
//! server whose certificate checked out, so it cannot be stolen this way;
//! at worst such an attacker could make a login look proven.

pub mod hints;
mod reply;

use std::fmt;
use std::future::Future;

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Ehlo, Starttls};
use lettre::transport::smtp::extension::{ClientId, ServerInfo};

use reply::clean;
pub use reply::{Challenge, Reply};

use crate::error::chain;
use crate::secret::Secret;
use crate::security::Security;
use crate::stream;

/// TCP connects give up sooner than the other steps.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::stream::Endpoint;

/// What to try when the port and the security setting may not match.
fn port_hint(endpoint: &Endpoint) -> String {
    endpoint.port_hint(&stream::SMTP)
}

/// The login and what the server said to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Reply),
    Refused {
        reply: Reply,
        /// The decoded `334` challenge, when the server sent one.
        challenge: Option<Challenge>,
    },
}

impl Outcome {
    /// Whether another access token could change the answer: not when the
    /// server has SMTP AUTH switched off (Microsoft's 5.7.139).
    pub fn fresh_token_may_help(&self) -> bool {
        match self {
            Outcome::Accepted(_) => false,
            Outcome::Refused { reply, .. } => !hints::auth_disabled(reply),
        }
    }

    /// The server's words: `535 5.7.8 ... (token status 401, scope ...)`.
    pub fn words(&self) -> String {
        match self {
            Outcome::Accepted(r)
            | Outcome::Refused {
                reply: r,
                challenge: None,
            } => r.to_string(),
            Outcome::Refused {
                reply,
                challenge: Some(c),
            } => format!("{reply} ({c})"),
        }
    }
}

/// Why a login could not be tried to the end.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot connect to {server}: {why}")]
    Connect { server: String, why: String },
    #[error("{server} did not answer within {} while {step}{hint}", humantime::format_duration(*after))]
    Timeout {
        server: String,
        step: &'static str,
        after: Duration,
        hint: String,
    },
    #[error("TLS with {server} failed: {why}{hint}")]
    Tls {
        server: String,
        why: String,
        hint: String,
    },
    #[error(
        "{server} does not offer STARTTLS, so the login cannot be protected (AUTH is never sent in the clear); if it speaks implicit TLS (usually port 465), set smtp.security = \"tls\""
    )]
    NoStartTls { server: String },
    #[error(
        "{server} does not offer AUTH XOAUTH2 (it offers {offered}): OAuth 2.0 logins are not enabled on this server or port"
    )]
    NoXoauth2 { server: String, offered: String },
    #[error("{server} answered {reply} to {step}")]
    Rejected {
        server: String,
        step: &'static str,
        reply: Reply,
    },
    #[error("{server}: {why}")]
    Protocol { server: String, why: String },
    /// A reply past the caps of [`stream`]: a broken or hostile server.
    #[error("{server}: {}", stream::OverLong)]
    OverLong { server: String },
}

impl SmtpError {
    /// Passing failures: nothing listens, no answer in time, a 4xx reply.
    /// They say nothing about the token, so they are never drift.
    pub fn is_transient(&self) -> bool {
        match self {
            SmtpError::Connect { .. } | SmtpError::Timeout { .. } => true,
            SmtpError::Rejected { reply, .. } => reply.is_transient(),
            _ => false,
        }
    }
}

/// A lettre error in operators' terms, with what to try.
fn classify(
    e: &lettre::transport::smtp::Error,
    endpoint: &Endpoint,
    step: &'static str,
    secrets: &[&str],
    connect_timeout: Duration,
) -> SmtpError {
    let server = endpoint.server();
    if stream::is_over_long(e) {
        return SmtpError::OverLong { server };
    }
    if let Some(code) = e.status() {
        let text = std::error::Error::source(e).map(ToString::to_string);
        return SmtpError::Rejected {
            server,
            step,
            reply: Reply::new(u16::from(code), text.as_deref().unwrap_or(""), secrets),
        };
    }
    if let Some(tls) = crate::security::rustls_error(e) {
        return tls_failure(tls, endpoint, secrets);
    }
    if e.is_timeout() {
        return SmtpError::Timeout {
            server,
            step,
            after: connect_timeout,
            hint: String::new(),
        };
    }
    let why = || clean(&chain(e), secrets);
    match crate::security::io_kind(e) {
        Some(std::io::ErrorKind::ConnectionRefused) => SmtpError::Connect {
            server,
            why: format!(
                "connection refused (nothing listens on port {}: check smtp.host and smtp.port)",
                endpoint.port
            ),
        },
        Some(std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset)
            if endpoint.security == Security::Tls && step == "connecting" =>
        {
            SmtpError::Tls {
                server,
                why: "the server closed the connection during the TLS handshake".into(),
                hint: format!(": {}", port_hint(endpoint)),
            }
        }
        Some(_) if step == "connecting" => SmtpError::Connect { server, why: why() },
        _ => SmtpError::Protocol {
            server,
            why: format!("{step}: {}", why()),
        },
    }
}

/// A failed TCP connect in operators' terms.
fn connect_failure(e: &std::io::Error, endpoint: &Endpoint) -> SmtpError {
    let server = endpoint.server();
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        return SmtpError::Connect {
            server,
            why: format!(
                "connection refused (nothing listens on port {}: check smtp.host and smtp.port)",
                endpoint.port
            ),
        };
    }
    SmtpError::Connect {
        server,
        why: clean(&chain(e), &[]),
    }
}

/// A failed TLS handshake (implicit, or after STARTTLS).
fn handshake_failure(e: &std::io::Error, endpoint: &Endpoint) -> SmtpError {
    if let Some(tls) = crate::security::rustls_error(e) {
        return tls_failure(tls, endpoint, &[]);
    }
    let why = match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            "the server closed the connection during the TLS handshake".to_string()
        }
        _ => clean(&chain(e), &[]),
    };
    SmtpError::Tls {
        server: endpoint.server(),
        why,
        hint: if endpoint.security == Security::Tls {
            format!(": {}", port_hint(endpoint))
        } else {
            String::new()
        },
    }
}

/// A TLS failure in operators' terms, with what to try.
fn tls_failure(tls: &rustls::Error, endpoint: &Endpoint, secrets: &[&str]) -> SmtpError {
    let (why, hint) = endpoint.tls_words(tls, &stream::SMTP);
    SmtpError::Tls {
        server: endpoint.server(),
        why: clean(&why, secrets),
        hint,
    }
}

/// `AUTH XOAUTH2 <initial response>`; its text is the secret.
struct AuthXoauth2(String);

impl fmt::Display for AuthXoauth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AUTH XOAUTH2 {}\r\n", self.0)
    }
}

impl Drop for AuthXoauth2 {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The empty line that answers a refusal's `334` challenge.
struct EmptyLine;

impl fmt::Display for EmptyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\r\n")
    }
}

/// One session, bounded step by step.
struct Session<'a> {
    endpoint: &'a Endpoint,
    conn: AsyncSmtpConnection,
    /// What the server offers over TLS (its answer to the last EHLO).
    info: ServerInfo,
    timeout: Duration,
}

/// `f`, bounded by `timeout`, reported as the wait at `step`.
async fn bounded<T>(
    endpoint: &Endpoint,
    timeout: Duration,
    step: &'static str,
    f: impl Future<Output = T>,
) -> Result<T, SmtpError> {
    bounded_after(endpoint, timeout, timeout, step, String::new(), f).await
}

/// [`bounded`] by `limit`, reported as a wait of `waited` (the connect's
/// own bound comes on top of the greeting's).
async fn bounded_after<T>(
    endpoint: &Endpoint,
    limit: Duration,
    waited: Duration,
    step: &'static str,
    hint: String,
    f: impl Future<Output = T>,
) -> Result<T, SmtpError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| SmtpError::Timeout {
            server: endpoint.server(),
            step,
            after: waited,
            hint,
        })
}

impl<'a> Session<'a> {
    /// Connects, secures the connection, and says EHLO over TLS.
    async fn open(endpoint: &'a Endpoint, timeout: Duration) -> Result<Session<'a>, SmtpError> {
        let hello = ClientId::default();
        let (step, hint) = match endpoint.security {
            // lettre's connect reads the greeting and says EHLO: a server
            // that greets and then goes quiet stops it there too.
            Security::Tls => (
                "waiting for the TLS handshake, the greeting and the answer to EHLO",
                format!(
                    " (connected, but nothing came back; {})",
                    port_hint(endpoint)
                ),
            ),
            Security::Starttls => (
                "waiting for the greeting and the answer to EHLO",
                format!(
                    " (connected, but the server did not answer; {})",
                    port_hint(endpoint)
                ),
            ),
        };
        // The TCP connect has a bound of its own; the TLS handshake, the
        // greeting and EHLO get `timeout` on top, so a connect that hangs
        // is reported as such.
        let connect_timeout = CONNECT_TIMEOUT.min(timeout);
        let connect = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port));
        let tcp = match tokio::time::timeout(connect_timeout, connect).await {
            Err(_) => {
                return Err(SmtpError::Timeout {
                    server: endpoint.server(),
                    step: "connecting",
                    after: connect_timeout,
                    hint: String::new(),
                });
            }
            Ok(Err(e)) => return Err(connect_failure(&e, endpoint)),
            Ok(Ok(tcp)) => tcp,
        };
        let (capped, tls) = stream::capped(tcp).map_err(|e| connect_failure(&e, endpoint))?;
        // lettre's connect reads the greeting and says EHLO, over TLS from
        // the first byte with implicit TLS.
        let greet = async {
            if endpoint.security == Security::Tls {
                tls.upgrade(endpoint.tls.clone(), endpoint.server_name.clone())
                    .await
                    .map_err(|e| handshake_failure(&e, endpoint))?;
            }
            AsyncSmtpConnection::connect_with_transport(Box::new(capped), &hello)
                .await
                .map_err(|e| classify(&e, endpoint, "connecting", &[], connect_timeout))
        };
        let mut conn = bounded_after(endpoint, timeout, timeout, step, hint, greet).await??;
        let mut info = conn.server_info().clone();
        if endpoint.security == Security::Starttls {
            if !conn.can_starttls() {
                hang_up(conn, timeout).await;
                return Err(SmtpError::NoStartTls {
                    server: endpoint.server(),
                });
            }
            // STARTTLS, the handshake under the capped reader, and EHLO
            // again over TLS (what the server offers may change with it).
            let upgrade = async {
                conn.command(Starttls)
                    .await
                    .map_err(|e| classify(&e, endpoint, "STARTTLS", &[], timeout))?;
                tls.upgrade(endpoint.tls.clone(), endpoint.server_name.clone())
                    .await
                    .map_err(|e| handshake_failure(&e, endpoint))?;
                let ehlo = conn
                    .command(Ehlo::new(hello.clone()))
                    .await
                    .map_err(|e| classify(&e, endpoint, "EHLO", &[], timeout))?;
                ServerInfo::from_response(&ehlo)
                    .map_err(|e| classify(&e, endpoint, "EHLO", &[], timeout))
            };
            info = bounded(endpoint, timeout, "upgrading to TLS (STARTTLS)", upgrade).await??;
        }
        if !tls.is_encrypted() {
            return Err(SmtpError::Protocol {
                server: endpoint.server(),
                why: "the connection is not encrypted, so AUTH is not sent".into(),
            });
        }
        Ok(Session {
            endpoint,
            conn,
            info,
            timeout,
        })
    }

    /// AUTH XOAUTH2, reading a refusal to its end.
    async fn login(&mut self, username: &str, token: &Secret) -> Result<Outcome, SmtpError> {
        let endpoint = self.endpoint;
        if !self.info.supports_auth_mechanism(Mechanism::Xoauth2) {
            let offered: Vec<&str> = [(Mechanism::Plain, "PLAIN"), (Mechanism::Login, "LOGIN")]
                .into_iter()
                .filter(|(m, _)| self.info.supports_auth_mechanism(*m))
                .map(|(_, n)| n)
                .collect();
            return Err(SmtpError::NoXoauth2 {
                server: endpoint.server(),
                offered: if offered.is_empty() {
                    "no AUTH mechanism mailform knows".into()
                } else {
                    offered.join(", ")
                },
            });
        }
        let command = AuthXoauth2(stream::xoauth2(username, token).to_string());
        let encoded = zeroize::Zeroizing::new(command.0.clone());
        let secrets = [token.expose(), encoded.as_str()];
        let first = bounded(
            endpoint,
            self.timeout,
            "waiting for the answer to AUTH",
            self.conn.command(&command),
        )
        .await?;
        drop(command);
        let refused =
            |e: &lettre::transport::smtp::Error, challenge: Option<Challenge>| match classify(
                e,
                endpoint,
                "AUTH XOAUTH2",
                &secrets,
                self.timeout,
            ) {
                SmtpError::Rejected { reply, .. } if refuses_the_token(&reply) => {
                    Ok(Outcome::Refused { reply, challenge })
                }
                other => Err(other),
            };
        // A positive final answer is a login; anything else positive is odd.
        let settled = |r: &lettre::transport::smtp::response::Response| {
            if r.code().severity == lettre::transport::smtp::response::Severity::PositiveCompletion
            {
                Ok(Outcome::Accepted(reply_of(r, &secrets)))
            } else {
                Err(SmtpError::Protocol {
                    server: endpoint.server(),
                    why: format!("unexpected answer to AUTH: {}", reply_of(r, &secrets)),
                })
            }
        };
        match first {
            Ok(r) if r.has_code(334) => {
                let challenge = Challenge::decode(r.first_line().unwrap_or(""));
                let last = bounded(
                    endpoint,
                    self.timeout,
                    "waiting for the final answer to AUTH",
                    self.conn.command(EmptyLine),
                )
                .await?;
                match last {
                    Err(e) => refused(&e, challenge),
                    Ok(r) => settled(&r),
                }
            }
            Ok(r) => settled(&r),
            Err(e) => refused(&e, None),
        }
    }

    /// QUIT, politely and bounded; its answer does not matter.
    async fn close(self) {
        hang_up(self.conn, self.timeout).await;
    }
}

/// QUIT and close, bounded: lettre's `abort` waits for the answer to QUIT
/// without a limit, and a server that stopped answering must not hold us.
async fn hang_up(mut conn: AsyncSmtpConnection, timeout: Duration) {
    let _ = tokio::time::timeout(timeout.min(Duration::from_secs(5)), conn.abort()).await;
}

/// Whether a negative answer to AUTH is about the credentials (535, 534,
/// or a 5.7.x security status), rather than the command (500, 501, 504:
/// a protocol problem, not drift).
fn refuses_the_token(reply: &Reply) -> bool {
    matches!(reply.code, 534 | 535)
        || (reply.code >= 500 && reply.enhanced().is_some_and(|e| e.starts_with("5.7.")))
}

fn reply_of(r: &lettre::transport::smtp::response::Response, secrets: &[&str]) -> Reply {
    Reply::new(
        u16::from(r.code()),
        &r.message().collect::<Vec<_>>().join(" "),
        secrets,
    )
}

/// One `-v` line per SMTP login: server, security, username and the
/// server's answer — never the token or its XOAUTH2 encoding.
fn log(endpoint: &Endpoint, username: &str, what: &str) {
    crate::verbose::line(|| {
        format!(
            "SMTP {} ({}) as {username}: {what}",
            endpoint.server(),
            endpoint.security
        )
    });
}

fn log_result<T>(
    endpoint: &Endpoint,
    username: &str,
    result: &Result<T, SmtpError>,
    words: impl FnOnce(&T) -> String,
) {
    match result {
        Ok(t) => log(endpoint, username, &words(t)),
        Err(e) => log(endpoint, username, &e.to_string()),
    }
}

/// Proves the login: connect, TLS, EHLO, AUTH XOAUTH2, QUIT.
pub async fn prove(
    endpoint: &Endpoint,
    username: &str,
    token: &Secret,
    timeout: Duration,
) -> Result<Outcome, SmtpError> {
    let outcome = async {
        let mut session = Session::open(endpoint, timeout).await?;
        let outcome = session.login(username, token).await;
        session.close().await;
        outcome
    }
    .await;
    log_result(endpoint, username, &outcome, Outcome::words);
    outcome
}

/// What `send` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The server took the message: its reply (often with a queue id).
    Accepted(Reply),
    /// The login was refused, so nothing was sent.
    LoginRefused(Outcome),
}

/// Logs in as [`prove`] does, then sends `message` to the envelope's
/// recipients.
pub async fn send(
    endpoint: &Endpoint,
    username: &str,
    token: &Secret,
    envelope: &Envelope,
    message: &[u8],
    timeout: Duration,
) -> Result<Sent, SmtpError> {
    let outcome = async {
        let mut session = Session::open(endpoint, timeout).await?;
        let outcome = match session.login(username, token).await {
            Ok(o @ Outcome::Refused { .. }) => Ok(Sent::LoginRefused(o)),
            Ok(Outcome::Accepted(_)) => {
                let send = session.conn.send(envelope, message);
                match bounded(endpoint, timeout, "sending the message", send).await {
                    Ok(Ok(r)) => Ok(Sent::Accepted(reply_of(&r, &[]))),
                    Ok(Err(e)) => Err(classify(&e, endpoint, "the message", &[], timeout)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        session.close().await;
        outcome
    }
    .await;
    log_result(endpoint, username, &outcome, |sent| match sent {
        Sent::Accepted(r) => format!("message accepted: {r}"),
        Sent::LoginRefused(o) => o.words(),
    });
    outcome
}
