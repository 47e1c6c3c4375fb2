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

use crate::secret::Secret;
use crate::security::Security;
use crypto::{Key, Sealed};

/// The state file format this mailform writes. Format 1 (before tokens were
/// bound to lineage and binding) is read when it holds no tokens.
pub const STATE_FORMAT_VERSION: u32 = 2;

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

impl State {
    /// Whether any asset holds tokens (and so a key is needed to use them).
    pub fn has_tokens(&self) -> bool {
        self.assets.values().any(|a| a.token.is_some())
    }

    /// What a state read from disk must satisfy beyond its shape; the reason
    /// when it does not. Checked on every load.
    pub fn inconsistency(&self) -> Option<String> {
        if self.has_tokens() && self.key_id.is_none() {
            return Some(
                "it holds sealed tokens but no key_id, so no key can be checked against it".into(),
            );
        }
        if self.format_version < 2 && self.has_tokens() {
            return Some(format!(
                "it is format version {} and holds tokens sealed the pre-release way, which this mailform cannot open; remove the token entries and consent again",
                self.format_version
            ));
        }
        None
    }

    /// Records `applied` as `name`'s applied config, with freshly obtained
    /// tokens (and the scopes granted) sealed for this state, this asset and
    /// the config's binding fingerprint.
    pub fn insert_applied(
        &mut self,
        name: &str,
        applied: AppliedAsset,
        tokens: Option<(&Key, &Tokens, Vec<String>)>,
        now: DateTime<Utc>,
    ) -> &mut AssetRecord {
        let mut record = AssetRecord::new(applied, None, now);
        if let Some((key, tokens, granted)) = tokens {
            let aad = self.token_aad(name, &record.binding);
            record.token = Some(TokenRecord::new(key, &aad, tokens, granted, now));
            self.key_id = Some(key.id().to_string());
        }
        self.assets.insert(name.to_string(), record);
        self.assets.get_mut(name).expect("just inserted")
    }

    /// Stores refreshed tokens for `name`: sealed again under its binding,
    /// the consent time and granted scopes kept, the access expiry updated.
    /// Nothing when the asset holds no tokens here.
    pub fn store_refreshed(
        &mut self,
        key: &Key,
        name: &str,
        tokens: &Tokens,
        access_expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let aad = self
            .assets
            .get(name)
            .map(|r| self.token_aad(name, &r.binding));
        let (Some(aad), Some(record)) = (aad, self.assets.get_mut(name)) else {
            return;
        };
        let Some(token) = record.token.as_mut() else {
            return;
        };
        token.sealed = tokens.seal(key, &aad);
        token.has_refresh_token = tokens.refresh_token.is_some();
        token.access_expires_at = access_expires_at;
        // A refresh went through: whatever was refused before is over.
        token.revoked = None;
        record.updated_at = now;
    }

    /// The tokens `asset` holds, opened with `key`; `None` when it holds
    /// none, `Err` when they do not open here (another state, asset or
    /// binding, or another key).
    pub fn open_tokens(
        &self,
        key: &Key,
        asset: &str,
    ) -> Option<Result<Tokens, crypto::CryptoError>> {
        let record = self.assets.get(asset)?;
        let token = record.token.as_ref()?;
        Some(Tokens::open(
            key,
            &self.token_aad(asset, &record.binding),
            &token.sealed,
        ))
    }

    /// The associated data a token of `asset` is sealed with in this state.
    pub fn token_aad(&self, asset: &str, binding: &str) -> Vec<u8> {
        token_aad(&self.lineage, asset, binding)
    }

    /// Seals every token again with `new` (a key rotation), and names it as
    /// the state's key: how many assets' tokens were sealed. Every token is
    /// opened with `old` first; when one does not open, nothing changes.
    pub fn reseal(&mut self, old: &Key, new: &Key) -> Result<usize, String> {
        let mut opened = Vec::new();
        for name in self.assets.keys() {
            if let Some(tokens) = self.open_tokens(old, name) {
                let tokens = tokens.map_err(|e| {
                    format!("the tokens of {name} do not open with the current key ({e})")
                })?;
                opened.push((name.clone(), tokens));
            }
        }
        for (name, tokens) in &opened {
            let aad = token_aad(&self.lineage, name, &self.assets[name].binding);
            if let Some(t) = self.assets.get_mut(name).and_then(|r| r.token.as_mut()) {
                t.sealed = tokens.seal(new, &aad);
            }
        }
        self.key_id = Some(new.id().to_string());
        Ok(opened.len())
    }

