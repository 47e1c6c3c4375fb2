//! `mailform plan`: desired vs state, rendered for people or as JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::Utc;

use super::{Context, ExitStatus};
use crate::cli::PlanArgs;
use crate::config::Config;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::Error;
use crate::observe;
use crate::plan::{self, Observations};
use crate::render;
use crate::store::key;

pub fn run(ctx: &Context<'_>, args: &PlanArgs) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let smtp = args.check_smtp.then_some(settings.smtp_timeout);
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    let mut state = store.load()?;
    // A plan to save is made on a folded state: its serial must tell
    // `apply PLAN` whether anything changed since (a killed apply's journal
    // lines do not move the serial until they are folded in).
    if args.out.is_some() && store.has_pending() {
        let _lock = ctx.lock(store, "plan", settings.lock_timeout)?;
        state = store.load_folded()?;
    }

    super::check_selection(&config, state.as_ref(), &args.target, &args.reconsent)?;

    check_secrets(ctx, &config, &args.target)?;

    let key = match &state {
        Some(s) => key::for_state(&config.state_dir(), s)?,
        None => None,
    };
    let now = Utc::now();
    let (mut observations, failures) = if !args.offline
        && let Some(key) = &key
        && state
            .as_ref()
            .is_some_and(|s| checkable(s, &config, &args.target, smtp.is_some()))
    {
        // A refresh may rotate the refresh token, which must then be stored
        // at once (the old one is dead): a live plan refreshes as a writer,
        // holding the lock, on the state as it is under the lock.
        let _lock = ctx.lock(store, "plan", settings.lock_timeout)?;
        crate::interrupt::install(crate::render::notice_line);
        let mut fresh = store.load_folded()?.ok_or_else(|| Error::StateMoved {
            path: store.location().into(),
            expected: state.as_ref().map(|s| (s.lineage, s.serial)),
            found: None,
        })?;
        let observed = observed(
            &config,
            &settings,
            store,
            &mut fresh,
            key,
            &args.target,
            smtp,
            now,
            args.json,
        )?;
        state = Some(fresh);
        observed
    } else {
        let sealed = match (&state, &key) {
            (Some(s), Some(key)) => observe::sealed_tokens(s, key, &args.target),
            _ => Observations::default(),
        };
        (sealed, Vec::new())
    };
    observations.live = !args.offline;

    let mut plan = plan::plan(&config, state.as_ref(), &observations, now, &args.target);
    plan.force_reconsent(&args.reconsent);

    let json = || serde_json::to_string_pretty(&plan).expect("plans serialize") + "\n";
    if let Some(out) = &args.out {
        std::fs::write(out, json()).map_err(|source| Error::Io {
            action: "write plan file",
            path: out.clone(),
            source,
        })?;
    }
    if args.json {
        ctx.printer.out(&json())?;
        ctx.doc_printed.set(true);
    } else {
        ctx.printer.out(&render::plan::human(&plan))?;
        if let Some(out) = &args.out {
            ctx.printer.err(&format!(
                "Saved the plan to {} (lineage, serial and config digest recorded).\n",
                out.display()
            ))?;
        }
    }
    if args.check_smtp && !args.json {
        ctx.printer.err(&smtp_summary(&observations, &failures))?;
    }
    if !failures.is_empty() {
        let mut text = String::new();
        for (name, e) in &failures {
            let _ = writeln!(text, "error: {name}: {e}");
        }
        ctx.printer.err(&text)?;
        return Err(Error::ChecksFailed {
            count: failures.len(),
        });
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// Every secret a targeted asset will need must be reachable now, not half way
/// through an apply. Problems are shown at the `client_secret` line.
pub(super) fn check_secrets(
    ctx: &Context<'_>,
    config: &Config,
    targets: &[String],
) -> Result<(), Error> {
    let mut diags = Diagnostics::default();
    let mut seen = BTreeSet::new();
    for asset in config
        .assets
        .values()
        .filter(|a| targets.is_empty() || targets.contains(&a.name))
    {
        let provider = config.provider_of(asset);
        if !seen.insert(&provider.name) {
            continue;
        }
        if let Err(Error::Secret {
            provider: name,
            why,
        }) = provider.client_secret()
        {
            diags.push(
                Diagnostic::error(format!("provider `{name}`: client_secret: {why}"))
                    .at(provider.client_secret_span.clone())
                    .help(
                        "provide the secret where the config points before running plan or apply",
                    ),
            );
        }
    }
    if diags.is_empty() {
        return Ok(());
    }
    ctx.report(&config.path, &config.source, &diags, false)?;
    Err(Error::SecretsUnavailable {
        path: config.path.clone(),
        count: diags.error_count(),
    })
}

/// Whether a live plan has a grant to refresh (or, with `smtp`, any token
/// to prove) among the targets.
fn checkable(state: &crate::state::State, config: &Config, targets: &[String], smtp: bool) -> bool {
    state.assets.iter().any(|(name, r)| {
        (targets.is_empty() || targets.contains(name))
            && config.assets.contains_key(name)
            && r.token
                .as_ref()
                .is_some_and(|t| smtp || t.has_refresh_token)
    })
}

/// What plan and apply decide on: the live checks of `targets` (refreshes,
/// and with `smtp` the login proofs; Ctrl-C stops them gracefully), on top
/// of what the sealed tokens say; and the checks that could not decide.
#[allow(clippy::too_many_arguments)] // reason: the one pipeline of plan and apply, each input its own
pub(super) fn observed(
    config: &Config,
    settings: &crate::settings::Settings,
    store: &dyn crate::store::StateStore,
    state: &mut crate::state::State,
    key: &crate::state::crypto::Key,
    targets: &[String],
    smtp: Option<std::time::Duration>,
    now: chrono::DateTime<Utc>,
    quiet: bool,
) -> Result<(Observations, Vec<(String, observe::Failure)>), Error> {
    crate::interrupt::arm(true);
    let checked = live_checks(
        config, settings, store, state, key, targets, smtp, now, quiet,
    );
    crate::interrupt::arm(false);
    let (live, failures) = checked?;
    if crate::interrupt::requested() {
        return Err(Error::ChecksInterrupted);
    }
    let mut observations = observe::sealed_tokens(state, key, targets);
    observations.assets.extend(live.assets);
    observations.live = true;
    Ok((observations, failures))
}

/// The live token checks (and, with `smtp` = the step timeout, the SMTP
/// login proofs) on `state` as it is under the caller's lock; a rotated
/// refresh token is stored before this returns.
#[allow(clippy::too_many_arguments)]
fn live_checks(
    config: &Config,
    settings: &crate::settings::Settings,
    store: &dyn crate::store::StateStore,
    state: &mut crate::state::State,
    key: &crate::state::crypto::Key,
    targets: &[String],
    smtp: Option<std::time::Duration>,
    now: chrono::DateTime<Utc>,
    quiet: bool,
) -> Result<(Observations, Vec<(String, observe::Failure)>), Error> {
    if !checkable(state, config, targets, smtp.is_some()) {
        return Ok((Observations::default(), Vec::new()));
    }
    let parallelism = usize::try_from(settings.parallelism).unwrap_or(usize::MAX);
    let (jobs, mut failed) = observe::check_jobs(config, state, key, targets, smtp);
    // A rotated refresh token is stored the moment it arrives: the old one
    // is dead, and a crash before the last refresh must not lose it.
    let mut save_error = None;
    let mut rotated = false;
    let mut store_rotated = |r: &observe::Refreshed| {
        if r.rotated && save_error.is_none() {
            state.store_refreshed(key, &r.name, &r.tokens, r.access_expires_at, now);
            rotated = true;
            if let Err(e) = store.record(state, &[r.name.as_str()]) {
                save_error = Some(e);
            }
        }
    };
    let progress = crate::render::progress::tracker(
        if smtp.is_some() {
            "checking tokens and SMTP logins"
        } else {
            "checking tokens"
        },
        jobs.len(),
        quiet,
    );
    let mut checks = super::runtime()?.block_on(observe::run_checks(
        jobs,
        parallelism,
        now,
        &mut store_rotated,
        progress,
    ));
    if let Some(e) = save_error {
        return Err(e);
    }
    // The rotated tokens are journaled; one new state file holds them all.
    if rotated {
        store.save(state)?;
    }
    checks.failures.append(&mut failed);
    Ok((checks.observations, checks.failures))
}

/// One line on what `--check-smtp` proved.
fn smtp_summary(observations: &Observations, failures: &[(String, observe::Failure)]) -> String {
    use crate::plan::SmtpObservation as S;
    let (mut accepted, mut refused) = (0, 0);
    for o in observations.assets.values().filter_map(|a| a.smtp.as_ref()) {
        match o {
            S::Accepted { .. } => accepted += 1,
            S::Refused { .. } => refused += 1,
            S::Transient { .. } => {}
        }
    }
    let failed = failures
        .iter()
        .filter(|(_, f)| matches!(f, observe::Failure::Smtp(_) | observe::Failure::Setup(_)))
        .count();
    format!("SMTP logins: {accepted} accepted, {refused} refused, {failed} could not be checked.\n")
}
