//! The execute stage: walks an approved plan and makes it so.
//!
//! Per asset: delete → revoke at the provider, then forget; re-consent →
//! consent again (the old grant stays until a new one is stored); create →
//! consent; update → store the new fields. Then the SMTP login is proven
//! (in parallel) wherever [`crate::plan::Change::smtp_proof`] says, and each
//! outcome is recorded in state as it arrives (a journal line; one state
//! file at the end). One asset's failure does not stop the others; a
//! Ctrl-C starts nothing new.
//!
//! - `consent`: the consent flows (loopback, manual, device, never) and the
//!   one place a new grant is checked (who gave it, which scopes) and stored.
//! - `prove`: the SMTP proofs after the changes.
//!
//! The executor takes a printer, a runtime and the store; it prints only
//! progress lines on stderr, and leaves the summary and the exit status to
//! the command.

mod app;
mod consent;
mod forwarding;
mod imap;
mod prove;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::config::Config;
use crate::config::raw::ConsentMode;
use crate::oauth::{ProviderClient, TokenKind};
use crate::plan::{self, Action};
use crate::render::{self, Printer};
use crate::secret::Secret;
use crate::state::crypto::Key;
use crate::state::{AppliedAsset, State, Tokens};
use crate::store::StateStore;

/// What an apply is given besides the plan and the state.
pub struct Setup<'a> {
    pub printer: &'a Printer,
    pub config: &'a Config,
    pub store: &'a dyn StateStore,
    pub key: &'a Key,
    pub runtime: &'a tokio::runtime::Runtime,
    /// Network steps at once.
    pub parallelism: usize,
    /// The bound on each SMTP step.
    pub smtp_timeout: Duration,
    /// How a person consents, and for how long mailform waits.
    pub consent: ConsentMode,
    pub consent_timeout: Duration,
    /// No progress display (`--json`).
    pub quiet: bool,
}

/// What happened to one asset.
struct Done {
    action: Action,
    outcome: Result<String, String>,
    /// When its last step ended.
    ended: std::time::Instant,
}

/// One apply's working set: what it was given, and what happened to each
/// asset so far.
pub struct Run<'a> {
    printer: &'a Printer,
    config: &'a Config,
    store: &'a dyn StateStore,
    key: &'a Key,
    runtime: &'a tokio::runtime::Runtime,
    clients: crate::oauth::Clients,
    /// What happened to each asset, by name.
    done: BTreeMap<String, Done>,
    /// Records were journaled since the state file was last written.
    unsaved: bool,
    parallelism: usize,
    smtp_timeout: std::time::Duration,
    /// When each asset's first step started.
    started: BTreeMap<String, (chrono::DateTime<Utc>, std::time::Instant)>,
    /// No progress display (`--json`).
    quiet: bool,
    /// Assets whose new grant's login was proven before it was stored (it
    /// named no account): apply's proof need not run again.
    proven_at_consent: std::collections::BTreeSet<String>,
    consent_mode: ConsentMode,
    consent_timeout: Duration,
}

impl<'a> Run<'a> {
    pub fn new(setup: &Setup<'a>) -> Self {
        Run {
            printer: setup.printer,
            config: setup.config,
            store: setup.store,
            key: setup.key,
            runtime: setup.runtime,
            clients: crate::oauth::Clients::default(),
            done: BTreeMap::new(),
            unsaved: false,
            parallelism: setup.parallelism,
            smtp_timeout: setup.smtp_timeout,
            started: BTreeMap::new(),
            quiet: setup.quiet,
            proven_at_consent: std::collections::BTreeSet::new(),
            consent_mode: setup.consent,
            consent_timeout: setup.consent_timeout,
        }
    }

