//! Organisation grants: tokens the app asks for itself, for one mailbox,
//! with no person and no refresh token.
//!
//! - Microsoft 365's client credentials (RFC 6749 §4.4): the client's
//!   secret, or an RFC 7523 client assertion signed PS256 with its
//!   certificate's key, `x5t#S256` naming the certificate (Entra's
//!   certificate credentials);
//! - Google's service accounts with domain-wide delegation (RFC 7523 §2.1):
//!   a JWT signed with the service account's key — `iss` its address, `sub`
//!   the mailbox, `aud` the token endpoint, at most an hour — and nothing
//!   else: no client id, no secret, exactly Google's request.
//!
//! Every assertion is made fresh for its request and never kept; the keys
//! sit in [`AppCredential`], whose `Debug` shows none of them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth2::{Scope, TokenUrl};

use super::{OAuthError, ProviderClient, TokenResponse, retry};
use crate::config::Provider;
use crate::config::raw::GrantKind;

/// RFC 7523 §2.1.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 7523 §2.2.
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion lives (Google's limit).
const ASSERTION_LIFETIME: u64 = 3600;
/// A client assertion lives only as long as its request.
const CLIENT_ASSERTION_LIFETIME: u64 = 600;
/// Largest certificate file read.
const MAX_CERTIFICATE_FILE: u64 = 64 * 1024;

/// How an organisation grant's client proves itself.
pub(super) enum AppCredential {
    /// Client credentials with the client secret.
    Secret,
    /// Client credentials with a certificate's key.
    Certificate {
        key: EncodingKey,
        /// The certificate's SHA-256 thumbprint (of its DER), base64url.
        x5t_s256: String,
    },
    /// A service account's own assertion.
    ServiceAccount {
        client_email: String,
        key_id: Option<String>,
        key: EncodingKey,
    },
}

impl std::fmt::Debug for AppCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppCredential::Secret => "AppCredential::Secret",
            AppCredential::Certificate { .. } => "AppCredential::Certificate([redacted])",
            AppCredential::ServiceAccount { .. } => "AppCredential::ServiceAccount([redacted])",
        })
    }
}

impl AppCredential {
    /// The credential `provider`'s grant uses (`None`: a person's consent),
    /// its key read and checked now, so a bad one fails before any request.
    pub(super) fn of(provider: &Provider) -> Result<Option<Self>, String> {
        match provider.grant {
            GrantKind::Consent => Ok(None),
            GrantKind::ClientCredentials => match &provider.client_certificate {
                None => Ok(Some(AppCredential::Secret)),
                Some(path) => certificate(path).map(Some),
            },
            GrantKind::ServiceAccount => {
                let sa = provider
                    .service_account
                    .as_ref()
                    .ok_or("its service_account_file is not here (mailform validate says more)")?;
                let key = EncodingKey::from_rsa_pem(sa.private_key.expose().as_bytes()).map_err(
                    |_| "the key file's private_key is not an RSA private key".to_string(),
                )?;
                Ok(Some(AppCredential::ServiceAccount {
                    client_email: sa.client_email.clone(),
                    key_id: sa.private_key_id.clone(),
                    key,
                }))
            }
        }
    }
}

