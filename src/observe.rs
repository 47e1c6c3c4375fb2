//! Read-only checks that feed the planner's [`Observations`].
//!
//! - [`sealed_tokens`] (offline too): whether each targeted asset's sealed
//!   tokens open with the key where they are. A record edited or copied by
//!   hand (another state, another asset, token-binding fields changed along
//!   with their fingerprint) no longer opens, and the planner asks for consent
//!   again instead of trusting it.
//! - [`check_jobs`] and [`run_checks`] (live plans): one refresh per stored grant, in
//!   parallel up to `parallelism`. `invalid_grant` becomes a revoked grant
//!   (re-consent); a passing failure is a warning and a failed check, never
//!   drift; an expired access token under a live grant is no drift at all.
//!   The new tokens are handed back for the command to store (a rotated
//!   refresh token must be stored at once).
//! - With `--check-smtp`, each job then proves the SMTP login with the
//!   fresh access token (or the stored one, when there is no refresh token),
//!   at the endpoint the last apply recorded — never at one an unapplied
//!   edit names (with a changed `ca_file`, not at all until apply):
//!   a refusal is drift, in the server's words; a passing failure is a
//!   warning and a failed check. [`prove_login`] is the same proof with one
//!   retry on a fresh token, for tokens that come from storage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Asset, Config};
use crate::oauth::{Grant, OAuthError, ProviderClient};
use crate::plan::{AssetObservation, Observations, SmtpObservation, TokenObservation};
use crate::secret::Secret;
use crate::smtp::{self, Endpoint, Outcome, SmtpError};
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

/// A check that could not decide.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Token(#[from] OAuthError),
    #[error("SMTP check: {0}")]
    Smtp(#[from] SmtpError),
    #[error("SMTP check: {0}")]
    Setup(String),
}

impl Failure {
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Token(e) => e.is_transient(),
            Failure::Smtp(e) => e.is_transient(),
            Failure::Setup(_) => false,
        }
    }
}

/// What the live checks found.
#[derive(Debug, Default)]
pub struct LiveChecks {
    pub observations: Observations,
    /// Checks that could not decide (provider down, client refused, SMTP
    /// server unreachable): the planner judged those assets from state, and
    /// the command says so.
    pub failures: Vec<(String, Failure)>,
}

/// One SMTP login to prove: where, as whom, and what the grant holds (for hints).
#[derive(Debug, Clone)]
pub struct Probe {
    pub asset: String,
    pub endpoint: Arc<Endpoint>,
    pub username: String,
    pub granted: Vec<String>,
    pub timeout: Duration,
}

/// SMTP endpoints, made once per server and trust and shared by their assets.
#[derive(Debug, Default)]
pub struct Endpoints(BTreeMap<(String, u16, String, String), Arc<Endpoint>>);

impl Endpoints {
    /// The probe of `asset`'s login where the config says (what `apply`
    /// proves, once the person approved the plan).
    pub fn probe(
        &mut self,
        config: &Config,
        asset: &Asset,
        granted: &[String],
        timeout: Duration,
    ) -> Result<Probe, String> {
        let at = (
            asset.smtp.host.as_str(),
            asset.smtp.port,
            asset.smtp.security,
        );
        self.probe_at(config, asset, at, granted, timeout)
    }

    /// The probe of `asset`'s login where the last apply proved it: the
    /// server, port and security recorded in `applied`, with the trust it
    /// recorded. `Ok(None)` when the config's trust (`ca_file`) is no longer
    /// that one: the old trust cannot be rebuilt, and the new one is for
    /// apply to prove.
    pub fn applied_probe(
        &mut self,
        config: &Config,
        asset: &Asset,
        applied: &crate::state::AppliedAsset,
        granted: &[String],
        timeout: Duration,
    ) -> Result<Option<Probe>, String> {
        if config.provider_of(asset).ca_digest != applied.smtp_trust {
            return Ok(None);
        }
        let at = (
            applied.smtp_host.as_str(),
            applied.smtp_port,
            applied.smtp_security,
        );
        self.probe_at(config, asset, at, granted, timeout).map(Some)
    }

    fn probe_at(
        &mut self,
        config: &Config,
        asset: &Asset,
        (host, port, security): (&str, u16, crate::security::Security),
        granted: &[String],
        timeout: Duration,
    ) -> Result<Probe, String> {
        let provider = config.provider_of(asset);
        let key = (
            host.to_string(),
            port,
            security.to_string(),
            provider.name.clone(),
        );
        let endpoint = if let Some(e) = self.0.get(&key) {
            Arc::clone(e)
        } else {
            let e = Arc::new(Endpoint::new(
                host,
                port,
                security,
                &provider.name,
                provider.ca_file.as_deref(),
            )?);
            self.0.insert(key, Arc::clone(&e));
            e
        };
        Ok(Probe {
            asset: asset.name.clone(),
            endpoint,
            username: asset.username.clone(),
            granted: granted.to_vec(),
            timeout,
        })
    }
}

