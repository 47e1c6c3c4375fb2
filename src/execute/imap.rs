//! The IMAP proofs after an apply's changes: every login
//! [`crate::plan::Change::imap_proof`] names (assets that declare IMAP),
//! in parallel, each outcome recorded in state as it arrives — as the SMTP
//! proofs are, with the token they left stored.

use std::sync::Arc;

use chrono::Utc;

use super::Run;
use crate::imap::ImapError;
use crate::oauth::{Grant, ProviderClient, Renewal};
use crate::observe::ImapProbe;
use crate::plan::SmtpObservation;
use crate::render;
use crate::secret::Secret;
use crate::state::State;

/// One IMAP login to prove after the changes.
struct Proof {
    probe: ImapProbe,
    access: Secret,
    /// To try once more with a fresh token after a refusal (stored tokens).
    renew: Option<(Arc<ProviderClient>, Renewal)>,
}

/// The login, tried once more with a fresh token when the stored one is
/// refused and can be renewed; the new grant comes back to be stored.
async fn prove(proof: Proof) -> (String, Result<SmtpObservation, ImapError>, Option<Grant>) {
    let server = proof.probe.endpoint.server();
    let first = proof.probe.run(&proof.access).await;
    let refused = matches!(first, Ok((_, SmtpObservation::Refused { .. })));
    match (&proof.renew, refused) {
        (Some((client, renewal)), true) => match client.renew(renewal).await {
            Ok(grant) => {
                let again = proof.probe.run(&grant.access_token).await;
                (server, again.map(|(_, seen)| seen), Some(grant))
            }
            Err(_) => (server, first.map(|(_, seen)| seen), None),
        },
        _ => (server, first.map(|(_, seen)| seen), None),
    }
}

impl Run<'_> {
    /// Proves each asset's IMAP login (`stored`: tokens from storage, so a
    /// refusal is tried once more with a fresh one) and records each
    /// outcome; a refused or unproven login fails the asset.
    pub(super) fn prove_imap(&mut self, state: &mut State, names: &[(String, bool)]) {
        let mut proofs = Vec::new();
        let mut endpoints = crate::observe::Endpoints::default();
        for (name, stored) in names {
            let asset = &self.config.assets[name];
            let probe = match ImapProbe::configured(
                &mut endpoints,
                self.config,
                asset,
                self.smtp_timeout,
            ) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(why) => {
                    self.fail(name, &format!("IMAP check: {why}"));
                    continue;
                }
            };
            let Some((_, tokens)) = self.stored(state, name) else {
                self.fail(name, "no tokens to prove the IMAP login with");
                continue;
            };
            let renewal = Renewal::of(self.config.provider_of(asset), asset, tokens.refresh_token);
            let renew = match (stored, renewal) {
                (true, Some(r)) => self.client(&asset.provider).ok().map(|c| (c, r)),
                _ => None,
            };
            proofs.push((
                name.clone(),
                Proof {
                    probe,
                    access: tokens.access_token,
                    renew,
                },
            ));
        }
        let progress = render::progress::tracker("proving IMAP logins", proofs.len(), self.quiet);
        let run = |proof: Proof| async move {
            if crate::interrupt::requested() {
                return None;
            }
            Some(prove(proof).await)
        };
        let runtime = self.runtime;
        runtime.block_on(crate::parallel::each(
            proofs,
            self.parallelism,
            progress,
            run,
            |name, done| {
                let Some((server, result, grant)) = done else {
                    self.fail(&name, "the IMAP login was not proven: interrupted");
                    return false;
                };
                let now = Utc::now();
                if let Some(grant) = grant {
                    let old = self.stored(state, &name).and_then(|(_, t)| t.refresh_token);
                    grant.store_in(state, self.key, &name, old, now);
                }
                let seen = match result {
                    Ok(seen) => seen,
                    Err(e) => SmtpObservation::Transient {
                        detail: e.to_string(),
                    },
                };
                let ok = matches!(seen, SmtpObservation::Accepted { .. });
                self.report("IMAP", &name, &server, &seen);
                if let Some(record) = state.assets.get_mut(&name) {
                    record.imap_check = Some(seen.record(&server, now));
                }
                if let Err(why) = self.save(state, &name) {
                    self.fail(&name, &format!("the IMAP check was not stored: {why}"));
                }
                ok
            },
        ));
    }
}
