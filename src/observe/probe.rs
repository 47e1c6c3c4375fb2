//! One SMTP login to prove, and the endpoints probes share: where the
//! config says (apply, once approved) or where the last apply recorded
//! (live checks: a token never goes where nobody applied).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Failure;
use crate::config::{Asset, Config};
use crate::oauth::{Grant, ProviderClient};
use crate::plan::SmtpObservation;
use crate::secret::Secret;
use crate::smtp::{self, Endpoint, Outcome, SmtpError};

/// Logins tried when the server answers for a passing reason (4xx).
const SMTP_ATTEMPTS: u32 = 3;

/// The first wait before such a retry; each further wait doubles it.
const SMTP_BACKOFF: Duration = Duration::from_millis(250);

/// One SMTP login to prove: where, as whom, and what the grant holds (for hints).
#[derive(Debug, Clone)]
pub struct Probe {
    pub asset: String,
    pub endpoint: Arc<Endpoint>,
    pub username: String,
    pub granted: Vec<String>,
    pub timeout: Duration,
    /// The app's client id, when the token is an organisation grant's.
    pub app_client: Option<String>,
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

    /// The endpoint of `provider`'s server at `host`, `port`, `security`
    /// (SMTP or IMAP alike), made once: its `ca_file` read, its TLS
    /// settings built.
    pub fn endpoint(
        &mut self,
        provider: &crate::config::Provider,
        (host, port, security): (&str, u16, crate::security::Security),
    ) -> Result<Arc<Endpoint>, String> {
        let key = (
            host.to_string(),
            port,
            security.to_string(),
            provider.name.clone(),
        );
        if let Some(e) = self.0.get(&key) {
            return Ok(Arc::clone(e));
        }
        let e = Arc::new(Endpoint::new(
            host,
            port,
            security,
            &provider.name,
            provider.ca_file.as_deref(),
        )?);
        self.0.insert(key, Arc::clone(&e));
        Ok(e)
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
        let endpoint = self.endpoint(provider, (host, port, security))?;
        Ok(Probe {
            asset: asset.name.clone(),
            endpoint,
            username: asset.username.clone(),
            granted: granted.to_vec(),
            timeout,
            app_client: provider
                .grant
                .is_organisation()
                .then(|| provider.client_id.clone()),
        })
    }
}

impl Probe {
    /// The login, and what the planner makes of it. A temporary answer
    /// (`454 4.7.0 Temporary authentication failure`, RFC 4954: the server
    /// could not reach its own token check) is tried again with backoff,
    /// as a provider's 5xx is, before it is reported.
    pub async fn run(&self, token: &Secret) -> Result<(Outcome, SmtpObservation), SmtpError> {
        let mut wait = SMTP_BACKOFF;
        let mut attempt = 1;
        let outcome = loop {
            match smtp::prove(&self.endpoint, &self.username, token, self.timeout).await {
                Err(SmtpError::Rejected { reply, .. })
                    if reply.is_transient() && attempt < SMTP_ATTEMPTS =>
                {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                other => break other?,
            }
        };
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
            Outcome::Refused { reply, challenge } => {
                let advice = smtp::hints::for_refusal(
                    reply,
                    challenge.as_ref(),
                    &smtp::hints::Login {
                        asset: &self.asset,
                        username: &self.username,
                        granted: &self.granted,
                        app_client: self.app_client.as_deref(),
                    },
                );
                SmtpObservation::Refused {
                    server,
                    reply: outcome.words(),
                    reconsent: advice.as_ref().is_some_and(|a| a.consent_fixes),
                    hint: advice.map(|a| a.hint),
                }
            }
        }
    }
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
    refresh: Option<(&ProviderClient, &crate::oauth::Renewal)>,
    stale: bool,
) -> (Result<(Outcome, SmtpObservation), Failure>, Option<Grant>) {
    if stale && let Some((client, refresh_token)) = refresh {
        return match client.renew(refresh_token).await {
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
    match client.renew(refresh_token).await {
        Ok(grant) => {
            let again = probe.run(&grant.access_token).await.map_err(Failure::from);
            (again, Some(grant))
        }
        // The refusal stands; why the refresh failed is the token check's news.
        Err(_) => (first.map_err(Failure::from), None),
    }
}
