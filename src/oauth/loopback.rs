//! Bulk consent through one loopback listener (RFC 8252 §7.3).
//!
//! One listener on the redirect URI's loopback host and port serves every
//! consent of the run: each asset has its own authorization URL, with its
//! own `state` and PKCE verifier. Callbacks are taken in any order; one on
//! another path, or with a `state` nobody waits for (or that was used), gets
//! 400 and the wait goes on. Each code is exchanged at once and handed to the
//! caller, which stores it before the next callback is read: a person's
//! consent is never lost to a later failure or a Ctrl-C. The browser gets a
//! short page saying what happened.
//!
//! Bounded against local clients: the HTTP side is hyper on the tokio
//! runtime (no thread per connection), a request head over 8 KiB is
//! refused, at most 64 connections are open at once, each has 10 s from
//! accept to its answer; the thread that keeps the deadline only takes
//! callbacks from a channel, so neither a flood nor a client that never
//! reads can hold it past `--consent-timeout` or a Ctrl-C.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Grant, OAuthError, Pending, ProviderClient};
use crate::secret::Secret;

/// One asset waiting for its person.
#[derive(Debug)]
pub struct Consent {
    pub asset: String,
    pub email: String,
    pub pending: Pending,
    pub client: Arc<ProviderClient>,
}

/// Why a consent brought no tokens.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("consent denied by the user ({}{})", crate::diagnostic::shown(error), super::error::described(description.as_deref()))]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("{0}")]
    Exchange(OAuthError),
    #[error("no consent arrived within {} (the link stays unused; run mailform apply again)", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("{0}")]
    Other(String),
}

/// Largest request head (request line and headers) a browser may send.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 64;

/// How long one connection may take, from accept to the last byte of the
/// answer: a browser needs milliseconds; a client that sends slowly or
/// never reads is cut off here, never holding the wait.
const CONNECTION_BUDGET: Duration = Duration::from_secs(10);

/// How long a request's head may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener, bound before any link is opened.
pub struct Listener {
    socket: std::net::TcpListener,
    path: String,
    address: String,
    /// The redirect URI the links carry: the configured one, with the port
    /// the listener found when it names none.
    redirect: url::Url,
    port_chosen: bool,
}

/// A callback on the right path, handed from the server's tasks to the
/// thread that waits (which exchanges the code and stores the grant).
struct Callback {
    query: BTreeMap<String, String>,
    /// The page to answer with: status and text.
    reply: tokio::sync::oneshot::Sender<(u16, String)>,
}

