//! The HTTP transport under `oauth2`: reqwest on rustls, no redirects, every
//! request bounded in time and in the size of what it reads back.

use std::path::Path;
use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse};

/// A whole request, connect to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Connecting alone: a provider that does not accept within this is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read from a token endpoint (they are a few hundred bytes).
const MAX_BODY: usize = 1024 * 1024;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("timed out")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Other(String),
    /// 408, 429 or 5xx: the provider is busy or down, which says nothing of
    /// the grant.
    #[error("HTTP {code}")]
    Busy { code: u16 },
    /// A success status came, but its body did not (cut off, too slow, too
    /// large): the provider may have acted already (a refresh token used
    /// and rotated), so this is never retried.
    #[error("the provider answered HTTP {code}, but its answer could not be read ({why})")]
    AfterAnswer { code: u16, why: String },
    /// The endpoint's certificate is not one mailform trusts: the setup's
    /// problem (a private CA without `ca_file`, the wrong host), never a
    /// passing one.
    #[error("{0}")]
    Untrusted(String),
}

impl TransportError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        // The URL is left out: error text is shown to people.
        let e = e.without_url();
        if let Some(rustls::Error::InvalidCertificate(c)) = crate::security::rustls_error(&e) {
            use rustls::CertificateError as C;
            return TransportError::Untrusted(match c {
                C::UnknownIssuer => {
                    "its certificate is not signed by an authority mailform trusts".into()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "its certificate is not valid for the endpoint's host name".into()
                }
                C::Expired | C::ExpiredContext { .. } => "its certificate has expired".into(),
                other => format!("its certificate is refused ({other:?})"),
            });
        }
        if e.is_timeout() {
            TransportError::Timeout
        } else if e.is_connect() {
            TransportError::Connect(crate::error::chain(&e))
        } else {
            TransportError::Other(crate::error::chain(&e))
        }
    }
}

/// One `-v` line per HTTP exchange: method, URL without its query, status,
/// and for a refusal the provider's `error` and `error_description` — never
/// a header, a form field or any other part of a body, so no token, code,
/// verifier or secret.
fn log(line: impl FnOnce() -> String) {
    crate::verbose::line(line);
}

/// A URL as logged: no query, no fragment, no user info.
fn loggable(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// The provider's `error` and `error_description` from a refusal's body.
fn refusal(body: &[u8]) -> String {
    let shown = |s: &str| crate::diagnostic::shown(s).into_owned();
    match super::body::error_body(body) {
        Some((e, Some(d))) => format!(" {}: {}", shown(&e), shown(&d)),
        Some((e, None)) => format!(" {}", shown(&e)),
        None => String::new(),
    }
}

#[derive(Debug, Clone)]
pub struct Transport {
    http: reqwest::Client,
}

impl Transport {
    /// A transport trusting the web's roots and, when given, the PEM
    /// certificates in `ca_file` (private CAs, the test servers).
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(concat!("mailform/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let bad = |why: String| format!("ca_file {} {why}", path.display());
            for der in crate::security::ca_certificates(path).map_err(bad)? {
                let cert = reqwest::Certificate::from_der(&der)
                    .map_err(|e| bad(crate::error::chain(&e)))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| crate::error::chain(&e))?;
        Ok(Transport { http })
    }

    /// Sends one request; a busy or failing provider (408, 429, 5xx) is an
    /// error here, any other answer goes back to `oauth2` to read.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (parts, body) = request.into_parts();
        let shown = format!("{} {}", parts.method, loggable(&parts.uri.to_string()));
        let result = self.exchange(parts, body).await;
        match &result {
            Ok(r) if r.status().is_success() => {
                log(|| format!("{shown} → {}", r.status().as_u16()));
            }
            Ok(r) => log(|| format!("{shown} → {}{}", r.status().as_u16(), refusal(r.body()))),
            Err(e) => log(|| format!("{shown} → {e}")),
        }
        result
    }

    async fn exchange(
        &self,
        parts: oauth2::http::request::Parts,
        body: Vec<u8>,
    ) -> Result<HttpResponse, TransportError> {
        let mut builder = self
            .http
            .request(parts.method, parts.uri.to_string())
            .body(body);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder.send().await.map_err(TransportError::from_reqwest)?;
        let status = response.status();
        if matches!(status.as_u16(), 408 | 429) || status.is_server_error() {
            return Err(TransportError::Busy {
                code: status.as_u16(),
            });
        }
        let mut out = HttpResponse::new(Vec::new());
        *out.status_mut() = status;
        *out.headers_mut() = response.headers().clone();
        let cut = |e: TransportError| {
            if status.is_success() {
                TransportError::AfterAnswer {
                    code: status.as_u16(),
                    why: e.to_string(),
                }
            } else {
                e
            }
        };
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| cut(TransportError::from_reqwest(e)))?
        {
            if out.body().len() + chunk.len() > MAX_BODY {
                return Err(cut(TransportError::Other(format!(
                    "the answer is larger than {MAX_BODY} bytes"
                ))));
            }
            out.body_mut().extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// `oauth2` sends through the transport. A boxed future of a named type,
/// rather than a closure, keeps the request future `Send` for every
/// lifetime, so refreshes can run as tokio tasks.
impl<'c> oauth2::AsyncHttpClient<'c> for Transport {
    type Error = TransportError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
