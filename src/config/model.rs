//! The resolved config: presets applied, defaults filled, every value checked.
//!
//! A [`Config`] is what the rest of mailform works with. It holds no secret
//! values except a client secret read from a `credentials_file`, which is kept
//! in a [`Secret`]. Spans are kept so lints can point at the text.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use url::Url;

use super::presets::Preset;
use super::raw::{PublishingStatus, RawSettings, Security, UserType};
use crate::error::Error;
use crate::secret::Secret;

pub type Span = Option<Range<usize>>;

/// The whole resolved `assets.toml`.
#[derive(Debug)]
pub struct Config {
    /// The config file as named on the command line.
    pub path: PathBuf,
    /// The folder relative paths in the config are resolved against.
    pub dir: PathBuf,
    pub settings: RawSettings,
    pub state: StateConfig,
    pub providers: BTreeMap<String, Provider>,
    pub assets: BTreeMap<String, Asset>,
    /// SHA-256 of the config file's bytes, recorded in saved plans.
    pub digest: String,
    /// The file's text, for diagnostics found after loading (e.g. secrets).
    pub source: String,
}

/// Where state lives, resolved.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// The state file; the lock and key live beside it. With the postgres
    /// backend only its folder is used (the key file, unless `MAILFORM_KEY`).
    pub path: PathBuf,
    /// `backend = "postgres"`: where the database is.
    pub postgres: Option<PostgresState>,
}

/// The postgres backend's settings, resolved.
#[derive(Debug, Clone)]
pub struct PostgresState {
    pub url: UrlSource,
    /// The state's row (several configs may share a database).
    pub name: String,
    /// The schema mailform's tables live in (a plain identifier).
    pub schema: String,
    pub ca_file: Option<PathBuf>,
}

/// Where the connection URL comes from.
#[derive(Debug, Clone)]
pub enum UrlSource {
    /// Written in the config, without a password.
    Literal(crate::secret::Secret),
    Env(String),
    File(PathBuf),
}

impl PostgresState {
    /// Reads and parses the URL (at run time: the variable or file may have
    /// changed since validate), naming its source on failure, never its text.
    pub fn url(&self) -> Result<super::state_url::StateUrl, Error> {
        let (text, from) = match &self.url {
            UrlSource::Literal(s) => (
                zeroize::Zeroizing::new(s.expose().to_string()),
                "state.url".to_string(),
            ),
            UrlSource::Env(var) => {
                let from = format!("state.url (environment variable {var})");
                match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => (zeroize::Zeroizing::new(v), from),
                    Ok(_) => {
                        return Err(Error::Usage(format!(
                            "state.url: environment variable {var} is set but empty (a CI secret that is not defined?)"
                        )));
                    }
                    Err(_) => {
                        return Err(Error::Usage(format!(
                            "state.url: environment variable {var} is not set: export {var}=postgres://ROLE:PASSWORD@HOST:5432/DATABASE?sslmode=verify-full"
                        )));
                    }
                }
            }
            UrlSource::File(path) => {
                let from = format!("state.url (file {})", path.display());
                let text = crate::files::read_secret_file(path)
                    .map_err(|e| Error::Usage(format!("{from}: cannot read it: {e}")))?;
                (zeroize::Zeroizing::new(text.trim().to_string()), from)
            }
        };
        let mut url =
            super::state_url::parse(&text).map_err(|why| Error::Usage(format!("{from}: {why}")))?;
        // Without a password in the URL, libpq's variable gives it.
        if url.password.is_none()
            && let Some(p) = std::env::var_os("PGPASSWORD").and_then(|p| p.into_string().ok())
        {
            url.password = Some(Secret::new(p));
        }
        Ok(url)
    }
}

/// Where a client secret comes from.
#[derive(Debug)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    /// Read from Google's client JSON at load time.
    CredentialsFile {
        path: PathBuf,
        secret: Secret,
    },
}

/// A mail server endpoint: SMTP submission, or IMAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEndpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub port_span: Span,
    pub security_span: Span,
}

