//! The provider's token endpoint: refresh (with rotation) and RFC 7009
//! revocation, with every failure classified for the planner and the
//! operator.
//!
//! Requests go through `oauth2` over a transport of our own ([`Transport`]):
//! reqwest 0.12 on rustls (ring), the web's roots plus the provider's
//! `ca_file`, no redirects followed, a timeout on every request. Owning the
//! transport is what lets mailform tell a revoked grant from a provider that
//! hiccupped: 408, 429 and 5xx answers, timeouts and connection errors are
//! [`OAuthError::Transient`] (retried with bounded backoff, never drift);
//! `invalid_grant` is [`OAuthError::Revoked`]; `invalid_client` and
//! `unauthorized_client` are [`OAuthError::Config`], naming the provider.
//!
//! Secrets (client secret, tokens) travel in [`Secret`]s and appear in no
//! error, message or `Debug` output; the provider's `error_description` does.

pub mod app;
mod body;
mod error;
pub mod identity;
pub mod loopback;
pub mod transport;

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointNotSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, Scope, StandardDeviceAuthorizationResponse, StandardRevocableToken,
    StandardTokenResponse, TokenResponse as _, TokenUrl,
};

pub use error::OAuthError;
pub use identity::Identity;
use transport::Transport;

/// The ID token a token response may carry (OIDC Core §3.1.3.3),
/// beside RFC 6749's fields. Read once for the account it names, never kept.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl std::fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenField([redacted])")
    }
}

impl oauth2::ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// `oauth2`'s basic client, reading the ID token too.
type OAuthClient<
    HasAuthUrl = EndpointNotSet,
    HasDeviceAuthUrl = EndpointNotSet,
    HasIntrospectionUrl = EndpointNotSet,
    HasRevocationUrl = EndpointNotSet,
    HasTokenUrl = EndpointNotSet,
> = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuthUrl,
    HasDeviceAuthUrl,
    HasIntrospectionUrl,
    HasRevocationUrl,
    HasTokenUrl,
>;

/// Scopes a preset's consent asks for beside the mail scopes, so that the
/// answer names the account that consented. Not required of the grant: a
/// grant made before mailform asked for them keeps working.
const IDENTITY_SCOPES: [&str; 2] = ["openid", "email"];

use crate::config::Provider;
use crate::config::presets::Preset;
use crate::secret::Secret;

/// The device flow's polling interval is honoured within these bounds
/// (RFC 8628 §3.5): a provider that says 0 is not polled in a loop, and one
/// that says a day is still polled within the consent's wait.
const DEVICE_INTERVAL_MIN: Duration = Duration::from_secs(1);
const DEVICE_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// Attempts of a request that fails for a passing reason.
const ATTEMPTS: u32 = 3;

/// The first wait before a retry; each further wait doubles it.
const BACKOFF: Duration = Duration::from_millis(250);

/// What the token endpoint granted.
#[derive(Debug)]
pub struct Grant {
    pub access_token: Secret,
    /// A new refresh token when the provider rotated it: the old one is dead
    /// and this one must be stored at once.
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<Duration>,
    /// The scopes granted, when the provider says (RFC 6749 §5.1).
    pub scopes: Option<Vec<String>>,
    /// Who consented, from the ID token: `None` when the answer had none,
    /// `Some(Err)` when it had one that is not this provider's, for this
    /// client, now.
    pub identity: Option<Result<Identity, String>>,
}

/// Whose a new grant is, from its ID token, against the account that
/// should have given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// The expected account's.
    Expected,
    /// Another account's: its address, escaped for showing.
    Other(String),
    /// The answer carried an ID token this provider cannot have issued
    /// for this client now: why.
    Untrustworthy(String),
    /// No ID token, or one without an address: something else must tell.
    Unknown,
}

/// How a stored grant gets a new access token: a person's grant with its
/// refresh token, an organisation grant by asking again for the mailbox.
#[derive(Debug, Clone)]
pub enum Renewal {
    Refresh(Secret),
    App {
        mailbox: String,
        scopes: Vec<String>,
    },
}

impl Renewal {
    /// How `asset`'s grant is renewed: by its provider's organisation grant,
    /// else with `refresh` (`None`: it cannot be, without a person).
    pub fn of(
        provider: &Provider,
        asset: &crate::config::Asset,
        refresh: Option<Secret>,
    ) -> Option<Self> {
        if provider.grant.is_organisation() {
            Some(Renewal::App {
                mailbox: asset.username.clone(),
                scopes: asset.scopes.clone(),
            })
        } else {
            refresh.map(Renewal::Refresh)
        }
    }

