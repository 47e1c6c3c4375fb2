//! `mailform force-unlock ID [--force]`: remove a lock file left by a
//! mailform that died. A live holder's lock is never broken (the store
//! refuses); removing a dead one's asks first, unless `--force`.

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::store::LockInfo;

pub fn run(ctx: &Context<'_>, id: &str, force: bool) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    let mut confirm = |info: &LockInfo| -> Result<bool, Error> {
        if force {
            return Ok(true);
        }
        ctx.confirm(
            &format!(
                "Remove lock {} left by {} ({} since {}, pid {})?",
                info.id,
                info.who,
                info.operation,
                info.created.format("%Y-%m-%d %H:%M:%S UTC"),
                info.pid
            ),
            "force-unlock",
            "--force",
        )
    };
    let info = Context::store(&config)?.force_unlock(id, &mut confirm)?;
    ctx.printer.err(&format!(
        "Removed lock {} left by {} ({} since {}).\n",
        info.id,
        info.who,
        info.operation,
        info.created.format("%Y-%m-%d %H:%M:%S UTC")
    ))?;
    Ok(ExitStatus::Success)
}
