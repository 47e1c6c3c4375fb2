//! The PostgreSQL state backend's connection URL, read for its shape only:
//! `postgres://ROLE[:PASSWORD]@HOST[:PORT]/DATABASE?sslmode=…&connect_timeout=…`.
//!
//! Pure (no socket): `validate` checks it offline, and the store builds its
//! connection from the parts. No message here ever quotes the URL, since a
//! password may sit anywhere in a mistyped one.

use std::net::IpAddr;
use std::time::Duration;

use crate::secret::Secret;

/// Default PostgreSQL port.
pub const DEFAULT_PORT: u16 = 5432;

/// How long a connection may take when the URL names no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS: accepted only for a loopback host.
    Disable,
    /// TLS, without checking who the server is (libpq's `require`).
    Require,
    /// TLS, the certificate checked against trusted roots and the host name.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A parsed state URL. `Debug` shows no password.
#[derive(Debug, Clone)]
pub struct StateUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    pub sslmode: SslMode,
    pub connect_timeout: Duration,
    /// How the session shows in `pg_stat_activity` (default "mailform").
    pub application_name: String,
}

impl StateUrl {
    /// `role@host:port/database`, for messages (never the password).
    pub fn shown(&self) -> String {
        format!(
            "{}@{}/{}",
            self.user,
            crate::security::server_name(&self.host, self.port),
            self.dbname
        )
    }
}

/// Whether `host` is this machine (the only place plain text is allowed).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Names mailform accepts for its schema: lower-case letters, digits and
/// `_`, as PostgreSQL folds them, at most 63 bytes, not `pg_*` (reserved).
/// SQL still quotes them, so a reserved word (`user`) works too.
pub fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
        && !s.starts_with("pg_")
}

/// Parses `text`; the error says what is wrong in words, quoting nothing of
/// the URL but the names of query parameters mailform does not know.
pub fn parse(text: &str) -> Result<StateUrl, String> {
    const SHAPE: &str = "postgres://ROLE@HOST:5432/DATABASE?sslmode=verify-full";
    let url =
        url::Url::parse(text.trim()).map_err(|_| format!("it is not a URL of the form {SHAPE}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "it must start with postgres:// (or postgresql://), as in {SHAPE}"
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => {
            return Err(format!(
                "it names no host (Unix sockets are not supported): write it as {SHAPE}"
            ));
        }
    };
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| {
            "a percent-escape in it is not valid UTF-8 text (write the part percent-encoded, e.g. %40 for @)".to_string()
        })
    };
    let user = decode(url.username())?;
    if user.is_empty() {
        return Err(format!("it names no role: write it as {SHAPE}"));
    }
    let password = url.password().map(decode).transpose()?.map(Secret::new);
    let path = url.path().trim_start_matches('/');
    if path.contains('/') {
        return Err(format!(
            "its path must be just the database name, as in {SHAPE}"
        ));
    }
    let dbname = match decode(path)? {
        d if d.is_empty() => user.clone(),
        d => d,
    };
    let mut sslmode = None;
    let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    let mut application_name = "mailform".to_string();
    for (key, value) in url.query_pairs() {
        match &*key {
            "sslmode" => {
                sslmode = Some(match &*value {
                    "disable" => SslMode::Disable,
                    "require" => SslMode::Require,
                    "verify-full" => SslMode::VerifyFull,
                    "allow" | "prefer" | "verify-ca" => {
                        return Err(format!(
                            "sslmode={} is not supported: use verify-full (TLS, the server's certificate checked against its name), require (TLS without that check), or disable (loopback only)",
                            crate::diagnostic::shown(&value)
                        ));
                    }
                    _ => {
                        return Err(
                            "sslmode must be verify-full, require or disable (loopback only)"
                                .to_string(),
                        );
                    }
                });
            }
            "connect_timeout" => {
                connect_timeout = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .map(Duration::from_secs)
                    .ok_or_else(|| {
                        "connect_timeout must be a whole number of seconds from 1 to 3600"
                            .to_string()
                    })?;
            }
            "application_name" => {
                if value.len() > 63 || value.chars().any(|c| !c.is_ascii_graphic()) {
                    return Err(
                        "application_name must be up to 63 printable ASCII characters without spaces"
                            .to_string(),
                    );
                }
                application_name = value.into_owned();
            }
            other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                return Err(format!(
                    "it has the parameter `{other}`, which mailform does not read (it reads sslmode, connect_timeout and application_name)"
                ));
            }
            _ => {
                return Err(
                    "it has a query parameter mailform does not read (it reads sslmode, connect_timeout and application_name)"
                        .to_string(),
                );
            }
        }
    }
    let sslmode = sslmode.unwrap_or(SslMode::VerifyFull);
    if sslmode == SslMode::Disable && !is_loopback(&host) {
        return Err(format!(
            "sslmode=disable would send the password and the state in plain text to {host}: it is allowed only for a loopback host (localhost, 127.0.0.1, ::1); use sslmode=verify-full"
        ));
    }
    Ok(StateUrl {
        port: url.port().unwrap_or(DEFAULT_PORT),
        host,
        user,
        password,
        dbname,
        sslmode,
        connect_timeout,
        application_name,
    })
}