    /// The refresh token it renews with, if any (kept when not rotated).
    pub fn refresh_token(&self) -> Option<&Secret> {
        match self {
            Renewal::Refresh(r) => Some(r),
            Renewal::App { .. } => None,
        }
    }
}

/// Provider clients, made once per provider and shared by its assets.
#[derive(Debug, Default)]
pub struct Clients(std::collections::BTreeMap<String, std::sync::Arc<ProviderClient>>);

impl Clients {
    /// `provider`'s client, made (its secret read) on first use.
    pub fn get(
        &mut self,
        provider: &Provider,
    ) -> Result<std::sync::Arc<ProviderClient>, OAuthError> {
        if let Some(c) = self.0.get(&provider.name) {
            return Ok(std::sync::Arc::clone(c));
        }
        let secret = provider.client_secret().map_err(|e| OAuthError::Setup {
            provider: provider.name.clone(),
            what: "client_secret",
            why: e.to_string(),
        })?;
        let client = std::sync::Arc::new(ProviderClient::new(provider, secret)?);
        self.0
            .insert(provider.name.clone(), std::sync::Arc::clone(&client));
        Ok(client)
    }
}

impl Grant {
    /// The tokens to store: a new refresh token when the provider rotated
    /// it (or issued one), else `old`, the one the grant was refreshed with.
    pub fn into_tokens(self, old: Option<Secret>) -> crate::state::Tokens {
        crate::state::Tokens {
            access_token: self.access_token,
            refresh_token: self.refresh_token.or(old),
        }
    }

    /// Whose this grant is, as far as its ID token says, against `expected`.
    pub fn whose(&self, expected: &str) -> Whose {
        match &self.identity {
            Some(Ok(id)) => match id.is(expected) {
                Some(true) => Whose::Expected,
                Some(false) => Whose::Other(
                    crate::diagnostic::shown(id.email.as_deref().unwrap_or_default()).into_owned(),
                ),
                None => Whose::Unknown,
            },
            Some(Err(why)) => Whose::Untrustworthy(why.clone()),
            None => Whose::Unknown,
        }
    }

    /// Stores this new grant (a consent's, or one imported) as `name`'s
    /// record in `state`, applied as `applied`, with the scopes it holds
    /// and its access token's expiry (not yet written). `refresh` is the
    /// refresh token it was obtained with, if any. Obtained now.
    pub fn insert_into<'s>(
        self,
        state: &'s mut crate::state::State,
        key: &crate::state::crypto::Key,
        name: &str,
        applied: crate::state::AppliedAsset,
        granted: Vec<String>,
        refresh: Option<Secret>,
    ) -> &'s mut crate::state::AssetRecord {
        let now = chrono::Utc::now();
        let access_expires_at = self.access_expires_at(now);
        let tokens = self.into_tokens(refresh);
        let record = state.insert_applied(name, applied, Some((key, &tokens, granted)), now);
        if let Some(t) = record.token.as_mut() {
            t.access_expires_at = access_expires_at;
        }
        record
    }

    /// Stores this refreshed grant as `name`'s tokens in `state` (sealed
    /// again, not yet written): the new refresh token when the provider
    /// rotated it, else `old`; the access token's expiry from `now`. The
    /// one way a refresh reaches state; the tokens stored come back.
    pub fn store_in(
        self,
        state: &mut crate::state::State,
        key: &crate::state::crypto::Key,
        name: &str,
        old: Option<Secret>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::state::Tokens {
        let access_expires_at = self.access_expires_at(now);
        let tokens = self.into_tokens(old);
        state.store_refreshed(key, name, &tokens, access_expires_at, now);
        tokens
    }

    /// When the access token expires, from `now`; `None` when unknown (or
    /// absurdly far away: a hostile `expires_in` must not overflow).
    pub fn access_expires_at(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let d = chrono::Duration::from_std(self.expires_in?).ok()?;
        now.checked_add_signed(d)
    }
}

/// One provider's OAuth client: its endpoints, its credentials, a transport.
#[derive(Debug)]
pub struct ProviderClient {
    name: String,
    authorization_url: url::Url,
    auth_params: std::collections::BTreeMap<String, String>,
    client_id: String,
    client_secret: Option<Secret>,
    token_url: url::Url,
    revocation_url: Option<url::Url>,
    device_authorization_url: Option<url::Url>,
    auth: AuthType,
    transport: Transport,
    /// Whose ID tokens are believed.
    issuers: identity::Issuers,
    /// What a consent asks for beside an asset's scopes.
    identity_scopes: &'static [&'static str],
    /// An organisation grant's credential (`None`: a person's consent).
    app: Option<app::AppCredential>,
}

