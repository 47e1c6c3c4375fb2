//! Gmail's forwarding settings, read through the Gmail API with the grant
//! the asset already has (`https://mail.google.com/` may read them):
//! `GET {gmail_api_url}/gmail/v1/users/me/settings/autoForwarding`
//! (`enabled`, `emailAddress`, `disposition`) and `…/forwardingAddresses`
//! (`forwardingEmail`, `verificationStatus`). Over the OAuth transport:
//! the provider's `ca_file`, a timeout, no redirects, a capped body; the
//! bearer token never in an error or a log.

use serde::Deserialize;

use crate::oauth::transport::{Transport, TransportError};
use crate::plan::ForwardingObservation;
use crate::secret::Secret;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AutoForwarding {
    #[serde(default)]
    enabled: bool,
    email_address: Option<String>,
    disposition: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Addresses {
    #[serde(default)]
    forwarding_addresses: Vec<Address>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    forwarding_email: String,
    verification_status: Option<String>,
}

/// Google's error body: `{"error": {"code": 403, "message": "…",
/// "status": "PERMISSION_DENIED", "errors": [{"reason": …}], "details":
/// [{"reason": …}]}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<Reason>,
    #[serde(default)]
    details: Vec<Reason>,
}

#[derive(Deserialize)]
struct Reason {
    reason: Option<String>,
}

impl ErrorDetail {
    fn reasons(&self) -> impl Iterator<Item = &str> {
        self.errors
            .iter()
            .chain(&self.details)
            .filter_map(|r| r.reason.as_deref())
    }
}

/// Reasons that say nothing of the settings: try again later.
const PASSING: [&str; 4] = [
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "RATE_LIMIT_EXCEEDED",
    "backendError",
];

/// One GET of the settings API; `Err` is what the planner is told.
async fn get<T: serde::de::DeserializeOwned>(
    transport: &Transport,
    url: &url::Url,
    token: &Secret,
) -> Result<T, ForwardingObservation> {
    call(transport, oauth2::http::Method::GET, url, token, None).await
}

/// One call of the settings API, with a JSON body when given.
async fn call<T: serde::de::DeserializeOwned>(
    transport: &Transport,
    method: oauth2::http::Method,
    url: &url::Url,
    token: &Secret,
    body: Option<&serde_json::Value>,
) -> Result<T, ForwardingObservation> {
    let mut request = oauth2::http::Request::builder()
        .method(method)
        .uri(url.as_str())
        .header(
            oauth2::http::header::AUTHORIZATION,
            format!("Bearer {}", token.expose()),
        )
        .header(oauth2::http::header::ACCEPT, "application/json");
    if body.is_some() {
        request = request.header(oauth2::http::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .expect("a settings call is a valid request");
    let response = transport.send(request).await.map_err(|e| match e {
        TransportError::Untrusted(why) => ForwardingObservation::Refused {
            code: 0,
            words: why,
        },
        other => ForwardingObservation::Transient {
            detail: other.to_string(),
        },
    })?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let body = serde_json::from_slice::<ErrorBody>(response.body()).ok();
        let words = body
            .as_ref()
            .and_then(|b| b.error.message.as_deref())
            .map_or_else(
                || format!("HTTP {status}"),
                |m| {
                    let secret = [token.expose()];
                    crate::diagnostic::shown_up_to(&crate::secret::redact_echoes(m, &secret), 400)
                        .into_owned()
                },
            );
        // A rate limit, or a token the API did not take just after the
        // provider issued it (401): passing; the settings are not known.
        let passing = status == 401
            || body
                .as_ref()
                .is_some_and(|b| b.error.reasons().any(|r| PASSING.contains(&r)));
        if passing {
            return Err(ForwardingObservation::Transient {
                detail: format!("the Gmail API answered {status}: {words}"),
            });
        }
        let disabled = body.as_ref().is_some_and(|b| {
            b.error
                .reasons()
                .any(|r| r == "accessNotConfigured" || r == "SERVICE_DISABLED")
        });
        return Err(ForwardingObservation::Refused {
            code: status,
            words: if disabled {
                format!("the Gmail API is disabled in the project: {words}")
            } else {
                words
            },
        });
    }
    serde_json::from_slice(response.body()).map_err(|_| ForwardingObservation::Transient {
        detail: format!("{url} did not answer in the Gmail API's JSON"),
    })
}

/// `{base}/gmail/v1/users/me/settings/{path}`.
fn settings_url(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}/gmail/v1/users/me/settings/{path}"));
    url
}

/// What setting the forwarding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Set {
    /// Forwarding to the address is on.
    On,
    /// The address waits for its owner to confirm Gmail's email.
    Pending,
}

/// Makes `want` a forwarding address of the mailbox and turns forwarding
/// to it on, with `disposition` (Gmail's default, `leaveInInbox`, when
/// none): what a service account with domain-wide delegation for
/// `gmail.settings.sharing` may do. An address Gmail must have confirmed
/// first is left pending.
pub async fn set_forwarding(
    transport: &Transport,
    base: &url::Url,
    token: &Secret,
    want: &str,
    disposition: Option<&str>,
) -> Result<Set, String> {
    let words = |o: ForwardingObservation| match o {
        ForwardingObservation::Refused { code, words } => format!("{code}: {words}"),
        ForwardingObservation::Transient { detail } => detail,
        ForwardingObservation::Seen { .. } => "an unexpected answer".into(),
    };
    // Created only when missing (Gmail refuses to create one twice).
    let listed: Addresses = get(transport, &settings_url(base, "forwardingAddresses"), token)
        .await
        .map_err(words)?;
    let existing = listed
        .forwarding_addresses
        .into_iter()
        .find(|a| a.forwarding_email.eq_ignore_ascii_case(want));
    let status = if let Some(existing) = existing {
        existing.verification_status
    } else {
        let created: Address = call(
            transport,
            oauth2::http::Method::POST,
            &settings_url(base, "forwardingAddresses"),
            token,
            Some(&serde_json::json!({ "forwardingEmail": want })),
        )
        .await
        .map_err(words)?;
        created.verification_status
    };
    if status.as_deref() != Some("accepted") {
        return Ok(Set::Pending);
    }
    let _: serde_json::Value = call(
        transport,
        oauth2::http::Method::PUT,
        &settings_url(base, "autoForwarding"),
        token,
        Some(&serde_json::json!({
            "enabled": true,
            "emailAddress": want,
            "disposition": disposition.unwrap_or("leaveInInbox"),
        })),
    )
    .await
    .map_err(words)?;
    Ok(Set::On)
}

/// The mailbox's forwarding settings, or why they could not be read.
pub async fn forwarding(
    transport: &Transport,
    base: &url::Url,
    token: &Secret,
) -> ForwardingObservation {
    let at = |path: &str| settings_url(base, path);
    let auto: AutoForwarding = match get(transport, &at("autoForwarding"), token).await {
        Ok(a) => a,
        Err(o) => return o,
    };
    let addresses: Addresses = match get(transport, &at("forwardingAddresses"), token).await {
        Ok(a) => a,
        Err(o) => return o,
    };
    let clean = |s: &str| crate::diagnostic::shown_up_to(s, 320).into_owned();
    ForwardingObservation::Seen {
        enabled: auto.enabled,
        email_address: auto.email_address.as_deref().map(clean),
        disposition: auto.disposition.as_deref().map(clean),
        addresses: addresses
            .forwarding_addresses
            .iter()
            .take(100)
            .map(|a| {
                (
                    clean(&a.forwarding_email),
                    clean(a.verification_status.as_deref().unwrap_or("")),
                )
            })
            .collect(),
    }
}