/// `[providers.NAME.console]`, resolved.
#[derive(Debug, Clone, Default)]
pub struct Console {
    pub user_type: Option<UserType>,
    pub publishing_status: Option<PublishingStatus>,
    pub publishing_status_span: Span,
    pub authorized_domains: Vec<String>,
    pub authorized_domains_span: Span,
    pub test_users: Vec<String>,
    pub test_users_span: Span,
}

/// An OAuth 2.0 provider with every endpoint known.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub preset: Option<Preset>,
    pub client_id: String,
    pub client_secret: Option<SecretSource>,
    pub redirect_uri: Option<Url>,
    pub authorization_url: Url,
    pub token_url: Url,
    pub revocation_url: Option<Url>,
    pub device_authorization_url: Option<Url>,
    pub scopes: Vec<String>,
    pub auth_params: BTreeMap<String, String>,
    pub smtp: SmtpEndpoint,
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of `ca_file`'s certificates: the trust an apply records.
    pub ca_digest: Option<String>,
    pub console: Option<Console>,
    /// The Gmail API, where live plans read forwarding settings.
    pub gmail_api_url: Option<Url>,
    /// The IMAP endpoint its assets prove (`imap = true` or a table).
    pub imap: Option<SmtpEndpoint>,
    /// The IMAP endpoint an asset's `imap = true` means: the provider's,
    /// else the preset's.
    pub imap_base: Option<SmtpEndpoint>,
    /// How its mailboxes are granted (a person's consent, or the app's own).
    pub grant: super::raw::GrantKind,
    /// The service account of `grant = "service_account"`, read at load.
    pub service_account: Option<ServiceAccount>,
    /// The certificate (PEM, with its key) of `grant = "client_credentials"`
    /// when it stands in for the client secret.
    pub client_certificate: Option<PathBuf>,
    /// The `[providers.NAME]` header.
    pub span: Span,
    pub redirect_uri_span: Span,
    pub scopes_span: Span,
    pub client_secret_span: Span,
}

/// A Google service account, from its downloaded key file. The private key
/// never leaves this struct but to sign an assertion.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    /// The key file, as read.
    pub path: PathBuf,
    /// Its address: the assertion's `iss`.
    pub client_email: String,
    /// The key's id: the assertion's `kid`.
    pub private_key_id: Option<String>,
    /// The RSA private key (PEM).
    pub private_key: Secret,
}

/// One mailbox, with the provider's defaults applied.
#[derive(Debug, Clone)]
pub struct Asset {
    pub name: String,
    pub email: String,
    pub username: String,
    pub provider: String,
    pub scopes: Vec<String>,
    pub smtp: SmtpEndpoint,
    /// The IMAP endpoint whose login is proven too, when declared.
    pub imap: Option<SmtpEndpoint>,
    pub forwarding_address: Option<String>,
    /// Gmail's disposition of forwarded mail, when the config checks it.
    pub forwarding_disposition: Option<super::raw::Disposition>,
    /// A delegate who consents for the mailbox (`None`: the username does).
    pub consent_as: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub email_span: Span,
    pub scopes_span: Span,
    /// The asset's own `smtp.security` or `smtp.port`, when it sets one
    /// (otherwise the provider's apply).
    pub smtp_own_span: Span,
}

impl Asset {
    /// The account that must consent: `consent_as`, else the SMTP login
    /// name. Also the `login_hint` of its consent links.
    pub fn consenter(&self) -> &str {
        self.consent_as.as_deref().unwrap_or(&self.username)
    }
}

impl Config {
    /// The provider an asset names; resolution guarantees it exists.
    pub fn provider_of(&self, asset: &Asset) -> &Provider {
        &self.providers[&asset.provider]
    }

    /// The folder that holds state, lock and key (`.mailform/` by default).
    pub fn state_dir(&self) -> PathBuf {
        self.state
            .path
            .parent()
            .map_or_else(|| self.dir.clone(), std::path::Path::to_path_buf)
    }
}