impl ProviderClient {
    /// A client for `provider`, with the secret read from where the config
    /// points (`None` for a public client).
    pub fn new(provider: &Provider, client_secret: Option<Secret>) -> Result<Self, OAuthError> {
        Self::with_timeout(provider, client_secret, transport::REQUEST_TIMEOUT)
    }

    /// As [`ProviderClient::new`], each request bounded by `timeout`.
    pub fn with_timeout(
        provider: &Provider,
        client_secret: Option<Secret>,
        timeout: Duration,
    ) -> Result<Self, OAuthError> {
        let transport = Transport::new(provider.ca_file.as_deref(), timeout).map_err(|why| {
            OAuthError::Setup {
                provider: provider.name.clone(),
                what: "cannot prepare its HTTPS client",
                why,
            }
        })?;
        let app = app::AppCredential::of(provider).map_err(|why| OAuthError::Setup {
            provider: provider.name.clone(),
            what: "its organisation grant",
            why,
        })?;
        Ok(ProviderClient {
            app,
            name: provider.name.clone(),
            authorization_url: provider.authorization_url.clone(),
            auth_params: provider.auth_params.clone(),
            client_id: provider.client_id.clone(),
            client_secret,
            token_url: provider.token_url.clone(),
            revocation_url: provider.revocation_url.clone(),
            device_authorization_url: provider.device_authorization_url.clone(),
            auth: client_auth(provider.preset),
            transport,
            issuers: identity::Issuers::new(
                provider.preset,
                &[&provider.token_url, &provider.authorization_url],
            ),
            // Custom providers are asked for what their config lists (one
            // that lists `openid` answers with an ID token too); an unknown
            // scope could be refused outright.
            identity_scopes: if provider.preset.is_some() {
                &IDENTITY_SCOPES
            } else {
                &[]
            },
        })
    }

    /// The scopes a consent asks for: the asset's, and the identity scopes.
    fn consent_scopes(&self, scopes: &[String]) -> Vec<Scope> {
        let mut all: Vec<Scope> = scopes.iter().map(|s| Scope::new(s.clone())).collect();
        for extra in self.identity_scopes {
            if !scopes.iter().any(|s| s == extra) {
                all.push(Scope::new((*extra).to_string()));
            }
        }
        all
    }

    /// The client with its id, secret (when it has one) and how it sends
    /// them; each request adds the endpoints it needs.
    fn base_client(&self) -> OAuthClient {
        let client = OAuthClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_type(self.auth.clone());
        match &self.client_secret {
            Some(secret) => {
                client.set_client_secret(ClientSecret::new(secret.expose().to_string()))
            }
            None => client,
        }
    }

