//! Masking passes over the raw lines, after the scan: URL passwords and
//! multi-line strings, wherever they are, however the line broke.

/// Masks every multi-line string, by the text's lines alone: no field of
/// `assets.toml` takes one, so one is either a secret pasted whole or text a
/// broken line turned into a string. A stray quote or `#` before a key can
/// make the scanner read the key as part of a string or a comment, and then
/// the lines of the secret as keys of their own, shown in a syntax error's
/// snippet. From a `"""` or `\'\'\'` left open on its line every byte up to
/// the closing one is masked, newlines kept. Linear: each line is looked at
/// once.
pub(super) fn mask_multiline_secrets(b: &[u8], out: &mut [u8]) {
    let mask = |out: &mut [u8], range: std::ops::Range<usize>| {
        for j in range {
            if b[j] != b'\n' {
                out[j] = b'*';
            }
        }
    };
    let mut i = 0;
    // Where the last string masked here ended: a walk back stops there.
    let mut floor = 0;
    while i < b.len() {
        let end = b[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |n| i + n);
        let line = &b[i..end];
        let found = [b"\"\"\"", b"'''"].into_iter().find_map(|delim| {
            let count = line.windows(3).filter(|w| w == delim).count();
            let first = line.windows(3).position(|w| w == delim)?;
            Some((count, first, delim))
        });
        let Some((count, first, delim)) = found else {
            i = end + 1;
            continue;
        };
        let trimmed = line.trim_ascii_end();
        let assigns = line[..first].iter().any(|&c| c == b'=' || c == b':');
        if count % 2 == 1 && !assigns {
            // A closing delimiter whose opening one a broken line lost: the
            // text before it, and the bare lines above it, were the string.
            mask(out, i..i + first);
            let mut start = i;
            while start > floor {
                let above = b[..start - 1]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |n| n + 1)
                    .max(floor);
                let text = b[above..start - 1].trim_ascii();
                let statement = text.is_empty()
                    || text.starts_with(b"[")
                    || text.starts_with(b"#")
                    || text.contains(&b'=');
                if statement {
                    break;
                }
                mask(out, above..start - 1);
                start = above;
            }
            floor = end;
            i = end + 1;
            continue;
        }
        // Left open: an odd number of delimiters, or a line that ends with
        // one (`key = """`, whatever came before it on a broken line).
        let from = if count % 2 == 1 {
            first + 3
        } else if trimmed.ends_with(delim) {
            trimmed.len()
        } else {
            i = end + 1;
            continue;
        };
        let open = i + from;
        let close = b[open..]
            .windows(3)
            .position(|w| w == delim)
            .map_or(b.len(), |n| open + n);
        mask(out, open..close);
        let next = b[close..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |n| close + n);
        floor = next;
        i = next + 1;
    }
}

/// Masks the password of every `scheme://user:password@host` in the text,
/// wherever it is (a literal `state.url`, a comment, a broken line), and the
/// value of a `password=` query parameter: the key of a URL says "place",
/// but the URL may still hold a secret.
///
/// A password may hold `/`, `?`, `#`, quotes and even blanks, so the URL runs
/// to its closing quote when it is in a string (else to the next blank or
/// line end); the user part is up to the last `@` in it, and what follows
/// the first `:` there (if no `/` comes first) is masked. Masking a little
/// too much in an odd line is the price of never showing a password.
pub(super) fn mask_url_passwords(b: &[u8], out: &mut [u8]) {
    let mut i = 0;
    // The end of the line being searched, found once per line (many URLs
    // on one long line stay linear).
    let mut line_end = 0;
    while let Some(n) = b[i..].windows(3).position(|w| w == b"://") {
        let scheme = i + n;
        let start = scheme + 3;
        if start > line_end {
            line_end = b[start..]
                .iter()
                .position(|c| matches!(c, b'\r' | b'\n'))
                .map_or(b.len(), |e| start + e);
        }
        // The character before the scheme: a quote opens the string the URL is in.
        let opener = b[..scheme]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))
            .map(|p| b[p]);
        let end = match opener {
            Some(q @ (b'"' | b'\'')) => b[start..line_end]
                .iter()
                .rposition(|c| *c == q)
                .map_or(line_end, |e| start + e),
            _ => b[start..line_end]
                .iter()
                .position(|c| matches!(c, b' ' | b'\t'))
                .map_or(line_end, |e| start + e),
        };
        let colon = b[start..end]
            .iter()
            .position(|c| matches!(c, b':' | b'/'))
            .filter(|c| b[start + c] == b':');
        if let Some(colon) = colon
            && let Some(at) = b[start + colon..end].iter().rposition(|c| *c == b'@')
        {
            for c in &mut out[start + colon + 1..start + colon + at] {
                *c = b'*';
            }
        }
        let mut k = start;
        while let Some(p) = b[k..end]
            .windows(9)
            .position(|w| w.eq_ignore_ascii_case(b"password="))
        {
            let from = k + p + 9;
            let to = b[from..end]
                .iter()
                .position(|c| *c == b'&')
                .map_or(end, |e| from + e);
            for c in &mut out[from..to] {
                *c = b'*';
            }
            k = to;
        }
        i = end.max(start);
    }
}
