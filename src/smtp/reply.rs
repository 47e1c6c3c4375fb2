//! What an SMTP server said, kept in its own words and made safe to print.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

/// Longest reply text kept, in characters (Microsoft's run to ~200).
const MAX_REPLY_CHARS: usize = 400;

/// Text that came from a server (a reply, or an error that quotes one),
/// made safe to print: any of `secrets`, or 8 characters or more of one,
/// replaced (should a server echo the token or its XOAUTH2 encoding, whole
/// or in part), control characters escaped, long text shortened.
pub fn clean(text: &str, secrets: &[&str]) -> String {
    let text = crate::secret::redact_echoes(text.trim(), secrets);
    crate::diagnostic::shown_up_to(&text, MAX_REPLY_CHARS).into_owned()
}

/// One reply: its code and its text, control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// `text` as the server sent it, made safe to print: control characters
    /// escaped, long replies shortened, and any of `secrets` (the token and
    /// its XOAUTH2 encoding, should a server echo them) replaced.
    pub fn new(code: u16, text: &str, secrets: &[&str]) -> Reply {
        Reply {
            code,
            text: clean(text, secrets),
        }
    }

    /// The enhanced status code (RFC 3463) the text starts with, e.g. `5.7.8`.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.text.split_whitespace().next()?;
        let mut parts = first.split('.');
        let ok = parts.next().is_some_and(|c| matches!(c, "2" | "4" | "5"))
            && parts
                .by_ref()
                .take(2)
                .filter(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .count()
                == 2
            && parts.next().is_none();
        ok.then_some(first)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

/// The `334` challenge a server sends before refusing an XOAUTH2 token
/// (Gmail, Dovecot, smtp-server): base64 of a JSON status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    pub status: Option<String>,
    pub schemes: Option<String>,
    /// The scope the server wants the token to carry.
    pub scope: Option<String>,
    /// The decoded text when it is not that JSON.
    pub other: Option<String>,
}

impl Challenge {
    /// Decodes the challenge line; `None` when it is empty.
    pub fn decode(line: &str) -> Option<Challenge> {
        #[derive(Deserialize)]
        struct Json {
            status: Option<serde_json::Value>,
            schemes: Option<String>,
            scope: Option<String>,
        }
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        let text = base64::engine::general_purpose::STANDARD
            .decode(line)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let clean = |s: &str| Reply::new(0, s, &[]).text;
        let Some(text) = text else {
            return Some(Challenge {
                other: Some(clean(line)),
                ..Challenge::default()
            });
        };
        match serde_json::from_str::<Json>(&text) {
            Ok(s) => Some(Challenge {
                status: s.status.map(|v| match v {
                    serde_json::Value::String(s) => clean(&s),
                    other => clean(&other.to_string()),
                }),
                schemes: s.schemes.as_deref().map(clean),
                scope: s.scope.as_deref().map(clean),
                other: None,
            }),
            Err(_) => Some(Challenge {
                other: Some(clean(&text)),
                ..Challenge::default()
            }),
        }
    }

    /// The scopes the server named, one by one.
    pub fn scopes(&self) -> Vec<&str> {
        self.scope
            .as_deref()
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default()
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(s) = &self.status {
            parts.push(format!("token status {s}"));
        }
        if let Some(s) = &self.scope {
            parts.push(format!("scope {s}"));
        }
        if let Some(o) = &self.other {
            parts.push(format!("challenge {o}"));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_challenge_decodes_to_status_and_scope() {
        // What Gmail sends for a bad token.
        let line = base64::engine::general_purpose::STANDARD
            .encode(r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#);
        let c = Challenge::decode(&line).unwrap();
        assert_eq!(
            c.to_string(),
            "token status 401, scope https://mail.google.com/"
        );
        assert_eq!(c.scopes(), ["https://mail.google.com/"]);
        assert_eq!(Challenge::decode(" "), None);
        let odd = Challenge::decode("not base64 \u{1b}[31m").unwrap();
        assert_eq!(odd.other.as_deref(), Some("not base64 \\u{1b}[31m"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// Whatever a hostile server sends, as a reply or as a challenge
        /// (raw, or base64 of anything, JSON-ish or not): no panic, nothing
        /// printed with a control character, and a planted secret never shown.
        #[test]
        fn hostile_replies_and_challenges_print_safely(
            text in proptest::string::string_regex("(?s).{0,600}").unwrap(),
            json in proptest::string::string_regex(r#"\{("(status|scope|schemes|x)":("[^"]{0,40}"|[0-9]{1,5}|null|\[\]),?){0,4}\}"#).unwrap(),
        ) {
            let secret = "FAKE.PLANTED-SECRET";
            let r = Reply::new(535, &format!("{text}{secret}{text}"), &[secret]);
            proptest::prop_assert!(!r.to_string().contains(secret));
            proptest::prop_assert!(!r.to_string().chars().any(char::is_control));
            let _ = r.enhanced();
            for line in [
                text.clone(),
                base64::engine::general_purpose::STANDARD.encode(&text),
                base64::engine::general_purpose::STANDARD.encode(&json),
            ] {
                if let Some(c) = Challenge::decode(&line) {
                    proptest::prop_assert!(!c.to_string().chars().any(char::is_control));
                    let _ = c.scopes();
                }
            }
        }
    }

    #[test]
    fn replies_are_safe_to_print() {
        let r = Reply::new(
            535,
            "5.7.8 bad\r\nX token FAKE.SECRET-TOKEN",
            &["FAKE.SECRET-TOKEN"],
        );
        assert_eq!(r.to_string(), "535 5.7.8 bad\\r\\nX token [redacted]");
        assert_eq!(r.enhanced(), Some("5.7.8"));
        assert_eq!(Reply::new(535, "Error: no", &[]).enhanced(), None);
        assert_eq!(
            Reply::new(535, "5.7.139 Authentication", &[]).enhanced(),
            Some("5.7.139")
        );
        assert!(Reply::new(454, "4.7.0 later", &[]).is_transient());
        let long = Reply::new(250, &"x".repeat(1000), &[]);
        assert_eq!(long.text.chars().count(), MAX_REPLY_CHARS + 1);
    }
}
