//! `mailform show [NAME] [--json]`: state, tokens redacted.

use super::{Context, ExitStatus, known_asset};
use crate::error::Error;
use crate::render;
use crate::state::State;
use crate::store::StateStore as _;

pub fn run(ctx: &Context<'_>, name: Option<&str>, json: bool) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    let state = Context::store(&config).load()?.unwrap_or_else(State::new);
    if let Some(n) = name {
        known_asset(n, state.assets.keys().map(String::as_str), &config)?;
    }
    let doc = render::show::doc(&state, name);
    if json {
        ctx.printer
            .out(&(serde_json::to_string_pretty(&doc).expect("state serializes") + "\n"))?;
    } else {
        ctx.printer.out(&render::show::human(&doc))?;
    }
    Ok(ExitStatus::Success)
}
