//! `mailform schema [config|state|plan]`.

use super::{Context, ExitStatus};
use crate::cli::SchemaKind;
use crate::error::Error;

pub fn run(ctx: &Context<'_>, kind: SchemaKind) -> Result<ExitStatus, Error> {
    ctx.printer.out(&crate::schema::json(kind))?;
    Ok(ExitStatus::Success)
}
