//! A forgiving scan of `assets.toml` text, independent of (and before) parsing.
//!
//! Two jobs need the text's rough structure even when it does not parse:
//!
//! - **Masking.** Every source line mailform shows is passed through
//!   [`mask_secrets`] first. A value under a key that [`looks_secret`] is
//!   replaced by `*`, byte for byte and keeping every newline, so line numbers,
//!   columns of the unmasked text and spans stay valid. Syntax errors do not
//!   defeat it: an unclosed string is masked to the end of its line, trailing
//!   junk and comments after a secret are masked too, a misspelt key
//!   (`client_secert`) still looks secret, and a key written without `=` is
//!   masked after the key. Under a secret key only an `env = "NAME"` that is a
//!   plain variable name and a `file = "path"` stay readable: they are
//!   references, not secrets.
//! - **Depth.** [`Scan::max_depth`] is how deeply the text nests (table
//!   headers, dotted keys, arrays, inline tables). A config needs four levels;
//!   a hostile file can ask for thousands, which costs the TOML parser time
//!   and gives its recursion error no location. `resolve` refuses such text
//!   before parsing, at the place where the nesting passed the limit.
//!
//! The scanner is a loop with an explicit stack, never recursion, and does
//! O(n) work on any input.

mod lines;
mod words;

use lines::{mask_multiline_secrets, mask_url_passwords};
pub use words::{is_env_name, looks_secret, names_secret};

/// Where the value starts in a line that reads like `secret_key = value`
/// (or `secret_key: value`), judged on the line's text alone. The backstop
/// for lines the structure puts somewhere odd: commented out, or swallowed by
/// an unclosed multi-line string.
fn secret_assignment(line: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < line.len() && matches!(line[i], b' ' | b'\t' | b'#') {
        i += 1;
    }
    let key_start = i;
    // `secret_word rest` with no `=`: everything after the word.
    let first_word = || {
        let end = line[key_start..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')))
            .map_or(line.len(), |n| key_start + n);
        let word = String::from_utf8_lossy(&line[key_start..end]);
        (end < line.len() && looks_secret(&word)).then_some(end)
    };
    while i < line.len() && !matches!(line[i], b'=' | b':' | b'\n') {
        if !(line[i].is_ascii_alphanumeric()
            || matches!(line[i], b'_' | b'-' | b'.' | b'"' | b'\'' | b' ' | b'\t'))
        {
            return first_word();
        }
        i += 1;
    }
    if i >= line.len() || line[i] == b'\n' || i == key_start {
        return first_word();
    }
    let key = String::from_utf8_lossy(&line[key_start..i]);
    if key
        .split('.')
        .any(|k| looks_secret(k.trim().trim_matches(['"', '\''])))
    {
        Some(i + 1)
    } else {
        first_word()
    }
}

/// Where a value that starts at `at` ends, judged on the text alone: a
/// triple-quoted string runs to its closing quotes, an array or inline table
/// to its closing bracket (strings inside skipped), anything else to the end
/// of the line. Unclosed ones run to the end of the text.
fn value_extent(b: &[u8], at: usize) -> usize {
    let eol = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .position(|c| *c == b'\n')
            .map_or(b.len(), |n| from + n)
    };
    let mut i = at;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r') {
        i += 1;
    }
    // `key =` with nothing after it: the value is on the next line.
    if b.get(i) == Some(&b'\n') {
        i += 1;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
    }
    let rest = &b[i.min(b.len())..];
    for triple in [&b"\"\"\""[..], b"'''"] {
        if rest.starts_with(triple) {
            let close = rest[3..]
                .windows(3)
                .position(|w| w == triple)
                .map_or(b.len(), |n| i + 3 + n + 3);
            return eol(close);
        }
    }
    if !matches!(rest.first(), Some(b'[' | b'{')) {
        return eol(i);
    }
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return eol(i);
                }
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    if b[i] == b'\\' && q == b'"' && b.get(i + 1).is_some_and(|n| *n != b'\n') {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// A byte that may stand in a bare key (and, leniently, any non-ASCII one).
fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.') || c >= 0x80
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The text with secret values masked (same length, same newlines).
    pub masked: String,
    /// The deepest nesting seen.
    pub max_depth: usize,
    /// Where the nesting first exceeded the scan's limit, when it did.
    pub too_deep_at: Option<usize>,
}

/// The text with every secret value masked. See the module docs.
pub fn mask_secrets(text: &str) -> String {
    run(text, usize::MAX, true).masked
}