/// A PEM file's certificate (its thumbprints) and RSA private key.
fn certificate(path: &std::path::Path) -> Result<AppCredential, String> {
    let bytes = zeroize::Zeroizing::new(
        crate::files::read(path, MAX_CERTIFICATE_FILE, crate::files::Links::Follow)
            .map_err(|e| format!("client_certificate: {e}"))?,
    );
    let blocks =
        pem::parse_many(&*bytes).map_err(|_| "client_certificate: not a PEM file".to_string())?;
    let cert = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or("client_certificate: the file holds no CERTIFICATE")?;
    let key = blocks
        .iter()
        .find(|b| matches!(b.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"))
        .ok_or("client_certificate: the file holds no PRIVATE KEY (export the certificate with its key)")?;
    let key_pem = zeroize::Zeroizing::new(pem::encode(key));
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes())
        .map_err(|_| "client_certificate: the private key is not an RSA key".to_string())?;
    Ok(AppCredential::Certificate {
        key,
        x5t_s256: base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, cert.contents()).as_ref()),
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ProviderClient {
    /// A new access token for `mailbox` from the app's own credentials,
    /// retrying passing failures. `Setup` when the provider's grant is a
    /// person's consent.
    pub async fn app_token(
        &self,
        mailbox: &str,
        scopes: &[String],
    ) -> Result<super::Grant, OAuthError> {
        retry(|| self.app_token_once(mailbox, scopes)).await
    }

    async fn app_token_once(
        &self,
        mailbox: &str,
        scopes: &[String],
    ) -> Result<super::Grant, OAuthError> {
        let sign = |header: &Header, claims: &serde_json::Value, key: &EncodingKey| {
            jsonwebtoken::encode(header, claims, key).map_err(|_| OAuthError::Setup {
                provider: self.name.clone(),
                what: "cannot sign the assertion",
                why: "the private key was refused by the signer".into(),
            })
        };
        let now = now_secs();
        match &self.app {
            None => Err(OAuthError::Setup {
                provider: self.name.clone(),
                what: "grant",
                why: "a person's consent grants this provider's tokens".into(),
            }),
            Some(AppCredential::ServiceAccount {
                client_email,
                key_id,
                key,
            }) => {
                let mut header = Header::new(Algorithm::RS256);
                header.kid.clone_from(key_id);
                let claims = serde_json::json!({
                    "iss": client_email,
                    "sub": mailbox,
                    "scope": scopes.join(" "),
                    "aud": self.token_url.as_str(),
                    "iat": now,
                    "exp": now + ASSERTION_LIFETIME,
                });
                let assertion = zeroize::Zeroizing::new(sign(&header, &claims, key)?);
                self.jwt_bearer(&assertion).await
            }
            Some(credential) => {
                let client = self
                    .base_client()
                    .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
                let mut request = client
                    .exchange_client_credentials()
                    .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
                if let AppCredential::Certificate { key, x5t_s256 } = credential {
                    let mut header = Header::new(Algorithm::PS256);
                    header.x5t_s256 = Some(x5t_s256.clone());
                    let claims = serde_json::json!({
                        "iss": self.client_id,
                        "sub": self.client_id,
                        "aud": self.token_url.as_str(),
                        "jti": uuid::Uuid::new_v4().to_string(),
                        "iat": now,
                        "nbf": now,
                        "exp": now + CLIENT_ASSERTION_LIFETIME,
                    });
                    let assertion = zeroize::Zeroizing::new(sign(&header, &claims, key)?);
                    request = request
                        .add_extra_param("client_assertion_type", CLIENT_ASSERTION_TYPE)
                        .add_extra_param("client_assertion", assertion.to_string());
                }
                let response = request
                    .request_async(&self.transport)
                    .await
                    .map_err(|e| OAuthError::from_token_error(&self.name, e))?;
                self.grant_of(&response)
            }
        }
    }

    /// Google's service-account request: the grant type and the assertion,
    /// nothing else.
    async fn jwt_bearer(&self, assertion: &str) -> Result<super::Grant, OAuthError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER)
            .append_pair("assertion", assertion)
            .finish()
            .into_bytes();
        let request = oauth2::http::Request::post(self.token_url.as_str())
            .header(
                oauth2::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(oauth2::http::header::ACCEPT, "application/json")
            .body(body)
            .expect("a POST with a form body is a valid request");
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(OAuthError::from_error_body(
                &self.name,
                response.status().as_u16(),
                response.body(),
            ));
        }
        let parsed: TokenResponse = serde_json::from_slice(response.body())
            .map_err(|_| OAuthError::not_oauth_json(&self.name))?;
        self.grant_of(&parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Whatever a certificate file holds, reading it ends in a
        /// credential or a reason that quotes nothing of the file.
        #[test]
        fn a_certificate_file_is_read_or_refused_without_quoting_it(
            blocks in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just("CERTIFICATE"),
                        proptest::strategy::Just("PRIVATE KEY"),
                        proptest::strategy::Just("RSA PRIVATE KEY"),
                        proptest::strategy::Just("SENTINEL"),
                    ],
                    proptest::collection::vec(proptest::num::u8::ANY, 0..64),
                ),
                0..4,
            ),
            junk in "[ -~\n]{0,40}",
        ) {
            let mut text = junk.replace("SENT", "");
            for (tag, body) in &blocks {
                text.push_str(&pem::encode(&pem::Pem::new(*tag, body.clone())));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.pem");
            std::fs::write(&path, &text).unwrap();
            if let Err(why) = certificate(&path) {
                proptest::prop_assert!(!why.contains("SENTINEL"), "{why}");
            }
        }
    }
}
