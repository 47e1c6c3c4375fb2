//! The IMAP login proof: connect, TLS (implicit, or STARTTLS — AUTHENTICATE
//! is never sent on a connection that is not encrypted), CAPABILITY,
//! `AUTHENTICATE XOAUTH2` with the asset's username and access token,
//! LOGOUT. Nothing is read or changed in the mailbox.
//!
//! async-imap frames and parses the server's responses, over the capped
//! connection of [`crate::stream`] (no line over 4 KiB, no answer over 64
//! KiB, TLS with rustls). The commands are written by hand, as the SMTP
//! proof drives AUTH by hand: a refusal is reported in the server's own
//! words (its tagged `NO` line, and the JSON a Gmail-style server sends as
//! a challenge before it), which async-imap's `authenticate` would fold
//! into its own. Every step is bounded by the timeout, including a server
//! that never greets. Trust: the web's roots plus the provider's `ca_file`.

use std::sync::Arc;
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;

use crate::secret::Secret;
use crate::security::Security;
use crate::stream;

/// TCP connects give up sooner than the other steps.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest server text kept (a refusal's words).
const MAX_WORDS: usize = 400;

pub use crate::stream::Endpoint;

/// What to try when the port and the security setting may not match.
fn port_hint(endpoint: &Endpoint) -> String {
    endpoint.port_hint(&stream::IMAP)
}

/// The login and what the server said to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tagged `OK`, e.g. `OK Logged in`.
    Accepted(String),
    Refused {
        /// The tagged `NO`, e.g. `NO [AUTHENTICATIONFAILED] Authentication failed.`
        words: String,
        /// The JSON a Gmail-style server sends as a challenge first, decoded.
        challenge: Option<String>,
    },
}

impl Outcome {
    /// The server's words: the tagged line, and the challenge before it.
    pub fn words(&self) -> String {
        match self {
            Outcome::Accepted(w) => w.clone(),
            Outcome::Refused {
                words,
                challenge: Some(c),
            } => format!("{words} ({c})"),
            Outcome::Refused { words, .. } => words.clone(),
        }
    }
}

/// Why a login could not be tried to the end.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {server}: {why}")]
    Connect { server: String, why: String },
    #[error("{server} did not answer within {} while {step}", humantime::format_duration(*after))]
    Timeout {
        server: String,
        step: &'static str,
        after: Duration,
    },
    #[error("TLS with {server} failed: {why}")]
    Tls { server: String, why: String },
    #[error(
        "{server} does not offer STARTTLS, so the login cannot be protected (AUTHENTICATE is never sent in the clear); if it speaks implicit TLS (usually port 993), set imap.security = \"tls\""
    )]
    NoStartTls { server: String },
    #[error(
        "{server} does not offer AUTHENTICATE XOAUTH2 (it offers {offered}): OAuth 2.0 logins are not enabled on this server (or IMAP is off for the mailbox)"
    )]
    NoXoauth2 { server: String, offered: String },
    #[error("{server} answered {words} to {step}")]
    Rejected {
        server: String,
        step: &'static str,
        words: String,
    },
    #[error("{server}: {why}")]
    Protocol { server: String, why: String },
    /// A `NO` the server gives when it cannot decide now (RFC 5530's
    /// `UNAVAILABLE`, `SERVERBUG`, `LIMIT`, `INUSE`): says nothing.
    #[error("{server} could not check the login now: {words}")]
    Unavailable { server: String, words: String },
    /// A response past the caps of [`stream`]: a broken or hostile server.
    #[error("{server}: {}", stream::OverLong)]
    OverLong { server: String },
}

impl ImapError {
    /// Passing failures: nothing listens, no answer in time. They say
    /// nothing about the token, so they are never drift.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ImapError::Connect { .. } | ImapError::Timeout { .. } | ImapError::Unavailable { .. }
        )
    }
}

/// The first line of `buffer` (without its line end).
fn first_line(buffer: &[u8]) -> &[u8] {
    let end = buffer
        .windows(2)
        .position(|w| w == b"\r\n")
        .or_else(|| buffer.iter().position(|b| *b == b'\n' || *b == 0))
        .unwrap_or(buffer.len());
    &buffer[..end]
}

/// One response: its bytes as they came, and what kind it is.
struct Line {
    raw: Vec<u8>,
    kind: Kind,
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Ok,
    No,
    Other,
}

