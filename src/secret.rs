//! Secret values (client secrets, access and refresh tokens).
//!
//! A [`Secret`] cannot leak by formatting: `Debug` and `Display` print
//! `[redacted]`, and the memory is zeroized on drop (via `secrecy`). The only
//! way to the value is [`Secret::expose`], so every use is greppable.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// What formatting prints instead of a secret.
pub const REDACTED: &str = "[redacted]";

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The secret value. Call only where it is sent or sealed, never to print.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The shortest piece of a secret that is redacted where text echoes it.
pub const ECHO_MIN: usize = 8;

/// `text` with every stretch of [`ECHO_MIN`] or more characters that appears
/// in one of `secrets` replaced by `[redacted]`: a server that echoes the
/// token, or a long part of it, shows nothing of it. Secrets shorter than
/// [`ECHO_MIN`] are not looked for (they would redact ordinary words).
///
/// Linear in the text: every [`ECHO_MIN`]-byte window of the secrets goes
/// into a set, and each window of the text is looked up once.
pub fn redact_echoes(text: &str, secrets: &[&str]) -> String {
    let windows: std::collections::HashSet<&[u8]> = secrets
        .iter()
        .filter(|s| s.len() >= ECHO_MIN)
        .flat_map(|s| s.as_bytes().windows(ECHO_MIN))
        .collect();
    let bytes = text.as_bytes();
    if windows.is_empty() || bytes.len() < ECHO_MIN {
        return text.to_string();
    }
    // Bytes covered by some window that is a piece of a secret.
    let mut covered = vec![false; bytes.len()];
    let mut run_end = 0;
    for (i, w) in bytes.windows(ECHO_MIN).enumerate() {
        if windows.contains(w) {
            let from = i.max(run_end);
            covered[from..i + ECHO_MIN].fill(true);
            run_end = i + ECHO_MIN;
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut in_secret = false;
    for (i, c) in text.char_indices() {
        // A window is the bytes of a secret, so it starts and ends on
        // character boundaries of any text that holds it.
        if covered[i] {
            if !in_secret {
                out.push_str(REDACTED);
                in_secret = true;
            }
        } else {
            in_secret = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_of_a_secret_are_redacted_whole_or_in_part() {
        let token = "FAKE.test-token-SECRETPART-0123456789";
        assert_eq!(
            redact_echoes(&format!("535 bad token {token} ok"), &[token]),
            "535 bad token [redacted] ok"
        );
        // Eight characters or more of it, anywhere.
        assert_eq!(
            redact_echoes("got SECRETPART-01 from you", &[token]),
            "got [redacted] from you"
        );
        assert_eq!(redact_echoes("got SECRETPA", &[token]), "got [redacted]");
        // Seven is not enough: ordinary words must survive.
        assert_eq!(redact_echoes("got SECRETP.", &["SECRETPX"]), "got SECRETP.");
        assert_eq!(redact_echoes("naïve text", &[token]), "naïve text");
        assert_eq!(redact_echoes("short", &["abc"]), "short");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// No 8-character piece of the secret survives, whatever surrounds it.
        #[test]
        fn no_piece_survives(
            secret in "[A-Za-z0-9._~+/-]{8,60}",
            before in "\\PC{0,20}",
            after in "\\PC{0,20}",
            from in 0usize..60,
            len in 8usize..60,
        ) {
            let from = from.min(secret.len() - 8);
            let to = (from + len).min(secret.len());
            let text = format!("{before}{}{after}", &secret[from..to]);
            let out = redact_echoes(&text, &[secret.as_str()]);
            for w in secret.as_bytes().windows(ECHO_MIN) {
                let w = std::str::from_utf8(w).unwrap();
                proptest::prop_assert!(!out.contains(w), "{w} survived in {out}");
            }
        }
    }

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("FAKE-super-secret");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "FAKE-super-secret");
    }
}