/// Scans `text` for depth only (no masking), noting where nesting first
/// exceeds `limit`; `masked` is empty. This runs on every config load, so it
/// neither copies the text nor classifies keys.
pub fn scan(text: &str, limit: usize) -> Scan {
    run(text, limit, false)
}

fn run(text: &str, limit: usize, masking: bool) -> Scan {
    let mut s = Scanner {
        b: text.as_bytes(),
        out: if masking {
            text.as_bytes().to_vec()
        } else {
            Vec::new()
        },
        i: 0,
        max_depth: 0,
        too_deep_at: None,
        limit,
        masking,
        masked_to: 0,
        searched_to: 0,
    };
    s.document();
    if masking {
        mask_url_passwords(s.b, &mut s.out);
        mask_multiline_secrets(s.b, &mut s.out);
    }
    let masked = String::from_utf8(s.out).unwrap_or_else(|e| {
        // Masking replaces whole characters' bytes with ASCII, so this cannot
        // happen; if it did, show nothing rather than something unmasked.
        "*".repeat(e.as_bytes().len())
    });
    Scan {
        masked,
        max_depth: s.max_depth,
        too_deep_at: s.too_deep_at,
    }
}

/// How a value is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Secret,
    /// `env = "…"` under a secret key: shown only if it is a variable name.
    EnvRef,
    /// `file = "…"` under a secret key: a path, shown.
    FileRef,
}

