//! `mailform show [NAME] [--json]`: state, tokens redacted.

use super::{Context, ExitStatus, known_asset};
use crate::error::Error;
use crate::render;
use crate::render::diagnostic::LineIndex;

pub fn run(ctx: &Context<'_>, name: Option<&str>, json: bool) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    let state = Context::store(&config)?.load()?;
    if let Some(n) = name {
        let applied = state.as_ref().is_some_and(|s| s.assets.contains_key(n));
        if !applied && let Some(asset) = config.assets.get(n) {
            let line = asset.email_span.as_ref().map_or(1, |s| {
                LineIndex::new(&config.source)
                    .locate(&config.source, s.start)
                    .0
            });
            return Err(Error::NotApplied {
                name: n.to_string(),
                path: config.path.clone(),
                line,
            });
        }
        let names = state
            .iter()
            .flat_map(|s| s.assets.keys().map(String::as_str));
        known_asset(
            n,
            names.chain(config.assets.keys().map(String::as_str)),
            &config,
        )?;
    }
    let doc = render::show::doc(state.as_ref(), name);
    if json {
        ctx.printer
            .out(&(serde_json::to_string_pretty(&doc).expect("state serializes") + "\n"))?;
    } else {
        ctx.printer.out(&render::show::human(&doc))?;
    }
    Ok(ExitStatus::Success)
}