    /// Moves `old`'s record to `new` (Terraform's `state mv`): the same
    /// grant, its tokens sealed again for the new name (they are bound to
    /// the asset's name). Nothing changes when it cannot be done.
    pub fn rename(&mut self, key: Option<&Key>, old: &str, new: &str) -> Result<(), String> {
        if self.assets.contains_key(new) {
            return Err(format!(
                "`{new}` is in state already: remove it first (mailform state rm {new})"
            ));
        }
        let Some(mut record) = self.assets.remove(old) else {
            return Err(format!("there is no asset `{old}` in state"));
        };
        if let Some(token) = record.token.as_mut() {
            let resealed = key
                .ok_or_else(|| {
                    "its tokens need the key to be sealed again, and there is none".to_string()
                })
                .and_then(|key| {
                    let tokens =
                        Tokens::open(key, &self.token_aad(old, &record.binding), &token.sealed)
                            .map_err(|e| format!("its tokens cannot be opened ({e})"))?;
                    Ok(tokens.seal(key, &self.token_aad(new, &record.binding)))
                });
            match resealed {
                Ok(sealed) => token.sealed = sealed,
                Err(why) => {
                    self.assets.insert(old.to_string(), record);
                    return Err(why);
                }
            }
        }
        self.assets.insert(new.to_string(), record);
        Ok(())
    }
}

/// Associated data of a sealed token: the state's lineage, the asset and its
/// binding fingerprint. A record copied to another state or asset, or kept
/// while the token-binding fields (and their fingerprint) are edited by hand,
/// no longer opens.
pub fn token_aad(lineage: &Uuid, asset: &str, binding: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + asset.len() + binding.len());
    aad.extend_from_slice(b"mailform token v2\0");
    aad.extend_from_slice(lineage.as_bytes());
    aad.push(0);
    aad.extend_from_slice(asset.as_bytes());
    aad.push(0);
    aad.extend_from_slice(binding.as_bytes());
    aad
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
    /// The last IMAP login proof, when the asset declares IMAP (the same
    /// shape: server, words, hint, unproven).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap_check: Option<SmtpCheck>,
    /// The last reading of Gmail's forwarding settings, when the asset has
    /// a forwarding address and its provider a Gmail API (`ok`: as
    /// configured; else `detail` says what differs, `hint` what to do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding_check: Option<SmtpCheck>,
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
    /// The provider refused the refresh token at a live check (revoked or
    /// expired): drift that stays found offline, and no access token is
    /// handed out, until a refresh or a consent succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// What a live check learned when the provider refused a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub at: DateTime<Utc>,
    /// The provider's `error`, e.g. `invalid_grant`.
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The outcome of the last SMTP login proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpCheck {
    pub at: DateTime<Utc>,
    /// Whether the server accepted the login (`false`: it refused the token).
    pub ok: bool,
    /// `host:port` of the server that answered.
    #[serde(default)]
    pub server: String,
    /// The server's words, e.g. "235 2.7.0 Accepted".
    pub detail: String,
    /// What to do about a refusal, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The login could not be tried to the end (port closed, no STARTTLS,
    /// no XOAUTH2, no answer): never proven, which is drift too. `ok` is
    /// false; `detail` says what happened.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unproven: bool,
    /// The server refused the token as another account's: a new consent
    /// is the fix, and the plan asks for one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconsent: bool,
}

impl AssetRecord {
    /// The record of an asset applied now, its binding fingerprint derived.
    pub fn new(applied: AppliedAsset, token: Option<TokenRecord>, now: DateTime<Utc>) -> Self {
        AssetRecord {
            binding: applied.binding_fingerprint(),
            applied,
            token,
            smtp_check: None,
            imap_check: None,
            forwarding_check: None,
            updated_at: now,
        }
    }
}

impl TokenRecord {
    /// Seals freshly obtained `tokens` with what may be shown of them; `aad`
    /// comes from [`State::token_aad`] for the asset and its binding.
    pub fn new(
        key: &Key,
        aad: &[u8],
        tokens: &Tokens,
        granted_scopes: Vec<String>,
        obtained_at: DateTime<Utc>,
    ) -> Self {
        TokenRecord {
            sealed: tokens.seal(key, aad),
            has_refresh_token: tokens.refresh_token.is_some(),
            granted_scopes,
            obtained_at,
            access_expires_at: None,
            refresh_expires_at: None,
            revoked: None,
        }
    }
}

/// The secret half of a [`TokenRecord`].
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
}

/// The plaintext format inside a sealed record: a version byte, then each
/// token as a big-endian u32 length and its bytes (the refresh token after a
/// presence byte). Binary rather than JSON so every byte a provider may put in
/// a token (quotes, backslashes, control characters) round-trips, and so
/// nothing is unescaped through a scratch buffer that would keep a copy.
const PLAIN_V1: u8 = 1;

