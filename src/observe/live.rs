//! The live checks of a plan (and of apply's plan): one refresh per stored
//! grant, with `--check-smtp` one login proof each, in parallel; a rotated
//! refresh token stored the moment it arrives.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Endpoints, Failure, ImapProbe, LiveChecks, Probe, Refreshed, sealed_tokens};
use crate::config::Config;
use crate::error::Error;
use crate::oauth::{Grant, OAuthError, ProviderClient, Renewal};
use crate::plan::{AssetObservation, Observations, SmtpObservation, TokenObservation};
use crate::secret::Secret;
use crate::smtp::SmtpError;
use crate::state::State;
use crate::state::crypto::Key;

/// One asset's live check, prepared from the state so that running it does
/// not borrow the state (which stores each rotated token as it arrives).
#[derive(Debug)]
pub struct Job {
    name: String,
    /// How the grant is renewed, and the client to renew it with.
    refresh: Option<(Renewal, Arc<ProviderClient>)>,
    /// The stored access token: probed when there is no refresh token.
    access: Secret,
    probe: Option<Probe>,
    /// The IMAP login, where the last apply proved it.
    imap: Option<ImapProbe>,
    /// Gmail's forwarding settings, at the API the last apply recorded.
    gmail: Option<(crate::oauth::transport::Transport, url::Url)>,
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
    imap: Option<Duration>,
) -> (Vec<Job>, Vec<(String, Failure)>) {
    let mut clients = crate::oauth::Clients::default();
    let mut endpoints = Endpoints::default();
    let (mut jobs, mut failures) = (Vec::new(), Vec::new());
    for (name, record) in &state.assets {
        if !worth_checking(
            name,
            record,
            config,
            targets,
            smtp.is_some() || imap.is_some(),
        ) {
            continue;
        }
        let (Some(asset), Some(token)) = (config.assets.get(name), &record.token) else {
            continue;
        };
        if !crate::plan::binding_matches(config, asset, record) {
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
        let imap_probe = match imap
            .map(|t| ImapProbe::applied(&mut endpoints, config, asset, &record.applied, t))
        {
            Some(Ok(p)) => p,
            Some(Err(why)) => {
                failures.push((name.clone(), Failure::ImapSetup(why)));
                None
            }
            None => None,
        };
        let provider = config.provider_of(asset);
        let gmail = match gmail_reader(config, asset, &record.applied, &mut clients) {
            Ok(g) => g,
            Err(why) => {
                failures.push((name.clone(), Failure::ForwardingSetup(why)));
                None
            }
        };
        let refresh = match Renewal::of(provider, asset, tokens.refresh_token) {
            Some(r) => match clients.get(provider) {
                Ok(client) => Some((r, client)),
                Err(e) => {
                    failures.push((name.clone(), e.into()));
                    continue;
                }
            },
            None => None,
        };
        if refresh.is_none() && probe.is_none() && imap_probe.is_none() && gmail.is_none() {
            continue;
        }
        jobs.push(Job {
            name: name.clone(),
            refresh,
            access: tokens.access_token,
            probe,
            imap: imap_probe,
            gmail,
        });
    }
    (jobs, failures)
}

/// Where `asset`'s forwarding settings are read: the Gmail API the last
/// apply recorded, when it forwards and the config still names that API
/// (a moved one waits for apply, as a moved SMTP endpoint does).
fn gmail_reader(
    config: &Config,
    asset: &crate::config::Asset,
    applied: &crate::state::AppliedAsset,
    clients: &mut crate::oauth::Clients,
) -> Result<Option<(crate::oauth::transport::Transport, url::Url)>, String> {
    let provider = config.provider_of(asset);
    let (Some(url), Some(_)) = (&applied.gmail_api_url, &asset.forwarding_address) else {
        return Ok(None);
    };
    if provider
        .gmail_api_url
        .as_ref()
        .map(ToString::to_string)
        .as_ref()
        != Some(url)
        || provider.ca_digest != applied.smtp_trust
    {
        return Ok(None);
    }
    let url = url::Url::parse(url).map_err(|e| format!("gmail_api_url: {e}"))?;
    // The provider client's own transport (its trust, its timeouts).
    let client = clients.get(provider).map_err(|e| e.to_string())?;
    Ok(Some((client.transport().clone(), url)))
}

impl Job {
    /// Whether its grant is an organisation's (renewed by the app itself).
    fn is_organisation(&self) -> bool {
        matches!(self.refresh, Some((Renewal::App { .. }, _)))
    }
}

/// What one job found.
struct Found {
    old_refresh: Option<Secret>,
    /// An organisation grant: any refusal of its token request is the
    /// provider's word on the grant (drift), not only `invalid_grant`.
    organisation: bool,
    token: Option<Result<Grant, OAuthError>>,
    smtp: Option<Result<SmtpObservation, SmtpError>>,
    imap: Option<Result<SmtpObservation, crate::imap::ImapError>>,
    forwarding: Option<crate::plan::ForwardingObservation>,
}

async fn check(job: Job) -> Found {
    if crate::interrupt::requested() {
        return Found {
            old_refresh: None,
            organisation: job.is_organisation(),
            token: None,
            smtp: None,
            imap: None,
            forwarding: None,
        };
    }
    let token = match &job.refresh {
        Some((renewal, client)) => Some(client.renew(renewal).await),
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
    let imap = match (&job.imap, fresh) {
        (Some(probe), Some(t)) => Some(probe.run(t).await.map(|(_, seen)| seen)),
        _ => None,
    };
    let forwarding = match (&job.gmail, fresh) {
        (Some((transport, url)), Some(t)) => {
            Some(crate::gmail::forwarding(transport, url, t).await)
        }
        _ => None,
    };
    Found {
        organisation: job.is_organisation(),
        old_refresh: job.refresh.and_then(|(r, _)| r.refresh_token().cloned()),
        token,
        smtp,
        imap,
        forwarding,
    }
}

/// Runs the checks, at most `parallelism` at a time. Each refreshed asset
/// is handed to `refreshed` the moment its answer arrives, so the caller can
/// store a rotated token before the next one is awaited.
pub async fn run_checks(
    jobs: Vec<Job>,
    parallelism: usize,
    now: DateTime<Utc>,
    refreshed: &mut (dyn FnMut(Refreshed) + Send),
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
                let old = found.old_refresh;
                let rotated = grant
                    .refresh_token
                    .as_ref()
                    .is_some_and(|r| old.as_ref().is_none_or(|o| r.expose() != o.expose()));
                refreshed(Refreshed {
                    name: name.clone(),
                    grant,
                    old,
                    rotated,
                });
                seen.token = Some(TokenObservation::Valid {
                    granted_scopes,
                    access_expires_at,
                });
            }
            Some(Err(OAuthError::Revoked {
                error, description, ..
            })) => seen.token = Some(TokenObservation::Revoked { error, description }),
            Some(Err(e)) => {
                // An organisation grant's refusal, in any of OAuth's
                // words, is the provider's verdict on the grant.
                if let (true, Some((error, description))) = (found.organisation, e.refusal()) {
                    seen.token = Some(TokenObservation::Revoked {
                        error: error.to_string(),
                        description: description.map(ToString::to_string),
                    });
                } else {
                    if e.is_transient() {
                        seen.token = Some(TokenObservation::Transient {
                            detail: e.to_string(),
                        });
                    }
                    checks.failures.push((name.clone(), e.into()));
                }
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
        match found.imap {
            Some(Ok(s)) => seen.imap = Some(s),
            Some(Err(e)) => {
                if e.is_transient() {
                    seen.imap = Some(SmtpObservation::Transient {
                        detail: e.to_string(),
                    });
                }
                checks.failures.push((name.clone(), e.into()));
            }
            None => {}
        }
        seen.forwarding = found.forwarding;
        let ok = checks.failures.len() == failures_before
            && !matches!(seen.token, Some(TokenObservation::Revoked { .. }))
            && !matches!(seen.smtp, Some(SmtpObservation::Refused { .. }))
            && !matches!(seen.imap, Some(SmtpObservation::Refused { .. }));
        if seen.token.is_some()
            || seen.smtp.is_some()
            || seen.imap.is_some()
            || seen.forwarding.is_some()
        {
            checks.observations.assets.insert(name, seen);
        }
        ok
    })
    .await;
    checks.failures.sort_by(|a, b| a.0.cmp(&b.0));
    checks
}