impl Listener {
    /// Binds the redirect URI's host and port; it must be a loopback URI
    /// (validate guarantees it). Without a port (Google's Desktop clients
    /// register `http://localhost`, and accept any port on it, RFC 8252
    /// §7.3), the system picks a free one, and [`Listener::redirect`] names it.
    pub fn bind(redirect: &url::Url) -> Result<Listener, String> {
        let loopback = redirect
            .host()
            .is_some_and(|h| crate::security::is_loopback_host(&h));
        let (Some(host), true) = (redirect.host_str(), loopback && redirect.scheme() == "http")
        else {
            return Err(format!(
                "redirect_uri {redirect} is not a loopback URI, so mailform cannot listen for the consent; use e.g. http://127.0.0.1:8765/callback (or mailform apply --consent manual)"
            ));
        };
        let port_chosen = redirect.port().is_none();
        let port = redirect.port().unwrap_or(0);
        // `[::1]` is written with brackets in a URL, bound without;
        // `localhost` is bound as 127.0.0.1 (a browser tries it, whatever
        // this host's resolver lists first).
        let bare = match host.trim_start_matches('[').trim_end_matches(']') {
            h if h.eq_ignore_ascii_case("localhost") => "127.0.0.1",
            h => h,
        };
        let listener = std::net::TcpListener::bind((bare, port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot listen on {host}:{port} for consents: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {host} for consents: {e}"))?
            .port();
        let mut effective = redirect.clone();
        effective
            .set_port(Some(port))
            .map_err(|()| format!("redirect_uri {redirect} cannot carry a port"))?;
        Ok(Listener {
            socket: listener,
            path: redirect.path().to_string(),
            address: format!("{host}:{port}"),
            redirect: effective,
            port_chosen,
        })
    }

    /// The redirect URI the consent links carry (with the listener's port).
    pub fn redirect(&self) -> &url::Url {
        &self.redirect
    }

    /// Whether the port was the system's choice (the redirect URI named none).
    pub fn port_chosen(&self) -> bool {
        self.port_chosen
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits up to `timeout` for every consent, handing each outcome to
    /// `done` as it arrives; those still waiting at the end time out.
    ///
    /// The HTTP side runs as tasks on `runtime` (bounded: [`MAX_HEADER_BYTES`],
    /// [`MAX_CONNECTIONS`], a time budget per connection); this thread only
    /// takes callbacks from a channel, so no client can hold it past the
    /// deadline or a Ctrl-C.
    pub fn wait(
        &self,
        consents: Vec<Consent>,
        timeout: Duration,
        runtime: &tokio::runtime::Runtime,
        done: &mut dyn FnMut(&Consent, Result<Grant, ConsentError>),
    ) {
        let mut waiting: BTreeMap<String, Consent> = consents
            .into_iter()
            .map(|c| (c.pending.state.clone(), c))
            .collect();
        let (tx, rx) = std::sync::mpsc::channel::<Callback>();
        let server = match self.socket.try_clone().and_then(|l| {
            let _inside = runtime.enter();
            tokio::net::TcpListener::from_std(l)
        }) {
            Ok(listener) => runtime.spawn(serve(listener, self.path.clone(), tx)),
            Err(e) => {
                for (_, c) in std::mem::take(&mut waiting) {
                    done(
                        &c,
                        Err(ConsentError::Other(format!(
                            "the consent listener failed: {e}"
                        ))),
                    );
                }
                return;
            }
        };
        let deadline = Instant::now() + timeout;
        while !waiting.is_empty() && !crate::interrupt::requested() {
            // Short waits, so a Ctrl-C is seen within a moment.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            match rx.recv_timeout(left) {
                Ok(callback) => answer(callback, &mut waiting, runtime, done),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => break,
            }
        }
        // The server and every connection it holds end here.
        server.abort();
        for (_, c) in waiting {
            let why = if crate::interrupt::requested() {
                ConsentError::Other("interrupted before the consent arrived".into())
            } else {
                ConsentError::TimedOut(timeout)
            };
            done(&c, Err(why));
        }
    }
}

/// One callback: its consent's code exchanged and handed to `done`, the
/// browser answered with what happened.
fn answer(
    callback: Callback,
    waiting: &mut BTreeMap<String, Consent>,
    runtime: &tokio::runtime::Runtime,
    done: &mut dyn FnMut(&Consent, Result<Grant, ConsentError>),
) {
    let Callback { query, reply } = callback;
    let respond = |status: u16, text: &str| {
        // The browser may be gone already; the outcome stands anyway.
        let _ = reply.send((status, text.to_string()));
    };
    let Some(consent) = query.get("state").and_then(|s| waiting.remove(s)) else {
        return respond(
            400,
            "This consent link is unknown or was used already; nothing changed.",
        );
    };
    let email = html_escape(&consent.email);
    let code = match code_of(&query) {
        Ok(code) => code,
        Err(e @ ConsentError::Denied { .. }) => {
            respond(
                200,
                &format!("Consent for {email} was not given. You can close this tab."),
            );
            return done(&consent, Err(e));
        }
        Err(e) => {
            respond(400, "The callback brought no authorization code.");
            return done(&consent, Err(e));
        }
    };
    match runtime.block_on(consent.client.exchange(&consent.pending, &code)) {
        Ok(grant) => {
            respond(
                200,
                &format!("{email} is connected; you can close this tab."),
            );
            done(&consent, Ok(grant));
        }
        Err(e) => {
            respond(
                502,
                &format!(
                    "{email} could not be connected: the provider refused the code. The operator's terminal says why."
                ),
            );
            done(&consent, Err(ConsentError::Exchange(e)));
        }
    }
}

/// Accepts connections while the wait lasts, each served on its own task
/// within [`CONNECTION_BUDGET`], at most [`MAX_CONNECTIONS`] at once.
async fn serve(
    listener: tokio::net::TcpListener,
    path: String,
    callbacks: std::sync::mpsc::Sender<Callback>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Reap the finished ones, so the set stays as small as what is open.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream); // too many open: this one is closed at once
            continue;
        };
        let path = path.clone();
        let callbacks = callbacks.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let callbacks = callbacks.clone();
                let path = path.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(handle(&request, &path, &callbacks).await)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_HEADER_BYTES)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_BUDGET, connection).await;
            drop(slot);
        });
    }
}

