//! `mailform export NAME --format webex|json`.

use super::{Context, ExitStatus, known_asset};
use crate::cli::ExportFormat;
use crate::error::Error;
use crate::render;

pub fn run(ctx: &Context<'_>, name: &str, format: ExportFormat) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    known_asset(name, config.assets.keys().map(String::as_str), &config)?;
    let asset = &config.assets[name];
    let text = match format {
        ExportFormat::Webex => render::export::webex(&config, asset),
        ExportFormat::Json => render::export::json(&config, asset),
    };
    ctx.printer.out(&text)?;
    Ok(ExitStatus::Success)
}