    /// Carries out `plan`'s changes on `state`: updates, then deletes, then
    /// consents, then the SMTP proofs; the state written in one piece at
    /// the end. A Ctrl-C starts no new step.
    pub fn apply(&mut self, plan: &plan::Plan, state: &mut State) {
        let mut consents = Vec::new();
        let mut deletes = Vec::new();
        for change in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
            if crate::interrupt::requested() {
                break;
            }
            let name = change.asset.as_str();
            match change.action {
                Action::Update => {
                    self.update(state, name);
                    self.forwarding(state, change);
                }
                Action::Delete => deletes.push(name.to_string()),
                // A re-consent's old grant stays until a new one is stored
                // (see store_grant): a consent that fails or never happens
                // must not cost the mailbox its working grant.
                Action::Reconsent | Action::Create => consents.push(name.to_string()),
                Action::NoOp => {}
            }
        }
        if !deletes.is_empty() && !crate::interrupt::requested() {
            self.delete(state, &deletes);
        }
        // No person consents for an organisation grant's mailbox.
        let (apps, consents): (Vec<String>, Vec<String>) = consents.into_iter().partition(|n| {
            self.config
                .provider_of(&self.config.assets[n])
                .grant
                .is_organisation()
        });
        if !apps.is_empty() && !crate::interrupt::requested() {
            self.app_grants(state, &apps);
        }
        if !consents.is_empty() && !crate::interrupt::requested() {
            self.consent(state, &consents, self.consent_mode, self.consent_timeout);
        }
        let proofs: Vec<(String, bool)> = plan
            .changes
            .iter()
            .filter(|c| self.succeeded(&c.asset) && !self.proven_at_consent.contains(&c.asset))
            .filter_map(|c| {
                c.smtp_proof()
                    .map(|with| (c.asset.clone(), with == plan::ProofWith::Stored))
            })
            .collect();
        if !proofs.is_empty() && !crate::interrupt::requested() {
            self.prove(state, &proofs);
        }
        // The IMAP logins of assets that declare one, once the SMTP proofs
        // (and the tokens they may have refreshed) are stored.
        // (Proven whether or not the SMTP proof passed: each half is
        // recorded on its own. An asset with no tokens has nothing to prove.)
        let imap: Vec<(String, bool)> = plan
            .changes
            .iter()
            .filter(|c| {
                state
                    .assets
                    .get(&c.asset)
                    .is_some_and(|r| r.token.is_some())
            })
            .filter_map(|c| {
                c.imap_proof()
                    .map(|with| (c.asset.clone(), with == plan::ProofWith::Stored))
            })
            .collect();
        if !imap.is_empty() && !crate::interrupt::requested() {
            self.prove_imap(state, &imap);
        }
        self.commit(state);
    }

    /// How many assets' changes went through.
    pub fn applied(&self) -> usize {
        self.done.values().filter(|d| d.outcome.is_ok()).count()
    }

    /// The outcome of each change of `plan` (not started where a Ctrl-C
    /// came first), for `apply --json`.
    pub fn outcomes(&self, plan: &plan::Plan) -> Vec<render::apply::AssetOutcome> {
        plan.changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .map(|c| self.outcome(c))
            .collect()
    }

    /// The counts by action of what went through, and each failure.
    pub fn summary(&self) -> render::apply::Summary {
        let count = |action: Action| {
            self.done
                .values()
                .filter(|d| d.action == action && d.outcome.is_ok())
                .count()
        };
        render::apply::Summary {
            created: count(Action::Create),
            updated: count(Action::Update),
            reconsented: count(Action::Reconsent),
            deleted: count(Action::Delete),
            failures: self
                .done
                .iter()
                .filter_map(|(asset, d)| {
                    d.outcome
                        .as_ref()
                        .err()
                        .map(|why| (asset.clone(), why.clone()))
                })
                .collect(),
        }
    }

    /// Whether the asset's change went through.
    fn succeeded(&self, asset: &str) -> bool {
        self.done.get(asset).is_some_and(|d| d.outcome.is_ok())
    }

    /// Marks an asset whose change went through as failed after all (its
    /// login could not be proven), and says so.
    fn fail(&mut self, asset: &str, why: &str) {
        let _ = self.printer.err(&format!("{asset}: failed: {why}\n"));
        if let Some(d) = self.done.get_mut(asset) {
            // A second failure adds to the first; it never hides it.
            d.outcome = Err(match &d.outcome {
                Ok(done) => format!("{done}, but {why}"),
                Err(first) => format!("{first}; {why}"),
            });
            d.ended = std::time::Instant::now();
        }
    }

    fn record(&mut self, asset: &str, action: Action, outcome: Result<String, String>) {
        let line = match &outcome {
            Ok(what) => format!("{asset}: {what}\n"),
            Err(why) => format!("{asset}: failed: {why}\n"),
        };
        let _ = self.printer.err(&line);
        self.begin(asset);
        self.done.insert(
            asset.to_string(),
            Done {
                action,
                outcome,
                ended: std::time::Instant::now(),
            },
        );
    }

    /// Notes that `asset`'s first step starts now (later calls keep the first).
    fn begin(&mut self, asset: &str) {
        self.started
            .entry(asset.to_string())
            .or_insert_with(|| (Utc::now(), std::time::Instant::now()));
    }

    /// How `change` went, for `apply --json`.
    fn outcome(&self, change: &plan::Change) -> render::apply::AssetOutcome {
        use render::apply::Outcome;
        let done = self.done.get(&change.asset);
        let started = self.started.get(&change.asset);
        let (outcome, detail) = match done.map(|d| &d.outcome) {
            Some(Ok(what)) => (Outcome::Applied, what.clone()),
            Some(Err(why)) => (Outcome::Failed, why.clone()),
            None => (
                Outcome::NotStarted,
                "not started: the apply was interrupted".to_string(),
            ),
        };
        let started = started.filter(|_| outcome != Outcome::NotStarted);
        render::apply::AssetOutcome {
            asset: change.asset.clone(),
            action: change.action,
            outcome,
            detail,
            reasons: change.reasons.clone(),
            started_at: started.map(|s| s.0),
            duration_ms: started.zip(done).map(|(s, d)| {
                u64::try_from(d.ended.saturating_duration_since(s.1).as_millis())
                    .unwrap_or(u64::MAX)
            }),
        }
    }

    /// Makes `name`'s record durable now (a journal line, folded into the
    /// state file at the end); a failure is that asset's failure (the change
    /// is in memory only, and said so).
    fn save(&mut self, state: &mut State, name: &str) -> Result<(), String> {
        self.unsaved = true;
        self.store
            .record(state, &[name])
            .map_err(|e| format!("{e} (the change was not stored)"))
    }

    /// Folds what was recorded into one new state file.
    fn commit(&mut self, state: &mut State) {
        if self.unsaved
            && let Err(e) = self.store.save(state)
        {
            let _ = self.printer.err(&format!(
                "warning: the state at {} could not be rewritten in one piece ({e}); the changes recorded so far are read back by the next command\n",
                self.store.location()
            ));
        }
        self.unsaved = false;
    }

    fn client(&mut self, provider: &str) -> Result<Arc<ProviderClient>, String> {
        self.clients
            .get(&self.config.providers[provider])
            .map_err(|e| e.to_string())
    }

    fn update(&mut self, state: &mut State, name: &str) {
        self.begin(name);
        let asset = &self.config.assets[name];
        if let Some(record) = state.assets.get_mut(name) {
            record.applied = plan::applied_over(self.config, asset, record);
            record.updated_at = Utc::now();
        }
        let outcome = self.save(state, name).map(|()| "updated".to_string());
        self.record(name, Action::Update, outcome);
    }

    /// An asset's applied record and its tokens, when it holds tokens that open.
    fn stored(&self, state: &State, name: &str) -> Option<(AppliedAsset, Tokens)> {
        let tokens = state.open_tokens(self.key, name)?.ok()?;
        Some((state.assets[name].applied.clone(), tokens))
    }

    /// Revokes `tokens`, granted under `applied`, as [`Run::revocation`] says.
    fn revoke_tokens(&mut self, applied: &AppliedAsset, tokens: &Tokens) -> Result<bool, String> {
        match self.revocation(applied, tokens)? {
            Some((client, token, kind)) => self
                .runtime
                .block_on(client.revoke(&token, kind))
                .map_err(|e| e.to_string()),
            None => Ok(false),
        }
    }

    /// What revoking `tokens` takes: the client and the token to send, or
    /// `None` when mailform cannot revoke them. Tokens are revoked only at
    /// the provider that issued them, when the configured provider is still
    /// that client at that revocation endpoint (a token must not be sent to
    /// another one). The refresh token goes (revoking it ends the grant); the
    /// access token only when there is no refresh token.
    fn revocation(
        &mut self,
        applied: &AppliedAsset,
        tokens: &Tokens,
    ) -> Result<Option<(Arc<ProviderClient>, Secret, TokenKind)>, String> {
        let Some(provider) = self.config.providers.get(&applied.provider) else {
            return Ok(None);
        };
        // An organisation grant's token is the app's: nothing to revoke.
        if applied.grant.is_some() {
            return Ok(None);
        }
        let same_client = provider.client_id == applied.client_id
            && provider.revocation_url.as_ref().map(ToString::to_string) == applied.revocation_url;
        if !same_client {
            return Ok(None);
        }
        let client = self.client(&provider.name)?;
        let (token, kind) = match &tokens.refresh_token {
            Some(refresh) => (refresh.clone(), TokenKind::Refresh),
            None => (tokens.access_token.clone(), TokenKind::Access),
        };
        Ok(Some((client, token, kind)))
    }

    /// Deletes: each asset's tokens revoked at the provider (in parallel, up
    /// to `parallelism`), then the asset forgotten, recorded as each
    /// revocation answers.
    fn delete(&mut self, state: &mut State, names: &[String]) {
        let mut jobs = Vec::new();
        for name in names {
            self.begin(name);
            let prepared = match self.stored(state, name) {
                Some((applied, tokens)) => self.revocation(&applied, &tokens),
                None => Ok(None), // nothing genuine to revoke
            };
            jobs.push((name.clone(), prepared));
        }
        let progress = render::progress::tracker("revoking", jobs.len(), self.quiet);
        let revoke = |prepared: Result<
            Option<(Arc<ProviderClient>, Secret, TokenKind)>,
            String,
        >| async move {
            match prepared {
                Ok(Some(_)) if crate::interrupt::requested() => Err(NOT_STARTED.to_string()),
                Ok(Some((client, token, kind))) => {
                    client.revoke(&token, kind).await.map_err(|e| e.to_string())
                }
                Ok(None) => Ok(false),
                Err(why) => Err(why),
            }
        };
        let runtime = self.runtime;
        runtime.block_on(crate::parallel::each(
            jobs,
            self.parallelism,
            progress,
            revoke,
            |name, result| {
                if matches!(&result, Err(why) if why == NOT_STARTED) {
                    return false; // reported as not started
                }
                let outcome = match result {
                    Ok(revoked) => {
                        let app = state
                            .assets
                            .remove(&name)
                            .is_some_and(|r| r.applied.grant.is_some());
                        self.save(state, &name).map(|()| {
                            if revoked {
                                "tokens revoked at the provider, then forgotten".to_string()
                            } else if app {
                                "forgotten (an app grant: there is nothing to revoke)".to_string()
                            } else {
                                "forgotten (the provider has no revocation endpoint, or the tokens could not be opened: revoke access in its console)".to_string()
                            }
                        })
                    }
                    Err(why) => Err(format!(
                        "{why}; the asset stays in state, so a later apply revokes it"
                    )),
                };
                let ok = outcome.is_ok();
                self.record(&name, Action::Delete, outcome);
                ok
            },
        ));
    }
}

/// Why a step was skipped: a Ctrl-C came first.
const NOT_STARTED: &str = "not started: interrupted";

/// Create or re-consent, as the plan said (a re-consent's record stays in
/// state without tokens).
fn action_of(state: &State, name: &str) -> Action {
    if state.assets.contains_key(name) {
        Action::Reconsent
    } else {
        Action::Create
    }
}
