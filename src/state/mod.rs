//! State: what mailform last applied, and the tokens it holds.
//!
//! The state file is JSON with a `format_version`, a `lineage` (set once when
//! the state is created, so a plan made against one state is never applied to
//! another) and a `serial` that grows with every write. Per asset it keeps the
//! applied, non-secret config ([`AppliedAsset`]), a fingerprint of the fields
//! that bind tokens, the sealed tokens ([`TokenRecord`]) and the last SMTP check.
//!
//! Reading never repairs: a file that is corrupt or from a newer mailform is an
//! error, and the caller never writes over it.

pub mod crypto;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::Security;
use crate::secret::Secret;
use crypto::{Key, Sealed};

/// The state file format this mailform reads and writes.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// The whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mailform state")]
pub struct State {
    pub format_version: u32,
    /// Set once when the state is created.
    pub lineage: Uuid,
    /// Grows by one with every write.
    pub serial: u64,
    /// Id of the key that sealed the tokens (not the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default)]
    pub assets: BTreeMap<String, AssetRecord>,
}

impl State {
    /// A new, empty state with a fresh lineage.
    pub fn new() -> Self {
        State {
            format_version: STATE_FORMAT_VERSION,
            lineage: Uuid::new_v4(),
            serial: 0,
            key_id: None,
            assets: BTreeMap::new(),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// What is known about one applied asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetRecord {
    pub applied: AppliedAsset,
    /// [`AppliedAsset::binding_fingerprint`] of the config the tokens were granted under.
    pub binding: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_check: Option<SmtpCheck>,
    pub updated_at: DateTime<Utc>,
}

/// Tokens of one asset, sealed, with what may be shown about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// The access and refresh tokens, encrypted.
    pub sealed: Sealed,
    pub has_refresh_token: bool,
    /// Scopes the provider says it granted.
    pub granted_scopes: Vec<String>,
    pub obtained_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When the refresh token dies, when known (e.g. Google apps in testing: 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

/// The outcome of the last SMTP login proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpCheck {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// The server's words, e.g. "235 2.7.0 Accepted".
    pub detail: String,
}

impl AssetRecord {
    /// The record of an asset applied now, its binding fingerprint derived.
    pub fn new(applied: AppliedAsset, token: Option<TokenRecord>, now: DateTime<Utc>) -> Self {
        AssetRecord {
            binding: applied.binding_fingerprint(),
            applied,
            token,
            smtp_check: None,
            updated_at: now,
        }
    }
}

impl TokenRecord {
    /// Seals freshly obtained `tokens` of `asset` with what may be shown of them.
    pub fn new(
        key: &Key,
        asset: &str,
        tokens: &Tokens,
        granted_scopes: Vec<String>,
        obtained_at: DateTime<Utc>,
    ) -> Self {
        TokenRecord {
            sealed: tokens.seal(key, asset),
            has_refresh_token: tokens.refresh_token.is_some(),
            granted_scopes,
            obtained_at,
            access_expires_at: None,
            refresh_expires_at: None,
        }
    }
}

/// The secret half of a [`TokenRecord`].
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
}

#[derive(Serialize, Deserialize)]
struct TokensPlain<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
}

impl Tokens {
    /// Encrypts the tokens for `asset`.
    pub fn seal(&self, key: &Key, asset: &str) -> Sealed {
        let plain = TokensPlain {
            access_token: self.access_token.expose(),
            refresh_token: self.refresh_token.as_ref().map(Secret::expose),
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&plain).expect("two strings serialize"));
        key.seal(asset, &bytes)
    }

    /// Decrypts the tokens of `asset`.
    pub fn open(key: &Key, asset: &str, sealed: &Sealed) -> Result<Tokens, crypto::CryptoError> {
        let bytes = key.open(asset, sealed)?;
        let plain: TokensPlain<'_> =
            serde_json::from_slice(&bytes).map_err(|_| crypto::CryptoError::Malformed)?;
        Ok(Tokens {
            access_token: Secret::new(plain.access_token),
            refresh_token: plain.refresh_token.map(Secret::new),
        })
    }
}

