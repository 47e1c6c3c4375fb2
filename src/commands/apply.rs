//! `mailform apply`: make it so.
//!
//! Under the state lock: observe (the live token checks of `plan`), plan,
//! show the plan, confirm (`--auto-approve`; never guessed without a
//! terminal), then per asset: delete → revoke at the provider, then forget;
//! re-consent → revoke the old grant, then consent; create → consent;
//! update → store the new fields; then the SMTP login is proven (in
//! parallel) for every new grant and every update of the SMTP endpoint or
//! of a refused login, and each outcome is recorded in state (a refused
//! login fails the asset). Consents go through one loopback listener
//! per redirect URI (bulk: every owner opens their own link), and each grant
//! is written to state the moment it arrives. One asset's failure does not
//! stop the others; the summary lists each failure, and the exit code is 1
//! if any failed.
//!
//! Consent modes: `loopback` (above), `manual` (print the link, read the
//! pasted address or code from stdin), `device` (RFC 8628: show the code,
//! poll), `never` (fail each asset, saying where to consent). The engine for
//! many assets at once (parallel network steps, saved plans, crash-safe
//! batching) builds on this.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::Utc;

use super::{Context, ExitStatus};
use crate::cli::ApplyArgs;
use crate::config::raw::ConsentMode;
use crate::config::{Asset, Config};
use crate::error::Error;
use crate::oauth::loopback::{self, Consent, Listener};
use crate::oauth::{Grant, ProviderClient, TokenKind};
use crate::observe;
use crate::plan::{self, Action, SmtpObservation};
use crate::render;
use crate::secret::Secret;
use crate::smtp;
use crate::state::crypto::Key;
use crate::state::{AppliedAsset, SmtpCheck, State, Tokens};
use crate::store::{StateStore, key};

