//! One IMAP login to prove: where the config says (apply, once approved)
//! or where the last apply recorded (live checks), and what it found, in
//! the terms the planner reads (the SMTP proof's).

use std::sync::Arc;
use std::time::Duration;

use super::Endpoints;
use crate::config::{Asset, Config};
use crate::imap::{self, Endpoint, ImapError, Outcome};
use crate::plan::SmtpObservation;
use crate::secret::Secret;
use crate::security::Security;

/// One IMAP login to prove.
#[derive(Debug, Clone)]
pub struct ImapProbe {
    pub endpoint: Arc<Endpoint>,
    pub username: String,
    pub timeout: Duration,
}

impl ImapProbe {
    fn at(
        endpoints: &mut Endpoints,
        config: &Config,
        asset: &Asset,
        at: (&str, u16, Security),
        timeout: Duration,
    ) -> Result<ImapProbe, String> {
        Ok(ImapProbe {
            endpoint: endpoints.endpoint(config.provider_of(asset), at)?,
            username: asset.username.clone(),
            timeout,
        })
    }

    /// Where the config says: what `apply` proves. `Ok(None)`: the asset
    /// declares no IMAP.
    pub fn configured(
        endpoints: &mut Endpoints,
        config: &Config,
        asset: &Asset,
        timeout: Duration,
    ) -> Result<Option<ImapProbe>, String> {
        asset
            .imap
            .as_ref()
            .map(|e| {
                Self::at(
                    endpoints,
                    config,
                    asset,
                    (&e.host, e.port, e.security),
                    timeout,
                )
            })
            .transpose()
    }

    /// Where the last apply proved it (`applied.imap`), with the trust it
    /// recorded. `Ok(None)`: no IMAP was applied, or the trust changed
    /// since (apply proves the new one).
    pub fn applied(
        endpoints: &mut Endpoints,
        config: &Config,
        asset: &Asset,
        applied: &crate::state::AppliedAsset,
        timeout: Duration,
    ) -> Result<Option<ImapProbe>, String> {
        if config.provider_of(asset).ca_digest != applied.smtp_trust {
            return Ok(None);
        }
        let Some((host, port, security)) = applied.imap_endpoint() else {
            return Ok(None);
        };
        Self::at(endpoints, config, asset, (&host, port, security), timeout).map(Some)
    }

    /// The login, and what the planner makes of it.
    pub async fn run(&self, token: &Secret) -> Result<(Outcome, SmtpObservation), ImapError> {
        let outcome = imap::prove(&self.endpoint, &self.username, token, self.timeout).await?;
        let seen = self.observation(&outcome);
        Ok((outcome, seen))
    }

    /// An outcome as the planner sees it (a refusal with its hint).
    pub fn observation(&self, outcome: &Outcome) -> SmtpObservation {
        let server = self.endpoint.server();
        match outcome {
            Outcome::Accepted(words) => SmtpObservation::Accepted {
                server,
                reply: words.clone(),
            },
            Outcome::Refused { .. } => SmtpObservation::Refused {
                server,
                reply: outcome.words(),
                hint: imap::hint(&outcome.words(), &self.username),
                reconsent: false,
            },
        }
    }
}
