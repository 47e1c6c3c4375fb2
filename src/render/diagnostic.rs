//! Diagnostics as `file:line:col`, the offending line, a caret and a hint.

use std::path::Path;

use codespan_reporting::diagnostic::{Diagnostic as Report, Label, Severity as Level};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::Chars;
use codespan_reporting::term::{self, Config as TermConfig, DisplayStyle};

use crate::diagnostic::{Diagnostic, Diagnostics, Severity};

/// Renders all diagnostics for the config at `path` whose text is `source`.
pub fn render(path: &Path, source: &str, diagnostics: &Diagnostics) -> String {
    let file = SimpleFile::new(path.display().to_string(), source);
    let config = TermConfig {
        chars: Chars::ascii(),
        display_style: DisplayStyle::Rich,
        ..TermConfig::default()
    };
    let mut out = String::new();
    for d in diagnostics.iter() {
        let report = to_report(d, source.len());
        match term::emit_into_string(&config, &file, &report) {
            Ok(text) => out.push_str(&text),
            // A span outside the file would be a bug; still say the message.
            Err(_) => out.push_str(&format!("{}: {}\n", level_name(d.severity), d.message)),
        }
    }
    out
}

/// The closing line of `validate`.
pub fn summary(path: &Path, diagnostics: &Diagnostics) -> String {
    let (e, w) = (diagnostics.error_count(), diagnostics.warning_count());
    if e == 0 && w == 0 {
        format!("{}: ok\n", path.display())
    } else {
        format!(
            "{}: {} error{}, {} warning{}\n",
            path.display(),
            e,
            if e == 1 { "" } else { "s" },
            w,
            if w == 1 { "" } else { "s" }
        )
    }
}

fn level_name(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn to_report(d: &Diagnostic, len: usize) -> Report<()> {
    let level = match d.severity {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
    };
    let mut report = Report::new(level)
        .with_message(&d.message)
        .with_notes(d.notes.clone());
    if let Some(span) = &d.span {
        let start = span.start.min(len);
        let end = span.end.clamp(start, len);
        report = report.with_labels(vec![Label::primary((), start..end)]);
    }
    report
}