impl Mode {
    /// The mode of `key`'s value inside a table (or dotted key) of `parent` mode.
    fn child(parent: Mode, key: &str) -> Mode {
        match parent {
            Mode::Secret | Mode::EnvRef | Mode::FileRef => match key {
                "env" if parent == Mode::Secret => Mode::EnvRef,
                "file" if parent == Mode::Secret => Mode::FileRef,
                _ => Mode::Secret,
            },
            Mode::Plain if looks_secret(key) => Mode::Secret,
            Mode::Plain => Mode::Plain,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Array,
    Table,
}

struct Scanner<'a> {
    b: &'a [u8],
    out: Vec<u8>,
    i: usize,
    max_depth: usize,
    too_deep_at: Option<usize>,
    limit: usize,
    /// Off for a depth-only scan: no key is classified, nothing is masked.
    masking: bool,
    /// Everything before this was masked by a backstop already (so a run of
    /// hostile lines costs one pass, not one pass each).
    masked_to: usize,
    /// Everything before this was searched by [`Scanner::anywhere`] already.
    searched_to: usize,
}

impl Scanner<'_> {
    /// [`Mode::child`], or always plain when not masking.
    fn child(&self, parent: Mode, key: &str) -> Mode {
        if self.masking {
            Mode::child(parent, key)
        } else {
            Mode::Plain
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at(&self, s: &[u8]) -> bool {
        self.b[self.i..].starts_with(s)
    }

    /// Notes a nesting `depth` reached at byte `at`.
    fn depth(&mut self, depth: usize, at: usize) {
        self.max_depth = self.max_depth.max(depth);
        if depth > self.limit && self.too_deep_at.is_none() {
            self.too_deep_at = Some(at);
        }
    }

    /// Masks `range` byte for byte, keeping line breaks.
    fn mask(&mut self, from: usize, to: usize) {
        if !self.masking {
            return;
        }
        for b in &mut self.out[from..to] {
            if *b != b'\n' && *b != b'\r' {
                *b = b'*';
            }
        }
    }

    /// Masks `range` but keeps blanks, for junk and comments after a secret.
    fn mask_words(&mut self, from: usize, to: usize) {
        if !self.masking {
            return;
        }
        for b in &mut self.out[from..to] {
            if !matches!(*b, b'\n' | b'\r' | b' ' | b'\t') {
                *b = b'*';
            }
        }
    }

    /// Applies [`secret_assignment`] to every line that starts in `from..to`.
    fn backstop(&mut self, from: usize, to: usize) {
        if !self.masking {
            return;
        }
        let mut start = from;
        while start < to {
            let end = self.b[start..to]
                .iter()
                .position(|c| *c == b'\n')
                .map_or(to, |n| start + n);
            let mut next = end + 1;
            if start >= self.masked_to {
                if let Some(at) = secret_assignment(&self.b[start..end]) {
                    let extent = value_extent(self.b, start + at);
                    self.mask_words(start + at, extent);
                    self.masked_to = self.masked_to.max(extent);
                    next = next.max(extent + 1);
                } else {
                    self.anywhere(start, end);
                }
            }
            start = next;
        }
    }

    /// Searches `from..to` (one line's rest) for a secret-looking key, bare
    /// or quoted, followed by `=` or `:`, and masks the value after it: the
    /// backstop for lines whose structure the scan could not follow (a
    /// pasted JSON line, text after a table header or a value).
    fn anywhere(&mut self, from: usize, to: usize) {
        if !self.masking {
            return;
        }
        let b = self.b;
        let mut i = from.max(self.searched_to);
        while i < to {
            let (key, after) = match b[i] {
                q @ (b'"' | b'\'') => {
                    let close = b[i + 1..to]
                        .iter()
                        .position(|c| *c == q)
                        .map_or(to, |n| i + 1 + n);
                    (&b[i + 1..close], (close + 1).min(to))
                }
                c if is_key_byte(c) => {
                    let end = b[i..to]
                        .iter()
                        .position(|c| !is_key_byte(*c))
                        .map_or(to, |n| i + n);
                    (&b[i..end], end)
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            let mut j = after;
            while j < to && matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            let secret = j < to
                && matches!(b[j], b'=' | b':')
                && String::from_utf8_lossy(key)
                    .split('.')
                    .any(|k| looks_secret(k.trim()));
            if secret {
                let extent = value_extent(b, j + 1).max(j + 1);
                self.mask_words(j + 1, extent);
                self.masked_to = self.masked_to.max(extent);
                i = extent;
            } else {
                i = after.max(i + 1);
            }
        }
        self.searched_to = self.searched_to.max(to);
    }

    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_line(&mut self) -> usize {
        while let Some(c) = self.peek() {
            if c == b'\n' {
                break;
            }
            self.i += 1;
        }
        self.i
    }

    /// A depth-only scan ends at the first place that is too deep.
    fn done(&self) -> bool {
        !self.masking && self.too_deep_at.is_some()
    }

    fn document(&mut self) {
        let mut table_mode = Mode::Plain;
        let mut table_depth = 0;
        while self.i < self.b.len() && !self.done() {
            self.skip_blank();
            match self.peek() {
                None => break,
                Some(b'\n' | b'\r') => self.i += 1,
                Some(b'#') => {
                    let from = self.i;
                    let end = self.skip_line();
                    self.backstop(from, end);
                }
                Some(b'[') => {
                    let (mode, depth) = self.header();
                    table_mode = mode;
                    table_depth = depth;
                    while self.peek() == Some(b']') {
                        self.i += 1;
                    }
                    self.rest_of_line(mode);
                }
                Some(_) => self.statement(table_mode, table_depth),
            }
        }
    }

    /// `[a.b]` or `[[a.b]]`: the mode and depth its keys start from.
    fn header(&mut self) -> (Mode, usize) {
        let start = self.i;
        while self.peek() == Some(b'[') {
            self.i += 1;
        }
        let (segments, _) = self.key(b"]");
        self.depth(segments.len(), start);
        let mode = segments.iter().fold(Mode::Plain, |m, k| self.child(m, k));
        (mode, segments.len())
    }

    /// Reads a possibly dotted, possibly quoted key up to a byte in `stop`
    /// (not consumed) or the end of the line. Returns the segments and whether
    /// a stop byte was reached.
    fn key(&mut self, stop: &[u8]) -> (Vec<String>, bool) {
        let mut segments = Vec::new();
        let mut current = String::new();
        // This segment has a word already, and a blank came after it: a
        // second word without a dot between means this is no key.
        let (mut has_word, mut gap) = (false, false);
        loop {
            match self.peek() {
                None | Some(b'\n') => break,
                Some(c) if stop.contains(&c) => {
                    segments.push(std::mem::take(&mut current));
                    return (segments, true);
                }
                Some(b'.') => {
                    segments.push(std::mem::take(&mut current));
                    (has_word, gap) = (false, false);
                    self.i += 1;
                }
                Some(b' ' | b'\t') => {
                    gap = has_word;
                    self.i += 1;
                }
                Some(c) if gap && (is_key_byte(c) || c == b'"' || c == b'\'') => {
                    segments.push(current);
                    return (segments, false);
                }
                Some(q @ (b'"' | b'\'')) => {
                    self.i += 1;
                    let start = self.i;
                    let keep = self.masking;
                    while let Some(c) = self.peek() {
                        if c == q || c == b'\n' {
                            break;
                        }
                        if c == b'\\'
                            && q == b'"'
                            && self.b.get(self.i + 1).is_some_and(|n| *n != b'\n')
                        {
                            self.i += 1;
                        }
                        self.i += 1;
                    }
                    if keep {
                        current.push_str(&String::from_utf8_lossy(&self.b[start..self.i]));
                    }
                    if self.peek() == Some(q) {
                        self.i += 1;
                    }
                    has_word = true;
                }
                Some(c) if is_key_byte(c) => {
                    if self.masking {
                        current.push(char::from(c));
                    }
                    has_word = true;
                    self.i += 1;
                }
                // `:` of a YAML or JSON habit, `=` inside base64, anything a
                // key cannot hold: this is no `key =` line.
                Some(_) => {
                    segments.push(current);
                    return (segments, false);
                }
            }
        }
        segments.push(current);
        (segments, false)
    }

    /// `key = value` (or a broken line), at the start of a line.
    fn statement(&mut self, table_mode: Mode, table_depth: usize) {
        let start = self.i;
        let (segments, found) = self.key(b"=");
        if !found {
            // No `=`: if the line starts with a secret-looking word, mask
            // everything after that word (`client_secret "x"`, `password: x`).
            self.i = start;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            {
                self.i += 1;
            }
            let word = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
            let end = self.skip_line();
            if table_mode != Mode::Plain || looks_secret(&word) {
                let from = if table_mode == Mode::Plain {
                    start + word.len()
                } else {
                    start
                };
                self.mask_words(from, end);
            }
            self.anywhere(start, end);
            return;
        }
        self.i += 1; // '='
        self.depth(table_depth + segments.len(), start);
        let mode = segments.iter().fold(table_mode, |m, k| self.child(m, k));
        let value_start = self.i;
        self.value(mode, table_depth + segments.len());
        let nothing = self.b[value_start..self.i]
            .iter()
            .all(|c| matches!(c, b' ' | b'\t' | b'\r'));
        if mode != Mode::Plain && nothing && self.peek() == Some(b'\n') {
            // `client_secret =` with the value on the next line.
            let mut next = self.i + 1;
            while self.b.get(next).is_some_and(|c| matches!(c, b' ' | b'\t')) {
                next += 1;
            }
            let extent = value_extent(self.b, next);
            self.mask_words(next, extent);
            self.masked_to = self.masked_to.max(extent);
        }
        self.rest_of_line(mode);
    }

    /// Whatever follows a header or a value on its line (junk, a comment):
    /// masked after a secret, searched for one after anything else.
    fn rest_of_line(&mut self, mode: Mode) {
        let from = self.i;
        let end = self.skip_line();
        if mode == Mode::Plain {
            self.anywhere(from, end);
        } else {
            self.mask_words(from, end);
        }
    }

    /// One value, with everything it nests; stops after it.
    fn value(&mut self, mode: Mode, base_depth: usize) {
        let mut stack: Vec<(Open, Mode)> = Vec::new();
        let mut mode = mode;
        // Whether the next thing is a value (else a separator or a key).
        let mut want_value = true;
        loop {
            if self.done() {
                return;
            }
            let top = stack.last().copied();
            if want_value {
                self.skip_space(top.is_some(), mode);
                let Some(c) = self.peek() else { return };
                match c {
                    b'"' | b'\'' => self.string(mode),
                    b'[' => {
                        self.i += 1;
                        stack.push((Open::Array, mode));
                        self.depth(base_depth + stack.len(), self.i - 1);
                        continue;
                    }
                    b'{' => {
                        self.i += 1;
                        stack.push((Open::Table, mode));
                        self.depth(base_depth + stack.len(), self.i - 1);
                        want_value = false;
                        continue;
                    }
                    b']' | b'}' | b',' if top.is_some() => {}
                    b'\n' => return,
                    _ if top.is_some_and(|t| t.0 == Open::Array) => {
                        // `key = value` where a value belongs (an unclosed
                        // array swallowed the next lines): the key decides.
                        let start = self.i;
                        self.bare(mode);
                        let word = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
                        self.skip_blank();
                        if self.peek() == Some(b'=') {
                            self.i += 1;
                            mode = self.child(mode, &word);
                            continue;
                        }
                    }
                    _ => self.bare(mode),
                }
                want_value = false;
                if stack.is_empty() {
                    return;
                }
                continue;
            }
            let Some((open, open_mode)) = top else { return };
            self.skip_space(true, open_mode);
            let Some(c) = self.peek() else { return };
            match (c, open) {
                (b',', Open::Array) => {
                    self.i += 1;
                    mode = open_mode;
                    want_value = true;
                }
                (b']', Open::Array) | (b'}', Open::Table) => {
                    self.i += 1;
                    stack.pop();
                    if stack.is_empty() {
                        return;
                    }
                }
                (b',', Open::Table) => self.i += 1,
                (_, Open::Table) => {
                    // A key inside an inline table.
                    let start = self.i;
                    let (segments, found) = self.key(b"=,}");
                    if found && self.peek() == Some(b'=') {
                        self.i += 1;
                        self.depth(base_depth + stack.len() + segments.len(), start);
                        mode = segments.iter().fold(open_mode, |m, k| self.child(m, k));
                        want_value = true;
                    } else {
                        // Not `key =`: JSON's `"key": value`, a stray `]`.
                        if self.i == start {
                            self.i += 1;
                        }
                        if open_mode == Mode::Plain {
                            let eol = self.b[start..]
                                .iter()
                                .position(|c| *c == b'\n')
                                .map_or(self.b.len(), |n| start + n);
                            self.anywhere(start, eol);
                        } else {
                            self.mask(start, self.i);
                        }
                    }
                }
                (_, Open::Array) => {
                    // Junk between items: a value without a comma, or a stray `}`.
                    if c == b'}' {
                        if open_mode != Mode::Plain {
                            self.mask(self.i, self.i + 1);
                        }
                        self.i += 1;
                    } else {
                        mode = open_mode;
                        want_value = true;
                    }
                }
            }
        }
    }

    /// Skips blanks; inside arrays also line breaks and comments (masked
    /// when the array is a secret's).
    fn skip_space(&mut self, multiline: bool, mode: Mode) {
        loop {
            self.skip_blank();
            match self.peek() {
                Some(b'\n') if multiline => {
                    // A line that starts inside an array may be one an
                    // unclosed `[` swallowed: the backstop judges it.
                    self.i += 1;
                    let end = self.b[self.i..]
                        .iter()
                        .position(|c| *c == b'\n')
                        .map_or(self.b.len(), |n| self.i + n);
                    self.backstop(self.i, end);
                }
                Some(b'\r') if multiline => self.i += 1,
                Some(b'#') if multiline => {
                    let from = self.i;
                    let end = self.skip_line();
                    if mode != Mode::Plain {
                        self.mask_words(from, end);
                    }
                }
                _ => return,
            }
        }
    }

    /// A bare token: number, boolean, date or junk.
    fn bare(&mut self, mode: Mode) {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}' | b'#') {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            self.i += 1; // a lone byte the value cannot start with
        }
        if mode != Mode::Plain {
            self.mask(start, self.i);
        }
    }

    /// A basic or literal string, single- or multi-line; the inside is masked
    /// as `mode` says. Unclosed single-line strings end at the line's end,
    /// unclosed multi-line ones at the end of the text.
    fn string(&mut self, mode: Mode) {
        let quote = self.b[self.i];
        let triple = if quote == b'"' {
            &b"\"\"\""[..]
        } else {
            b"'''"
        };
        let multi = self.at(triple);
        self.i += if multi { 3 } else { 1 };
        let start = self.i;
        let mut end = self.b.len();
        while let Some(c) = self.peek() {
            if c == b'\\' && quote == b'"' {
                let skip = if !multi && self.b.get(self.i + 1) == Some(&b'\n') {
                    1
                } else {
                    2
                };
                self.i = (self.i + skip).min(self.b.len());
                continue;
            }
            if !multi && c == b'\n' {
                end = self.i;
                break;
            }
            if multi && self.at(triple) {
                // A closing run may be four or five quotes long: the first
                // one or two belong to the string.
                let close = self.i;
                self.i += 3;
                while self.peek() == Some(quote) && self.i - close < 5 {
                    self.i += 1;
                }
                end = self.i - 3;
                break;
            }
            if !multi && c == quote {
                end = self.i;
                self.i += 1;
                break;
            }
            self.i += 1;
        }
        let end = end.min(self.b.len());
        let shown = match mode {
            Mode::Plain | Mode::FileRef => true,
            Mode::EnvRef => {
                !multi && std::str::from_utf8(&self.b[start..end]).is_ok_and(is_env_name)
            }
            Mode::Secret => false,
        };
        if !shown {
            self.mask(start, end);
        } else if multi {
            // An unclosed `"""` above a secret line swallows it: still masked.
            self.backstop(start, end);
        }
    }
}

#[cfg(test)]
mod tests;
