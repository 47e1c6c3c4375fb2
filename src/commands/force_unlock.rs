//! `mailform force-unlock ID`: remove a lock whose holder is gone.

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::store::StateStore as _;

pub fn run(ctx: &Context<'_>, id: &str, _force: bool) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    let info = Context::store(&config).force_unlock(id)?;
    ctx.printer.err(&format!(
        "Removed lock {} held by {} ({} since {}).\n",
        info.id,
        info.who,
        info.operation,
        info.created.format("%Y-%m-%d %H:%M:%S UTC")
    ))?;
    Ok(ExitStatus::Success)
}
