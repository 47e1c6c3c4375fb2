//! The shape of `assets.toml` exactly as written: serde types with spans kept.
//!
//! These types are strict (`deny_unknown_fields`) and carry `Spanned` values
//! wherever a later check needs to point at the text. They are also the source
//! of `schemas/assets.schema.json`, so a field added here shows up in editors.
//! Nothing here applies defaults or presets; `resolve` does that.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_spanned::Spanned;

pub use crate::security::Security;

/// Network steps at once, unless set.
pub const DEFAULT_PARALLELISM: u32 = 10;

/// A duration such as `30s`, `2m` or `1h 30m`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, humantime::DurationError> {
    match text.trim().parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text),
    }
}

/// The rules the tool's settings meet, wherever a value comes from (the
/// file's `[settings]`, `MAILFORM_*`, a flag): the one check, each caller
/// framing the reason with where the value came from.
pub mod rules {
    use std::time::Duration;

    /// Network steps at once: at least one.
    pub fn parallelism(n: u32) -> Result<u32, String> {
        if n == 0 {
            Err("must be at least 1".into())
        } else {
            Ok(n)
        }
    }

    /// How long to wait for the state lock: any duration (0: do not wait).
    pub fn lock_timeout(text: &str) -> Result<Duration, String> {
        super::parse_duration(text).map_err(|e| format!("is not a duration: {e}"))
    }

    /// The bound on each SMTP step: a duration above zero.
    pub fn smtp_timeout(text: &str) -> Result<Duration, String> {
        super::parse_duration(text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "is not a duration above zero".to_string())
    }
}

/// The current and only config format version.
pub const CONFIG_VERSION: i64 = 1;

/// Desired state of mailform's email assets (`assets.toml`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mailform assets.toml")]
pub struct RawConfig {
    /// Config format version; must be 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: i64,
    /// The tool's own settings (overridden by `MAILFORM_*` variables and flags).
    #[serde(default)]
    pub settings: RawSettings,
    /// Where state is kept.
    #[serde(default)]
    pub state: RawStateConfig,
    /// OAuth 2.0 providers: built-in presets (`google`, `microsoft`) or custom ones.
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// Email assets: the table key is the asset's name.
    #[serde(default)]
    pub assets: BTreeMap<String, RawAsset>,
}

/// How consent is obtained when tokens are needed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Listen on the redirect URI's loopback port and open a browser (RFC 8252).
    Loopback,
    /// Print the URL, read the pasted redirect URL.
    Manual,
    /// Device authorization grant (RFC 8628).
    Device,
    /// Never ask a person; fail with a clear message.
    Never,
}

/// When to colour human output.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// `[settings]`: defaults for the tool; `MAILFORM_*` variables and flags win.
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Network steps run at once during plan and apply (default 10).
    #[schemars(range(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Consent mode (default: loopback on a terminal, never otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentMode>,
    /// How long to wait for the state lock, e.g. "30s" or "2m"; a bare number is seconds (default "0s").
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_text_or_seconds"
    )]
    #[schemars(with = "Option<DurationSchema>")]
    pub lock_timeout: Option<String>,
    /// How long each SMTP step (connect, greeting, TLS, each command) may take, e.g. "20s" (default "20s").
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_text_or_seconds"
    )]
    #[schemars(with = "Option<DurationSchema>")]
    pub smtp_timeout: Option<String>,
    /// Colour for human output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorChoice>,
}

/// Only for the schema: a duration is text or a number of seconds.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // reason: exists only to describe the schema
enum DurationSchema {
    /// e.g. "30s", "2m", "1h 30m".
    Text(String),
    /// Seconds.
    Seconds(u64),
}

/// A duration written as text or as a number of seconds, kept as text.
pub fn text_or_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(u64),
    }
    match TextOrNumber::deserialize(deserializer) {
        Ok(TextOrNumber::Text(t)) => Ok(t),
        Ok(TextOrNumber::Number(n)) => Ok(n.to_string()),
        Err(_) => Err(de::Error::custom(
            "expected a duration such as \"30s\" or \"2m\", or a number of seconds",
        )),
    }
}

