//! Problems found in the user's files, collected rather than thrown.
//!
//! Every stage that reads `assets.toml` (parse, resolve, lints) pushes
//! [`Diagnostic`]s into a [`Diagnostics`] list so that one run reports every
//! problem. A diagnostic carries a byte span into the config source when one is
//! known; `render::diagnostic` turns it into `file:line:col`, the offending line
//! and a caret. Diagnostics never contain secret values: the source lines
//! they show are masked by text (`config::scan`), and values they quote in
//! messages go through [`shown`], which escapes and shortens them.

use std::borrow::Cow;
use std::ops::Range;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, never a failure (not even with `--strict`).
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Which check found a problem. The committed JSON Schema checks `Syntax` and
/// `Shape`; `Rule` findings are what only mailform knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Not TOML.
    Syntax,
    /// TOML, but the wrong keys or types.
    Shape,
    /// Well-formed, but wrong or unwise.
    Rule,
}

/// One finding, located in the config file when possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Byte range in the config source.
    pub span: Option<Range<usize>>,
    /// Extra lines such as `help: did you mean ...`.
    pub notes: Vec<String>,
    /// Other places that explain this one, each with what it is.
    pub related: Vec<(Range<usize>, String)>,
    pub origin: Origin,
}

impl Diagnostic {
    fn new(severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            message: message.into(),
            span: None,
            notes: Vec::new(),
            related: Vec::new(),
            origin: Origin::Rule,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, message)
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, message)
    }

    pub fn note(message: impl Into<String>) -> Self {
        Self::new(Severity::Note, message)
    }

    #[must_use]
    pub fn at(mut self, span: Option<Range<usize>>) -> Self {
        self.span = span;
        self
    }

    #[must_use]
    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Adds another place, e.g. the asset that inherits a provider's setting.
    #[must_use]
    pub fn related(mut self, span: Option<Range<usize>>, what: impl Into<String>) -> Self {
        if let Some(span) = span {
            self.related.push((span, what.into()));
        }
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.notes.push(format!("help: {}", help.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The findings of one run, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.0
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Orders findings by position so output reads top to bottom.
    pub fn sort(&mut self) {
        self.0
            .sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    }
}

/// Longest value quoted in a message, in characters.
const SHOWN_MAX_CHARS: usize = 80;

/// A value as quoted in a message: control characters escaped (a raw newline
/// would break the message's line), and long values shortened with `…`.
pub fn shown(value: &str) -> Cow<'_, str> {
    shown_up_to(value, SHOWN_MAX_CHARS)
}

/// Text from state, config, a provider or a server, whole, made safe for a
/// terminal as [`shown_up_to`] does.
pub fn escaped(value: &str) -> Cow<'_, str> {
    shown_up_to(value, usize::MAX)
}

/// Whether `c` must not reach a terminal as it is: control characters (ESC
/// starts the sequences that move the cursor, retitle the window or write
/// the clipboard) and Unicode format characters (Cf: U+202E turns the text
/// after it around, U+200B hides itself), which can make a line read as
/// something it is not.
pub fn is_hostile(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// [`shown`], shortened after `max` characters instead. This is the one
/// escaping function every string shown on a terminal passes through.
pub fn shown_up_to(value: &str, max: usize) -> Cow<'_, str> {
    let mut chars = 0usize;
    let plain = value.chars().all(|c| {
        chars += 1;
        chars <= max && !is_hostile(c)
    });
    if plain {
        return Cow::Borrowed(value);
    }
    let mut out = String::new();
    for (n, c) in value.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if is_hostile(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The closest candidate to `word`, if one is close enough to be a likely
/// typo: at most one edit (transpositions count as one) per three letters.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let budget = (word.chars().count() / 3).max(1);
    // A long word is no typo of a short name (and comparing it would cost).
    if word.len() > 64 {
        return None;
    }
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| *distance <= budget && *c != word)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_control_characters_and_shortens() {
        assert_eq!(shown("plain"), "plain");
        assert_eq!(shown("a\nb\tc"), "a\\nb\\tc");
        let long = "x".repeat(200);
        let s = shown(&long);
        assert_eq!(s.chars().count(), SHOWN_MAX_CHARS + 1);
        assert!(s.ends_with('…'));
    }
}