/// Whether a live plan has a grant to refresh (or, with `smtp`, any token
/// to prove) among the targets: the one place that decides which assets a
/// live check looks at, before [`check_jobs`] picks them one by one.
pub fn checkable(state: &State, config: &Config, targets: &[String], smtp: bool) -> bool {
    state
        .assets
        .iter()
        .any(|(name, r)| worth_checking(name, r, config, targets, smtp))
}

/// Whether one stored asset has something a live check can look at: it is
/// targeted and configured, and holds a refresh token (or, with `smtp`, any
/// token).
fn worth_checking(
    name: &str,
    record: &crate::state::AssetRecord,
    config: &Config,
    targets: &[String],
    smtp: bool,
) -> bool {
    let organisation = config
        .assets
        .get(name)
        .is_some_and(|a| config.provider_of(a).grant.is_organisation());
    (targets.is_empty() || targets.iter().any(|t| t == name))
        && config.assets.contains_key(name)
        && record
            .token
            .as_ref()
            .is_some_and(|t| smtp || t.has_refresh_token || organisation)
}

/// What the live checks of plan and apply are given.
pub struct LiveRequest<'a> {
    pub config: &'a Config,
    pub store: &'a dyn crate::store::StateStore,
    pub key: &'a Key,
    pub runtime: &'a tokio::runtime::Runtime,
    /// `--target` names; empty: every asset.
    pub targets: &'a [String],
    /// With `--check-smtp`: the bound on each SMTP step.
    pub smtp: Option<Duration>,
    /// With `--check-imap`: the bound on each IMAP step.
    pub imap: Option<Duration>,
    /// Checks at once.
    pub parallelism: usize,
    pub now: DateTime<Utc>,
    /// Makes the progress display of `total` checks, labelled.
    pub progress: &'a dyn Fn(&'static str, usize) -> Arc<dyn crate::progress::Tracker>,
}