    /// An authorization request for one asset (RFC 6749 §4.1 with PKCE S256,
    /// RFC 7636): its own random `state` and verifier, the provider's
    /// `auth_params`, and `login_hint` so the person signs in to the right
    /// mailbox.
    pub fn authorization(
        &self,
        scopes: &[String],
        login_hint: &str,
        redirect: &url::Url,
    ) -> Pending {
        let client = OAuthClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(self.authorization_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(redirect.clone()));
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.consent_scopes(scopes))
            .set_pkce_challenge(challenge)
            .add_extra_param("login_hint", login_hint);
        for (k, v) in &self.auth_params {
            request = request.add_extra_param(k, v);
        }
        let (url, state) = request.url();
        Pending {
            url,
            state: state.secret().clone(),
            verifier: Secret::new(verifier.into_secret()),
            redirect: redirect.clone(),
        }
    }

    /// Redeems an authorization code of `pending` (no retry: a code is good
    /// for one try).
    pub async fn exchange(&self, pending: &Pending, code: &Secret) -> Result<Grant, OAuthError> {
        let client = self
            .base_client()
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(pending.redirect.clone()));
        let response = client
            .exchange_code(AuthorizationCode::new(code.expose().to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.expose().to_string()))
            .request_async(&self.transport)
            .await
            .map_err(|e| match OAuthError::from_token_error(&self.name, e) {
                // At the code exchange, `invalid_grant` means the code (or
                // its verifier or redirect URI) was refused, not a refresh token.
                OAuthError::Revoked {
                    provider,
                    error,
                    description,
                } => OAuthError::Refused {
                    provider,
                    error: format!("{error}: the authorization code was refused"),
                    description,
                },
                other => other,
            })?;
        self.grant_of(&response)
    }

    /// Starts a device authorization (RFC 8628 §3.1); `Ok(None)` when the
    /// provider has no device endpoint.
    pub async fn device_code(&self, scopes: &[String]) -> Result<Option<DeviceCode>, OAuthError> {
        let Some(url) = &self.device_authorization_url else {
            return Ok(None);
        };
        let client = self
            .base_client()
            .set_device_authorization_url(DeviceAuthorizationUrl::from_url(url.clone()));
        let mut request = client
            .exchange_device_code()
            .add_scopes(self.consent_scopes(scopes));
        for (k, v) in &self.auth_params {
            request = request.add_extra_param(k, v);
        }
        let details: StandardDeviceAuthorizationResponse = request
            .request_async(&self.transport)
            .await
            .map_err(|e| OAuthError::from_token_error(&self.name, e))?;
        Ok(Some(DeviceCode { details }))
    }

    /// Polls until the person has entered the code (honouring `interval`
    /// within [1 s, 60 s], and `slow_down`, which adds 5 s), refused, or
    /// `timeout` or the code's own lifetime ran out. The whole wait ends at
    /// `timeout`, whatever the provider says its interval is.
    pub async fn device_token(
        &self,
        code: &DeviceCode,
        timeout: Duration,
    ) -> Result<Grant, DeviceError> {
        use oauth2::DeviceCodeErrorResponseType as E;
        let client = self
            .base_client()
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
        let pause = |interval: Duration| {
            tokio::time::sleep(interval.clamp(DEVICE_INTERVAL_MIN, DEVICE_INTERVAL_MAX))
        };
        let polling = client
            .exchange_device_access_token(&code.details)
            .request_async(&self.transport, pause, Some(timeout));
        let Ok(result) = tokio::time::timeout(timeout, polling).await else {
            return Err(DeviceError::Expired);
        };
        match result {
            Ok(response) => self.grant_of(&response).map_err(DeviceError::OAuth),
            Err(oauth2::RequestTokenError::ServerResponse(r)) if *r.error() == E::AccessDenied => {
                Err(DeviceError::Denied {
                    description: r.error_description().cloned(),
                })
            }
            Err(oauth2::RequestTokenError::ServerResponse(r)) if *r.error() == E::ExpiredToken => {
                Err(DeviceError::Expired)
            }
            // Everything else as for any token request (an unreadable
            // answer is a refusal there too, never "transient").
            Err(e) => Err(DeviceError::OAuth(OAuthError::from_token_error(
                &self.name, e,
            ))),
        }
    }

    /// A new access token for a stored grant, as `renewal` says.
    pub async fn renew(&self, renewal: &Renewal) -> Result<Grant, OAuthError> {
        match renewal {
            Renewal::Refresh(r) => self.refresh(r).await,
            Renewal::App { mailbox, scopes } => self.app_token(mailbox, scopes).await,
        }
    }

    /// Uses a refresh token once, retrying passing failures.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Grant, OAuthError> {
        retry(|| self.refresh_once(refresh_token)).await
    }

    async fn refresh_once(&self, refresh_token: &Secret) -> Result<Grant, OAuthError> {
        let client = self
            .base_client()
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
        let response = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose().to_string()))
            .request_async(&self.transport)
            .await
            .map_err(|e| OAuthError::from_token_error(&self.name, e))?;
        self.grant_of(&response)
    }

    /// Revokes a token at the provider (RFC 7009), when it has an endpoint;
    /// `Ok(false)` when it has none (the token can only be forgotten).
    pub async fn revoke(&self, token: &Secret, hint: TokenKind) -> Result<bool, OAuthError> {
        let Some(url) = &self.revocation_url else {
            return Ok(false);
        };
        retry(|| self.revoke_once(url, token, hint)).await?;
        Ok(true)
    }

    async fn revoke_once(
        &self,
        url: &url::Url,
        token: &Secret,
        hint: TokenKind,
    ) -> Result<(), OAuthError> {
        let mut request = oauth2::http::Request::post(url.as_str()).header(
            oauth2::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        // The form is built and dropped before the await (its serializer
        // is not `Send`), so revocations can run as tokio tasks.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token.expose())
                .append_pair("token_type_hint", hint.as_str());
            match (&self.auth, &self.client_secret) {
                (AuthType::BasicAuth, Some(secret)) => {
                    request = request.header(
                        oauth2::http::header::AUTHORIZATION,
                        basic_auth(&self.client_id, secret),
                    );
                }
                (_, secret) => {
                    form.append_pair("client_id", &self.client_id);
                    if let Some(secret) = secret {
                        form.append_pair("client_secret", secret.expose());
                    }
                }
            }
            form.finish().into_bytes()
        };
        let request = request
            .body(body)
            .expect("a POST with a form body is a valid request");
        let response = self.send(request).await?;
        // RFC 7009 §2.2: 200 whether or not the token was valid. Some
        // providers (Google) answer 400 `invalid_token` for one already
        // revoked or expired: it is gone either way.
        if response.status().is_success() {
            return Ok(());
        }
        let refused_as_invalid =
            error::error_body(response.body()).is_some_and(|(e, _)| e == "invalid_token");
        if refused_as_invalid {
            return Ok(());
        }
        Err(OAuthError::from_error_body(
            &self.name,
            response.status().as_u16(),
            response.body(),
        ))
    }

    /// The provider's HTTPS transport (its `ca_file`, timeouts, no
    /// redirects), for its other APIs (Gmail's settings).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Sends a request of ours (not oauth2's) over the transport.
    async fn send(&self, request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, OAuthError> {
        self.transport
            .send(request)
            .await
            .map_err(|e| OAuthError::from_transport(&self.name, &e))
    }

    /// What a token response granted; its ID token, if any, read for the
    /// account it names and dropped.
    fn grant_of(&self, response: &TokenResponse) -> Result<Grant, OAuthError> {
        if !is_b64token(response.access_token().secret()) {
            return Err(OAuthError::UnusableToken {
                provider: self.name.clone(),
            });
        }
        let identity = response
            .extra_fields()
            .id_token
            .as_deref()
            .map(|t| identity::verify(t, &self.issuers, &self.client_id, chrono::Utc::now()));
        Ok(Grant {
            access_token: Secret::new(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|r| Secret::new(r.secret().clone())),
            expires_in: response.expires_in(),
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect()),
            identity,
        })
    }
}

