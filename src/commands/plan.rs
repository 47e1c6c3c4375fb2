//! `mailform plan`: desired vs state, rendered for people or as JSON.

use std::collections::BTreeSet;

use chrono::Utc;

use super::{Context, ExitStatus, known_asset};
use crate::cli::PlanArgs;
use crate::config::Config;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::Error;
use crate::observe;
use crate::plan::{self, Observations};
use crate::render;
use crate::store::{StateStore as _, key};

pub fn run(ctx: &Context<'_>, args: &PlanArgs) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    if !args.offline {
        return Err(Error::NotAvailable {
            what: "a live plan (refreshing tokens, proving SMTP logins)",
            hint: "run `mailform plan --offline` to plan from state alone",
        });
    }
    let store = Context::store(&config);
    let state = store.load()?;

    let applied = state
        .iter()
        .flat_map(|s| s.assets.keys().map(String::as_str));
    for t in &args.target {
        known_asset(
            t,
            config
                .assets
                .keys()
                .map(String::as_str)
                .chain(applied.clone()),
            &config,
        )?;
    }

    check_secrets(ctx, &config, &args.target)?;

    let mut observations = Observations::default();
    if let Some(state) = &state
        && let Some(key) = key::for_state(&config.state_dir(), state)?
    {
        observations = observe::sealed_tokens(state, &key, &args.target);
    }

    let plan = plan::plan(
        &config,
        state.as_ref(),
        &observations,
        Utc::now(),
        &args.target,
    );

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
    } else {
        ctx.printer.out(&render::plan::human(&plan))?;
        if let Some(out) = &args.out {
            ctx.printer.err(&format!(
                "Saved the plan to {}; apply it with: mailform apply {}\n",
                out.display(),
                out.display()
            ))?;
        }
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// Every secret a targeted asset will need must be reachable now, not half way
/// through an apply. Problems are shown at the `client_secret` line.
fn check_secrets(ctx: &Context<'_>, config: &Config, targets: &[String]) -> Result<(), Error> {
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
