//! Checks of single values shared by the sections (emails, scopes,
//! endpoints, CA files), each a diagnostic with its span.

use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use url::Url;

use crate::config::model::Span;
use crate::diagnostic::{Diagnostic, Diagnostics, shown};

/// A `ca_file` (the provider's or the state database's), read and checked
/// now rather than at the first connection: its path, and the digest of its
/// certificates (what an apply records as the trust it used). `label` starts
/// the error, e.g. `state.ca_file`.
pub(super) fn ca_file_at(
    dir: &Path,
    file: &Spanned<String>,
    label: &str,
    diags: &mut Diagnostics,
) -> Option<(PathBuf, String)> {
    let path = dir.join(file.get_ref());
    match crate::security::ca_certificates(&path) {
        Ok(certs) => Some((path, crate::security::trust_digest(&certs))),
        Err(problem) => {
            diags.push(
                Diagnostic::error(format!("{label} `{}` {problem}", shown(file.get_ref())))
                    .at(Some(file.span()))
                    .help(
                        "name a PEM file of CA certificates; the path is relative to assets.toml",
                    ),
            );
            None
        }
    }
}

/// Whether `address` is a bare address (`local@domain`, no display name).
pub fn is_bare_email(address: &str) -> bool {
    let options = email_address::Options::default().without_display_text();
    email_address::EmailAddress::parse_with_options(address, options).is_ok()
}

pub(super) fn check_email(what: &str, value: &Spanned<String>, diags: &mut Diagnostics) {
    if !is_bare_email(value.get_ref()) {
        let help = if value.get_ref().contains('<') {
            "write the bare address without a display name, e.g. \"billing@example.com\""
        } else {
            "write it as local@domain, e.g. \"support@example.com\""
        };
        diags.push(
            Diagnostic::error(format!(
                "{what} `{}` is not a valid email address",
                shown(value.get_ref())
            ))
            .at(Some(value.span()))
            .help(help),
        );
    }
}

pub(super) fn check_scopes(what: &str, scopes: &Spanned<Vec<String>>, diags: &mut Diagnostics) {
    if scopes.get_ref().is_empty() {
        diags.push(
            Diagnostic::error(format!("{what} is empty"))
                .at(Some(scopes.span()))
                .help("list at least one scope, or leave `scopes` out to use the provider's"),
        );
    } else if let Some(bad) = scopes
        .get_ref()
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        diags.push(
            Diagnostic::error(format!(
                "{what}: `{}` is not a scope (empty or contains spaces)",
                shown(bad)
            ))
            .at(Some(scopes.span()))
            .help("write one scope per list item: [\"mail\", \"offline_access\"]"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = scopes.get_ref().iter().find(|s| !seen.insert(s.as_str())) {
        diags.push(
            Diagnostic::warning(format!("{what}: `{}` is listed twice", shown(dup)))
                .at(Some(scopes.span()))
                .help("list each scope once"),
        );
    }
}

/// Parses an endpoint URL: https, or http on a loopback host.
pub(super) fn check_url(
    what: &str,
    value: &str,
    span: Span,
    diags: &mut Diagnostics,
) -> Option<Url> {
    let url = match Url::parse(value) {
        Ok(u) => u,
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("{what} `{}` is not a valid URL: {e}", shown(value)))
                    .at(span)
                    .help("write an absolute URL such as \"https://idp.example/token\""),
            );
            return None;
        }
    };
    let loopback = url.host().is_some_and(|h| is_loopback_host(&h));
    match url.scheme() {
        "https" => Some(url),
        "http" if loopback => Some(url),
        "http" => {
            diags.push(
                Diagnostic::error(format!(
                    "{what} uses http:// on `{}`, which is not a loopback host",
                    url.host_str().unwrap_or_default()
                ))
                .at(span)
                .help("use https:// (plain http is allowed only on 127.0.0.1, ::1 and localhost)"),
            );
            None
        }
        other => {
            diags.push(
                Diagnostic::error(format!(
                    "{what}: scheme `{}` is not supported",
                    shown(other)
                ))
                .at(span)
                .help("use https://"),
            );
            None
        }
    }
}

pub use crate::security::is_loopback_host;
