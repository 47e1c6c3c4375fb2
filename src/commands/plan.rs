//! `mailform plan`: desired vs state, rendered for people or as JSON.

use chrono::Utc;

use super::{Context, ExitStatus, known_asset};
use crate::cli::PlanArgs;
use crate::error::Error;
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

    // Every secret a targeted asset will need must be reachable now, not half
    // way through an apply.
    for asset in config
        .assets
        .values()
        .filter(|a| args.target.is_empty() || args.target.contains(&a.name))
    {
        config.provider_of(asset).client_secret()?;
    }

    if let Some(state) = &state {
        if state.key_id.is_some() {
            match key::load(&config.state_dir())? {
                Some((k, source)) => key::check_matches(state, &k, &source)?,
                None => {
                    return Err(Error::Key {
                        why: format!(
                            "the state holds tokens but there is no key: set {} or restore {}",
                            key::KEY_ENV,
                            config.state_dir().join(key::KEY_FILE).display()
                        ),
                    });
                }
            }
        }
    }

    let plan = plan::plan(
        &config,
        state.as_ref(),
        &Observations::default(),
        Utc::now(),
        &args.target,
    );

    let json = || serde_json::to_string_pretty(&plan).expect("plans serialize") + "\n";
    if let Some(out) = &args.out {
        fs_err::write(out, json()).map_err(|source| Error::Io {
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