/// The non-secret config of an asset as applied. Secrets are not here: a
/// client secret rotation does not invalidate tokens, and tokens are sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppliedAsset {
    pub email: String,
    pub username: String,
    pub provider: String,
    pub client_id: String,
    pub authorization_url: String,
    pub token_url: String,
    pub revocation_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub redirect_uri: Option<String>,
    pub auth_params: BTreeMap<String, String>,
    pub scopes: Vec<String>,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: Security,
    pub forwarding_address: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A field of [`AppliedAsset`], as plans name it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Email,
    Username,
    Provider,
    ClientId,
    AuthorizationUrl,
    TokenUrl,
    RevocationUrl,
    DeviceAuthorizationUrl,
    RedirectUri,
    AuthParams,
    Scopes,
    SmtpHost,
    SmtpPort,
    SmtpSecurity,
    ForwardingAddress,
    Labels,
}

impl Field {
    /// The field's name as written in `assets.toml`.
    pub fn path(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::Username => "username",
            Field::Provider => "provider",
            Field::ClientId => "client_id",
            Field::AuthorizationUrl => "authorization_url",
            Field::TokenUrl => "token_url",
            Field::RevocationUrl => "revocation_url",
            Field::DeviceAuthorizationUrl => "device_authorization_url",
            Field::RedirectUri => "redirect_uri",
            Field::AuthParams => "auth_params",
            Field::Scopes => "scopes",
            Field::SmtpHost => "smtp.host",
            Field::SmtpPort => "smtp.port",
            Field::SmtpSecurity => "smtp.security",
            Field::ForwardingAddress => "forwarding_address",
            Field::Labels => "labels",
        }
    }

    /// Whether changing this field makes the existing tokens unfit, so that they
    /// are revoked and consent runs again.
    ///
    /// Tokens are bound to the OAuth client, the issuer's endpoints, the scopes
    /// granted and the account that consented. Everything else (SMTP endpoint,
    /// labels, where the redirect lands, extra authorization parameters) can
    /// change under valid tokens.
    ///
    /// Whoever adds a field to [`AppliedAsset`] must decide here; the match has
    /// no wildcard so the compiler asks.
    pub fn binds_tokens(self) -> bool {
        match self {
            Field::Username
            | Field::ClientId
            | Field::AuthorizationUrl
            | Field::TokenUrl
            | Field::Scopes => true,
            Field::Email
            | Field::Provider
            | Field::RevocationUrl
            | Field::DeviceAuthorizationUrl
            | Field::RedirectUri
            | Field::AuthParams
            | Field::SmtpHost
            | Field::SmtpPort
            | Field::SmtpSecurity
            | Field::ForwardingAddress
            | Field::Labels => false,
        }
    }
}

/// A field's value, for diffs: one line, or a list of lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    List(Vec<String>),
}

/// A field's value as listed from an [`AppliedAsset`], borrowed so that
/// comparing and fingerprinting thousands of assets copies nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FieldValue<'a> {
    Text(&'a str),
    Port(u16),
    Security(Security),
    List(&'a [String]),
    Map(&'a BTreeMap<String, String>),
}

impl FieldValue<'_> {
    /// The owned form used in plans.
    pub fn to_value(&self) -> Value {
        match self {
            FieldValue::Text(s) => Value::Text((*s).to_string()),
            FieldValue::Port(p) => Value::Text(p.to_string()),
            FieldValue::Security(s) => Value::Text(s.to_string()),
            FieldValue::List(items) => Value::List(items.to_vec()),
            FieldValue::Map(m) => {
                Value::List(m.iter().map(|(k, v)| format!("{k} = {v:?}")).collect())
            }
        }
    }
}

fn opt(s: Option<&String>) -> Option<FieldValue<'_>> {
    s.map(|s| FieldValue::Text(s))
}
fn map(m: &BTreeMap<String, String>) -> Option<FieldValue<'_>> {
    (!m.is_empty()).then_some(FieldValue::Map(m))
}