/// One request: a callback on the redirect path is handed to the waiting
/// thread and answered with what it says; anything else gets 400.
async fn handle(
    request: &hyper::Request<hyper::body::Incoming>,
    path: &str,
    callbacks: &std::sync::mpsc::Sender<Callback>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    const NOT_OURS: &str = "This is not a mailform consent callback.";
    if request.method() != hyper::Method::GET || request.uri().path() != path {
        return page(400, NOT_OURS);
    }
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let (reply, answer) = tokio::sync::oneshot::channel();
    if callbacks.send(Callback { query, reply }).is_err() {
        return page(400, "The consent wait is over; nothing changed.");
    }
    match answer.await {
        Ok((status, text)) => page(status, &text),
        Err(_) => page(400, "The consent wait is over; nothing changed."),
    }
}

fn page(status: u16, text: &str) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>mailform</title><p style=\"font: 1.2em sans-serif\">{text}</p>\n"
    );
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(page)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The code a callback brought (RFC 6749 §4.1.2), or the refusal it
/// brought instead (§4.1.2.1), from the callback's query.
fn code_of(query: &BTreeMap<String, String>) -> Result<Secret, ConsentError> {
    if let Some(error) = query.get("error") {
        return Err(ConsentError::Denied {
            error: error.clone(),
            description: query.get("error_description").cloned(),
        });
    }
    query
        .get("code")
        .map(|c| Secret::new(c.as_str()))
        .ok_or_else(|| ConsentError::Other("the callback brought no authorization code".into()))
}

/// `--consent manual`: the code in a pasted redirect address (whose `state`
/// must be `pending`'s), or the pasted text itself when it is a bare code.
pub fn pasted_code(answer: &str, pending: &Pending, name: &str) -> Result<Secret, ConsentError> {
    let answer = answer.trim();
    if answer.is_empty() {
        return Err(ConsentError::Other("the answer was empty".into()));
    }
    let Some(url) = url::Url::parse(answer).ok().filter(|u| u.query().is_some()) else {
        return Ok(Secret::new(answer));
    };
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    if query.get("state") != Some(&pending.state) {
        return Err(ConsentError::Other(format!(
            "the pasted address belongs to another consent (its state differs); paste the one for {name}"
        )));
    }
    code_of(&query)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Opens `url` with `$BROWSER` when set (the command gets the URL as its
/// argument), else with the platform's opener when on a terminal (a person
/// is there to see it); `Ok(false)` when there is no browser to start, and
/// the person opens the printed link themselves.
pub fn open_in_browser(url: &url::Url) -> Result<bool, String> {
    use std::io::IsTerminal as _;
    let Some(browser) = std::env::var_os("BROWSER").filter(|b| !b.is_empty()) else {
        if !std::io::stderr().is_terminal() {
            return Ok(false);
        }
        return webbrowser::open(url.as_str())
            .map(|()| true)
            .map_err(|e| format!("cannot open a browser: {e}; open the link above by hand"));
    };
    std::process::Command::new(&browser)
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| true)
        .map_err(|e| format!("cannot start $BROWSER ({}): {e}", browser.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        let url = url::Url::parse("http://127.0.0.1:8765/callback").unwrap();
        Pending {
            url: url.clone(),
            state: "s1".into(),
            verifier: Secret::new("v"),
            redirect: url,
        }
    }

    #[test]
    fn a_pasted_answer_gives_its_code_or_says_why_not() {
        let p = pending();
        let code = |a: &str| pasted_code(a, &p, "support").map(|c| c.expose().to_string());
        assert_eq!(code("  bare-code \n").unwrap(), "bare-code");
        assert_eq!(
            code("http://127.0.0.1:8765/callback?code=c1&state=s1").unwrap(),
            "c1"
        );
        for (answer, words) in [
            (
                "http://127.0.0.1:8765/callback?code=c1&state=s2",
                "another consent",
            ),
            (
                "http://127.0.0.1:8765/callback?error=access_denied&state=s1",
                "consent denied by the user (access_denied)",
            ),
            (
                "http://127.0.0.1:8765/callback?state=s1",
                "no authorization code",
            ),
            ("   ", "empty"),
        ] {
            let e = code(answer).unwrap_err().to_string();
            assert!(e.contains(words), "{answer}: {e}");
        }
    }
}