pub fn run(ctx: &Context<'_>, args: &ApplyArgs) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let consent_timeout = crate::settings::parse_duration(&args.consent_timeout)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            if d.is_zero() {
                Err("it must be longer than 0s: no person consents at once".to_string())
            } else {
                Ok(d)
            }
        })
        .map_err(|e| {
            Error::Usage(format!(
                "invalid --consent-timeout `{}`: {e} (write e.g. 5m)",
                crate::diagnostic::shown(&args.consent_timeout)
            ))
        })?;
    // A saved plan is read (and its shape checked) before anything else.
    let saved = match &args.plan {
        Some(path) => Some(read_saved_plan(path)?),
        None => None,
    };
    let targets: Vec<String> = match &saved {
        Some(p) => p.changes.iter().map(|c| c.asset.clone()).collect(),
        None => args.target.clone(),
    };
    super::plan::check_secrets(ctx, &config, &targets)?;
    crate::interrupt::install(crate::render::notice_line);
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    store.prepare()?;
    let _lock = ctx.lock(store, "apply", settings.lock_timeout)?;
    let mut state = store.load_folded()?.unwrap_or_else(State::new);
    super::check_selection(&config, Some(&state), &args.target, &args.reconsent)?;
    if let Some(t) = args
        .reconsent
        .iter()
        .find(|t| !config.assets.contains_key(*t))
    {
        return Err(Error::Usage(format!(
            "--reconsent {t}: it is no longer in {}, so apply revokes and forgets it instead",
            config.path.display()
        )));
    }
    let key = key_for(ctx, &config, &state)?;

    // Human output goes to stderr when stdout carries the JSON document.
    let say = |text: &str| {
        if args.json {
            ctx.printer.err(text)
        } else {
            ctx.printer.out(text)
        }
    };
    let plan = if let (Some(mut plan), Some(path)) = (saved, &args.plan) {
        check_saved_plan(&plan, path, &config, &state)?;
        // The file says what to do; the config and state say what may be
        // done: an edited file cannot delete a configured mailbox, or
        // create one that is not configured.
        let offline = plan::plan(
            &config,
            Some(&state),
            &observe::sealed_tokens(&state, &key, &targets),
            Utc::now(),
            &targets,
        );
        allowed_by(&mut plan, &offline, path)?;
        say(&render::plan::human(&plan))?;
        plan
    } else {
        let now = Utc::now();
        let (observations, failures) = super::plan::observed(
            &config,
            &settings,
            store,
            &mut state,
            &key,
            &args.target,
            None,
            now,
            args.json,
        )?;
        for (name, e) in &failures {
            ctx.printer.err(&format!("warning: {name}: {e}\n"))?;
        }
        let mut plan = plan::plan(&config, Some(&state), &observations, now, &args.target);
        plan.force_reconsent(&args.reconsent);
        say(&render::plan::human(&plan))?;
        if !plan.is_empty()
            && !args.auto_approve
            && !ctx.confirm("Apply these changes?", "apply", "--auto-approve")?
        {
            return Err(Error::Usage("apply cancelled; nothing was changed".into()));
        }
        plan
    };
    if plan.is_empty() {
        if args.json {
            let doc = document(&plan, &[], &state, store, args, false);
            ctx.printer.out(&doc)?;
        }
        return Ok(ExitStatus::Success);
    }

    // From here on a Ctrl-C stops the run cleanly (see `interrupt`).
    crate::interrupt::arm(true);
    let runtime = super::runtime()?;
    let mut run = Run {
        ctx,
        config: &config,
        store,
        key: &key,
        runtime: &runtime,
        clients: crate::oauth::Clients::default(),
        done: BTreeMap::new(),
        unsaved: false,
        parallelism: usize::try_from(settings.parallelism).unwrap_or(usize::MAX),
        smtp_timeout: settings.smtp_timeout,
        started: BTreeMap::new(),
        quiet: args.json,
        proven_at_consent: std::collections::BTreeSet::new(),
    };
    let mut consents = Vec::new();
    let mut deletes = Vec::new();
    for change in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        if crate::interrupt::requested() {
            break;
        }
        let name = change.asset.as_str();
        match change.action {
            Action::Update => run.update(&mut state, name),
            Action::Delete => deletes.push(name.to_string()),
            // A re-consent's old grant stays until a new one is stored (see
            // store_grant): a consent that fails or never happens must not
            // cost the mailbox its working grant.
            Action::Reconsent | Action::Create => consents.push(name.to_string()),
            Action::NoOp => {}
        }
    }
    if !deletes.is_empty() && !crate::interrupt::requested() {
        run.delete(&mut state, &deletes);
    }
    if !consents.is_empty() && !crate::interrupt::requested() {
        let mode = settings.consent_mode();
        run.consent(&mut state, &consents, mode, consent_timeout);
    }
    // The login is proven where it may have changed: new grants, and
    // updates of the SMTP endpoint or of a login that was refused.
    let proofs: Vec<(String, bool)> = plan
        .changes
        .iter()
        .filter(|c| run.succeeded(&c.asset) && !run.proven_at_consent.contains(&c.asset))
        .filter_map(|c| match c.action {
            Action::Create | Action::Reconsent => Some((c.asset.clone(), false)),
            Action::Update
                if c.fields.iter().any(|f| f.field.is_smtp_endpoint())
                    || c.reasons
                        .iter()
                        .any(|r| matches!(r, plan::Reason::SmtpLoginRefused { .. })) =>
            {
                Some((c.asset.clone(), true))
            }
            _ => None,
        })
        .collect();
    if !proofs.is_empty() && !crate::interrupt::requested() {
        run.prove(&mut state, &proofs);
    }
    run.commit(&mut state);
    let interrupted = crate::interrupt::requested();
    let total = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .count();
    if ctx.cli.verbose {
        let (writes, bytes) = store.written();
        render::verbose_line(&format!(
            "state: {writes} writes, {bytes} bytes (state files and journal lines)"
        ));
    }
    let status = run.summary(args.json);
    if args.json {
        let outcomes: Vec<render::apply::AssetOutcome> = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .map(|c| run.outcome(c))
            .collect();
        ctx.printer.out(&document(
            &plan,
            &outcomes,
            &state,
            store,
            args,
            interrupted,
        ))?;
        ctx.doc_printed.set(true);
    }
    if interrupted {
        return Err(Error::Interrupted {
            done: run.done.values().filter(|d| d.outcome.is_ok()).count(),
            total,
        });
    }
    status
}

