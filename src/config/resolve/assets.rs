//! `[assets.NAME]`: one mailbox with its provider's defaults applied, and
//! the SMTP endpoint layered from provider and asset.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_spanned::Spanned;

use crate::config::model::{Asset, Provider, SmtpEndpoint};
use crate::config::presets::{MICROSOFT_IMAP_SCOPE, Preset};
use crate::config::raw::{RawAsset, RawImap, RawSmtp};
use crate::config::scan;
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean, shown};

use super::{check_email, check_scopes};

pub(super) fn resolve_asset(
    name: &str,
    raw: RawAsset,
    providers: &BTreeMap<String, Provider>,
    declared: &[&str],
    diags: &mut Diagnostics,
) -> Option<Asset> {
    let before = diags.error_count();
    let ctx = |field: &str| format!("asset `{name}`: {field}");

    check_email(&ctx("email"), &raw.email, diags);
    if let Some(u) = &raw.username
        && u.get_ref().trim().is_empty()
    {
        diags.push(
            Diagnostic::error(format!("{} is empty", ctx("username")))
                .at(Some(u.span()))
                .help("leave username out to log in as the email address"),
        );
    }
    // The login name travels inside XOAUTH2's `user=…\x01auth=…` string:
    // a control character would end it and start another field.
    if let Some(u) = &raw.username
        && u.get_ref().chars().any(char::is_control)
    {
        diags.push(
            Diagnostic::error(format!("{} has a control character", ctx("username")))
                .at(Some(u.span()))
                .help("write the mailbox's login name as it is, e.g. \"support@example.com\""),
        );
    }
    if let Some(f) = &raw.forwarding_address {
        check_email(&ctx("forwarding_address"), f, diags);
    }
    if let Some(c) = &raw.consent_as {
        check_email(&ctx("consent_as"), c, diags);
    }
    if let Some(s) = &raw.scopes {
        check_scopes(&ctx("scopes"), s, diags);
    }
    // A label named for a secret is refused; one a typo away (`broken` is
    // one letter from `token`) is only pointed out.
    if let Some(labels) = &raw.labels
        && let Some(key) = labels.get_ref().keys().find(|k| scan::looks_secret(k))
    {
        let exact = scan::names_secret(key);
        let message = format!(
            "{}: `{}` looks like a secret; labels are shown by plan and show, and kept in state",
            ctx("labels"),
            shown(key)
        );
        let d = if exact {
            Diagnostic::error(message)
        } else {
            Diagnostic::warning(message)
        };
        diags.push(d.at(Some(labels.span())).help(
            "labels are for names like team or queue; if a secret was written here, rotate it",
        ));
    }

    let provider_name = raw.provider.get_ref();
    let Some(provider) = providers.get(provider_name) else {
        if !declared.contains(&provider_name.as_str()) {
            let mut d = Diagnostic::error(format!(
                "{}: no provider named `{}`",
                ctx("provider"),
                shown(provider_name)
            ))
            .at(Some(raw.provider.span()));
            let candidates = declared.iter().copied().chain(Preset::NAMES);
            if let Some(s) = did_you_mean(provider_name, candidates).filter(|s| *s != provider_name)
            {
                d = d.help(if declared.contains(&s) {
                    format!("did you mean `{s}`?")
                } else {
                    format!("did you mean `{s}`? It is a preset, but it still needs a [providers.{s}] table with your client_id and client_secret")
                });
            } else if Preset::from_name(provider_name).is_some() {
                d = d.help(format!("`{provider_name}` is a preset, but it still needs a [providers.{provider_name}] table with your client_id and client_secret"));
            } else {
                d = d.help(format!("declare it as [providers.{provider_name}]"));
            }
            diags.push(d);
        }
        // A declared provider that failed to resolve has its own errors already;
        // the asset's own SMTP fields can still be checked.
        merge_smtp(&ctx("smtp"), None, raw.smtp.as_ref(), diags);
        return None;
    };

    let smtp = merge_smtp(&ctx("smtp"), Some(&provider.smtp), raw.smtp.as_ref(), diags);
    let imap = resolve_imap(name, &raw, provider, diags);
    if diags.error_count() > before {
        return None;
    }
    let smtp_own_span = raw.smtp.as_ref().and_then(|s| {
        s.security
            .as_ref()
            .map(Spanned::span)
            .or(s.port.as_ref().map(Spanned::span))
    });
    let scopes_span = raw.scopes.as_ref().map(Spanned::span);
    let mut scopes = raw
        .scopes
        .map_or_else(|| provider.scopes.clone(), Spanned::into_inner);
    // Microsoft 365's IMAP needs its own delegated scope beside SMTP's: a
    // preset asset that declares IMAP asks for it (an app grant's
    // `.default` carries IMAP.AccessAsApp already).
    if imap.is_some()
        && provider.preset == Some(Preset::Microsoft)
        && !provider.grant.is_organisation()
        && !scopes.iter().any(|s| s == MICROSOFT_IMAP_SCOPE)
    {
        scopes.push(MICROSOFT_IMAP_SCOPE.to_string());
    }
    Some(Asset {
        name: name.to_string(),
        email: raw.email.get_ref().clone(),
        username: raw
            .username
            .map_or_else(|| raw.email.get_ref().clone(), Spanned::into_inner),
        provider: provider_name.clone(),
        scopes,
        smtp: smtp?,
        imap,
        forwarding_address: raw.forwarding_address.map(Spanned::into_inner),
        forwarding_disposition: raw.forwarding_disposition.map(Spanned::into_inner),
        consent_as: raw.consent_as.map(Spanned::into_inner),
        labels: raw.labels.map(Spanned::into_inner).unwrap_or_default(),
        email_span: Some(raw.email.span()),
        scopes_span,
        smtp_own_span,
    })
}

