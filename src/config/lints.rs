//! Lints: a config that parses but will fail, or surprise, in the real world.
//!
//! Every lint names the asset or provider and the field, points at the text,
//! and says what to do. Most are warnings (`validate --strict` fails on them);
//! a few are errors because the provider is certain to refuse.

use super::model::{Asset, Config, Provider, Span};
use super::presets::Preset;
use super::raw::{PublishingStatus, Security, UserType};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::security::is_loopback_host;

/// Ports on which SMTP submission is normally offered. 2525 is a common
/// alternative where 587 is blocked.
const SUBMISSION_PORTS: [u16; 3] = [587, 465, 2525];

/// Google allows at most this many test users on an app in Testing.
const MAX_TEST_USERS: usize = 100;

/// Google expires refresh tokens of Testing-mode external apps after this many days.
pub const TESTING_REFRESH_TOKEN_DAYS: i64 = 7;

pub fn lint(config: &Config) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for provider in config.providers.values() {
        lint_provider(provider, &mut diags);
    }
    for asset in config.assets.values() {
        lint_asset(asset, config.provider_of(asset), &mut diags);
        lint_organisation_asset(asset, config.provider_of(asset), &mut diags);
        lint_forwarding(asset, config.provider_of(asset), &mut diags);
        if asset.scopes_span.is_some() {
            lint_asset_scopes(asset, &mut diags);
        }
    }
    diags.sort();
    diags
}

/// Where `forwarding_address` is only a record: Microsoft 365's forwarding
/// is an Exchange admin setting mailform does not read.
fn lint_forwarding(a: &Asset, p: &Provider, diags: &mut Diagnostics) {
    if a.forwarding_address.is_some() && p.preset == Some(Preset::Microsoft) {
        diags.push(
            Diagnostic::note(format!(
                "asset `{}`: forwarding_address is informational for Microsoft 365 (forwarding is an Exchange admin setting mailform does not check)",
                a.name
            ))
            .at(a.email_span.clone())
            .help("set the forwarding in the Exchange admin center (the mailbox → Mail flow settings → Email forwarding)"),
        );
    }
    if a.forwarding_disposition.is_some() && p.gmail_api_url.is_none() {
        diags.push(
            Diagnostic::warning(format!(
                "asset `{}`: forwarding_disposition is checked only through the Gmail API, which provider `{}` does not name",
                a.name, p.name
            ))
            .at(a.email_span.clone())
            .help("use the google preset, or set gmail_api_url on the provider"),
        );
    }
}

/// An asset of an organisation grant: no person consents, and Google's
/// domain-wide delegation reaches Workspace mailboxes only.
fn lint_organisation_asset(a: &Asset, p: &Provider, diags: &mut Diagnostics) {
    use super::raw::GrantKind;
    let name = &a.name;
    if p.grant.is_organisation() && a.consent_as.is_some() {
        diags.push(
            Diagnostic::warning(format!(
                "asset `{name}`: consent_as is not used: provider `{}` has grant = \"{}\", so no person consents",
                p.name,
                p.grant.as_str()
            ))
            .at(a.email_span.clone())
            .help("remove consent_as"),
        );
    }
    if p.grant == GrantKind::ClientCredentials
        && p.preset == Some(Preset::Microsoft)
        && a.scopes_span.is_some()
        && a.scopes.as_slice() != [super::presets::MICROSOFT_APP_SCOPE]
    {
        diags.push(
            Diagnostic::error(format!(
                "asset `{name}`: client credentials are granted only the scope {} (the app's SMTP.SendAsApp permission)",
                super::presets::MICROSOFT_APP_SCOPE
            ))
            .at(a.scopes_span.clone())
            .help("leave scopes out of the asset (the provider's apply)"),
        );
    }
    let domain = a
        .username
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase());
    if p.grant == GrantKind::ServiceAccount
        && matches!(domain.as_deref(), Some("gmail.com" | "googlemail.com"))
    {
        diags.push(
            Diagnostic::error(format!(
                "asset `{name}`: a service account cannot act for a consumer Gmail address ({}); domain-wide delegation reaches Google Workspace mailboxes only",
                a.username
            ))
            .at(a.email_span.clone())
            .help("use a provider with grant = \"consent\" (the default) for this mailbox"),
        );
    }
}