/// Reads a saved plan (`plan --out`), bounded, refusing what is not one.
fn read_saved_plan(path: &std::path::Path) -> Result<plan::Plan, Error> {
    let bad = |why: String| Error::SavedPlan {
        path: path.to_path_buf(),
        why,
    };
    let bytes = crate::files::read(path, plan::MAX_PLAN_BYTES, crate::files::Links::Follow)
        .map_err(|e| bad(e.to_string()))?;
    plan::Plan::read_saved(&bytes).map_err(bad)
}

/// A saved plan applies only to the state and config it was made from.
fn check_saved_plan(
    plan: &plan::Plan,
    path: &std::path::Path,
    config: &Config,
    state: &State,
) -> Result<(), Error> {
    let bad = |why: String| Error::SavedPlan {
        path: path.to_path_buf(),
        why,
    };
    let lineage = (state.serial > 0).then_some(state.lineage);
    if plan.lineage != lineage {
        return Err(bad(match (plan.lineage, lineage) {
            (Some(_), None) => "it was made against a state, and there is none here — run mailform plan again".into(),
            (None, Some(_)) => "it was made before any state existed, and there is one now — run mailform plan again".into(),
            _ => "it was made against another state (its lineage differs) — run mailform plan here".into(),
        }));
    }
    if plan.serial != state.serial {
        return Err(bad(format!(
            "saved plan is stale: state serial is {}, the plan was made at {} — run mailform plan again",
            state.serial, plan.serial
        )));
    }
    if plan.config_digest != config.digest {
        return Err(bad(format!(
            "{} changed since the plan was made — run mailform plan again",
            config.path.display()
        )));
    }
    if let Some(c) = plan
        .changes
        .iter()
        .find(|c| !config.assets.contains_key(&c.asset) && !state.assets.contains_key(&c.asset))
    {
        return Err(bad(format!(
            "it names asset `{}`, which is neither in the config nor in state",
            crate::diagnostic::shown(&c.asset)
        )));
    }
    Ok(())
}

/// Checks each change of a saved plan against the plan of the same config
/// and state made now without the network: a create or a delete must be
/// that plan's too; an applied, configured asset may be a no-op, an update
/// or a re-consent (what live checks and `--reconsent` decide). The emails
/// and providers shown are then the config's and the state's, not the
/// file's.
fn allowed_by(
    saved: &mut plan::Plan,
    offline: &plan::Plan,
    path: &std::path::Path,
) -> Result<(), Error> {
    for c in &mut saved.changes {
        let Some(now) = offline.changes.iter().find(|o| o.asset == c.asset) else {
            return Err(Error::SavedPlan {
                path: path.to_path_buf(),
                why: format!(
                    "it names asset `{}`, which the config and state do not plan",
                    crate::diagnostic::shown(&c.asset)
                ),
            });
        };
        // Live checks move an applied, configured asset among no-op,
        // update and re-consent (a refused login, a revoked grant, a login
        // that passes again); a create or a delete is the config's alone.
        // But a re-consent that config and state alone require (tokens
        // bound to other fields, missing, unreadable, expired, short of a
        // scope) no live check can clear: writing the new fields over
        // those tokens would hand them to a client they were not made for.
        let kept = |a: Action| matches!(a, Action::NoOp | Action::Update | Action::Reconsent);
        let required = now.action == Action::Reconsent
            && now.reasons.iter().any(|r| {
                matches!(
                    r,
                    plan::Reason::TokenMissing
                        | plan::Reason::TokenUnreadable { .. }
                        | plan::Reason::BindingChanged { .. }
                        | plan::Reason::ScopesShort { .. }
                        | plan::Reason::TokenExpired { .. }
                )
            });
        let ok = c.action == now.action || (kept(c.action) && kept(now.action) && !required);
        if !ok {
            return Err(Error::SavedPlan {
                path: path.to_path_buf(),
                why: format!(
                    "it says {:?} for `{}`, but the config and state allow only {:?} (was it edited?)",
                    c.action, c.asset, now.action
                ),
            });
        }
        c.email.clone_from(&now.email);
        c.provider.clone_from(&now.provider);
        c.fields.clone_from(&now.fields);
    }
    Ok(())
}