fn optional_text_or_seconds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    text_or_seconds(deserializer).map(Some)
}

/// The state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A JSON file beside the config (`.mailform/state.json`).
    #[default]
    File,
    /// A PostgreSQL database shared by a team: one row per state `name`.
    Postgres,
}

/// `[state]`: where state lives.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStateConfig {
    /// Backend kind: "file" (default) or "postgres".
    #[serde(default)]
    pub backend: Backend,
    /// State file path, relative to the config file's folder (default `.mailform/state.json`); file backend only.
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// postgres: the connection URL, `postgres://ROLE:PASSWORD@HOST:5432/DB?sslmode=verify-full`; from the environment or a file (a literal URL may not hold a password).
    #[schemars(with = "Option<UrlRefSchema>")]
    pub url: Option<Spanned<RawUrl>>,
    /// postgres: the state's name in the database (several configs may share one database; default "default").
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// postgres: the schema mailform keeps its tables in (default "mailform").
    #[schemars(with = "Option<String>")]
    pub schema: Option<Spanned<String>>,
    /// postgres: PEM certificates trusted besides the web's roots (a private CA), relative to assets.toml.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
}

/// `state.url`: written in the config (no password), or kept outside it.
#[derive(Debug, Clone)]
pub enum RawUrl {
    /// Written in the config; refused when it holds a password. A
    /// [`Secret`](crate::secret::Secret), so `Debug` cannot show it.
    Literal(crate::secret::Secret),
    /// `{ env = "NAME" }`
    Env(String),
    /// `{ file = "path" }`, relative to the config file's folder.
    File(String),
}

/// Only for the schema: the forms `state.url` takes.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // reason: exists only to describe the schema
enum UrlRefSchema {
    /// The URL itself, without a password.
    Literal(String),
    /// Read the URL from this environment variable.
    Env { env: String },
    /// Read the URL from this file (relative to assets.toml), trimmed.
    File { file: String },
}

impl<'de> Deserialize<'de> for RawUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UrlVisitor;

        impl<'de> Visitor<'de> for UrlVisitor {
            type Value = RawUrl;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a URL, or where to read it: { env = "NAME" } or { file = "path" }"#)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawUrl, E> {
                Ok(RawUrl::Literal(crate::secret::Secret::new(value)))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawUrl, A::Error> {
                match RawSecret::deserialize(de::value::MapAccessDeserializer::new(map))? {
                    RawSecret::Env(v) => Ok(RawUrl::Env(v)),
                    RawSecret::File(f) => Ok(RawUrl::File(f)),
                    RawSecret::Literal => Err(de::Error::custom(
                        "expected { env = \"NAME\" } or { file = \"path\" }",
                    )),
                }
            }
        }

        deserializer.deserialize_any(UrlVisitor)
    }
}

/// A reference to a secret kept outside `assets.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSecret {
    /// Written literally in the config: always refused.
    Literal,
    /// `{ env = "NAME" }`
    Env(String),
    /// `{ file = "path" }`, relative to the config file's folder.
    File(String),
}

/// Only for the schema: the forms of secret reference that are accepted.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // reason: exists only to describe the schema
enum SecretRefSchema {
    /// Read the secret from this environment variable.
    Env { env: String },
    /// Read the secret from this file (relative to assets.toml), trimmed.
    File { file: String },
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = RawSecret;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a secret reference: { env = "NAME" } or { file = "path" }"#)
            }

            // A literal of any type is dropped here, so its value never
            // reaches an error message.
            fn visit_str<E: de::Error>(self, _value: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal)
            }

            fn visit_i64<E: de::Error>(self, _value: i64) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal)
            }

            fn visit_u64<E: de::Error>(self, _value: u64) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal)
            }

            fn visit_f64<E: de::Error>(self, _value: f64) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        r#"empty secret reference: use { env = "NAME" } or { file = "path" }"#,
                    ));
                };
                let secret = match key.as_str() {
                    "env" => RawSecret::Env(map.next_value()?),
                    "file" => RawSecret::File(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a secret reference takes one key, `env` or `file`; `{extra}` is one too many"
                    )));
                }
                Ok(secret)
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}