impl Tokens {
    /// Encrypts the tokens, bound to `aad` ([`State::token_aad`]).
    pub fn seal(&self, key: &Key, aad: &[u8]) -> Sealed {
        let access = self.access_token.expose().as_bytes();
        let refresh = self.refresh_token.as_ref().map(|r| r.expose().as_bytes());
        let len = 1 + 4 + access.len() + 1 + refresh.map_or(0, |r| 4 + r.len());
        let mut plain = Zeroizing::new(Vec::with_capacity(len));
        plain.push(PLAIN_V1);
        push_field(&mut plain, access);
        match refresh {
            Some(r) => {
                plain.push(1);
                push_field(&mut plain, r);
            }
            None => plain.push(0),
        }
        key.seal(aad, &plain)
    }

    /// Decrypts tokens sealed with `aad`.
    pub fn open(key: &Key, aad: &[u8], sealed: &Sealed) -> Result<Tokens, crypto::CryptoError> {
        use crypto::CryptoError::Malformed;
        let plain = key.open(aad, sealed)?;
        let (version, rest) = plain.split_first().ok_or(Malformed)?;
        if *version != PLAIN_V1 {
            return Err(Malformed);
        }
        let (access, rest) = take_field(rest)?;
        let (refresh, rest) = match rest.split_first() {
            Some((0, rest)) => (None, rest),
            Some((1, rest)) => {
                let (r, rest) = take_field(rest)?;
                (Some(r), rest)
            }
            _ => return Err(Malformed),
        };
        if !rest.is_empty() {
            return Err(Malformed);
        }
        Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
        })
    }
}

fn push_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("a token is shorter than 4 GiB");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// One length-prefixed token, copied once into a buffer of exactly its size
/// (so the `Secret` it becomes is never reallocated).
fn take_field(bytes: &[u8]) -> Result<(Secret, &[u8]), crypto::CryptoError> {
    use crypto::CryptoError::Malformed;
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or(Malformed)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| Malformed)?;
    if rest.len() < len {
        return Err(Malformed);
    }
    let (field, rest) = rest.split_at(len);
    let text = std::str::from_utf8(field).map_err(|_| Malformed)?;
    Ok((Secret::new(text.to_owned()), rest))
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
    /// What the SMTP login trusts besides the web's roots: SHA-256 of the
    /// provider's `ca_file` certificates (`None`: the web's roots only).
    /// Live checks log in only with the trust the last apply used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_trust: Option<String>,
    pub forwarding_address: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// An organisation grant's kind (`client_credentials`,
    /// `service_account`); `None`: a person's consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The IMAP endpoint whose login is proven too (`host:port (security)`);
    /// `None`: none declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap: Option<String>,
    /// Gmail's disposition of forwarded mail, when the config checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding_disposition: Option<String>,
    /// Where live plans read Gmail's forwarding settings (the provider's
    /// `gmail_api_url`, as applied: a token goes nowhere nobody applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmail_api_url: Option<String>,
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
    SmtpTrust,
    ForwardingAddress,
    Labels,
    Grant,
    Imap,
    ForwardingDisposition,
    GmailApiUrl,
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
            Field::SmtpTrust => "ca_file",
            Field::ForwardingAddress => "forwarding_address",
            Field::Labels => "labels",
            Field::Grant => "grant",
            Field::Imap => "imap",
            Field::ForwardingDisposition => "forwarding_disposition",
            Field::GmailApiUrl => "gmail_api_url",
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
            | Field::Scopes
            | Field::Grant => true,
            Field::Email
            | Field::Provider
            | Field::RevocationUrl
            | Field::DeviceAuthorizationUrl
            | Field::RedirectUri
            | Field::AuthParams
            | Field::SmtpHost
            | Field::SmtpPort
            | Field::SmtpSecurity
            | Field::SmtpTrust
            | Field::ForwardingAddress
            | Field::Labels
            | Field::Imap
            | Field::ForwardingDisposition
            | Field::GmailApiUrl => false,
        }
    }

    /// Whether the field is part of where the SMTP login goes (server,
    /// port, security, trust): a token is shown there only after apply.
    pub fn is_smtp_endpoint(self) -> bool {
        matches!(
            self,
            Field::SmtpHost | Field::SmtpPort | Field::SmtpSecurity | Field::SmtpTrust
        )
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
    pub fn fields(&self) -> [(Field, Option<FieldValue<'_>>); 21] {
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
            smtp_trust,
            forwarding_address,
            labels,
            grant,
            imap,
            forwarding_disposition,
            gmail_api_url,
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
            (Field::SmtpTrust, opt(smtp_trust.as_ref())),
            (Field::ForwardingAddress, opt(forwarding_address.as_ref())),
            (Field::Labels, map(labels)),
            (Field::Grant, opt(grant.as_ref())),
            (Field::Imap, opt(imap.as_ref())),
            (
                Field::ForwardingDisposition,
                opt(forwarding_disposition.as_ref()),
            ),
            (Field::GmailApiUrl, opt(gmail_api_url.as_ref())),
        ]
    }

    /// The IMAP endpoint applied (host, port, security), read back from
    /// its `host:port (security)` record.
    pub fn imap_endpoint(&self) -> Option<(String, u16, Security)> {
        parse_imap(self.imap.as_deref()?)
    }

    /// A hash of the token-binding fields ([`Field::binds_tokens`]).
    pub fn binding_fingerprint(&self) -> String {
        fingerprint(&self.fields())
    }
}

