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

/// Google's error body: `{"error": {"code": 403, "message": "…"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

/// One GET of the settings API; `Err` is what the planner is told.
async fn get<T: serde::de::DeserializeOwned>(
    transport: &Transport,
    url: &url::Url,
    token: &Secret,
) -> Result<T, ForwardingObservation> {
    let request = oauth2::http::Request::get(url.as_str())
        .header(
            oauth2::http::header::AUTHORIZATION,
            format!("Bearer {}", token.expose()),
        )
        .header(oauth2::http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .expect("a GET is a valid request");
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
        let words = serde_json::from_slice::<ErrorBody>(response.body())
            .ok()
            .and_then(|b| b.error.message)
            .map_or_else(
                || format!("HTTP {status}"),
                |m| {
                    let secret = [token.expose()];
                    crate::diagnostic::shown_up_to(&crate::secret::redact_echoes(&m, &secret), 400)
                        .into_owned()
                },
            );
        return Err(ForwardingObservation::Refused {
            code: status,
            words,
        });
    }
    serde_json::from_slice(response.body()).map_err(|_| ForwardingObservation::Transient {
        detail: format!("{url} did not answer in the Gmail API's JSON"),
    })
}

/// The mailbox's forwarding settings, or why they could not be read.
pub async fn forwarding(
    transport: &Transport,
    base: &url::Url,
    token: &Secret,
) -> ForwardingObservation {
    let at = |path: &str| {
        let mut url = base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}/gmail/v1/users/me/settings/{path}"));
        url
    };
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
