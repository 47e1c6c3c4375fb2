//! Diagnostics as `file:line:col`, the offending line, a caret and a hint.

use std::fmt::Write as _;
use std::path::Path;

use codespan_reporting::diagnostic::{Diagnostic as Report, Label, Severity as Level};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::Chars;
use codespan_reporting::term::{self, Config as TermConfig, DisplayStyle};

use crate::diagnostic::{Diagnostic, Diagnostics, Severity};

/// Renders all diagnostics for the config at `path` whose text is `source`.
pub fn render(path: &Path, source: &str, diagnostics: &Diagnostics) -> String {
    let source = redacted(source, diagnostics);
    let file = SimpleFile::new(path.display().to_string(), source.as_str());
    let config = TermConfig {
        chars: Chars::ascii(),
        display_style: DisplayStyle::Rich,
        ..TermConfig::default()
    };
    let mut out = String::new();
    for d in diagnostics {
        let report = to_report(d, source.len());
        match term::emit_into_string(&config, &file, &report) {
            Ok(text) => out.push_str(&text),
            // A span outside the file would be a bug; still say the message.
            Err(_) => {
                let _ = writeln!(out, "{}: {}", level_name(d.severity), d.message);
            }
        }
    }
    out
}

/// The closing line of a successful `validate`.
pub fn summary(path: &Path, diagnostics: &Diagnostics) -> String {
    match diagnostics.warning_count() {
        0 => format!("{}: ok\n", path.display()),
        1 => format!("{}: ok, 1 warning\n", path.display()),
        n => format!("{}: ok, {n} warnings\n", path.display()),
    }
}

/// The source with every redacted range's inside (within the quotes) masked,
/// byte for byte so that spans stay valid.
fn redacted(source: &str, diagnostics: &Diagnostics) -> String {
    let mut bytes = source.as_bytes().to_vec();
    for range in diagnostics.iter().filter_map(|d| d.redact.clone()) {
        let inner =
            (range.start + 1).min(bytes.len())..range.end.saturating_sub(1).min(bytes.len());
        for b in &mut bytes[inner] {
            *b = b'*';
        }
    }
    String::from_utf8(bytes)
        .unwrap_or_else(|_| "[source not shown: a secret could not be masked]".into())
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
