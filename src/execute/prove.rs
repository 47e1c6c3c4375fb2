//! The SMTP proofs after an apply's changes: every login
//! [`crate::plan::Change::smtp_proof`] names, in parallel, each outcome
//! recorded in state as it arrives.

use std::sync::Arc;

use chrono::Utc;

use super::Run;
use crate::oauth::ProviderClient;
use crate::observe;
use crate::plan::SmtpObservation;
use crate::render;
use crate::secret::Secret;
use crate::smtp;
use crate::state::State;

/// One login to prove after the changes.
struct Proof {
    name: String,
    probe: observe::Probe,
    access: Secret,
    /// To retry once with a fresh token (tokens from storage only).
    refresh: Option<(Arc<ProviderClient>, crate::oauth::Renewal)>,
    /// The stored access token is known to have expired.
    stale: bool,
}

impl Run<'_> {
    /// Proves each asset's SMTP login, in parallel, and records each
    /// outcome in state (one write). A refused login fails the asset; its
    /// tokens stay stored. `retry`: the tokens come from storage, so a
    /// refusal is tried once more with a fresh one.
    pub(super) fn prove(&mut self, state: &mut State, names: &[(String, bool)]) {
        let mut endpoints = observe::Endpoints::default();
        let mut proofs = Vec::new();
        for (name, retry) in names {
            let Some((_, tokens)) = self.stored(state, name) else {
                self.fail(name, "no tokens to prove the SMTP login with");
                continue;
            };
            let asset = &self.config.assets[name];
            let granted = state.assets[name]
                .token
                .as_ref()
                .map(|t| t.granted_scopes.clone())
                .unwrap_or_default();
            let probe = match endpoints.probe(self.config, asset, &granted, self.smtp_timeout) {
                Ok(p) => p,
                Err(why) => {
                    self.fail(name, &format!("SMTP check: {why}"));
                    continue;
                }
            };
            let renewal = crate::oauth::Renewal::of(
                self.config.provider_of(asset),
                asset,
                tokens.refresh_token,
            );
            let refresh = match (retry, renewal) {
                (true, Some(r)) => self.client(&asset.provider).ok().map(|c| (c, r)),
                _ => None,
            };
            // A stored token known to be (nearly) expired is refreshed
            // first rather than shown to the server.
            let expired = *retry
                && state.assets[name]
                    .token
                    .as_ref()
                    .and_then(|t| t.access_expires_at)
                    .is_some_and(|at| at <= Utc::now() + chrono::Duration::minutes(1));
            proofs.push(Proof {
                name: name.clone(),
                probe,
                access: tokens.access_token,
                refresh,
                stale: expired,
            });
        }
        let progress = render::progress::tracker("proving SMTP logins", proofs.len(), self.quiet);
        let items = proofs.into_iter().map(|p| (p.name.clone(), p)).collect();
        let prove = |proof: Proof| async move {
            let server = proof.probe.endpoint.server();
            if crate::interrupt::requested() {
                return (server, None, None);
            }
            let refresh = proof.refresh.as_ref().map(|(c, r)| (&**c, r));
            let (result, grant) =
                observe::prove_login(&proof.probe, &proof.access, refresh, proof.stale).await;
            (server, Some(result), grant)
        };
        let runtime = self.runtime;
        // Each outcome is recorded as it arrives (a journal line): a new
        // grant (a rotated refresh token is the only copy) and the check are
        // durable before the next outcome is read.
        runtime.block_on(crate::parallel::each(
            items,
            self.parallelism,
            progress,
            prove,
            |name, (server, result, grant)| {
                // Not started (interrupted): the change stands, unproven.
                let Some(result) = result else {
                    self.fail(&name, "the SMTP login was not proven: interrupted");
                    return false;
                };
                let ok = matches!(result, Ok((_, SmtpObservation::Accepted { .. })));
                let refreshed = grant.is_some();
                self.proven(state, &name, &server, result, grant);
                if let Err(why) = self.save(state, &name) {
                    let what = if refreshed {
                        "the refreshed token and the SMTP check were not stored"
                    } else {
                        "the SMTP check was not stored"
                    };
                    self.fail(&name, &format!("{what}: {why}"));
                }
                ok
            },
        ));
    }

    /// Records one proof's outcome in state (not yet written).
    fn proven(
        &mut self,
        state: &mut State,
        name: &str,
        server: &str,
        result: Result<(smtp::Outcome, SmtpObservation), observe::Failure>,
        grant: Option<crate::oauth::Grant>,
    ) {
        let now = Utc::now();
        if let Some(d) = self.done.get_mut(name) {
            d.ended = std::time::Instant::now();
        }
        if let Some(grant) = grant {
            let old = self.stored(state, name).and_then(|(_, t)| t.refresh_token);
            grant.store_in(state, self.key, name, old, now);
        }
        // Not tried to the end (a transient answer, an error): the login
        // is not proven, and state says so (drift until a proof passes),
        // beside the asset's failure.
        let seen = match result {
            Ok((_, seen)) => {
                self.report("SMTP", name, server, &seen);
                seen
            }
            Err(e) => {
                self.fail(name, &e.to_string());
                SmtpObservation::Transient {
                    detail: e.to_string(),
                }
            }
        };
        let check = seen.record(server, now);
        if let Some(record) = state.assets.get_mut(name) {
            record.smtp_check = Some(check);
        }
    }

    /// Says what the server answered to one proof: proven, or the asset's
    /// failure in the server's words.
    pub(super) fn report(&mut self, what: &str, name: &str, server: &str, seen: &SmtpObservation) {
        match seen {
            SmtpObservation::Accepted { reply, .. } => {
                let _ = self.printer.err(&format!(
                    "{name}: {what} login proven by {server} ({reply})\n"
                ));
            }
            SmtpObservation::Refused {
                reply,
                hint,
                reconsent,
                ..
            } => self.fail(
                name,
                &format!(
                    "{what} login refused by {server} — {reply}{}{}",
                    hint.as_deref()
                        .map(|h| format!("; hint: {h}"))
                        .unwrap_or_default(),
                    if *reconsent {
                        "; mailform plan now asks for a new consent, which mailform apply runs"
                    } else {
                        ""
                    }
                ),
            ),
            // Not tried to the end: the login is not proven, and state says
            // so (drift until a proof passes), beside the asset's failure.
            SmtpObservation::Transient { detail } => {
                self.fail(name, &format!("{what} check: {detail}"));
            }
        }
    }
}