/// The asset's IMAP endpoint: the provider's, none (`false`), the
/// provider's or preset's (`true`), or a table over those.
fn resolve_imap(
    name: &str,
    raw: &RawAsset,
    provider: &Provider,
    diags: &mut Diagnostics,
) -> Option<SmtpEndpoint> {
    let ctx = |field: &str| format!("asset `{name}`: {field}");
    match &raw.imap {
        None => provider.imap.clone(),
        Some(RawImap::On(false)) => None,
        Some(RawImap::On(true)) => {
            if provider.imap_base.is_none() {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: imap = true, but provider `{}` names no IMAP endpoint (and no preset supplies one)",
                        ctx("imap"),
                        provider.name
                    ))
                    .at(Some(raw.email.span()))
                    .help("write imap = { host = \"imap.example.com\", port = 993, security = \"tls\" }"),
                );
            }
            provider.imap_base.clone()
        }
        Some(RawImap::Endpoint(r)) => {
            merge_smtp(&ctx("imap"), provider.imap_base.as_ref(), Some(r), diags)
        }
    }
}

/// Layers `over` onto `base`; `None` when a field is missing or invalid.
pub(super) fn merge_smtp(
    what: &str,
    base: Option<&SmtpEndpoint>,
    over: Option<&RawSmtp>,
    diags: &mut Diagnostics,
) -> Option<SmtpEndpoint> {
    let empty = RawSmtp::default();
    let over = over.unwrap_or(&empty);
    let port = match &over.port {
        Some(p) => {
            match u16::try_from(*p.get_ref()) {
                Ok(port) if port != 0 => Some((port, Some(p.span()))),
                _ => {
                    diags.push(
                    Diagnostic::error(format!("{what}.port {} is out of range", p.get_ref()))
                        .at(Some(p.span()))
                        .help("a port is 1–65535; SMTP submission uses 587 (STARTTLS) or 465 (TLS)"),
                );
                    return None;
                }
            }
        }
        None => base.map(|b| (b.port, b.port_span.clone())),
    };
    if let Some(h) = &over.host {
        let host = h.get_ref();
        if host.is_empty()
            || url::Host::parse(host).is_err()
            || host.contains(':') && host.parse::<IpAddr>().is_err()
        {
            diags.push(
                Diagnostic::error(format!("{what}.host `{}` is not a host name", shown(host)))
                    .at(Some(h.span()))
                    .help("write the bare host, e.g. \"smtp.gmail.com\"; the port goes in `port`"),
            );
            return None;
        }
    }
    let host = over
        .host
        .as_ref()
        .map(|h| h.get_ref().clone())
        .or_else(|| base.map(|b| b.host.clone()));
    let security = over
        .security
        .as_ref()
        .map(|s| (*s.get_ref(), Some(s.span())))
        .or_else(|| base.map(|b| (b.security, b.security_span.clone())));
    let ((port, port_span), (security, security_span)) = (port?, security?);
    Some(SmtpEndpoint {
        host: host?,
        port,
        security,
        port_span,
        security_span,
    })
}
