//! Token-endpoint failures, classified: revoked grant, configuration error,
//! other refusal, or a passing failure. Each names the provider and carries
//! the provider's own `error` and `error_description`, never a token.

use oauth2::{ErrorResponseType, RequestTokenError, StandardErrorResponse};

use super::transport::TransportError;
use crate::diagnostic::shown;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_grant`: revoked, expired, or the password changed. A person
    /// must consent again.
    #[error(
        "refresh token revoked or expired ({}{}) — run mailform apply to consent again",
        shown(error),
        described(description.as_deref())
    )]
    Revoked {
        provider: String,
        error: String,
        description: Option<String>,
    },
    /// The client could not be set up here, before anything was sent (its
    /// secret unreadable, its `ca_file` unusable).
    #[error("provider `{provider}`: {what}: {why}")]
    Setup {
        provider: String,
        what: &'static str,
        why: String,
    },
    /// The client itself is refused: fix the configuration.
    #[error(
        "provider `{provider}` refused the OAuth client ({}{}) — check client_id and client_secret (and that the client may use this grant)",
        shown(error),
        described(description.as_deref())
    )]
    Config {
        provider: String,
        error: String,
        description: Option<String>,
    },
    /// Another refusal (`invalid_request`, `invalid_scope`, …).
    #[error(
        "provider `{provider}` refused the request ({}{})",
        shown(error),
        described(description.as_deref())
    )]
    Refused {
        provider: String,
        error: String,
        description: Option<String>,
    },
    /// An answer mailform could not read (not OAuth JSON, cut off, a bare
    /// HTTP status): said as a refusal, but it is no verdict on the grant.
    #[error(
        "provider `{provider}` refused the request ({}{})",
        shown(what),
        described(description.as_deref())
    )]
    Unreadable {
        provider: String,
        /// What was wrong with it, e.g. "unreadable answer", "HTTP 404".
        what: String,
        description: Option<String>,
    },
    /// A grant whose access token could not travel as a bearer token: it is
    /// never stored, printed or sent to a server.
    #[error(
        "provider `{provider}` returned an access token with characters a bearer token cannot have (RFC 6750 b64token); it was not stored"
    )]
    UnusableToken { provider: String },
    /// The endpoint's TLS certificate is not trusted: fix the setup.
    #[error(
        "provider `{provider}`: {why} — if the provider uses a private CA, set ca_file on provider `{provider}`; otherwise check the endpoint's host"
    )]
    Untrusted { provider: String, why: String },
    /// Timeout, connection failure, 408/429/5xx, an unreadable answer: says
    /// nothing about the grant.
    #[error(
        "provider `{provider}` did not answer usefully ({detail}); this is transient, not drift"
    )]
    Transient { provider: String, detail: String },
}

pub(super) use super::body::error_body;

/// What is said of an answer that was not OAuth 2.0 JSON.
const UNREADABLE: &str = "unreadable answer";

/// `: description`, shown safely, or nothing.
pub(super) fn described(description: Option<&str>) -> String {
    description
        .map(|d| format!(": {}", shown(d)))
        .unwrap_or_default()
}

impl OAuthError {
    pub fn is_transient(&self) -> bool {
        matches!(self, OAuthError::Transient { .. })
    }

    /// The provider's own `error` and `error_description`, when it refused
    /// the request (revoked, client refused, other refusal) in OAuth's
    /// terms. Not what mailform says of an answer it could not read (cut
    /// off, not OAuth JSON, a bare HTTP status): that is no verdict.
    pub fn refusal(&self) -> Option<(&str, Option<&str>)> {
        match self {
            OAuthError::Revoked {
                error, description, ..
            }
            | OAuthError::Config {
                error, description, ..
            }
            | OAuthError::Refused {
                error, description, ..
            } => Some((error, description.as_deref())),
            _ => None,
        }
    }

    /// Sorts an RFC 6749 §5.2 error code into its class.
    fn classify(provider: &str, error: &str, description: Option<String>) -> Self {
        let provider = provider.to_string();
        let error_owned = error.to_string();
        match error {
            "invalid_grant" => OAuthError::Revoked {
                provider,
                error: error_owned,
                description,
            },
            "invalid_client" | "unauthorized_client" => OAuthError::Config {
                provider,
                error: error_owned,
                description,
            },
            // RFC 6749 §4.1.2.1 codes a token endpoint may pass on too.
            "temporarily_unavailable" | "server_error" => OAuthError::Transient {
                provider,
                detail: match description {
                    Some(d) => format!("{error}: {}", shown(&d)),
                    None => error_owned,
                },
            },
            _ => OAuthError::Refused {
                provider,
                error: error_owned,
                description,
            },
        }
    }

    /// A token endpoint's failure (code exchange, refresh, device polling).
    pub(super) fn from_token_error<
        T: ErrorResponseType + AsRef<str> + std::fmt::Display + 'static,
    >(
        provider: &str,
        e: RequestTokenError<TransportError, StandardErrorResponse<T>>,
    ) -> Self {
        match e {
            RequestTokenError::ServerResponse(r) => {
                Self::classify(provider, r.error().as_ref(), r.error_description().cloned())
            }
            RequestTokenError::Request(t) => Self::from_transport(provider, &t),
            // Not retried: a 200 that does not parse may have used (and
            // rotated) the refresh token already. Neither body is quoted: it
            // may hold anything.
            RequestTokenError::Parse(_, _) => Self::not_oauth_json(provider),
            RequestTokenError::Other(why) => OAuthError::Unreadable {
                provider: provider.to_string(),
                what: UNREADABLE.into(),
                description: Some(shown(&why).into_owned()),
            },
        }
    }

    /// A token endpoint's answer that is not OAuth 2.0 JSON (not quoted:
    /// it may hold anything).
    pub(super) fn not_oauth_json(provider: &str) -> Self {
        OAuthError::Unreadable {
            provider: provider.to_string(),
            what: UNREADABLE.into(),
            description: Some(
                "the token endpoint did not answer in OAuth 2.0 JSON; check token_url".into(),
            ),
        }
    }

    pub(super) fn from_transport(provider: &str, e: &TransportError) -> Self {
        match e {
            // Not retried: sending the same refresh token again after the
            // provider used it could look like a replay, and revoke the grant.
            TransportError::AfterAnswer { code, why } => OAuthError::Unreadable {
                provider: provider.to_string(),
                what: "answer cut off".into(),
                description: Some(format!(
                    "HTTP {code} came, but not its body ({why}); not retried"
                )),
            },
            TransportError::Untrusted(why) => OAuthError::Untrusted {
                provider: provider.to_string(),
                why: why.clone(),
            },
            _ => OAuthError::Transient {
                provider: provider.to_string(),
                detail: e.to_string(),
            },
        }
    }

    /// A non-2xx answer read by hand (revocation): its error JSON, or the status.
    pub(super) fn from_error_body(provider: &str, status: u16, body: &[u8]) -> Self {
        match error_body(body) {
            Some((error, description)) => Self::classify(provider, &error, description),
            None => OAuthError::Unreadable {
                provider: provider.to_string(),
                what: format!("HTTP {status}"),
                description: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_provider_is_retried_an_answer_cut_off_after_success_is_not() {
        for e in [
            TransportError::Timeout,
            TransportError::Busy { code: 503 },
            TransportError::Connect("refused".into()),
        ] {
            assert!(OAuthError::from_transport("lab", &e).is_transient(), "{e}");
        }
        let cut = TransportError::AfterAnswer {
            code: 200,
            why: "timed out".into(),
        };
        let e = OAuthError::from_transport("lab", &cut);
        assert!(!e.is_transient());
        assert!(
            e.to_string().contains(
                "refused the request (answer cut off: HTTP 200 came, but not its body (timed out); not retried)"
            ),
            "{e}"
        );
    }
}