/// Whether `token` is an RFC 6750 §2.1 `b64token` (`1*( ALPHA / DIGIT /
/// "-" / "." / "_" / "~" / "+" / "/" ) *"="`): what may follow `Bearer `,
/// and all that may go into an XOAUTH2 string or onto a client's command
/// line. Anything else (a space, a control character, `\x01` that would
/// cut XOAUTH2's fields) is refused where the token arrives.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A device authorization in progress: what the person is shown.
#[derive(Debug)]
pub struct DeviceCode {
    details: StandardDeviceAuthorizationResponse,
}

impl DeviceCode {
    /// The code the person types.
    pub fn user_code(&self) -> &str {
        self.details.user_code().secret()
    }

    /// Where they type it.
    pub fn verification_uri(&self) -> &str {
        self.details.verification_uri()
    }

    /// The same page with the code filled in, when the provider offers one.
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.details
            .verification_uri_complete()
            .map(|u| u.secret().as_str())
    }
}

/// Why a device authorization brought no tokens.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("consent denied by the user (access_denied{})", error::described(description.as_deref()))]
    Denied { description: Option<String> },
    /// The code's lifetime, or mailform's wait (`--consent-timeout`), ran out.
    #[error("no one entered the device code in time (expired_token); run mailform apply again")]
    Expired,
    #[error("{0}")]
    OAuth(OAuthError),
}

/// An authorization request waiting for its callback.
#[derive(Debug)]
pub struct Pending {
    /// Where the person consents.
    pub url: url::Url,
    /// The `state` the callback must bring back.
    pub state: String,
    /// The PKCE verifier, sent with the code.
    pub verifier: Secret,
    pub redirect: url::Url,
}

/// Which token a revocation names (RFC 7009 `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        }
    }
}

/// How the client authenticates at the token endpoint. RFC 6749 §2.3.1 has
/// every server accept HTTP Basic; Microsoft's identity platform documents
/// the secret in the form body, so its preset sends it there.
fn client_auth(preset: Option<Preset>) -> AuthType {
    match preset {
        Some(Preset::Microsoft) => AuthType::RequestBody,
        Some(Preset::Google) | None => AuthType::BasicAuth,
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_auth(client_id: &str, secret: &Secret) -> String {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = zeroize::Zeroizing::new(format!("{}:{}", enc(client_id), enc(secret.expose())));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    )
}

/// Runs `attempt` up to [`ATTEMPTS`] times while it fails transiently,
/// waiting [`BACKOFF`], then twice that, between tries.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, OAuthError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OAuthError>>,
{
    let mut wait = BACKOFF;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_transient() && tries < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_b64token;

    #[test]
    fn bearer_tokens_are_b64token_only() {
        for ok in ["FAKE.test-token_b64~x+y/z==", "abc", "FAKE.hdr.sig"] {
            assert!(is_b64token(ok), "{ok}");
        }
        for bad in [
            "",
            "==",
            "has space",
            "new\nline",
            "esc\u{1b}[2J",
            "ctl\u{1}auth=Bearer x",
            "ünï",
            "a=b",
        ] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
    }
}