impl St {
    fn of(status: &Status) -> Self {
        match status {
            Status::Ok => St::Ok,
            Status::No => St::No,
            _ => St::Other,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// `+ …`, with its text.
    Continue(Option<String>),
    /// A tagged status.
    Done {
        tag: String,
        status: St,
    },
    /// An untagged status (`* OK …`, the greeting).
    Data(St),
    Other,
}

/// One IMAP conversation: the framed client over the capped stream, and
/// the handle that upgrades that stream to TLS.
struct Session<'a> {
    endpoint: &'a Endpoint,
    client: async_imap::Client<stream::Capped>,
    handle: stream::Handle,
    timeout: Duration,
    tags: u32,
    /// What must never be echoed back in the server's words.
    secrets: Vec<String>,
}

impl Session<'_> {
    fn server(&self) -> String {
        self.endpoint.server()
    }

    /// An I/O failure while `step`, in operators' terms.
    fn io_failure(&self, e: &std::io::Error, step: &'static str) -> ImapError {
        let server = self.server();
        if stream::is_over_long(e) {
            return ImapError::OverLong { server };
        }
        if let Some(tls) = crate::security::rustls_error(e) {
            return tls_failure(tls, self.endpoint);
        }
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                if self.endpoint.security == Security::Tls && step == "greeting" =>
            {
                ImapError::Tls {
                    server,
                    why: format!(
                        "the server closed the connection: {}",
                        port_hint(self.endpoint)
                    ),
                }
            }
            _ => ImapError::Protocol {
                server,
                why: format!("{step}: {}", crate::diagnostic::shown(&e.to_string())),
            },
        }
    }

    /// The server's words, without the tag, cleaned for showing.
    fn words(&self, raw: &[u8]) -> String {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        let untagged = text.split_once(' ').map_or(text, |(_, rest)| rest);
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let text = crate::secret::redact_echoes(untagged, &secrets);
        crate::diagnostic::shown_up_to(&text, MAX_WORDS).into_owned()
    }

    /// The next response, within the timeout.
    async fn next(&mut self, step: &'static str) -> Result<Line, ImapError> {
        match tokio::time::timeout(self.timeout, self.client.read_response()).await {
            Err(_) => Err(ImapError::Timeout {
                server: self.server(),
                step,
                after: self.timeout,
            }),
            Ok(Err(e)) => Err(self.io_failure(&e, step)),
            Ok(Ok(None)) => Err(ImapError::Protocol {
                server: self.server(),
                why: format!("the server closed the connection while {step}"),
            }),
            Ok(Ok(Some(r))) => Ok(Line {
                // async-imap's owner is its whole read buffer: this
                // response is the start of it, up to its line end.
                raw: first_line(r.borrow_owner()).to_vec(),
                kind: match r.parsed() {
                    Response::Continue(outcome) => {
                        Kind::Continue(outcome.information.as_deref().map(ToString::to_string))
                    }
                    Response::Done { tag, status, .. } => Kind::Done {
                        tag: tag.0.clone(),
                        status: St::of(status),
                    },
                    Response::Data { status, .. } => Kind::Data(St::of(status)),
                    _ => Kind::Other,
                },
            }),
        }
    }

    /// Writes one line (a tagged command, or a response to a challenge).
    async fn write(&mut self, line: &str, step: &'static str) -> Result<(), ImapError> {
        let stream = self.client.get_mut();
        let write = async {
            stream.write_all(line.as_bytes()).await?;
            stream.write_all(b"\r\n").await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(ImapError::Timeout {
                server: self.server(),
                step,
                after: self.timeout,
            }),
            Ok(Err(e)) => Err(self.io_failure(&e, step)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends `command`; returns the raw untagged lines and the tagged
    /// status with its words.
    async fn command(
        &mut self,
        command: &str,
        step: &'static str,
    ) -> Result<(Vec<String>, St, String), ImapError> {
        self.tags += 1;
        let tag = format!("m{}", self.tags);
        self.write(&format!("{tag} {command}"), step).await?;
        let mut untagged = Vec::new();
        loop {
            let line = self.next(step).await?;
            if let Kind::Done { tag: t, status } = line.kind
                && t == tag
            {
                return Ok((untagged, status, self.words(&line.raw)));
            }
            untagged.push(String::from_utf8_lossy(&line.raw).into_owned());
        }
    }

    /// Sends `command`, which must be answered OK (else the server's
    /// words to `name`); its untagged lines.
    async fn command_ok(
        &mut self,
        command: &str,
        step: &'static str,
        name: &'static str,
    ) -> Result<Vec<String>, ImapError> {
        let (lines, status, words) = self.command(command, step).await?;
        if status != St::Ok {
            return Err(ImapError::Rejected {
                server: self.server(),
                step: name,
                words,
            });
        }
        Ok(lines)
    }

    /// The capabilities the server lists now (`CAPABILITY`), upper-cased.
    async fn capabilities(&mut self) -> Result<Vec<String>, ImapError> {
        let lines = self
            .command_ok("CAPABILITY", "asking for capabilities", "CAPABILITY")
            .await?;
        Ok(lines
            .iter()
            .flat_map(|l| l.split_whitespace())
            .map(|w| w.trim_matches(['[', ']']).to_ascii_uppercase())
            .collect())
    }

    /// The session after STARTTLS: a new client over the stream, after the
    /// TLS handshake; nothing read in the clear is kept.
    async fn restart_over_tls(self) -> Result<Self, ImapError> {
        let Session {
            endpoint,
            client,
            handle,
            timeout,
            tags,
            secrets,
        } = self;
        let mut session = Session {
            endpoint,
            client: async_imap::Client::new(client.into_inner()),
            handle,
            timeout,
            tags,
            secrets,
        };
        session.upgrade().await?;
        Ok(session)
    }

    async fn upgrade(&mut self) -> Result<(), ImapError> {
        let handshake = self.handle.upgrade(
            Arc::clone(&self.endpoint.tls),
            self.endpoint.server_name.clone(),
        );
        match tokio::time::timeout(self.timeout, handshake).await {
            Err(_) => Err(ImapError::Timeout {
                server: self.server(),
                step: "the TLS handshake",
                after: self.timeout,
            }),
            Ok(Err(e)) => Err(match crate::security::rustls_error(&e) {
                Some(tls) => tls_failure(tls, self.endpoint),
                None => ImapError::Tls {
                    server: self.server(),
                    why: crate::diagnostic::shown(&e.to_string()).into_owned(),
                },
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// `AUTHENTICATE XOAUTH2`: the initial response after the server's
    /// `+`; after a challenge (a refusal's JSON), the empty line the
    /// server waits for before its `NO`.
    async fn authenticate(&mut self, username: &str, token: &Secret) -> Result<Outcome, ImapError> {
        self.tags += 1;
        let tag = format!("m{}", self.tags);
        self.write(
            &format!("{tag} AUTHENTICATE XOAUTH2"),
            "starting AUTHENTICATE",
        )
        .await?;
        let mut sent = false;
        let mut challenge = None;
        loop {
            let line = self.next("authenticating").await?;
            match line.kind {
                Kind::Continue(_) if !sent => {
                    let encoded = stream::xoauth2(username, token);
                    // An echo of the encoded line is as good as the token.
                    self.secrets.push(encoded.to_string());
                    self.write(&encoded, "sending the token").await?;
                    sent = true;
                }
                Kind::Continue(_) if challenge.is_some() => {
                    return Err(ImapError::Protocol {
                        server: self.server(),
                        why: "the server sent a second challenge to AUTHENTICATE XOAUTH2".into(),
                    });
                }
                Kind::Continue(information) => {
                    let text = information.unwrap_or_default();
                    let decoded =
                        match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                            Ok(b) => format!("+ {}", String::from_utf8_lossy(&b)),
                            Err(_) => format!("+ {text}"),
                        };
                    let decoded = self.words(decoded.as_bytes());
                    challenge = Some(decoded);
                    self.write("", "answering the challenge").await?;
                }
                Kind::Done { tag: t, status } if t == tag => {
                    let words = self.words(&line.raw);
                    return match status {
                        St::Ok => Ok(Outcome::Accepted(words)),
                        // RFC 5530: the server could not decide now.
                        St::No
                            if ["[UNAVAILABLE]", "[SERVERBUG]", "[LIMIT]", "[INUSE]"]
                                .iter()
                                .any(|c| words.to_ascii_uppercase().contains(c)) =>
                        {
                            Err(ImapError::Unavailable {
                                server: self.server(),
                                words,
                            })
                        }
                        St::No => Ok(Outcome::Refused { words, challenge }),
                        St::Other => Err(ImapError::Rejected {
                            server: self.server(),
                            step: "AUTHENTICATE XOAUTH2",
                            words,
                        }),
                    };
                }
                _ => {}
            }
        }
    }
}

/// What to do about a refused login, for the replies operators get:
/// Gmail's `[ALERT] Invalid credentials`, Microsoft 365's `AUTHENTICATE
/// failed`, and the `[AUTHENTICATIONFAILED]` of Dovecot and others.
pub fn hint(words: &str, username: &str) -> Option<String> {
    let lower = words.to_ascii_lowercase();
    if lower.contains("invalid credentials") {
        Some(format!(
            "Gmail refused the token: was consent given as {username}, and is IMAP on for the mailbox (Gmail → Settings → Forwarding and POP/IMAP → IMAP access)?"
        ))
    } else if lower.contains("authenticate failed") {
        Some(format!(
            "Microsoft 365 refused the token: IMAP may be off for {username} (Exchange admin center → the mailbox → Email apps → IMAP), or the grant lacks https://outlook.office.com/IMAP.AccessAsUser.All (an app grant: IMAP.AccessAsApp and Add-MailboxPermission)"
        ))
    } else if lower.contains("authenticationfailed") {
        Some(format!(
            "the token's account (or scope) does not match username {username}: was consent given while signed in as {username}?"
        ))
    } else {
        None
    }
}

/// Logs in as `username` with `token` at `endpoint`, then logs out.
/// `Ok` whether the server accepted the token or refused it; `Err` when
/// the login could not be tried to the end.
pub async fn prove(
    endpoint: &Endpoint,
    username: &str,
    token: &Secret,
    timeout: Duration,
) -> Result<Outcome, ImapError> {
    let (mut session, outcome) = bounded_login(endpoint, username, token, timeout).await?;
    // Nothing more to say; a server that does not answer LOGOUT has
    // already given its verdict.
    let _ = session.command("LOGOUT", "logging out").await;
    Ok(outcome)
}

/// What the round trip saw: the login, and how long the message took to
/// appear (`None`: not within the wait).
#[derive(Debug)]
pub struct Arrival {
    pub login: Outcome,
    pub after: Option<Duration>,
}

/// Logs in, then looks in INBOX (read-only: EXAMINE) for the message whose
/// `Message-ID` is `message_id`, every half second for at most `wait`.
pub async fn wait_for(
    endpoint: &Endpoint,
    username: &str,
    token: &Secret,
    timeout: Duration,
    message_id: &str,
    wait: Duration,
) -> Result<Arrival, ImapError> {
    let started = std::time::Instant::now();
    let (mut session, login) = bounded_login(endpoint, username, token, timeout).await?;
    if !matches!(login, Outcome::Accepted(_)) {
        return Ok(Arrival { login, after: None });
    }
    // A Message-ID is `<…@…>`: only what an IMAP quoted string may hold.
    let id: String = message_id
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect();
    loop {
        session
            .command_ok("EXAMINE INBOX", "opening INBOX", "EXAMINE INBOX")
            .await?;
        let lines = session
            .command_ok(
                &format!("UID SEARCH HEADER Message-ID \"{id}\""),
                "searching",
                "UID SEARCH",
            )
            .await?;
        let found = lines.iter().any(|l| {
            l.trim()
                .strip_prefix("* SEARCH")
                .is_some_and(|rest| rest.split_whitespace().next().is_some())
        });
        if found || started.elapsed() >= wait {
            let _ = session.command("LOGOUT", "logging out").await;
            return Ok(Arrival {
                login,
                after: found.then(|| started.elapsed()),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The whole login within four steps' time, however a server trickles
/// its answers (each step is bounded by `timeout` already).
async fn bounded_login<'a>(
    endpoint: &'a Endpoint,
    username: &str,
    token: &Secret,
    timeout: Duration,
) -> Result<(Session<'a>, Outcome), ImapError> {
    let overall = timeout.saturating_mul(4);
    tokio::time::timeout(overall, login(endpoint, username, token, timeout))
        .await
        .unwrap_or(Err(ImapError::Timeout {
            server: endpoint.server(),
            step: "logging in (all steps)",
            after: overall,
        }))
}

/// Connects, secures the connection, checks XOAUTH2 is offered, and
/// authenticates: the session, and what the server said to the token.
async fn login<'a>(
    endpoint: &'a Endpoint,
    username: &str,
    token: &Secret,
    timeout: Duration,
) -> Result<(Session<'a>, Outcome), ImapError> {
    let server = endpoint.server();
    let connect = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    let tcp = match tokio::time::timeout(timeout.min(CONNECT_TIMEOUT), connect).await {
        Err(_) => {
            return Err(ImapError::Timeout {
                server,
                step: "connecting",
                after: timeout.min(CONNECT_TIMEOUT),
            });
        }
        Ok(Err(e)) => {
            return Err(ImapError::Connect {
                server,
                why: if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    format!(
                        "connection refused (nothing listens on port {}: check imap.host and imap.port)",
                        endpoint.port
                    )
                } else {
                    crate::diagnostic::shown(&e.to_string()).into_owned()
                },
            });
        }
        Ok(Ok(tcp)) => tcp,
    };
    let (capped, handle) = stream::capped(tcp).map_err(|e| ImapError::Connect {
        server: server.clone(),
        why: e.to_string(),
    })?;
    let mut session = Session {
        endpoint,
        client: async_imap::Client::new(capped),
        handle,
        timeout,
        tags: 0,
        secrets: vec![token.expose().to_string()],
    };
    if endpoint.security == Security::Tls {
        session.upgrade().await?;
    }
    let greeting = session.next("greeting").await?;
    if greeting.kind != Kind::Data(St::Ok) {
        return Err(ImapError::Rejected {
            server,
            step: "connecting (the greeting)",
            words: session.words(&greeting.raw),
        });
    }
    if endpoint.security == Security::Starttls {
        let caps = session.capabilities().await?;
        if !caps.iter().any(|c| c == "STARTTLS") {
            return Err(ImapError::NoStartTls { server });
        }
        session
            .command_ok("STARTTLS", "starting TLS", "STARTTLS")
            .await?;
        // Whatever came in the clear after the server's OK (a man in the
        // middle's "responses") stays in the old client's buffer, which
        // goes: what is read from now on came over TLS.
        session = session.restart_over_tls().await?;
    }
    let caps = session.capabilities().await?;
    if !caps.iter().any(|c| c == "AUTH=XOAUTH2") {
        let offered: Vec<&str> = caps
            .iter()
            .filter_map(|c| c.strip_prefix("AUTH="))
            .collect();
        return Err(ImapError::NoXoauth2 {
            server,
            offered: if offered.is_empty() {
                "no AUTHENTICATE mechanism".into()
            } else {
                offered.join(", ")
            },
        });
    }
    let outcome = session.authenticate(username, token).await?;
    Ok((session, outcome))
}

/// A TLS failure in operators' terms, with what to try.
fn tls_failure(tls: &rustls::Error, endpoint: &Endpoint) -> ImapError {
    let (why, hint) = endpoint.tls_words(tls, &stream::IMAP);
    ImapError::Tls {
        server: endpoint.server(),
        why: format!("{}{hint}", crate::diagnostic::shown(&why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_big_providers_refusals_get_their_own_advice() {
        let gmail = hint("NO [ALERT] Invalid credentials (Failure)", "a@example.com").unwrap();
        assert!(gmail.contains("is IMAP on for the mailbox"), "{gmail}");
        let microsoft = hint("NO AUTHENTICATE failed.", "a@example.com").unwrap();
        assert!(microsoft.contains("IMAP.AccessAsUser.All"), "{microsoft}");
        let dovecot = hint(
            "NO [AUTHENTICATIONFAILED] Authentication failed.",
            "a@example.com",
        );
        assert!(
            dovecot
                .unwrap()
                .contains("does not match username a@example.com")
        );
        assert_eq!(hint("OK Logged in", "a@example.com"), None);
    }

    #[test]
    fn a_refusal_keeps_the_challenge_beside_the_servers_words() {
        let refused = Outcome::Refused {
            words: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
            challenge: Some("+ {\"status\":\"401\"}".into()),
        };
        assert_eq!(
            refused.words(),
            "NO [AUTHENTICATIONFAILED] Authentication failed. (+ {\"status\":\"401\"})"
        );
    }
}
