//! The driver's failures in operators' words: which server, what went
//! wrong, what to do (never the password).

use super::tls::tls_words;

/// A connection failure in words: refused, unreachable, TLS.
pub(super) fn transport_words(e: &tokio_postgres::Error, server: &str, has_ca: bool) -> String {
    if let Some(tls) = crate::security::rustls_error(e) {
        return tls_words(tls, server, has_ca);
    }
    match crate::security::io_kind(e) {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            return format!(
                "cannot connect to {server}: connection refused (nothing listens there: is PostgreSQL running, and are the host and port in state.url right?)"
            );
        }
        Some(std::io::ErrorKind::TimedOut) => {
            return format!("cannot connect to {server}: timed out");
        }
        Some(std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable) => {
            return format!("cannot connect to {server}: {}", crate::error::chain(e));
        }
        _ => {}
    }
    let text = crate::error::chain(e);
    if text.contains("server does not support TLS") {
        return format!(
            "{server} does not offer TLS, and state.url asks for it (sslmode=verify-full or require): enable ssl on the server; only a loopback server may use sslmode=disable"
        );
    }
    if text.contains("invalid dns name") || text.contains("failed to lookup") {
        return format!("cannot find the host of {server}: {text}");
    }
    format!(
        "cannot use the database at {server}: {}",
        crate::diagnostic::shown_up_to(&text, 400)
    )
}
