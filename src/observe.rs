//! Read-only checks that feed the planner's [`Observations`].
//!
//! - [`sealed_tokens`] (offline too): whether each targeted asset's sealed
//!   tokens open with the key where they are. A record edited or copied by
//!   hand (another state, another asset, token-binding fields changed along
//!   with their fingerprint) no longer opens, and the planner asks for consent
//!   again instead of trusting it.
//! - [`refresh_jobs`] and [`run_refreshes`] (live plans): one refresh per stored grant, in
//!   parallel up to `parallelism`. `invalid_grant` becomes a revoked grant
//!   (re-consent); a passing failure is a warning and a failed check, never
//!   drift; an expired access token under a live grant is no drift at all.
//!   The new tokens are handed back for the command to store (a rotated
//!   refresh token must be stored at once).
//! - The SMTP login probe will add its findings here.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::oauth::{OAuthError, ProviderClient};
use crate::plan::{AssetObservation, Observations, TokenObservation};
use crate::state::crypto::{CryptoError, Key};
use crate::state::{State, Tokens};

/// Opens every targeted asset's tokens; records those that do not open.
/// The records are independent, so they are checked on every core.
pub fn sealed_tokens(state: &State, key: &Key, targets: &[String]) -> Observations {
    let records: Vec<(&String, &crate::state::AssetRecord)> = state
        .assets
        .iter()
        .filter(|(name, r)| r.token.is_some() && (targets.is_empty() || targets.contains(name)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = records.len().div_ceil(threads).max(256);
    let check = |part: &[(&String, &crate::state::AssetRecord)]| {
        part.iter()
            .filter_map(|(name, record)| {
                let token = record.token.as_ref()?;
                let aad = state.token_aad(name, &record.binding);
                // Opened, not unpacked: whether the record is genuine is all
                // a plan needs.
                let e = key.open(&aad, &token.sealed).err()?;
                let why = match e {
                    CryptoError::Open => "they were sealed for another state, asset or client: the state file was edited or copied".to_string(),
                    other => other.to_string(),
                };
                Some(((*name).clone(), why))
            })
            .collect::<Vec<_>>()
    };
    let unreadable: Vec<(String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || check(part)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("token checks do not panic"))
            .collect()
    });
    let mut observations = Observations::default();
    for (name, why) in unreadable {
        observations.assets.insert(
            name,
            AssetObservation {
                token: Some(TokenObservation::Unreadable { why }),
                smtp: None,
            },
        );
    }
    observations
}

/// Tokens a live check refreshed, to store (a rotated refresh token must be
/// stored at once: the old one is dead).
#[derive(Debug)]
pub struct Refreshed {
    pub name: String,
    pub tokens: Tokens,
    pub access_expires_at: Option<DateTime<Utc>>,
    /// Whether the provider issued a new refresh token.
    pub rotated: bool,
}

/// What the live token checks found.
#[derive(Debug, Default)]
pub struct LiveChecks {
    pub observations: Observations,
    /// Checks that could not decide (provider down, client refused): the
    /// planner judged those assets from state, and the command says so.
    pub failures: Vec<(String, OAuthError)>,
}

/// The provider's client, made once per provider and shared by its assets.
fn client_for<'c>(
    clients: &mut BTreeMap<&'c str, Arc<ProviderClient>>,
    provider: &'c crate::config::Provider,
) -> Result<Arc<ProviderClient>, OAuthError> {
    if let Some(c) = clients.get(provider.name.as_str()) {
        return Ok(Arc::clone(c));
    }
    let secret = provider.client_secret().map_err(|e| OAuthError::Config {
        provider: provider.name.clone(),
        error: "client_secret".into(),
        description: Some(e.to_string()),
    })?;
    let client = Arc::new(ProviderClient::new(provider, secret)?);
    clients.insert(&provider.name, Arc::clone(&client));
    Ok(client)
}