/// The `apply --json` document.
fn document(
    plan: &plan::Plan,
    assets: &[render::apply::AssetOutcome],
    state: &State,
    store: &dyn StateStore,
    args: &ApplyArgs,
    interrupted: bool,
) -> String {
    use render::apply::{ApplyDoc, ApplySummary, Outcome, StateWrites};
    let mut summary = ApplySummary::default();
    for a in assets {
        match (a.outcome, a.action) {
            (Outcome::Failed, _) => summary.failed += 1,
            (Outcome::NotStarted, _) => summary.not_started += 1,
            (Outcome::Applied, Action::Create) => summary.created += 1,
            (Outcome::Applied, Action::Update) => summary.updated += 1,
            (Outcome::Applied, Action::Reconsent) => summary.reconsented += 1,
            (Outcome::Applied, Action::Delete) => summary.deleted += 1,
            (Outcome::Applied, Action::NoOp) => {}
        }
    }
    let (count, bytes) = store.written();
    let doc = ApplyDoc {
        format_version: render::apply::APPLY_FORMAT_VERSION,
        mailform_version: env!("CARGO_PKG_VERSION").to_string(),
        lineage: (state.serial > 0).then_some(state.lineage).or(plan.lineage),
        serial: state.serial,
        plan_file: args.plan.as_ref().map(|p| p.display().to_string()),
        interrupted,
        assets: assets.to_vec(),
        summary,
        state_writes: StateWrites { count, bytes },
    };
    serde_json::to_string_pretty(&doc).expect("apply documents serialize") + "\n"
}

/// The key that seals this state's tokens; made (like `init` does) when the
/// state holds none yet.
fn key_for(ctx: &Context<'_>, config: &Config, state: &State) -> Result<Key, Error> {
    let (key, origin) = key::load_or_create(&config.state_dir(), Some(state))?;
    if let key::Origin::Created(path) = origin {
        ctx.printer.err(&format!(
            "Created the token-encryption key {} (mode 0600). Back it up: without it stored tokens are lost.\n",
            path.display()
        ))?;
    }
    Ok(key)
}

/// What happened to one asset.
struct Done {
    action: Action,
    outcome: Result<String, String>,
    /// When its last step ended.
    ended: std::time::Instant,
}

/// One apply's working set.
struct Run<'a> {
    ctx: &'a Context<'a>,
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
}

/// One login to prove after the changes.
struct Proof {
    name: String,
    probe: observe::Probe,
    access: Secret,
    /// To retry once with a fresh token (tokens from storage only).
    refresh: Option<(Arc<ProviderClient>, Secret)>,
    /// The stored access token is known to have expired.
    stale: bool,
}