impl Probe {
    /// The login, and what the planner makes of it.
    pub async fn run(&self, token: &Secret) -> Result<(Outcome, SmtpObservation), SmtpError> {
        let outcome = smtp::prove(&self.endpoint, &self.username, token, self.timeout).await?;
        let seen = self.observation(&outcome);
        Ok((outcome, seen))
    }

    /// An outcome as the planner sees it (a refusal with its hint).
    pub fn observation(&self, outcome: &Outcome) -> SmtpObservation {
        let server = self.endpoint.server();
        match outcome {
            Outcome::Accepted(reply) => SmtpObservation::Accepted {
                server,
                reply: reply.to_string(),
            },
            Outcome::Refused { reply, challenge } => SmtpObservation::Refused {
                server,
                reply: outcome.words(),
                hint: smtp::hints::for_refusal(
                    reply,
                    challenge.as_ref(),
                    &smtp::hints::Login {
                        asset: &self.asset,
                        username: &self.username,
                        granted: &self.granted,
                    },
                ),
            },
        }
    }
}

/// One asset's live check, prepared from the state so that running it does
/// not borrow the state (which stores each rotated token as it arrives).
#[derive(Debug)]
pub struct Job {
    name: String,
    /// The grant to refresh, and the client to refresh it with.
    refresh: Option<(Secret, Arc<ProviderClient>)>,
    /// The stored access token: probed when there is no refresh token.
    access: Secret,
    probe: Option<Probe>,
}

/// The live checks of a plan: every targeted, configured asset that holds a
/// refresh token (or, with `smtp`, any token) and whose token-binding fields
/// still match the config. (When they changed, the plan asks for consent
/// anyway, and the old tokens must not be sent to a changed endpoint.)
/// Assets whose tokens do not open are left to [`sealed_tokens`]; assets no
/// longer in the config are not asked. Providers whose client (or SMTP
/// trust) cannot be made are failures.
pub fn check_jobs(
    config: &Config,
    state: &State,
    key: &Key,
    targets: &[String],
    smtp: Option<Duration>,
) -> (Vec<Job>, Vec<(String, Failure)>) {
    let mut clients = crate::oauth::Clients::default();
    let mut endpoints = Endpoints::default();
    let (mut jobs, mut failures) = (Vec::new(), Vec::new());
    for (name, record) in &state.assets {
        if !targets.is_empty() && !targets.contains(name) {
            continue;
        }
        let (Some(asset), Some(token)) = (config.assets.get(name), &record.token) else {
            continue;
        };
        if (!token.has_refresh_token && smtp.is_none())
            || record.binding != crate::plan::applied(config, asset).binding_fingerprint()
        {
            continue;
        }
        let Some(Ok(tokens)) = state.open_tokens(key, name) else {
            continue; // reported as unreadable by `sealed_tokens`
        };
        // Where the last apply logged in, never where an unapplied edit
        // points: a token goes to a new endpoint only after apply.
        let probe = match smtp.map(|t| {
            endpoints.applied_probe(config, asset, &record.applied, &token.granted_scopes, t)
        }) {
            Some(Ok(p)) => p,
            Some(Err(why)) => {
                failures.push((name.clone(), Failure::Setup(why)));
                None
            }
            None => None,
        };
        let refresh = match tokens.refresh_token {
            Some(r) => match clients.get(config.provider_of(asset)) {
                Ok(client) => Some((r, client)),
                Err(e) => {
                    failures.push((name.clone(), e.into()));
                    continue;
                }
            },
            None => None,
        };
        if refresh.is_none() && probe.is_none() {
            continue;
        }
        jobs.push(Job {
            name: name.clone(),
            refresh,
            access: tokens.access_token,
            probe,
        });
    }
    (jobs, failures)
}

/// What one job found.
struct Found {
    old_refresh: Option<Secret>,
    token: Option<Result<Grant, OAuthError>>,
    smtp: Option<Result<SmtpObservation, SmtpError>>,
}