/// Gmail's mail scope. Without its trailing slash Google grants it at the
/// consent screen, and Gmail's SMTP refuses the token.
const GMAIL_SCOPE: &str = "https://mail.google.com/";

fn lint_provider(p: &Provider, diags: &mut Diagnostics) {
    let name = &p.name;
    if p.scopes.iter().any(|s| s == "https://mail.google.com") {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: scope `https://mail.google.com` lacks its trailing slash; Gmail's SMTP refuses tokens granted for it"
            ))
            .at(p.scopes_span.clone().or(p.span.clone()))
            .help(format!("write \"{GMAIL_SCOPE}\"")),
        );
    }
    let offline_scope = p.scopes.iter().any(|s| s == "offline_access");
    let offline_param = p
        .auth_params
        .get("access_type")
        .is_some_and(|v| v == "offline");
    let needs_offline_param = p.preset == Some(Preset::Google);
    // An organisation grant has no refresh token to ask for.
    if p.grant.is_organisation() {
    } else if needs_offline_param && !offline_param {
        diags.push(
            Diagnostic::warning(format!(
                "provider `{name}`: auth_params lacks access_type = \"offline\"; Google will issue no refresh token"
            ))
            .at(p.span.clone())
            .help("keep the preset's auth_params = { access_type = \"offline\", prompt = \"consent\" }"),
        );
    } else if !needs_offline_param && !offline_scope && !offline_param {
        diags.push(
            Diagnostic::warning(format!(
                "provider `{name}`: scopes lack `offline_access`; the provider may issue no refresh token and mail will stop when the first access token expires"
            ))
            .at(p.scopes_span.clone().or(p.span.clone()))
            .help("add \"offline_access\" to scopes (or the provider's equivalent auth_params)"),
        );
    }

    let Some(console) = &p.console else { return };
    if console.publishing_status == Some(PublishingStatus::Testing) {
        diags.push(
            Diagnostic::warning(format!(
                "provider `{name}`: console.publishing_status is \"testing\": refresh tokens expire after {TESTING_REFRESH_TOKEN_DAYS} days"
            ))
            .at(console.publishing_status_span.clone())
            .help("publish the app (In production) so tokens do not expire weekly, or plan a re-consent every week"),
        );
        if console.user_type == Some(UserType::External)
            && console.test_users.len() > MAX_TEST_USERS
        {
            diags.push(
                Diagnostic::warning(format!(
                    "provider `{name}`: console.test_users has {} users; Google allows at most {MAX_TEST_USERS} on an app in testing",
                    console.test_users.len()
                ))
                .at(console.test_users_span.clone())
                .help("publish the app, or trim the list to the mailboxes that need it"),
            );
        }
    }
    if let Some(uri) = &p.redirect_uri {
        let host = uri.host_str().unwrap_or_default().to_ascii_lowercase();
        let loopback = uri.host().is_some_and(|h| is_loopback_host(&h));
        if !loopback && console.authorized_domains.is_empty() {
            diags.push(
                Diagnostic::warning(format!(
                    "provider `{name}`: redirect_uri host `{host}` is not loopback, and console.authorized_domains is empty"
                ))
                .at(p.redirect_uri_span.clone())
                .help(format!("the consent screen must list `{}` among its authorized domains; record it in console.authorized_domains so mailform can check", registrable_guess(&host))),
            );
        }
        if !loopback
            && !console.authorized_domains.is_empty()
            && !console
                .authorized_domains
                .iter()
                .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        {
            diags.push(
                Diagnostic::warning(format!(
                    "provider `{name}`: redirect_uri host `{host}` is not under any of console.authorized_domains"
                ))
                .at(p.redirect_uri_span.clone())
                .help(format!("add `{}` to the consent screen's authorized domains (and here), or use a loopback redirect URI", registrable_guess(&host))),
            );
        }
    }
}