impl Run<'_> {
    /// Whether the asset's change went through.
    fn succeeded(&self, asset: &str) -> bool {
        self.done.get(asset).is_some_and(|d| d.outcome.is_ok())
    }

    /// Proves each asset's SMTP login, in parallel, and records each
    /// outcome in state (one write). A refused login fails the asset; its
    /// tokens stay stored. `retry`: the tokens come from storage, so a
    /// refusal is tried once more with a fresh one.
    fn prove(&mut self, state: &mut State, names: &[(String, bool)]) {
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
            let refresh = match (retry, tokens.refresh_token) {
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
                self.proven(state, &name, server, result, grant);
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
        server: String,
        result: Result<(smtp::Outcome, SmtpObservation), observe::Failure>,
        grant: Option<crate::oauth::Grant>,
    ) {
        let now = Utc::now();
        if let Some(d) = self.done.get_mut(name) {
            d.ended = std::time::Instant::now();
        }
        if let Some(grant) = grant {
            let old = self.stored(state, name).and_then(|(_, t)| t.refresh_token);
            let access_expires_at = grant.access_expires_at(now);
            let tokens = grant.into_tokens(old);
            state.store_refreshed(self.key, name, &tokens, access_expires_at, now);
        }
        let check = match result {
            Ok((_, SmtpObservation::Accepted { reply, .. })) => {
                let _ = self.ctx.printer.err(&format!(
                    "{name}: SMTP login proven by {server} ({reply})\n"
                ));
                SmtpCheck {
                    at: now,
                    ok: true,
                    server,
                    detail: reply,
                    hint: None,
                }
            }
            Ok((_, SmtpObservation::Refused { reply, hint, .. })) => {
                self.fail(
                    name,
                    &format!(
                        "SMTP login refused by {server} — {reply}{}",
                        hint.as_deref()
                            .map(|h| format!("; hint: {h}"))
                            .unwrap_or_default()
                    ),
                );
                SmtpCheck {
                    at: now,
                    ok: false,
                    server,
                    detail: reply,
                    hint,
                }
            }
            Ok((_, SmtpObservation::Transient { detail })) => {
                self.fail(name, &format!("SMTP check: {detail}"));
                return;
            }
            Err(e) => {
                self.fail(name, &e.to_string());
                return;
            }
        };
        if let Some(record) = state.assets.get_mut(name) {
            record.smtp_check = Some(check);
        }
    }

    /// Marks an asset whose change went through as failed after all (its
    /// login could not be proven), and says so.
    fn fail(&mut self, asset: &str, why: &str) {
        let _ = self.ctx.printer.err(&format!("{asset}: failed: {why}\n"));
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
        let _ = self.ctx.printer.err(&line);
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
            let _ = self.ctx.printer.err(&format!(
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
            record.applied = plan::applied(self.config, asset);
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
                        state.assets.remove(&name);
                        self.save(state, &name).map(|()| {
                            if revoked {
                                "tokens revoked at the provider, then forgotten".to_string()
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

    fn consent(
        &mut self,
        state: &mut State,
        names: &[String],
        mode: ConsentMode,
        timeout: std::time::Duration,
    ) {
        for name in names {
            self.begin(name);
        }
        match mode {
            ConsentMode::Loopback => self.loopback(state, names, timeout),
            ConsentMode::Never => {
                for name in names {
                    let action = action_of(state, name);
                    self.record(
                        name,
                        action,
                        Err(format!(
                            "consent required for {name}: run `mailform apply` where a person can consent (a terminal, or $BROWSER set; or --consent loopback)"
                        )),
                    );
                }
            }
            ConsentMode::Manual => {
                let stdin = std::io::stdin();
                let mut input = stdin.lock();
                for name in names {
                    if crate::interrupt::requested() {
                        break;
                    }
                    let action = action_of(state, name);
                    let outcome = self
                        .manual(state, name, &mut input)
                        .map(|()| "consented; tokens stored".to_string());
                    self.record(name, action, outcome);
                }
            }
            ConsentMode::Device => {
                for name in names {
                    if crate::interrupt::requested() {
                        break;
                    }
                    let action = action_of(state, name);
                    let outcome = self
                        .device(state, name, timeout)
                        .map(|()| "consented; tokens stored".to_string());
                    self.record(name, action, outcome);
                }
            }
        }
    }

    /// `manual`: print the link, read back the address the browser ended on
    /// (or the bare code) from standard input.
    fn manual(
        &mut self,
        state: &mut State,
        name: &str,
        input: &mut dyn std::io::BufRead,
    ) -> Result<(), String> {
        let asset = &self.config.assets[name];
        let provider = self.config.provider_of(asset);
        let redirect = provider.redirect_uri.clone().ok_or_else(|| {
            format!(
                "provider `{}` has no redirect_uri to send the person back to",
                provider.name
            )
        })?;
        let client = self.client(&provider.name)?;
        let pending = client.authorization(&asset.scopes, asset.consenter(), &redirect);
        let _ = self.ctx.printer.err(&format!(
            "Consent for {name}: open this link signed in as {}, approve, then paste the address the browser ends on (it may not load; the address is what counts), or the code alone:\n  {}\npaste> ",
            asset.consenter(), pending.url
        ));
        let mut answer = zeroize::Zeroizing::new(String::new());
        let read = input
            .read_line(&mut answer)
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if read == 0 {
            return Err("no answer on standard input".into());
        }
        let code = loopback::pasted_code(&answer, &pending, name).map_err(|e| e.to_string())?;
        let grant = self
            .runtime
            .block_on(client.exchange(&pending, &code))
            .map_err(|e| e.to_string())?;
        self.store_grant(state, name, grant)
    }

    /// `device` (RFC 8628): show the code and where to enter it, open that
    /// page when `$BROWSER` is set, and wait for the person.
    fn device(
        &mut self,
        state: &mut State,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<(), String> {
        let asset = &self.config.assets[name];
        let provider = self.config.provider_of(asset);
        let client = self.client(&provider.name)?;
        let code = self
            .runtime
            .block_on(client.device_code(&asset.scopes))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "provider `{}` has no device_authorization_url, so device consent is not possible; use --consent loopback or manual",
                    provider.name
                )
            })?;
        let _ = self.ctx.printer.err(&format!(
            "Consent for {name}: signed in as {}, open {} and enter the code {}{}\n",
            asset.consenter(),
            crate::diagnostic::shown(code.verification_uri()),
            crate::diagnostic::shown(code.user_code()),
            code.verification_uri_complete()
                .map(|u| format!(" (or open {})", crate::diagnostic::shown(u)))
                .unwrap_or_default()
        ));
        let page = code
            .verification_uri_complete()
            .unwrap_or(code.verification_uri());
        // A page named by the network is opened only if it is https.
        if let Some(url) = url::Url::parse(page).ok().filter(|u| u.scheme() == "https")
            && let Err(why) = loopback::open_in_browser(&url)
        {
            let _ = self.ctx.printer.err(&format!("warning: {why}\n"));
        }
        // Polled until the person is done, the time is up, or a Ctrl-C.
        let grant = self.runtime.block_on(async {
            tokio::select! {
                r = client.device_token(&code, timeout) => r.map_err(|e| e.to_string()),
                () = async {
                    while !crate::interrupt::requested() {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                } => Err("interrupted before the consent arrived".to_string()),
            }
        })?;
        self.store_grant(state, name, grant)
    }

    fn loopback(&mut self, state: &mut State, names: &[String], timeout: std::time::Duration) {
        // One listener per redirect URI; most configs have one.
        let mut groups: BTreeMap<url::Url, Vec<Consent>> = BTreeMap::new();
        for name in names {
            let asset = &self.config.assets[name];
            let provider = self.config.provider_of(asset);
            let Some(redirect) = provider.redirect_uri.clone() else {
                let action = action_of(state, name);
                self.record(name, action, Err(format!("provider `{}` has no redirect_uri, so a loopback consent cannot come back; add e.g. redirect_uri = \"http://127.0.0.1:8765/callback\"", provider.name)));
                continue;
            };
            match self.client(&provider.name) {
                Ok(client) => {
                    let pending = client.authorization(&asset.scopes, asset.consenter(), &redirect);
                    groups.entry(redirect).or_default().push(Consent {
                        asset: name.clone(),
                        email: asset.consenter().to_string(),
                        pending,
                        client,
                    });
                }
                Err(why) => {
                    let action = action_of(state, name);
                    self.record(name, action, Err(why));
                }
            }
        }
        for (redirect, consents) in groups {
            if crate::interrupt::requested() {
                break;
            }
            let listener = match Listener::bind(&redirect) {
                Ok(l) => l,
                Err(why) => {
                    for c in consents {
                        let action = action_of(state, &c.asset);
                        self.record(&c.asset, action, Err(why.clone()));
                    }
                    continue;
                }
            };
            let mut list = format!(
                "Consent needed for {} mailbox{} (listening on {} for up to {}); each owner opens their own link:\n",
                consents.len(),
                if consents.len() == 1 { "" } else { "es" },
                listener.address(),
                humantime::format_duration(timeout)
            );
            for c in &consents {
                let _ = writeln!(list, "  {} ({}): {}", c.asset, c.email, c.pending.url);
            }
            let _ = self.ctx.printer.err(&list);
            for c in &consents {
                if let Err(why) = loopback::open_in_browser(&c.pending.url) {
                    let _ = self.ctx.printer.err(&format!("warning: {why}\n"));
                }
            }
            let runtime = self.runtime;
            // Each grant is stored before the next callback is read.
            listener.wait(consents, timeout, runtime, &mut |c, outcome| {
                let action = action_of(state, &c.asset);
                let outcome = match outcome {
                    Ok(grant) => self
                        .store_grant(state, &c.asset, grant)
                        .map(|()| "consented; tokens stored".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                self.record(&c.asset, action, outcome);
            });
        }
    }

    /// Checks who consented and the granted scopes, seals the tokens and
    /// writes state at once. A grant given by another account than the one
    /// that should consent ([`Asset::consenter`]) is revoked and never
    /// stored: the ID token decides where there is one, else the SMTP login
    /// proven with the new token, before it replaces the stored grant.
    fn store_grant(&mut self, state: &mut State, name: &str, grant: Grant) -> Result<(), String> {
        let asset: &Asset = &self.config.assets[name];
        // RFC 6749 §5.1: no `scope` in the answer means as requested.
        let granted = grant.scopes.clone().unwrap_or_else(|| asset.scopes.clone());
        let missing = plan::missing_scopes(&asset.scopes, &granted);
        if !missing.is_empty() {
            return Err(format!(
                "the grant lacks {} (boxes left unticked at the consent screen?); run mailform apply again and approve every scope",
                missing.join(", ")
            ));
        }
        let expected = asset.consenter().to_string();
        let mut proven = None;
        match &grant.identity {
            Some(Ok(id)) if id.is(&expected) == Some(true) => {}
            Some(Ok(id)) if id.is(&expected) == Some(false) => {
                let who = crate::diagnostic::shown(id.email.as_deref().unwrap_or_default());
                return Err(self.reject(
                    state,
                    name,
                    &grant,
                    &format!("consent was given as {who}, not {expected}"),
                ));
            }
            Some(Err(why)) => {
                return Err(self.reject(
                    state,
                    name,
                    &grant,
                    &format!("the provider's answer does not show who consented ({why})"),
                ));
            }
            // No ID token, or one without an address: the SMTP login decides.
            _ => proven = self.identity_by_login(state, name, &grant)?,
        }
        let asset: &Asset = &self.config.assets[name];
        if grant.refresh_token.is_none() {
            let _ = self.ctx.printer.err(&format!(
                "warning: {name}: no refresh token was issued; mail stops when the access token expires (check offline access in the provider's settings)\n"
            ));
        }
        let now = Utc::now();
        let access_expires_at = grant.access_expires_at(now);
        let tokens = grant.into_tokens(None);
        // What the old grant was, to settle it once the new one is stored.
        let old = self.stored(state, name);
        let record = state.insert_applied(
            name,
            plan::applied(self.config, asset),
            Some((self.key, &tokens, granted)),
            now,
        );
        if let Some(t) = record.token.as_mut() {
            t.access_expires_at = access_expires_at;
        }
        if let Some(check) = proven {
            record.smtp_check = Some(check);
            self.proven_at_consent.insert(name.to_string());
        }
        self.save(state, name)?;
        // The new grant is stored. The old one of the same client and the
        // same account is simply superseded (revoking it could end the new
        // one too, where a provider keeps one grant per user and client);
        // another account's is revoked; another client's cannot be revoked
        // with this client's credentials.
        if let Some((old, old_tokens)) = old {
            let now_applied = plan::applied(self.config, asset);
            if old.client_id != now_applied.client_id || old.token_url != now_applied.token_url {
                let _ = self.ctx.printer.err(&format!(
                    "note: {name}: the old grant was made for client {} and is not revoked by mailform; remove it in the provider's console\n",
                    crate::diagnostic::escaped(&old.client_id)
                ));
            } else if old.username != now_applied.username
                && let Err(why) = self.revoke_tokens(&old, &old_tokens)
            {
                let _ = self.ctx.printer.err(&format!(
                    "warning: {name}: the old account's grant could not be revoked: {why}\n"
                ));
            }
        }
        Ok(())
    }

    /// The SMTP login of a new grant that does not say who gave it, proven
    /// before the grant is stored: accepted, the check to record; refused as
    /// a token (another account's), the grant revoked; undecided (server
    /// unreachable, SMTP AUTH off) while a grant is stored, the new one is
    /// not stored, and not revoked either (it may be the same account's,
    /// and revoking it could end the stored grant with it). With nothing
    /// stored there is nothing to lose: the grant is stored, and apply's
    /// own proof reports the login.
    fn identity_by_login(
        &mut self,
        state: &State,
        name: &str,
        grant: &Grant,
    ) -> Result<Option<SmtpCheck>, String> {
        let asset = &self.config.assets[name];
        let expected = asset.consenter().to_string();
        let granted = grant.scopes.clone().unwrap_or_else(|| asset.scopes.clone());
        let result = observe::Endpoints::default()
            .probe(self.config, asset, &granted, self.smtp_timeout)
            .map_err(observe::Failure::Setup)
            .and_then(|probe| {
                self.runtime
                    .block_on(probe.run(&grant.access_token))
                    .map_err(observe::Failure::from)
            });
        let undecided = match result {
            Ok((_, SmtpObservation::Accepted { server, reply })) => {
                let _ = self.ctx.printer.err(&format!(
                    "{name}: SMTP login proven by {server} ({reply})\n"
                ));
                return Ok(Some(SmtpCheck {
                    at: Utc::now(),
                    ok: true,
                    server,
                    detail: reply,
                    hint: None,
                }));
            }
            Ok((outcome, SmtpObservation::Refused { server, reply, .. }))
                if outcome.fresh_token_may_help() =>
            {
                return Err(self.reject(
                    state,
                    name,
                    grant,
                    &format!(
                        "{server} refused the new grant's login as {} — {reply}: it may be another account's (the provider sent no ID token to say who consented)",
                        asset.username
                    ),
                ));
            }
            Ok((_, SmtpObservation::Refused { reply, .. })) => reply,
            Ok((_, SmtpObservation::Transient { detail })) => detail,
            Err(e) => e.to_string(),
        };
        if self.stored(state, name).is_none() {
            return Ok(None);
        }
        Err(format!(
            "could not tell who consented: the provider sent no ID token, and the SMTP login could not be proven ({undecided}); the new grant was not stored and the stored one kept — run mailform apply --reconsent {name} again, signed in as {expected}, once the server answers"
        ))
    }

    /// Revokes a new grant that must not be stored (another account's, or
    /// one that cannot say whose it is), and says why, and what to do.
    fn reject(&mut self, state: &State, name: &str, grant: &Grant, why: &str) -> String {
        let expected = self.config.assets[name].consenter().to_string();
        let provider = self.config.assets[name].provider.clone();
        let revoked = self.client(&provider).and_then(|client| {
            let (token, kind) = match &grant.refresh_token {
                Some(r) => (r, TokenKind::Refresh),
                None => (&grant.access_token, TokenKind::Access),
            };
            self.runtime
                .block_on(client.revoke(token, kind))
                .map_err(|e| e.to_string())
        });
        let fate = match revoked {
            Ok(true) => "the new grant was revoked".to_string(),
            Ok(false) => "the new grant was not stored (the provider has no revocation endpoint: remove it in its console)".to_string(),
            Err(e) => format!("the new grant was not stored, and could not be revoked ({e}): remove it in the provider's console"),
        };
        let kept = if self.stored(state, name).is_some() {
            " and the stored one kept"
        } else {
            ""
        };
        format!("{why}: {fate}{kept} — consent again signed in as {expected}")
    }

    fn summary(&self, json: bool) -> Result<ExitStatus, Error> {
        let count = |action: Action| {
            self.done
                .values()
                .filter(|d| d.action == action && d.outcome.is_ok())
                .count()
        };
        let failed: Vec<(&String, &Done)> = self
            .done
            .iter()
            .filter(|(_, d)| d.outcome.is_err())
            .collect();
        let mut text = format!(
            "\nApply: {} created, {} updated, {} re-consented, {} deleted, {} failed.\n",
            count(Action::Create),
            count(Action::Update),
            count(Action::Reconsent),
            count(Action::Delete),
            failed.len()
        );
        for (asset, d) in &failed {
            if let Err(why) = &d.outcome {
                let _ = writeln!(text, "  {asset}: {why}");
            }
        }
        if json {
            self.ctx.printer.err(&text)?;
        } else {
            self.ctx.printer.out(&text)?;
        }
        if failed.is_empty() {
            Ok(ExitStatus::Success)
        } else {
            Err(Error::ApplyFailed {
                count: failed.len(),
            })
        }
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
