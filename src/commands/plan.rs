//! `mailform plan`: desired vs state, rendered for people or as JSON.

use std::fmt::Write as _;

use chrono::Utc;

use super::{Context, ExitStatus};
use crate::cli::PlanArgs;
use crate::error::Error;
use crate::observe;
use crate::plan::{self, Observations};
use crate::render;
use crate::store::key;

pub fn run(ctx: &Context<'_>, args: &PlanArgs) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let smtp = (args.check_smtp || args.check).then_some(settings.smtp_timeout);
    let imap = (args.check_imap || args.check).then_some(settings.smtp_timeout);
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

    // An offline plan sends nothing, so it needs no client secret (pull
    // request CI has none); a live one needs every targeted one now.
    if !args.offline {
        super::check_secrets(ctx, &config, &args.target)?;
    }

    let key = match &state {
        Some(s) => key::for_state(&config.state_dir(), s)?,
        None => None,
    };
    let now = Utc::now();
    let (mut observations, failures) = if !args.offline
        && let Some(key) = &key
        && state.as_ref().is_some_and(|s| {
            observe::checkable(s, &config, &args.target, smtp.is_some() || imap.is_some())
        }) {
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
        let runtime = super::runtime()?;
        let observed = observe::observed(
            &observe::LiveRequest {
                config: &config,
                store,
                key,
                runtime: &runtime,
                targets: &args.target,
                smtp,
                imap,
                parallelism: settings.parallelism(),
                now,
                progress: &|what, total| render::progress::tracker(what, total, args.json),
            },
            &mut fresh,
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
        // What to do next, on stderr (stdout is the plan).
        if !plan.is_empty() {
            ctx.printer.err(&match &args.out {
                Some(out) => format!(
                    "To make these changes, run: mailform apply {}\n",
                    out.display()
                ),
                None => "To make these changes, run: mailform apply\n".to_string(),
            })?;
        }
    }
    if smtp.is_some() && !args.json {
        ctx.printer.err(&smtp_summary(&observations, &failures))?;
    }
    if imap.is_some() && !args.json {
        ctx.printer.err(&imap_summary(&observations, &failures))?;
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

/// One line on what `--check-smtp` proved.
fn smtp_summary(observations: &Observations, failures: &[(String, observe::Failure)]) -> String {
    let failed = failures
        .iter()
        .filter(|(_, f)| matches!(f, observe::Failure::Smtp(_) | observe::Failure::Setup(_)))
        .count();
    logins_summary(
        "SMTP",
        observations.assets.values().filter_map(|a| a.smtp.as_ref()),
        failed,
    )
}

/// One line on what `--check-imap` proved.
fn imap_summary(observations: &Observations, failures: &[(String, observe::Failure)]) -> String {
    let failed = failures
        .iter()
        .filter(|(_, f)| {
            matches!(
                f,
                observe::Failure::Imap(_) | observe::Failure::ImapSetup(_)
            )
        })
        .count();
    logins_summary(
        "IMAP",
        observations.assets.values().filter_map(|a| a.imap.as_ref()),
        failed,
    )
}

fn logins_summary<'a>(
    what: &str,
    seen: impl Iterator<Item = &'a crate::plan::SmtpObservation>,
    failed: usize,
) -> String {
    use crate::plan::SmtpObservation as S;
    let (mut accepted, mut refused) = (0, 0);
    for o in seen {
        match o {
            S::Accepted { .. } => accepted += 1,
            S::Refused { .. } => refused += 1,
            S::Transient { .. } => {}
        }
    }
    format!(
        "{what} logins: {accepted} accepted, {refused} refused, {failed} could not be checked.\n"
    )
}
