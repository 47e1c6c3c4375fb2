//! Which keys hold a secret: secret words (and one typo away from them),
//! place words that make a key name a location instead, and what a
//! variable name looks like.

/// Words that make a key hold a secret (compared in lower case, also with one
/// typo for the longer words).
const SECRET_WORDS: [&str; 7] = [
    "secret",
    "password",
    "passwd",
    "passphrase",
    "token",
    "credential",
    "apikey",
];

/// Short words that are secrets only when they are the whole word.
const SECRET_SHORT_WORDS: [&str; 3] = ["pwd", "pass", "pat"];

/// Key words after which the value names a place, not a secret
/// (`token_url`, `credentials_file`).
const PLACE_WORDS: [&str; 9] = [
    "url", "uri", "file", "path", "env", "endpoint", "type", "name", "id",
];

/// Whether a key (one segment, e.g. `client_secret`) holds a secret.
///
/// Words are split at non-letters and at camelCase humps; a word holds a
/// secret word, or something one typo away from one (`clientSecert`,
/// `refresh_tokn`). Called for every key of every config, so it allocates
/// nothing.
pub fn looks_secret(key: &str) -> bool {
    secret_key(key, true)
}

/// [`looks_secret`] without the typos: the key holds a secret word itself
/// (`api_token`, `password`), so `broken` or `passed` do not count. For
/// checks that refuse a key rather than mask a value.
pub fn names_secret(key: &str) -> bool {
    secret_key(key, false)
}

pub(super) fn secret_key(key: &str, typos: bool) -> bool {
    const MAX: usize = 128;
    if key.len() > MAX {
        let lower = key.to_ascii_lowercase();
        return SECRET_WORDS.iter().any(|w| lower.contains(w));
    }
    // Lower case, with a separator at each camelCase hump.
    let mut buf = [0u8; MAX * 2];
    let mut n = 0;
    let bytes = key.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if i > 0 && b.is_ascii_uppercase() && bytes[i - 1].is_ascii_lowercase() {
            buf[n] = b'_';
            n += 1;
        }
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    let lower = &buf[..n];
    let words = || {
        lower
            .split(|c| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
    };
    let Some(last) = words().next_back() else {
        return false;
    };
    if words().nth(1).is_some() && PLACE_WORDS.iter().any(|p| p.as_bytes() == last) {
        return false;
    }
    let mut joined = [0u8; MAX * 2];
    let mut len = 0;
    for w in words() {
        joined[len..len + w.len()].copy_from_slice(w);
        len += w.len();
    }
    let joined = &joined[..len];
    if [&b"apikey"[..], b"privatekey", b"accesskey", b"signingkey"]
        .iter()
        .any(|w| contains(joined, w))
    {
        return true;
    }
    words().chain(std::iter::once(joined)).any(|w| {
        SECRET_SHORT_WORDS.iter().any(|s| s.as_bytes() == w)
            || SECRET_WORDS.iter().any(|s| {
                if typos {
                    contains_within_one_edit(w, s.as_bytes())
                } else {
                    contains(w, s.as_bytes())
                }
            })
    })
}

/// Whether some stretch of `word` is `secret` or one typo away from it.
pub(super) fn contains_within_one_edit(word: &[u8], secret: &[u8]) -> bool {
    if contains(word, secret) {
        return true;
    }
    (secret.len() - 1..=secret.len() + 1)
        .any(|len| len <= word.len() && word.windows(len).any(|w| within_one_edit(w, secret)))
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `a` becomes `b` by at most one substitution, insertion, deletion
/// or swap of neighbours (the typos a person makes: `secert`, `secet`).
pub(super) fn within_one_edit(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        let (sa, sb) = (&short[prefix..], &long[prefix..]);
        sa.len() <= 1
            || sa[1..] == sb[1..]
            || (sa[0] == sb[1] && sa[1] == sb[0] && sa[2..] == sb[2..])
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

/// Longest environment variable name accepted in a secret reference.
pub const MAX_ENV_NAME: usize = 64;

/// Whether `name` reads as an environment variable name: upper case,
/// `[A-Z_][A-Z0-9_]*`, at most 64 characters. Stricter than the shell, on
/// purpose: only what reads as a name is ever shown, and a pasted secret
/// rarely does (they mix cases and punctuation).
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_ENV_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}