/// [`AppliedAsset::binding_fingerprint`] of fields already listed: SHA-256
/// of the JSON list of `[field, value]` pairs whose field binds tokens.
/// An IMAP endpoint as [`AppliedAsset::imap`] records it:
/// `host:port (security)` (one field, shown whole in plans).
pub fn imap_record(host: &str, port: u16, security: Security) -> String {
    format!("{} ({security})", crate::security::server_name(host, port))
}

/// [`imap_record`]'s text, read back.
fn parse_imap(text: &str) -> Option<(String, u16, Security)> {
    let (server, security) = text.rsplit_once(" (")?;
    let security = match security.strip_suffix(')')? {
        "tls" => Security::Tls,
        "starttls" => Security::Starttls,
        _ => return None,
    };
    let (host, port) = server.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?, security))
}

pub fn fingerprint(fields: &[(Field, Option<FieldValue<'_>>)]) -> String {
    // Unset binding fields are left out, so a field added later (unset in
    // every older state) keeps the fingerprints, and the tokens sealed with
    // them, as they were.
    let binding: Vec<&(Field, Option<FieldValue<'_>>)> = fields
        .iter()
        .filter(|(f, v)| f.binds_tokens() && v.is_some())
        .collect();
    let json = serde_json::to_vec(&binding).expect("fields serialize");
    crate::digest::sha256_hex(&json)
}

/// Parses state text, refusing what this mailform cannot read faithfully.
///
/// One parse on the happy path; only a file that does not parse as a state
/// is parsed again, for its format version, to say why.
pub fn parse_state(path: &std::path::Path, text: &[u8]) -> Result<State, crate::error::Error> {
    #[derive(serde::Deserialize)]
    struct Probe {
        format_version: Option<u64>,
    }
    let corrupt = |why: String| crate::error::Error::StateCorrupt {
        path: path.to_path_buf(),
        why,
    };
    let version = |v: u64| match v {
        0 => Err(corrupt(
            "format_version 0 is not a mailform state format".into(),
        )),
        v if v > u64::from(STATE_FORMAT_VERSION) => Err(crate::error::Error::StateTooNew {
            path: path.to_path_buf(),
            found: v,
            supported: STATE_FORMAT_VERSION,
        }),
        _ => Ok(()),
    };
    match serde_json::from_slice::<State>(text) {
        Ok(state) => {
            version(u64::from(state.format_version))?;
            if let Some(why) = state.inconsistency() {
                return Err(corrupt(why));
            }
            Ok(state)
        }
        Err(e) => {
            match serde_json::from_slice::<Probe>(text).map(|p| p.format_version) {
                Ok(Some(v)) => version(v)?,
                Ok(None) => return Err(corrupt("it has no format_version".into())),
                Err(_) => {}
            }
            Err(corrupt(e.to_string()))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
            smtp_trust: None,
            forwarding_address: None,
            labels: BTreeMap::new(),
            grant: None,
            imap: None,
            forwarding_disposition: None,
            gmail_api_url: None,
        }
    }

    #[test]
    fn the_applied_imap_endpoint_reads_back_as_recorded() {
        assert_eq!(
            parse_imap("imap.gmail.com:993 (tls)"),
            Some(("imap.gmail.com".into(), 993, Security::Tls))
        );
        assert_eq!(
            parse_imap("[::1]:143 (starttls)"),
            Some(("::1".into(), 143, Security::Starttls))
        );
        for bad in ["", "imap.gmail.com:993", "x:99999 (tls)", "x:1 (plain)"] {
            assert_eq!(parse_imap(bad), None, "{bad}");
        }
        for (host, port, security) in [
            ("::1", 143, Security::Starttls),
            ("a.example", 993, Security::Tls),
        ] {
            assert_eq!(
                parse_imap(&imap_record(host, port, security)),
                Some((host.to_string(), port, security))
            );
        }
    }

    /// The binding fingerprint of a person's grant is what it was before
    /// the organisation grants and IMAP added fields (pinned from the
    /// mailform of commit 5098598): the tokens sealed with it still open.
    #[test]
    fn a_consent_grants_fingerprint_is_unchanged_by_new_fields() {
        assert_eq!(
            applied().binding_fingerprint(),
            "c2ffd365c173473f590b41281a31031248142cd792d6fe8c93040b5406e76cc7"
        );
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
        let state = State::new();
        let aad = state.token_aad("support", "binding");
        let sealed = t.seal(&key, &aad);
        let back = Tokens::open(&key, &aad, &sealed).unwrap();
        assert_eq!(back.access_token.expose(), "at");
        assert_eq!(back.refresh_token.unwrap().expose(), "rt");
    }

    #[test]
    fn reseal_moves_every_token_to_the_new_key_or_changes_nothing() {
        let (old, _) = Key::generate();
        let (new, _) = Key::generate();
        let mut state = State::new();
        let t = Tokens {
            access_token: Secret::new("at"),
            refresh_token: None,
        };
        state.insert_applied("support", applied(), Some((&old, &t, vec![])), Utc::now());
        let (stranger, _) = Key::generate();
        assert!(state.reseal(&stranger, &new).is_err());
        assert_eq!(state.key_id.as_deref(), Some(old.id()));
        assert!(state.open_tokens(&old, "support").unwrap().is_ok());
        assert_eq!(state.reseal(&old, &new), Ok(1));
        assert_eq!(state.key_id.as_deref(), Some(new.id()));
        let back = state.open_tokens(&new, "support").unwrap().unwrap();
        assert_eq!(back.access_token.expose(), "at");
        assert!(state.open_tokens(&old, "support").unwrap().is_err());
    }

    #[test]
    fn a_token_opens_only_where_it_was_sealed() {
        let (key, _) = Key::generate();
        let t = Tokens {
            access_token: Secret::new("at"),
            refresh_token: None,
        };
        let state = State::new();
        let sealed = t.seal(&key, &state.token_aad("support", "b1"));
        for aad in [
            state.token_aad("billing", "b1"),
            state.token_aad("support", "b2"),
            State::new().token_aad("support", "b1"),
        ] {
            assert_eq!(
                Tokens::open(&key, &aad, &sealed).unwrap_err(),
                crypto::CryptoError::Open
            );
        }
        let back = Tokens::open(&key, &state.token_aad("support", "b1"), &sealed).unwrap();
        assert!(back.refresh_token.is_none());
    }

    #[test]
    fn tokens_require_a_key_id() {
        let mut state = State::new();
        state.assets.insert(
            "support".into(),
            AssetRecord::new(
                applied(),
                Some(TokenRecord {
                    sealed: Sealed {
                        nonce: String::new(),
                        ciphertext: String::new(),
                    },
                    has_refresh_token: false,
                    granted_scopes: Vec::new(),
                    obtained_at: Utc::now(),
                    access_expires_at: None,
                    refresh_expires_at: None,
                    revoked: None,
                }),
                Utc::now(),
            ),
        );
        assert!(state.inconsistency().unwrap().contains("no key_id"));
        state.key_id = Some("k".into());
        assert_eq!(state.inconsistency(), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

        /// Every string a provider may send round-trips: quotes, backslashes,
        /// control characters, any Unicode, and Microsoft-sized lengths.
        #[test]
        fn every_token_round_trips(
            access in proptest::string::string_regex("(?s).{0,64}").unwrap(),
            refresh in proptest::option::of(proptest::string::string_regex("[\\x00-\\x7f\"\\\\]{0,4096}").unwrap()),
            long in 0usize..3,
        ) {
            let (key, _) = Key::generate();
            let access = format!("{access}{}", "\"\\\u{1}é".repeat(long * 700));
            let t = Tokens {
                access_token: Secret::new(access.clone()),
                refresh_token: refresh.clone().map(Secret::new),
            };
            let aad = State::new().token_aad("support", "b");
            let back = Tokens::open(&key, &aad, &t.seal(&key, &aad)).unwrap();
            proptest::prop_assert_eq!(back.access_token.expose(), access.as_str());
            proptest::prop_assert_eq!(back.refresh_token.map(|r| r.expose().to_string()), refresh);
        }
    }
}
