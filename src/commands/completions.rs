//! `mailform completions SHELL`.

use clap::CommandFactory as _;

use super::{Context, ExitStatus};
use crate::cli::Cli;
use crate::error::Error;

pub fn run(ctx: &Context<'_>, shell: clap_complete::Shell) -> Result<ExitStatus, Error> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mailform", &mut buf);
    ctx.printer.out(&String::from_utf8_lossy(&buf))?;
    Ok(ExitStatus::Success)
}
