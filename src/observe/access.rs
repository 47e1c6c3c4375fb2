//! A valid access token for one asset, as `mailform token` prints it and
//! `send-test` logs in with: the stored one while it is good for at least
//! [`MARGIN`] more; otherwise refreshed first, under the state lock, and
//! the new tokens stored (a rotated refresh token must be). When no
//! refresh can help, the answer is "consent required".

use std::time::Duration;

use chrono::Utc;

use crate::config::Config;
use crate::error::Error;
use crate::oauth::{OAuthError, ProviderClient};
use crate::secret::Secret;
use crate::state::Tokens;
use crate::store::{LockGuard, StateStore, key};

/// An access token expiring sooner than this is refreshed first: the client
/// that asked still has to connect and log in with it.
pub const MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// The least `token` waits for the state lock: it is called by mail clients
/// in the middle of sending, which should wait out a plan, not fail.
pub const TOKEN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes the state lock of a store (saying whom it waits for), waiting at
/// most the given time.
pub type Locker<'a> = dyn Fn(&dyn StateStore, Duration) -> Result<Box<dyn LockGuard>, Error> + 'a;

/// What [`access_token`] works with.
pub struct Access<'a> {
    pub config: &'a Config,
    pub store: &'a dyn StateStore,
    /// Takes the state lock (saying whom it waits for), waiting at most the
    /// given time.
    pub lock: &'a Locker<'a>,
    /// `--lock-timeout`; a mail client waits at least [`TOKEN_LOCK_WAIT`].
    pub lock_timeout: Duration,
}

/// How the config moved `name`'s SMTP endpoint away from the one the last
/// apply proved and recorded, in words that point at apply; `None` when it
/// did not.
pub fn moved_endpoint(
    config: &crate::config::Config,
    name: &str,
    applied: &crate::state::AppliedAsset,
) -> Option<String> {
    let asset = config.assets.get(name)?;
    let now = crate::plan::applied(config, asset);
    let moved: Vec<&str> = now
        .fields()
        .iter()
        .zip(applied.fields())
        .filter(|((f, after), (_, before))| f.is_smtp_endpoint() && after != before)
        .map(|((f, _), _)| f.path())
        .collect();
    (!moved.is_empty()).then(|| {
        format!(
            "the config changes {} of the SMTP endpoint, which is not applied: {} is the one proven; run mailform apply to prove and record the new one",
            moved.join(", "),
            crate::diagnostic::escaped(&crate::security::server_name(&applied.smtp_host, applied.smtp_port))
        )
    })
}

/// What a state gives for a token: its tokens, whether the access token is
/// good for long enough, the key that opened them, and the record.
type Opened = (
    Tokens,
    bool,
    crate::state::crypto::Key,
    crate::state::TokenRecord,
);

/// A valid access token for `name`, with its records as stored (the
/// token's, and the asset as applied): the stored
/// one when it is good for at least [`MARGIN`] more (and `force_refresh` is
/// not set), otherwise a fresh one, refreshed under the state lock and
/// stored.
pub fn access_token(
    access: &Access<'_>,
    name: &str,
    force_refresh: bool,
) -> Result<
    (
        Secret,
        crate::state::TokenRecord,
        crate::state::AppliedAsset,
    ),
    Error,