/// `%XX`-decoding of one URL part; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_defaults_and_escapes() {
        let u = parse(
            "postgres://ops%40team:p%40ss@db.example.com/mail?sslmode=require&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(u.host, "db.example.com");
        assert_eq!(u.port, DEFAULT_PORT);
        assert_eq!(u.user, "ops@team");
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(u.dbname, "mail");
        assert_eq!(u.sslmode, SslMode::Require);
        assert_eq!(u.connect_timeout, Duration::from_secs(3));
        assert!(!format!("{u:?}").contains("p@ss"));
        assert_eq!(u.shown(), "ops@team@db.example.com:5432/mail");

        let u = parse("postgresql://alice@[::1]:6543").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 6543));
        assert_eq!(u.dbname, "alice");
        assert_eq!(u.sslmode, SslMode::VerifyFull);
        assert_eq!(u.shown(), "alice@[::1]:6543/alice");
    }

    #[test]
    fn plain_text_only_on_loopback() {
        assert!(parse("postgres://a@127.0.0.1/db?sslmode=disable").is_ok());
        assert!(parse("postgres://a@localhost/db?sslmode=disable").is_ok());
        assert!(parse("postgres://a@[::1]/db?sslmode=disable").is_ok());
        let e = parse("postgres://a:pw@db.example.com/db?sslmode=disable").unwrap_err();
        assert!(e.contains("only for a loopback host"), "{e}");
        assert!(!e.contains("pw"));
    }

    #[test]
    fn bad_urls_are_named_in_words_without_quoting_them() {
        for (text, says) in [
            ("db.example.com:5432/db", "must start with postgres://"),
            ("SECRETPW at the db", "not a URL"),
            ("mysql://a:SECRETPW@h/db", "must start with postgres://"),
            ("postgres:///db", "names no host"),
            ("postgres://h/db", "names no role"),
            ("postgres://a:SECRETPW@h/db/x", "just the database name"),
            ("postgres://a:SECRETPW@h/db?sslmode=prefer", "not supported"),
            (
                "postgres://a:SECRETPW@h/db?sslmode=SECRETPW",
                "must be verify-full",
            ),
            (
                "postgres://a:SECRETPW@h/db?connect_timeout=0",
                "connect_timeout",
            ),
            ("postgres://a:SECRETPW@h/db?host=x", "`host`"),
            ("postgres://a:SECRETPW@h/db?SECRET%20PW=1", "does not read"),
            ("postgres://a:%FF@h/db", "not valid UTF-8"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("SECRET"), "{text}: {e}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any text: no panic, and an error never quotes a password.
        #[test]
        fn any_text_parses_or_fails_in_words(
            prefix in "(postgres|postgresql|http|)(://)?[a-z@:%/]{0,12}",
            rest in ".{0,40}",
        ) {
            let text = format!("{prefix}:SECRETPW@{rest}");
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(!e.contains("SECRETPW"), "{}", e);
            }
        }
    }
}