fn in_production_alias(schema: &mut schemars::Schema) {
    crate::security::with_alias(schema, "in_production", "production");
}

/// SMTP submission endpoint; every field falls back to the provider's.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// SMTP server host name.
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// SMTP submission port, normally 587 (STARTTLS) or 465 (TLS).
    #[schemars(with = "Option<u16>")]
    pub port: Option<Spanned<i64>>,
    /// "starttls" or "tls" (alias "ssl").
    #[schemars(with = "Option<Security>")]
    pub security: Option<Spanned<Security>>,
}

/// `imap`: `true` (the preset's IMAP endpoint, or the provider's), `false`
/// (none), or `{ host, port, security }` (over the preset's or the
/// provider's).
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum RawImap {
    On(bool),
    Endpoint(RawSmtp),
}

impl<'de> Deserialize<'de> for RawImap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ImapVisitor;

        impl<'de> Visitor<'de> for ImapVisitor {
            type Value = RawImap;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"true, false, or { host = "…", port = 993, security = "tls" }"#)
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<RawImap, E> {
                Ok(RawImap::On(value))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawImap, A::Error> {
                RawSmtp::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawImap::Endpoint)
            }
        }

        deserializer.deserialize_any(ImapVisitor)
    }
}

/// Gmail's `disposition` of a forwarded message (the Gmail API's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Disposition {
    LeaveInInbox,
    Archive,
    Trash,
    MarkRead,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::LeaveInInbox => "leaveInInbox",
            Disposition::Archive => "archive",
            Disposition::Trash => "trash",
            Disposition::MarkRead => "markRead",
        }
    }
}

/// Google Cloud console app type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserType {
    Internal,
    External,
}

/// Google Cloud console publishing status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = in_production_alias)]
pub enum PublishingStatus {
    Testing,
    #[serde(alias = "in_production")]
    Production,
}

/// `[providers.NAME.console]`: what was set up by hand in the provider's console.
/// Never applied; only checked by lints.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    #[schemars(with = "Option<UserType>")]
    pub user_type: Option<Spanned<UserType>>,
    #[schemars(with = "Option<PublishingStatus>")]
    pub publishing_status: Option<Spanned<PublishingStatus>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub authorized_domains: Option<Spanned<Vec<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub test_users: Option<Spanned<Vec<String>>>,
}