impl AppliedAsset {
    /// Every field with its value (`None` when unset). The destructuring has
    /// no `..`, so a new field cannot be forgotten here.
    pub fn fields(&self) -> [(Field, Option<FieldValue<'_>>); 16] {
        let AppliedAsset {
            email,
            username,
            provider,
            client_id,
            authorization_url,
            token_url,
            revocation_url,
            device_authorization_url,
            redirect_uri,
            auth_params,
            scopes,
            smtp_host,
            smtp_port,
            smtp_security,
            forwarding_address,
            labels,
        } = self;
        [
            (Field::Email, Some(FieldValue::Text(email))),
            (Field::Username, Some(FieldValue::Text(username))),
            (Field::Provider, Some(FieldValue::Text(provider))),
            (Field::ClientId, Some(FieldValue::Text(client_id))),
            (
                Field::AuthorizationUrl,
                Some(FieldValue::Text(authorization_url)),
            ),
            (Field::TokenUrl, Some(FieldValue::Text(token_url))),
            (Field::RevocationUrl, opt(revocation_url.as_ref())),
            (
                Field::DeviceAuthorizationUrl,
                opt(device_authorization_url.as_ref()),
            ),
            (Field::RedirectUri, opt(redirect_uri.as_ref())),
            (Field::AuthParams, map(auth_params)),
            (Field::Scopes, Some(FieldValue::List(scopes))),
            (Field::SmtpHost, Some(FieldValue::Text(smtp_host))),
            (Field::SmtpPort, Some(FieldValue::Port(*smtp_port))),
            (
                Field::SmtpSecurity,
                Some(FieldValue::Security(*smtp_security)),
            ),
            (Field::ForwardingAddress, opt(forwarding_address.as_ref())),
            (Field::Labels, map(labels)),
        ]
    }

    /// A hash of the token-binding fields ([`Field::binds_tokens`]).
    pub fn binding_fingerprint(&self) -> String {
        fingerprint(&self.fields())
    }
}

/// [`AppliedAsset::binding_fingerprint`] of fields already listed: SHA-256
/// of the JSON list of `[field, value]` pairs whose field binds tokens.
pub fn fingerprint(fields: &[(Field, Option<FieldValue<'_>>)]) -> String {
    let binding: Vec<&(Field, Option<FieldValue<'_>>)> =
        fields.iter().filter(|(f, _)| f.binds_tokens()).collect();
    let json = serde_json::to_vec(&binding).expect("fields serialize");
    crypto::sha256_hex(&json)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn applied() -> AppliedAsset {
        AppliedAsset {
            email: "support@example.com".into(),
            username: "support@example.com".into(),
            provider: "google".into(),
            client_id: "id".into(),
            authorization_url: "https://a/".into(),
            token_url: "https://t/".into(),
            revocation_url: None,
            device_authorization_url: None,
            redirect_uri: None,
            auth_params: BTreeMap::new(),
            scopes: vec!["mail".into()],
            smtp_host: "smtp.example".into(),
            smtp_port: 587,
            smtp_security: Security::Starttls,
            forwarding_address: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn fingerprint_moves_with_binding_fields_only() {
        let a = applied();
        let mut b = a.clone();
        b.smtp_port = 465;
        b.labels.insert("team".into(), "care".into());
        assert_eq!(a.binding_fingerprint(), b.binding_fingerprint());
        b.client_id = "other".into();
        assert_ne!(a.binding_fingerprint(), b.binding_fingerprint());
    }

    #[test]
    fn tokens_seal_and_open() {
        let (key, _) = Key::generate();
        let t = Tokens {
            access_token: Secret::new("at"),
            refresh_token: Some(Secret::new("rt")),
        };
        let sealed = t.seal(&key, "support");
        let back = Tokens::open(&key, "support", &sealed).unwrap();
        assert_eq!(back.access_token.expose(), "at");
        assert_eq!(back.refresh_token.unwrap().expose(), "rt");
    }
}
