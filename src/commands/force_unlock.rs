//! `mailform force-unlock ID [--force]`: remove a lock file left by a
//! mailform that died. A live holder's lock is never broken (the store
//! refuses); removing a dead one's asks first, unless `--force`.

use std::io::IsTerminal as _;

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::store::{LockInfo, StateStore as _};

pub fn run(ctx: &Context<'_>, id: &str, force: bool) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    let mut confirm = |info: &LockInfo| -> Result<bool, Error> {
        if force {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage(
                "force-unlock asks for confirmation on a terminal; pass --force to remove the lock without asking".into(),
            ));
        }
        ctx.printer.err(&format!(
            "Remove lock {} left by {} ({} since {}, pid {})? Only 'yes' removes it: ",
            info.id,
            info.who,
            info.operation,
            info.created.format("%Y-%m-%d %H:%M:%S UTC"),
            info.pid
        ))?;
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|source| Error::Io {
                action: "read the answer from",
                path: "standard input".into(),
                source,
            })?;
        Ok(answer.trim() == "yes")
    };
    let info = Context::store(&config).force_unlock(id, &mut confirm)?;
    ctx.printer.err(&format!(
        "Removed lock {} left by {} ({} since {}).\n",
        info.id,
        info.who,
        info.operation,
        info.created.format("%Y-%m-%d %H:%M:%S UTC")
    ))?;
    Ok(ExitStatus::Success)
}