/// `[providers.NAME]`: an OAuth 2.0 provider. `google` and `microsoft` are presets
/// whose fields may be overridden; any other name is custom unless `preset` says so.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Start from this built-in preset ("google" or "microsoft").
    #[schemars(with = "Option<String>")]
    pub preset: Option<Spanned<String>>,
    /// OAuth client id.
    #[schemars(with = "Option<String>")]
    pub client_id: Option<Spanned<String>>,
    /// OAuth client secret, by reference; a literal is refused.
    #[schemars(with = "Option<SecretRefSchema>")]
    pub client_secret: Option<Spanned<RawSecret>>,
    /// Google's downloaded client JSON ("installed" or "web"), relative to assets.toml.
    #[schemars(with = "Option<String>")]
    pub credentials_file: Option<Spanned<String>>,
    /// Where the provider sends the user back after consent.
    #[schemars(with = "Option<String>")]
    pub redirect_uri: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub authorization_url: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub token_url: Option<Spanned<String>>,
    /// RFC 7009 revocation endpoint.
    #[schemars(with = "Option<String>")]
    pub revocation_url: Option<Spanned<String>>,
    /// RFC 8628 device authorization endpoint.
    #[schemars(with = "Option<String>")]
    pub device_authorization_url: Option<Spanned<String>>,
    /// Scopes every asset of this provider asks for.
    #[schemars(with = "Option<Vec<String>>")]
    pub scopes: Option<Spanned<Vec<String>>>,
    /// Extra authorization request parameters (Google: `access_type`, prompt).
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub auth_params: Option<Spanned<BTreeMap<String, String>>>,
    /// Microsoft tenant id or domain ("organizations", "common", or a GUID).
    #[schemars(with = "Option<String>")]
    pub tenant: Option<Spanned<String>>,
    /// SMTP submission endpoint for this provider's mailboxes.
    pub smtp: Option<RawSmtp>,
    /// IMAP endpoint whose XOAUTH2 login is proven too: `true` (the
    /// preset's), or `{ host, port, security }`.
    pub imap: Option<RawImap>,
    /// Extra trusted root certificate (PEM), relative to assets.toml.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
    /// The Gmail API's base URL, where live plans read an asset's
    /// forwarding settings (the google preset: `https://gmail.googleapis.com`).
    #[schemars(with = "Option<String>")]
    pub gmail_api_url: Option<Spanned<String>>,
    /// What was configured by hand in the provider's console.
    pub console: Option<RawConsole>,
    /// How its mailboxes are granted: `consent` (a person signs in; the
    /// default), `client_credentials` (Microsoft 365 app-only) or
    /// `service_account` (Google Workspace domain-wide delegation).
    #[schemars(with = "Option<GrantKind>")]
    pub grant: Option<Spanned<GrantKind>>,
    /// Google's downloaded service-account key (JSON), relative to
    /// assets.toml: for `grant = "service_account"`.
    #[schemars(with = "Option<String>")]
    pub service_account_file: Option<Spanned<String>>,
    /// A certificate and its private key (PEM), `{ file = "path" }`: the
    /// client's credential for `grant = "client_credentials"` instead of a
    /// client secret (RFC 7523 client assertion).
    #[schemars(with = "Option<SecretRefSchema>")]
    pub client_certificate: Option<Spanned<RawSecret>>,
}

/// How a provider's mailboxes are granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// A person signs in and consents (authorization code or device flow).
    #[default]
    Consent,
    /// The app's own credentials (Microsoft 365 `SMTP.SendAsApp`): no person.
    ClientCredentials,
    /// A Google Workspace service account with domain-wide delegation
    /// (RFC 7523 JWT bearer): no person.
    ServiceAccount,
}

impl GrantKind {
    /// Whether no person consents: the app asks for its own tokens.
    pub fn is_organisation(self) -> bool {
        !matches!(self, GrantKind::Consent)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Consent => "consent",
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::ServiceAccount => "service_account",
        }
    }
}

/// `[assets.NAME]`: one mailbox.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAsset {
    /// The mailbox address.
    #[schemars(with = "String")]
    pub email: Spanned<String>,
    /// Name of a `[providers.*]` table.
    #[schemars(with = "String")]
    pub provider: Spanned<String>,
    /// SMTP login name (default: email).
    #[schemars(with = "Option<String>")]
    pub username: Option<Spanned<String>>,
    /// Scopes (default: the provider's).
    #[schemars(with = "Option<Vec<String>>")]
    pub scopes: Option<Spanned<Vec<String>>>,
    /// SMTP endpoint overrides (default: the provider's).
    pub smtp: Option<RawSmtp>,
    /// IMAP login to prove: `true` (the provider's or preset's endpoint),
    /// `false`, or `{ host, port, security }` (default: the provider's).
    pub imap: Option<RawImap>,
    /// Informational forwarding address, e.g. for a contact-center inbox.
    #[schemars(with = "Option<String>")]
    pub forwarding_address: Option<Spanned<String>>,
    /// What Gmail does with a message it forwarded: "leaveInInbox",
    /// "archive", "trash" or "markRead" (checked when given).
    #[schemars(with = "Option<Disposition>")]
    pub forwarding_disposition: Option<Spanned<Disposition>>,
    /// The account that consents for this mailbox, when it is not the
    /// mailbox itself: a delegate with access to a shared mailbox (default:
    /// username). A grant given by anyone else is revoked, never stored.
    #[schemars(with = "Option<String>")]
    pub consent_as: Option<Spanned<String>>,
    /// Free-form labels.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub labels: Option<Spanned<BTreeMap<String, String>>>,
}