/// What plan and apply decide on: the live checks of the targets
/// (refreshes, and with `smtp` the login proofs; Ctrl-C stops them
/// gracefully), on top of what the sealed tokens say; and the checks that
/// could not decide. `state` is as it is under the caller's lock; a rotated
/// refresh token is stored in it (and in the store) before this returns.
pub fn observed(
    request: &LiveRequest<'_>,
    state: &mut State,
) -> Result<(Observations, Vec<(String, Failure)>), Error> {
    crate::interrupt::arm(true);
    let checked = live_checks(request, state);
    crate::interrupt::arm(false);
    let (live, failures) = checked?;
    if crate::interrupt::requested() {
        return Err(Error::ChecksInterrupted);
    }
    let mut observations = sealed_tokens(state, request.key, request.targets);
    observations.assets.extend(live.assets);
    observations.live = true;
    Ok((observations, failures))
}

fn live_checks(
    request: &LiveRequest<'_>,
    state: &mut State,
) -> Result<(Observations, Vec<(String, Failure)>), Error> {
    let LiveRequest {
        config,
        store,
        key,
        runtime,
        targets,
        smtp,
        imap,
        parallelism,
        now,
        progress,
    } = *request;
    if !checkable(state, config, targets, smtp.is_some() || imap.is_some()) {
        return Ok((Observations::default(), Vec::new()));
    }
    let (jobs, mut failed) = check_jobs(config, state, key, targets, smtp, imap);
    // A rotated refresh token is stored the moment it arrives: the old one
    // is dead, and a crash before the last refresh must not lose it. Every
    // other fresh access token is stored too (with the state written once
    // at the end): the stored one may be the very token the provider just
    // stopped honouring, and `token` hands out what is stored.
    let mut save_error = None;
    let mut changed = false;
    let mut store_refreshed = |r: Refreshed| {
        if save_error.is_some() {
            return;
        }
        let rotated = r.rotated;
        r.grant.store_in(state, key, &r.name, r.old, now);
        changed = true;
        if rotated && let Err(e) = store.record(state, &[r.name.as_str()]) {
            save_error = Some(e);
        }
    };
    let tracker = progress(
        if smtp.is_some() {
            "checking tokens and SMTP logins"
        } else {
            "checking tokens"
        },
        jobs.len(),
    );
    let mut checks = runtime.block_on(run_checks(
        jobs,
        parallelism,
        now,
        &mut store_refreshed,
        tracker,
    ));
    if let Some(e) = save_error {
        return Err(e);
    }
    // What the servers said stays known: a refused refresh and the SMTP
    // login's verdict are recorded, so an offline plan, `show` and `token`
    // see them too, until a later check says otherwise. An SMTP check not
    // tried to the end says nothing of the login and changes nothing.
    for (name, seen) in &checks.observations.assets {
        let Some(record) = state.assets.get_mut(name) else {
            continue;
        };
        if let Some(TokenObservation::Revoked { error, description }) = &seen.token
            && let Some(token) = record.token.as_mut()
        {
            token.revoked = Some(crate::state::Revocation {
                at: now,
                error: error.clone(),
                description: description.clone(),
            });
            changed = true;
        }
        if let Some(smtp) = &seen.smtp
            && !matches!(smtp, SmtpObservation::Transient { .. })
        {
            record.smtp_check = Some(smtp.record("", now));
            changed = true;
        }
        if let Some(imap) = &seen.imap
            && !matches!(imap, SmtpObservation::Transient { .. })
        {
            record.imap_check = Some(imap.record("", now));
            changed = true;
        }
        if let (Some(seen), Some(asset)) = (&seen.forwarding, config.assets.get(name))
            && let Some(want) = &asset.forwarding_address
            && let Some(found) = crate::plan::forwarding::findings(
                want,
                asset
                    .forwarding_disposition
                    .map(crate::config::raw::Disposition::as_str),
                seen,
                crate::plan::forwarding::apply_sets(&record.applied),
            )
        {
            let (what, hint): (Vec<String>, Vec<String>) = found.into_iter().unzip();
            record.forwarding_check = Some(crate::state::SmtpCheck {
                at: now,
                ok: what.is_empty(),
                server: record.applied.gmail_api_url.clone().unwrap_or_default(),
                detail: what.join("\n"),
                hint: (!hint.is_empty()).then(|| hint.join("\n")),
                unproven: false,
                reconsent: false,
            });
            changed = true;
        }
    }
    // The refreshed and learned records, in one new state file.
    if changed {
        store.save(state)?;
    }
    checks.failures.append(&mut failed);
    Ok((checks.observations, checks.failures))
}