async fn check(job: Job) -> Found {
    if crate::interrupt::requested() {
        return Found {
            old_refresh: None,
            token: None,
            smtp: None,
        };
    }
    let token = match &job.refresh {
        Some((refresh, client)) => Some(client.refresh(refresh).await),
        None => None,
    };
    // The login is proven with the freshest token there is; after a failed
    // refresh there is nothing worth proving.
    let fresh = match &token {
        Some(Ok(grant)) => Some(&grant.access_token),
        Some(Err(_)) => None,
        None => Some(&job.access),
    };
    let smtp = match (&job.probe, fresh) {
        (Some(probe), Some(t)) => Some(probe.run(t).await.map(|(_, seen)| seen)),
        _ => None,
    };
    Found {
        old_refresh: job.refresh.map(|(r, _)| r),
        token,
        smtp,
    }
}

/// Runs the checks, at most `parallelism` at a time. Each refreshed asset
/// is handed to `refreshed` the moment its answer arrives, so the caller can
/// store a rotated token before the next one is awaited.
pub async fn run_checks(
    jobs: Vec<Job>,
    parallelism: usize,
    now: DateTime<Utc>,
    refreshed: &mut (dyn FnMut(&Refreshed) + Send),
    progress: Arc<dyn crate::progress::Tracker>,
) -> LiveChecks {
    let mut checks = LiveChecks::default();
    let items = jobs.into_iter().map(|j| (j.name.clone(), j)).collect();
    crate::parallel::each(items, parallelism, progress, check, |name, found: Found| {
        let failures_before = checks.failures.len();
        let mut seen = AssetObservation::default();
        match found.token {
            Some(Ok(mut grant)) => {
                let access_expires_at = grant.access_expires_at(now);
                let granted_scopes = grant.scopes.take();
                let old = found.old_refresh.expect("refreshed with a refresh token");
                let rotated = grant
                    .refresh_token
                    .as_ref()
                    .is_some_and(|r| r.expose() != old.expose());
                let r = Refreshed {
                    name: name.clone(),
                    tokens: grant.into_tokens(Some(old)),
                    access_expires_at,
                    rotated,
                };
                refreshed(&r);
                seen.token = Some(TokenObservation::Valid {
                    granted_scopes,
                    access_expires_at,
                });
            }
            Some(Err(OAuthError::Revoked {
                error, description, ..
            })) => seen.token = Some(TokenObservation::Revoked { error, description }),
            Some(Err(e)) => {
                if e.is_transient() {
                    seen.token = Some(TokenObservation::Transient {
                        detail: e.to_string(),
                    });
                }
                checks.failures.push((name.clone(), e.into()));
            }
            None => {}
        }
        match found.smtp {
            Some(Ok(s)) => seen.smtp = Some(s),
            Some(Err(e)) => {
                if e.is_transient() {
                    seen.smtp = Some(SmtpObservation::Transient {
                        detail: e.to_string(),
                    });
                }
                checks.failures.push((name.clone(), e.into()));
            }
            None => {}
        }
        let ok = checks.failures.len() == failures_before
            && !matches!(seen.token, Some(TokenObservation::Revoked { .. }))
            && !matches!(seen.smtp, Some(SmtpObservation::Refused { .. }));
        if seen.token.is_some() || seen.smtp.is_some() {
            checks.observations.assets.insert(name, seen);
        }
        ok
    })
    .await;
    checks.failures.sort_by(|a, b| a.0.cmp(&b.0));
    checks
}

/// A proof with one retry: when the server refuses `token` (from storage: it
/// may have been revoked or expired early) and `refresh` can mint a new one,
/// the login is tried once more with that — unless the refusal is one a new
/// token cannot change (SMTP AUTH disabled). A token known to be `stale` is
/// refreshed first instead of being shown to the server. The new grant comes
/// back for the caller to store.
pub async fn prove_login(
    probe: &Probe,
    token: &Secret,
    refresh: Option<(&ProviderClient, &Secret)>,
    stale: bool,
) -> (Result<(Outcome, SmtpObservation), Failure>, Option<Grant>) {
    if stale && let Some((client, refresh_token)) = refresh {
        return match client.refresh(refresh_token).await {
            Ok(grant) => {
                let result = probe.run(&grant.access_token).await.map_err(Failure::from);
                (result, Some(grant))
            }
            Err(e) => (Err(e.into()), None),
        };
    }
    let first = probe.run(token).await;
    let (Ok((outcome @ Outcome::Refused { .. }, _)), Some((client, refresh_token))) =
        (&first, refresh)
    else {
        return (first.map_err(Failure::from), None);
    };
    if !outcome.fresh_token_may_help() {
        return (first.map_err(Failure::from), None);
    }
    match client.refresh(refresh_token).await {
        Ok(grant) => {
            let again = probe.run(&grant.access_token).await.map_err(Failure::from);
            (again, Some(grant))
        }
        // The refusal stands; why the refresh failed is the token check's news.
        Err(_) => (first.map_err(Failure::from), None),
    }
}
