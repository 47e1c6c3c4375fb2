//! Diagnostics as `file:line:col`, the offending line, a caret and a hint;
//! or, for `--json`, as a schema'd document CI can annotate lines from.
//!
//! What is shown is bounded whatever the input: the source is masked for
//! secrets first (`config::scan`), at most [`MAX_SHOWN`] diagnostics are
//! printed (then a count of the rest), a long line is cut to a window around
//! its span, messages are shortened, and control characters never reach the
//! terminal.

use std::fmt::Write as _;
use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::config::scan::mask_secrets;
use crate::diagnostic::{Diagnostic, Diagnostics, Severity};

/// Diagnostics printed before the rest are only counted.
pub const MAX_SHOWN: usize = 50;

/// Diagnostics put in a JSON document before the rest are only counted.
pub const MAX_JSON: usize = 500;

/// A source line longer than this (in characters) is shown as a window.
const MAX_LINE_CHARS: usize = 120;

/// Characters of a long line shown before the span starts.
const LEAD_CHARS: usize = 40;

/// Longest message or note, in characters.
const MAX_MESSAGE_CHARS: usize = 400;

/// The format of [`DiagnosticsDoc`].
pub const DIAGNOSTICS_FORMAT_VERSION: u32 = 1;

/// Renders diagnostics for the config at `path` whose text is `source`.
pub fn render(path: &Path, source: &str, diagnostics: &Diagnostics) -> String {
    let masked = mask_secrets(source);
    let index = LineIndex::new(&masked);
    let file = path.display().to_string();
    let mut out = String::new();
    for d in diagnostics.iter().take(MAX_SHOWN) {
        one(&mut out, &file, &masked, &index, d);
    }
    let rest = &diagnostics.0[diagnostics.0.len().min(MAX_SHOWN)..];
    if !rest.is_empty() {
        let errors = rest.iter().filter(|d| d.is_error()).count();
        let _ = writeln!(
            out,
            "note: {} more not shown ({errors} error{}, {} other{}); fix the ones above and run again\n",
            rest.len(),
            plural(errors),
            rest.len() - errors,
            plural(rest.len() - errors),
        );
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The closing line of a successful `validate`.
pub fn summary(path: &Path, diagnostics: &Diagnostics) -> String {
    match diagnostics.warning_count() {
        0 => format!("{}: ok\n", path.display()),
        1 => format!("{}: ok, 1 warning\n", path.display()),
        n => format!("{}: ok, {n} warnings\n", path.display()),
    }
}

fn one(out: &mut String, file: &str, source: &str, index: &LineIndex, d: &Diagnostic) {
    let _ = writeln!(out, "{}: {}", d.severity.name(), clean(&d.message));
    let Some(span) = &d.span else {
        for note in &d.notes {
            let _ = writeln!(out, "  = {}", clean(note));
        }
        for (span, what) in &d.related {
            let (line, col) = index.locate(source, span.start);
            let _ = writeln!(out, "  = note: {} at {file}:{line}:{col}", clean(what));
        }
        out.push('\n');
        return;
    };
    let (line, col) = index.locate(source, span.start);
    let width = line.to_string().len();
    let pad = " ".repeat(width + 1);
    let _ = writeln!(out, "{pad}--> {file}:{line}:{col}");
    let _ = writeln!(out, "{pad}|");
    let text = index.line_text(source, line);
    let chars: Vec<char> = text.chars().collect();
    let start = col - 1;
    let from = span.start.min(source.len());
    let span_chars = source
        .get(from..span.end.max(from).min(source.len()))
        .map_or(1, |s| s.chars().take_while(|c| *c != '\n').count())
        .max(1);
    let (shown, caret_at) = window(&chars, start);
    let carets = span_chars.min(shown.chars().count().saturating_sub(caret_at).max(1));
    let _ = writeln!(out, "{line} | {shown}");
    let _ = writeln!(out, "{pad}| {}{}", " ".repeat(caret_at), "^".repeat(carets));
    if !d.notes.is_empty() || !d.related.is_empty() {
        let _ = writeln!(out, "{pad}|");
    }
    for note in &d.notes {
        let _ = writeln!(out, "{pad}= {}", clean(note));
    }
    for (span, what) in &d.related {
        let (line, col) = index.locate(source, span.start);
        let _ = writeln!(out, "{pad}= note: {} at {file}:{line}:{col}", clean(what));
    }
    out.push('\n');
}

/// The part of a line to show, and the column (in shown characters) where the
/// span starts. Control characters are shown as `�`, tabs as a space, so that
/// nothing in the file can drive the terminal and carets stay aligned.
fn window(chars: &[char], start: usize) -> (String, usize) {
    let visible = |c: &char| match *c {
        '\t' => ' ',
        c if c.is_control() => '\u{fffd}',
        c => c,
    };
    if chars.len() <= MAX_LINE_CHARS {
        return (chars.iter().map(visible).collect(), start);
    }
    let from = start.saturating_sub(LEAD_CHARS).min(chars.len());
    let to = (from + MAX_LINE_CHARS).min(chars.len());
    let mut shown = String::new();
    let mut caret_at = start - from;
    if from > 0 {
        shown.push('…');
        caret_at += 1;
    }
    shown.extend(chars[from..to].iter().map(visible));
    if to < chars.len() {
        shown.push('…');
    }
    (shown, caret_at)
}

/// A message or note on one line, shortened.
fn clean(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Line starts of a text, to turn byte offsets into 1-based line and column.
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of byte `at`.
    pub fn locate(&self, text: &str, at: usize) -> (usize, usize) {
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let line = self.starts.partition_point(|s| *s <= at);
        let col = text[self.starts[line - 1]..at].chars().count() + 1;
        (line, col)
    }

    /// Line `line` (1-based) without its line break.
    fn line_text<'t>(&self, text: &'t str, line: usize) -> &'t str {
        let start = self.starts[line - 1];
        let end = self.starts.get(line).map_or(text.len(), |s| s - 1);
        text[start..end.max(start)].trim_end_matches('\r')
    }
}

