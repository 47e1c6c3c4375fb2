//! `mailform validate [--strict]`: offline checks of assets.toml.

use super::{Context, ExitStatus};
use crate::config;
use crate::error::Error;
use crate::render;
use crate::settings::Settings;

pub fn run(ctx: &Context<'_>, strict: bool) -> Result<ExitStatus, Error> {
    let loaded = config::load(&ctx.cli.config)?;
    if let Some(c) = &loaded.config {
        let settings = Settings::resolve(Some(&c.settings), &ctx.flags)?;
        render::use_color(settings.color);
    }
    let d = &loaded.diagnostics;
    ctx.printer
        .err(&render::diagnostic::render(&loaded.path, &loaded.source, d))?;
    if loaded.config.is_none() || d.has_errors() {
        return Err(Error::ConfigInvalid {
            path: loaded.path,
            errors: d.error_count(),
        });
    }
    ctx.printer
        .err(&render::diagnostic::summary(&loaded.path, d))?;
    if strict && d.warning_count() > 0 {
        return Err(Error::StrictWarnings {
            path: loaded.path,
            warnings: d.warning_count(),
        });
    }
    Ok(ExitStatus::Success)
}
