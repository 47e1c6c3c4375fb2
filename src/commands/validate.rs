//! `mailform validate [--strict] [--json]`: offline checks of assets.toml.

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::render;
use crate::settings::Settings;

pub fn run(ctx: &Context<'_>, strict: bool) -> Result<ExitStatus, Error> {
    let loaded = ctx.load()?;
    if let Some(c) = &loaded.config {
        let settings = Settings::resolve(Some(&c.settings), &ctx.flags)?;
        render::use_color(settings.color);
    }
    let d = &loaded.diagnostics;
    let failed = loaded.config.is_none() || (strict && d.warning_count() > 0);
    ctx.report(&loaded.path, &loaded.source, d, !failed)?;
    if loaded.config.is_none() {
        return Err(Error::ConfigInvalid {
            path: loaded.path,
            errors: d.error_count(),
        });
    }
    if strict && d.warning_count() > 0 {
        return Err(Error::StrictWarnings {
            path: loaded.path,
            warnings: d.warning_count(),
        });
    }
    ctx.printer
        .err(&render::diagnostic::summary(&loaded.path, d))?;
    Ok(ExitStatus::Success)
}
