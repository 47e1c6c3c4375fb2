//! `mailform apply`: make it so.
//!
//! Under the state lock: observe (the live checks of `plan`), plan, show
//! the plan, confirm (`--auto-approve`; never guessed without a terminal),
//! then hand the plan to the execute stage ([`crate::execute`]), and say
//! how it went: a summary, `--json`'s document, the exit status (1 if any
//! asset failed). A saved plan (`apply PLAN`) is applied exactly, after
//! the rules of [`crate::plan::saved`] allow it.

use chrono::Utc;

use super::{Context, ExitStatus};
use crate::cli::ApplyArgs;
use crate::config::Config;
use crate::error::Error;
use crate::execute;
use crate::observe;
use crate::plan;
use crate::render;
use crate::state::State;
use crate::state::crypto::Key;
use crate::store::key;

pub fn run(ctx: &Context<'_>, args: &ApplyArgs) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let consent_timeout = consent_timeout(&args.consent_timeout)?;
    // A saved plan is read (and its shape checked) before anything else.
    let saved = match &args.plan {
        Some(path) => Some(read_saved_plan(path)?),
        None => None,
    };
    let targets: Vec<String> = match &saved {
        Some(p) => p.changes.iter().map(|c| c.asset.clone()).collect(),
        None => args.target.clone(),
    };
    super::check_secrets(ctx, &config, &targets)?;
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
        let bad = |why: String| Error::SavedPlan {
            path: path.clone(),
            why,
        };
        plan.check_saved(&config, &state).map_err(bad)?;
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
        plan.limit_to(&offline).map_err(bad)?;
        say(&render::plan::human(&plan))?;
        plan
    } else {
        let now = Utc::now();
        let runtime = super::runtime()?;
        let (observations, failures) = observe::observed(
            &observe::LiveRequest {
                config: &config,
                store,
                key: &key,
                runtime: &runtime,
                targets: &args.target,
                smtp: None,
                imap: None,
                parallelism: settings.parallelism(),
                now,
                progress: &|what, total| render::progress::tracker(what, total, args.json),
            },
            &mut state,
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
            let doc = render::apply::document(
                &plan,
                &[],
                &state,
                store.written(),
                args.plan.as_deref(),
                false,
            );
            ctx.printer.out(&doc)?;
        }
        return Ok(ExitStatus::Success);
    }

    // From here on a Ctrl-C stops the run cleanly (see `interrupt`).
    crate::interrupt::arm(true);
    let runtime = super::runtime()?;
    let mut run = execute::Run::new(&execute::Setup {
        printer: ctx.printer,
        config: &config,
        store,
        key: &key,
        runtime: &runtime,
        parallelism: settings.parallelism(),
        smtp_timeout: settings.smtp_timeout,
        consent: settings.consent_mode(),
        consent_timeout,
        quiet: args.json,
    });
    run.apply(&plan, &mut state);
    report(ctx, args, store, &plan, &state, &run)
}

/// How the apply went: the summary (stdout, or stderr beside `--json`'s
/// document), and the exit status: interrupted, some asset failed, or done.
fn report(
    ctx: &Context<'_>,
    args: &ApplyArgs,
    store: &dyn crate::store::StateStore,
    plan: &plan::Plan,
    state: &State,
    run: &execute::Run<'_>,
) -> Result<ExitStatus, Error> {
    let interrupted = crate::interrupt::requested();
    let total = plan
        .changes
        .iter()
        .filter(|c| c.action != plan::Action::NoOp)
        .count();
    if ctx.cli.verbose {
        let (writes, bytes) = store.written();
        render::verbose_line(&format!(
            "state: {writes} writes, {bytes} bytes (state files and journal lines)"
        ));
    }
    let summary = run.summary();
    let text = render::apply::summary(&summary);
    if args.json {
        ctx.printer.err(&text)?;
        ctx.printer.out(&render::apply::document(
            plan,
            &run.outcomes(plan),
            state,
            store.written(),
            args.plan.as_deref(),
            interrupted,
        ))?;
        ctx.doc_printed.set(true);
    } else {
        ctx.printer.out(&text)?;
    }
    if interrupted {
        return Err(Error::Interrupted {
            done: run.applied(),
            total,
        });
    }
    if summary.failures.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        Err(Error::ApplyFailed {
            count: summary.failures.len(),
            total,
        })
    }
}

/// `--consent-timeout`: a duration above zero (no person consents at once).
fn consent_timeout(text: &str) -> Result<std::time::Duration, Error> {
    crate::settings::parse_duration(text)
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
                crate::diagnostic::shown(text)
            ))
        })
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
