//! Everything mailform prints goes through here.
//!
//! [`Printer`] owns stdout (data: plans, `show`, `export`, schemas) and stderr
//! (diagnostics, progress, errors). Colour is decided once: only on a terminal,
//! never with `NO_COLOR`, or as `--color` / `MAILFORM_COLOR` say. Renderers
//! build text with ANSI styles; the streams strip them when colour is off.

pub mod apply;
pub mod diagnostic;
pub mod export;
pub mod plan;
pub mod progress;
pub mod show;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::raw::ColorChoice;
use crate::error::Error;

/// Decides colour for both streams: `auto` colours a terminal unless
/// `NO_COLOR` is set; `always` and `never` override.
pub fn use_color(color: ColorChoice) {
    anstream::ColorChoice::write_global(match color {
        ColorChoice::Auto => anstream::ColorChoice::Auto,
        ColorChoice::Always => anstream::ColorChoice::Always,
        ColorChoice::Never => anstream::ColorChoice::Never,
    });
}

/// The terminal's two streams.
///
/// A closed stream (`mailform plan | head`) is remembered and written no
/// more; it is not an error, so the command still ends with the exit code it
/// earned (1 stays 1, 2 stays 2). Any other write failure is an error.
#[derive(Debug, Default)]
pub struct Printer {
    out_closed: AtomicBool,
    err_closed: AtomicBool,
}

impl Printer {
    pub fn new(color: ColorChoice) -> Self {
        use_color(color);
        Printer::default()
    }

    /// Data for stdout.
    pub fn out(&self, text: &str) -> Result<(), Error> {
        write(&mut anstream::stdout().lock(), &self.out_closed, text)
    }

    /// Diagnostics and progress for stderr.
    pub fn err(&self, text: &str) -> Result<(), Error> {
        // Above a progress display, not through it.
        progress::suspended(|| write(&mut anstream::stderr().lock(), &self.err_closed, text))
    }

    /// A fatal error, as the last thing printed.
    pub fn error(&self, error: &Error) {
        let style = anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Red.into()));
        let _ = self.err(&format!("{style}error{style:#}: {error}\n"));
    }
}

fn write(stream: &mut impl std::io::Write, closed: &AtomicBool, text: &str) -> Result<(), Error> {
    if closed.load(Ordering::Relaxed) {
        return Ok(());
    }
    match stream
        .write_all(text.as_bytes())
        .and_then(|()| stream.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            closed.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(Error::Output(e)),
    }
}

/// One `-v` line on stderr (the network edges log through this).
pub fn verbose_line(line: &str) {
    use std::io::Write as _;
    let style = style::DIM;
    progress::suspended(|| {
        let _ = writeln!(anstream::stderr(), "{style}mailform: {line}{style:#}");
    });
}

/// A line said out of turn (the Ctrl-C notice), on its own line of stderr,
/// above any progress display.
pub fn notice_line(line: &str) {
    use std::io::Write as _;
    progress::suspended(|| {
        let _ = writeln!(anstream::stderr(), "\nmailform: {line}");
    });
}

/// Styles used across renderers.
pub(crate) mod style {
    use anstyle::{AnsiColor, Style};

    pub const CREATE: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
    pub const UPDATE: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
    pub const RECONSENT: Style =
        Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Magenta)));
    pub const DELETE: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
    pub const WARN: Style = Style::new()
        .bold()
        .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
    pub const DIM: Style = Style::new().dimmed();
    pub const BOLD: Style = Style::new().bold();
}