/// `validate --json`, and `plan --json` when it fails: every finding with its
/// place, for CI annotations.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "mailform diagnostics")]
pub struct DiagnosticsDoc {
    pub format_version: u32,
    /// The config file.
    pub file: String,
    /// Whether the command succeeded.
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<DiagnosticView>,
    /// Diagnostics left out after the first 500.
    pub omitted: usize,
}

/// One finding.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiagnosticView {
    /// "error", "warning" or "note".
    pub severity: String,
    pub message: String,
    /// 1-based; absent when the finding has no place in the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    /// Hints, each starting with `help:` or `note:`.
    pub notes: Vec<String>,
}

impl DiagnosticsDoc {
    /// The document for `diagnostics` of the config at `path`.
    pub fn new(path: &Path, source: &str, diagnostics: &Diagnostics, ok: bool) -> Self {
        let index = LineIndex::new(source);
        let view = |d: &Diagnostic| {
            let start = d.span.as_ref().map(|s| index.locate(source, s.start));
            let end = d.span.as_ref().map(|s| index.locate(source, s.end));
            let mut notes: Vec<String> = d.notes.iter().map(|n| clean(n)).collect();
            notes.extend(d.related.iter().map(|(span, what)| {
                let (line, col) = index.locate(source, span.start);
                format!("note: {} at line {line}, column {col}", clean(what))
            }));
            DiagnosticView {
                severity: d.severity.name().to_string(),
                message: clean(&d.message),
                line: start.map(|p| p.0),
                column: start.map(|p| p.1),
                end_line: end.map(|p| p.0),
                end_column: end.map(|p| p.1),
                notes,
            }
        };
        DiagnosticsDoc {
            format_version: DIAGNOSTICS_FORMAT_VERSION,
            file: path.display().to_string(),
            ok,
            errors: diagnostics.error_count(),
            warnings: diagnostics.warning_count(),
            diagnostics: diagnostics.iter().take(MAX_JSON).map(view).collect(),
            omitted: diagnostics.0.len().saturating_sub(MAX_JSON),
        }
    }

    /// A document for a failure that has no place in the file (a locked or
    /// corrupt state, an unreadable key).
    pub fn failure(path: &Path, message: &str) -> Self {
        DiagnosticsDoc {
            format_version: DIAGNOSTICS_FORMAT_VERSION,
            file: path.display().to_string(),
            ok: false,
            errors: 1,
            warnings: 0,
            diagnostics: vec![DiagnosticView {
                severity: Severity::Error.name().to_string(),
                message: clean(message),
                line: None,
                column: None,
                end_line: None,
                end_column: None,
                notes: Vec::new(),
            }],
            omitted: 0,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("diagnostics serialize") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diags(list: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics(list)
    }

    #[test]
    fn a_long_line_is_windowed_around_the_span() {
        let source = format!("x = \"{}\" # {}\n", "a".repeat(5000), "b".repeat(5000));
        let at = source.find('#').unwrap();
        let out = render(
            Path::new("f.toml"),
            &source,
            &diags(vec![Diagnostic::error("bad").at(Some(at..at + 1))]),
        );
        assert!(out.len() < 600, "{out}");
        assert!(out.contains("--> f.toml:1:5008"), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let text = lines[3];
        let carets = lines[4];
        assert_eq!(
            text.chars().position(|c| c == '#'),
            carets.chars().position(|c| c == '^'),
            "{out}"
        );
    }

    #[test]
    fn output_is_capped_and_the_rest_counted() {
        let source = "a = 1\n".repeat(1000);
        let list = (0..1000)
            .map(|i| Diagnostic::error(format!("e{i}")).at(Some(i * 6..i * 6 + 1)))
            .collect();
        let out = render(Path::new("f.toml"), &source, &diags(list));
        assert_eq!(out.matches("error: e").count(), MAX_SHOWN);
        assert!(out.contains("note: 950 more not shown (950 errors, 0 others)"));
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let source = "email = \"\x1b[31mred\"\n";
        let out = render(
            Path::new("f.toml"),
            source,
            &diags(vec![Diagnostic::error("bad \x1b[0m\nnext").at(Some(8..9))]),
        );
        assert!(!out.contains('\x1b'), "{out:?}");
        assert!(out.contains("bad \\u{1b}[0m\\nnext"), "{out}");
    }

    #[test]
    fn locate_counts_characters_not_bytes() {
        let text = "é = 1\nab\n";
        let index = LineIndex::new(text);
        assert_eq!(index.locate(text, 0), (1, 1));
        assert_eq!(index.locate(text, 3), (1, 3));
        assert_eq!(index.locate(text, 1), (1, 1));
        assert_eq!(index.locate(text, 8), (2, 2));
        assert_eq!(index.locate(text, 999), (3, 1));
    }
}