> {
    let Access {
        config,
        store,
        lock,
        lock_timeout,
    } = *access;
    let state = store.load()?;
    let in_state = state
        .iter()
        .flat_map(|s| s.assets.keys().map(String::as_str));
    crate::config::known_asset(
        name,
        config.assets.keys().map(String::as_str).chain(in_state),
        config,
    )?;
    let organisation = config
        .assets
        .get(name)
        .is_some_and(|a| config.provider_of(a).grant.is_organisation());
    let consent = |why: String| {
        if organisation {
            Error::AppTokenMissing {
                name: name.to_string(),
                why,
            }
        } else {
            Error::ConsentRequired {
                name: name.to_string(),
                why,
            }
        }
    };
    let Some(mut state) = state.filter(|s| s.assets.contains_key(name)) else {
        return Err(consent("it was never applied".into()));
    };
    // The time is read at each check: the second one follows a lock wait.
    let fresh_enough = |t: &crate::state::TokenRecord| {
        t.access_expires_at
            .is_some_and(|at| at > Utc::now() + MARGIN)
    };
    // An organisation grant is asked for again whenever its token is due
    // (or was refused: an administrator may have fixed that since).
    let open = |state: &crate::state::State| -> Result<Opened, Error> {
        let record = &state.assets[name];
        let Some(token) = &record.token else {
            return Err(consent("no tokens are stored".into()));
        };
        // A grant the provider refused at a live check hands out nothing,
        // however fresh its access token looks by the clock.
        if let Some(r) = token.revoked.as_ref().filter(|_| !organisation) {
            return Err(consent(format!(
                "the provider refused its refresh token at the check of {} UTC ({})",
                r.at.format("%Y-%m-%d %H:%M"),
                crate::diagnostic::shown(&r.error)
            )));
        }
        let key = key::for_state(&config.state_dir(), state)?.expect("the state holds tokens");
        let tokens = state
            .open_tokens(&key, name)
            .expect("the record holds tokens")
            .map_err(|e| consent(format!("the stored tokens cannot be opened ({e})")))?;
        Ok((
            tokens,
            fresh_enough(token) && !force_refresh && token.revoked.is_none(),
            key,
            token.clone(),
        ))
    };
    let Some(asset) = config.assets.get(name) else {
        return Err(Error::Usage(format!(
            "asset `{name}` is no longer in {}: mailform apply will revoke and forget it",
            config.path.display()
        )));
    };
    // Tokens granted for other settings (client, endpoints, scopes, account)
    // are not handed out, fresh or not.
    if !crate::plan::binding_matches(config, asset, &state.assets[name]) {
        return Err(consent(
            "the config's token-binding fields (client, endpoints, scopes, username) changed since consent".into(),
        ));
    }
    let (tokens, fresh, _, record) = open(&state)?;
    if fresh {
        return Ok((
            tokens.access_token,
            record,
            state.assets[name].applied.clone(),
        ));
    }

    // Refresh as a writer, on the state as it is under the lock: another
    // mailform may have refreshed (and rotated) it a moment ago.
    // A mail client is waiting: wait for another mailform rather than fail.
    let _lock = lock(store, lock_timeout.max(TOKEN_LOCK_WAIT))?;
    state = store
        .load()?
        .filter(|s| s.assets.contains_key(name))
        .ok_or_else(|| consent("it was removed from state meanwhile".into()))?;
    let (tokens, fresh, key, record) = open(&state)?;
    if fresh {
        return Ok((
            tokens.access_token,
            record,
            state.assets[name].applied.clone(),
        ));
    }
    let provider = config.provider_of(asset);
    let Some(renewal) = crate::oauth::Renewal::of(provider, asset, tokens.refresh_token.clone())
    else {
        return Err(consent(
            "the access token has expired and no refresh token was issued".into(),
        ));
    };
    let grant = renew(config, name, &renewal).map_err(|e| match e {
        Renewed::Consent(why) => consent(why),
        Renewed::Other(e) => e,
    })?;
    let tokens = grant.store_in(
        &mut state,
        &key,
        name,
        renewal.refresh_token().cloned(),
        Utc::now(),
    );
    store.save(&mut state)?;
    let record = state.assets[name].token.clone().unwrap_or(record);
    Ok((
        tokens.access_token,
        record,
        state.assets[name].applied.clone(),
    ))
}

/// Why a renewal failed: consent is needed, or something else.
enum Renewed {
    Consent(String),
    Other(Error),
}

/// A new access token for `name`, as `renewal` says. A refused refresh
/// needs consent; a refused organisation grant needs an administrator.
fn renew(
    config: &Config,
    name: &str,
    renewal: &crate::oauth::Renewal,
) -> Result<crate::oauth::Grant, Renewed> {
    let asset = &config.assets[name];
    let provider = config.provider_of(asset);
    let network = |e: OAuthError| {
        Renewed::Other(Error::Network {
            name: name.to_string(),
            why: e.to_string(),
        })
    };
    let secret = provider.client_secret().map_err(Renewed::Other)?;
    let client = ProviderClient::new(provider, secret).map_err(network)?;
    let runtime = crate::parallel::runtime().map_err(Renewed::Other)?;
    let e = match runtime.block_on(client.renew(renewal)) {
        Ok(grant) => return Ok(grant),
        Err(e) => e,
    };
    // An organisation grant the provider refuses: no consent fixes it, an
    // administrator does.
    if let (true, Some((error, description))) = (provider.grant.is_organisation(), e.refusal()) {
        return Err(Renewed::Other(Error::Network {
            name: name.to_string(),
            why: crate::config::grants::refused(provider, asset, error, description),
        }));
    }
    match e {
        e @ OAuthError::Revoked { .. } => Err(Renewed::Consent(e.to_string())),
        e => Err(network(e)),
    }
}