/// One refresh to make: prepared from the state, so that running it does not
/// borrow the state (which stores each rotated token as it arrives).
#[derive(Debug)]
pub struct Job {
    name: String,
    refresh: crate::secret::Secret,
    client: Arc<ProviderClient>,
}

/// The refreshes a live check makes: every targeted, configured asset that
/// holds a refresh token and whose token-binding fields still match the
/// config. (When they changed, the plan asks for consent anyway, and the old
/// refresh token must not be sent to a changed endpoint.) Assets whose tokens
/// do not open are left to [`sealed_tokens`]; assets no longer in the config
/// are not asked. Providers whose client cannot be made are failures.
pub fn refresh_jobs(
    config: &Config,
    state: &State,
    key: &Key,
    targets: &[String],
) -> (Vec<Job>, Vec<(String, OAuthError)>) {
    let mut clients: BTreeMap<&str, Arc<ProviderClient>> = BTreeMap::new();
    let (mut jobs, mut failures) = (Vec::new(), Vec::new());
    for (name, record) in &state.assets {
        if !targets.is_empty() && !targets.contains(name) {
            continue;
        }
        let (Some(asset), Some(token)) = (config.assets.get(name), &record.token) else {
            continue;
        };
        if !token.has_refresh_token
            || record.binding != crate::plan::applied(config, asset).binding_fingerprint()
        {
            continue;
        }
        let Ok(tokens) = Tokens::open(key, &state.token_aad(name, &record.binding), &token.sealed)
        else {
            continue; // reported as unreadable by `sealed_tokens`
        };
        let Some(refresh) = tokens.refresh_token else {
            continue;
        };
        match client_for(&mut clients, config.provider_of(asset)) {
            Ok(client) => jobs.push(Job {
                name: name.clone(),
                refresh,
                client,
            }),
            Err(e) => failures.push((name.clone(), e)),
        }
    }
    (jobs, failures)
}

/// Runs the refreshes, at most `parallelism` at a time. Each refreshed asset
/// is handed to `refreshed` the moment its answer arrives, so the caller can
/// store a rotated token before the next one is awaited.
pub async fn run_refreshes(
    jobs: Vec<Job>,
    parallelism: usize,
    now: DateTime<Utc>,
    refreshed: &mut (dyn FnMut(&Refreshed) + Send),
) -> LiveChecks {
    let mut checks = LiveChecks::default();
    let permits = Arc::new(Semaphore::new(parallelism.max(1)));
    let mut tasks = JoinSet::new();
    for job in jobs {
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let result = job.client.refresh(&job.refresh).await;
            (job.name, job.refresh, result)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (name, old_refresh, result) = done.expect("a refresh task does not panic");
        let observation = match result {
            Ok(grant) => {
                let access_expires_at = grant.access_expires_at(now);
                let rotated = grant
                    .refresh_token
                    .as_ref()
                    .is_some_and(|r| r.expose() != old_refresh.expose());
                let r = Refreshed {
                    name: name.clone(),
                    tokens: Tokens {
                        access_token: grant.access_token,
                        refresh_token: Some(grant.refresh_token.unwrap_or(old_refresh)),
                    },
                    access_expires_at,
                    rotated,
                };
                refreshed(&r);
                TokenObservation::Valid {
                    granted_scopes: grant.scopes,
                    access_expires_at,
                }
            }
            Err(OAuthError::Revoked {
                error, description, ..
            }) => TokenObservation::Revoked { error, description },
            Err(e) => {
                let seen = e.is_transient().then(|| TokenObservation::Transient {
                    detail: e.to_string(),
                });
                checks.failures.push((name.clone(), e));
                let Some(seen) = seen else { continue };
                seen
            }
        };
        checks.observations.assets.insert(
            name,
            AssetObservation {
                token: Some(observation),
                smtp: None,
            },
        );
    }
    checks.failures.sort_by(|a, b| a.0.cmp(&b.0));
    checks
}