fn lint_asset_scopes(a: &Asset, diags: &mut Diagnostics) {
    if a.scopes.iter().any(|s| s == "https://mail.google.com") {
        diags.push(
            Diagnostic::error(format!(
                "asset `{}`: scope `https://mail.google.com` lacks its trailing slash; Gmail's SMTP refuses tokens granted for it",
                a.name
            ))
            .at(a.scopes_span.clone().or(a.email_span.clone()))
            .help(format!("write \"{GMAIL_SCOPE}\"")),
        );
    }
}

fn lint_asset(a: &Asset, p: &Provider, diags: &mut Diagnostics) {
    let name = &a.name;
    let smtp = &a.smtp;
    let local = url::Host::parse(&smtp.host).is_ok_and(|h| is_loopback_host(&h));
    // Point at the asset's own setting when it has one; else at the
    // provider's, naming the asset that inherits it.
    let inherited = a.smtp_own_span.is_none();
    let mismatch_at = a
        .smtp_own_span
        .clone()
        .or_else(|| latest_span(&[&smtp.security_span, &smtp.port_span]))
        .or(a.email_span.clone());
    let with_asset = |d: Diagnostic| {
        if inherited && mismatch_at != a.email_span {
            d.related(
                a.email_span.clone(),
                format!("asset `{name}` inherits it from provider `{}`", p.name),
            )
        } else {
            d
        }
    };
    match (smtp.security, smtp.port) {
        (Security::Tls, 587) => diags.push(with_asset(
            Diagnostic::error(format!(
                "asset `{name}`: smtp.security \"tls\" on port 587, which speaks STARTTLS"
            ))
            .at(mismatch_at.clone())
            .help("use security = \"starttls\" with 587, or port 465 with \"tls\""),
        )),
        (Security::Starttls, 465) => diags.push(with_asset(
            Diagnostic::error(format!(
                "asset `{name}`: smtp.security \"starttls\" on port 465, which speaks implicit TLS"
            ))
            .at(mismatch_at.clone())
            .help("use security = \"tls\" with 465, or port 587 with \"starttls\""),
        )),
        (_, port) if !local && !SUBMISSION_PORTS.contains(&port) => diags.push(with_asset(
            Diagnostic::warning(format!(
                "asset `{name}`: smtp.port {port} is not an SMTP submission port"
            ))
            .at(smtp.port_span.clone().or(a.email_span.clone()))
            .help("did you mean 587 (STARTTLS) or 465 (TLS)?"),
        )),
        _ => {}
    }

    let missing: Vec<&str> = p
        .scopes
        .iter()
        .filter(|s| !a.scopes.contains(s))
        .map(String::as_str)
        .collect();
    if missing.contains(&"offline_access") {
        diags.push(
            Diagnostic::warning(format!("asset `{name}`: scopes drop the provider's `offline_access`; no refresh token will be issued"))
                .at(a.scopes_span.clone().or(a.email_span.clone()))
                .help("keep \"offline_access\" in the asset's scopes"),
        );
    }

    if let Some(console) = &p.console {
        let testing_external = console.publishing_status == Some(PublishingStatus::Testing)
            && console.user_type == Some(UserType::External);
        if testing_external
            && !console
                .test_users
                .iter()
                .any(|u| u.eq_ignore_ascii_case(&a.email))
        {
            diags.push(
                Diagnostic::error(format!(
                    "asset `{name}`: {} is not among provider `{}`'s console.test_users; Google refuses consent to others while the app is in testing",
                    a.email, p.name
                ))
                .at(a.email_span.clone())
                .help("add the address to the consent screen's test users (and to console.test_users), or publish the app"),
            );
        }
    }
}

/// The last two labels of a host, for a hint; good enough for a suggestion.
fn registrable_guess(host: &str) -> String {
    let labels: Vec<&str> = host.rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, sld, ..] => format!("{sld}.{tld}"),
        _ => host.to_string(),
    }
}

/// Of the spans that exist, the one latest in the file: an asset's own
/// override comes after the provider it overrides.
fn latest_span(spans: &[&Span]) -> Span {
    spans
        .iter()
        .filter_map(|s| (*s).clone())
        .max_by_key(|s| s.start)
}
