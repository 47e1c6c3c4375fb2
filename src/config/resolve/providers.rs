//! `[providers.NAME]`: presets applied, endpoints and client checked, the
//! client secret's source (env, file, or Google's credentials file) and
//! the secret files' permissions.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde_spanned::Spanned;
use url::Url;

use crate::config::model::{Console, Provider, SecretSource, SmtpEndpoint, Span};
use crate::config::presets::Preset;
use crate::config::raw::{GrantKind, RawConsole, RawImap, RawProvider, RawSecret};
use crate::config::scan;
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean, shown};
use crate::secret::Secret;

use super::{ca_file_at, check_scopes, check_url, is_bare_email, is_loopback_host, merge_smtp};

#[allow(clippy::too_many_lines)] // reason: one provider read top to bottom, field after field; helpers would scatter one decision
pub(super) fn resolve_provider(
    name: &str,
    span: Range<usize>,
    raw: &RawProvider,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<Provider> {
    let before = diags.error_count();
    let span = Some(span);
    let ctx = |field: &str| format!("provider `{name}`: {field}");

    let preset = resolve_preset(name, raw.preset.as_ref(), diags).ok()?;

    let credentials = read_credentials(name, raw, dir, diags);
    let grant = super::grants::resolve_grant(name, raw, preset, dir, diags);
    let organisation = grant.kind.is_organisation();

    let client_id = match (&raw.client_id, &credentials) {
        (Some(id), _) if id.get_ref().trim().is_empty() => {
            diags.push(
                Diagnostic::error(format!("{} is empty", ctx("client_id"))).at(Some(id.span())),
            );
            String::new()
        }
        (Some(id), _) => id.get_ref().clone(),
        (None, Some(c)) => c.client_id.clone(),
        (None, None) if raw.credentials_file.is_some() => String::new(), // already reported
        // A service account's client id is its key file's (or the file
        // was reported).
        (None, None) if grant.kind == GrantKind::ServiceAccount => grant
            .identity
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_default(),
        (None, None) => {
            diags.push(
                Diagnostic::error(format!("provider `{name}` has no client_id"))
                    .at(span.clone())
                    .help("add client_id = \"...\" (from the provider's console), or credentials_file = \"client_secret.json\""),
            );
            String::new()
        }
    };

    let client_secret = if grant.kind == GrantKind::ServiceAccount {
        None // refused above when given
    } else {
        resolve_client_secret(name, raw, credentials.as_ref(), dir, diags)
    };

    let tenant = resolve_tenant(name, span.as_ref(), raw.tenant.as_ref(), preset, diags);

    let defaults = preset.map(|p| p.defaults(&tenant));
    let missing = |field: &str, diags: &mut Diagnostics| {
        diags.push(
            Diagnostic::error(format!("custom provider `{name}` must name {field}"))
                .at(span.clone())
                .help(format!("no preset supplies it; add {field} = ... (or preset = \"google\" / \"microsoft\")")),
        );
    };

    let url_field = |field: &str,
                     raw: &Option<Spanned<String>>,
                     fallback: Option<String>,
                     required: bool,
                     diags: &mut Diagnostics|
     -> Option<Url> {
        match raw {
            Some(v) => check_url(&ctx(field), v.get_ref(), Some(v.span()), diags),
            None => {
                if let Some(f) = fallback {
                    Url::parse(&f).ok()
                } else {
                    if required {
                        missing(field, diags);
                    }
                    None
                }
            }
        }
    };
    // An organisation grant has no consent, so no authorization endpoint:
    // the token endpoint stands in for it where one is recorded (below).
    let authorization_url = url_field(
        "authorization_url",
        &raw.authorization_url,
        defaults
            .as_ref()
            .map(|d| d.authorization_url.clone())
            .or_else(|| credentials.as_ref().and_then(|c| c.auth_uri.clone())),
        !organisation,
        diags,
    );
    // A service account posts to its key file's token_uri (the
    // assertion's audience), unless the config names another.
    let token_url = url_field(
        "token_url",
        &raw.token_url,
        grant
            .identity
            .as_ref()
            .map(|(_, uri)| uri.clone())
            .or_else(|| defaults.as_ref().map(|d| d.token_url.clone()))
            .or_else(|| credentials.as_ref().and_then(|c| c.token_uri.clone())),
        true,
        diags,
    );
    let authorization_url =
        authorization_url.or_else(|| token_url.clone().filter(|_| organisation));
    let revocation_url = url_field(
        "revocation_url",
        &raw.revocation_url,
        defaults.as_ref().and_then(|d| d.revocation_url.clone()),
        false,
        diags,
    );
    let device_authorization_url = url_field(
        "device_authorization_url",
        &raw.device_authorization_url,
        defaults
            .as_ref()
            .and_then(|d| d.device_authorization_url.clone()),
        false,
        diags,
    );
    let redirect_uri = url_field(
        "redirect_uri",
        &raw.redirect_uri,
        credentials.as_ref().and_then(|c| c.redirect_uri.clone()),
        false,
        diags,
    );
    let redirect_span = raw
        .redirect_uri
        .as_ref()
        .or(raw.credentials_file.as_ref())
        .map(Spanned::span);
    if redirect_uri.as_ref().is_some_and(|u| u.port() == Some(0)) {
        diags.push(
            Diagnostic::error(format!("{} uses port 0", ctx("redirect_uri")))
                .at(redirect_span.clone())
                .help("name the port the consent listener waits on, e.g. http://127.0.0.1:8765/callback, and register that exact URI with the provider"),
        );
    }
    if raw.redirect_uri.is_none()
        && let (Some(c), Some(uri)) = (&credentials, &redirect_uri)
    {
        redirect_note(name, c, uri, redirect_span.clone(), diags);
    }
    if redirect_uri.is_none() && credentials.as_ref().is_some_and(|c| c.web) {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: the credentials file holds a \"web\" client with no redirect URI, and the config names none"
            ))
            .at(redirect_span.clone())
            .help("add redirect_uri = \"...\" as registered for the client in the Cloud console, or download a Desktop (\"installed\") client instead"),
        );
    }

    let scopes = match &raw.scopes {
        Some(s) => {
            check_scopes(&ctx("scopes"), s, diags);
            s.get_ref().clone()
        }
        None => {
            if let Some(d) = &defaults {
                match (preset, grant.kind) {
                    // Microsoft's app-only SMTP scope: the delegated
                    // SMTP.Send is refused for client credentials.
                    (Some(Preset::Microsoft), GrantKind::ClientCredentials) => {
                        vec![crate::config::presets::MICROSOFT_APP_SCOPE.to_string()]
                    }
                    _ => d.scopes.clone(),
                }
            } else {
                missing("scopes", diags);
                Vec::new()
            }
        }
    };

    let mut auth_params = defaults
        .as_ref()
        .filter(|_| !organisation)
        .map(|d| d.auth_params.clone())
        .unwrap_or_default();
    if let Some(p) = &raw.auth_params {
        for key in p.get_ref().keys() {
            if scan::looks_secret(key) {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: `{}` looks like a secret; authorization parameters are sent in the browser's address bar",
                        ctx("auth_params"),
                        shown(key)
                    ))
                    .at(Some(p.span()))
                    .help("the client secret belongs in client_secret = { env = \"VAR\" }; if a secret was written here, rotate it"),
                );
            }
        }
        auth_params.extend(p.get_ref().iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    let base_smtp = defaults.as_ref().map(|d| SmtpEndpoint {
        host: d.smtp_host.clone(),
        port: d.smtp_port,
        security: d.smtp_security,
        port_span: None,
        security_span: None,
    });
    let smtp = merge_smtp(&ctx("smtp"), base_smtp.as_ref(), raw.smtp.as_ref(), diags);
    if smtp.is_none() && base_smtp.is_none() {
        let have = raw.smtp.as_ref();
        for (field, present) in [
            ("smtp.host", have.is_some_and(|s| s.host.is_some())),
            ("smtp.port", have.is_some_and(|s| s.port.is_some())),
            ("smtp.security", have.is_some_and(|s| s.security.is_some())),
        ] {
            if !present {
                missing(field, diags);
            }
        }
    }

    let (imap, imap_base) = resolve_imap(name, preset, raw.imap.as_ref(), &span, diags);
    let gmail_api_url = url_field(
        "gmail_api_url",
        &raw.gmail_api_url,
        (preset == Some(Preset::Google)).then(|| GMAIL_API.to_string()),
        false,
        diags,
    );

    let ca_file = raw
        .ca_file
        .as_ref()
        .and_then(|f| ca_file_at(dir, f, &format!("{}:", ctx("ca_file")), diags));

    let console = raw
        .console
        .as_ref()
        .map(|c| resolve_console(name, c, diags));

    if diags.error_count() > before {
        return None;
    }
    Some(Provider {
        name: name.to_string(),
        preset,
        client_id,
        client_secret,
        redirect_uri,
        authorization_url: authorization_url?,
        token_url: token_url?,
        revocation_url,
        device_authorization_url,
        scopes,
        auth_params,
        smtp: smtp?,
        ca_digest: ca_file.as_ref().map(|(_, d)| d.clone()),
        ca_file: ca_file.map(|(p, _)| p),
        console,
        imap,
        imap_base,
        gmail_api_url,
        grant: grant.kind,
        service_account: grant.service_account,
        client_certificate: grant.certificate,
        span,
        redirect_uri_span: raw.redirect_uri.as_ref().map(Spanned::span),
        scopes_span: raw.scopes.as_ref().map(Spanned::span),
        client_secret_span: raw
            .client_secret
            .as_ref()
            .map(Spanned::span)
            .or(raw.credentials_file.as_ref().map(Spanned::span)),
    })
}

/// The provider's IMAP endpoint (`imap = true`: the preset's; a table: over
/// the preset's), and what an asset's `imap = true` means.
fn resolve_imap(
    name: &str,
    preset: Option<Preset>,
    raw: Option<&RawImap>,
    span: &Span,
    diags: &mut Diagnostics,
) -> (Option<SmtpEndpoint>, Option<SmtpEndpoint>) {
    let preset_imap = preset.map(|p| {
        let (host, port, security) = p.imap();
        SmtpEndpoint {
            host: host.to_string(),
            port,
            security,
            port_span: None,
            security_span: None,
        }
    });
    let imap = match raw {
        None | Some(RawImap::On(false)) => None,
        Some(RawImap::On(true)) => {
            if preset_imap.is_none() {
                diags.push(
                    Diagnostic::error(format!(
                        "provider `{name}`: imap = true, but no preset supplies an IMAP endpoint"
                    ))
                    .at(span.clone())
                    .help("write imap = { host = \"imap.example.com\", port = 993, security = \"tls\" }"),
                );
            }
            preset_imap.clone()
        }
        Some(RawImap::Endpoint(r)) => super::merge_smtp(
            &format!("provider `{name}`: imap"),
            preset_imap.as_ref(),
            Some(r),
            diags,
        ),
    };
    let base = imap.clone().or(preset_imap);
    (imap, base)
}

/// The Gmail API's public base URL.
const GMAIL_API: &str = "https://gmail.googleapis.com";

/// The preset a provider starts from: named by `preset`, or implied by the
/// provider's name (`Ok(None)`: a custom provider). `Err` once reported.
pub(super) fn resolve_preset(
    name: &str,
    raw: Option<&Spanned<String>>,
    diags: &mut Diagnostics,
) -> Result<Option<Preset>, ()> {
    let Some(p) = raw else {
        return Ok(Preset::from_name(name));
    };
    if let Some(preset) = Preset::from_name(p.get_ref()) {
        return Ok(Some(preset));
    }
    let mut d = Diagnostic::error(format!(
        "provider `{name}`: preset: unknown preset `{}`",
        shown(p.get_ref())
    ))
    .at(Some(p.span()));
    if let Some(s) = did_you_mean(p.get_ref(), Preset::NAMES) {
        d = d.help(format!("did you mean `{s}`?"));
    }
    diags.push(d.help("the built-in presets are `google` and `microsoft`; leave `preset` out for a custom provider"));
    Err(())
}

/// Google's "Download JSON" client file, when the provider names one.
pub(super) fn read_credentials(
    name: &str,
    raw: &RawProvider,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<Credentials> {
    let f = raw.credentials_file.as_ref()?;
    let what = format!("provider `{name}`: credentials_file");
    if raw.client_id.is_some() || raw.client_secret.is_some() {
        diags.push(
            Diagnostic::error(format!(
                "{what}: set either credentials_file or client_id/client_secret, not both"
            ))
            .at(Some(f.span()))
            .help("credentials_file already holds the client id and secret"),
        );
        return None;
    }
    let path = dir.join(f.get_ref());
    // It holds the client secret: as private as any secret file.
    if let Ok(meta) = std::fs::metadata(&path) {
        loose_mode_warning(&what, f.get_ref(), &path, &meta, Some(f.span()), diags);
    }
    read_credentials_file(&path)
        .map_err(|why| {
            diags.push(
                Diagnostic::error(format!("{what}: cannot use `{}`: {why}", f.get_ref()))
                    .at(Some(f.span()))
                    .help("download the OAuth client's JSON from the Cloud console (Credentials → your client → Download JSON); the path is relative to assets.toml"),
            );
        })
        .ok()
}

/// Where the client secret comes from; a literal secret is refused (and
/// masked wherever the line is shown).
pub(super) fn resolve_client_secret(
    name: &str,
    raw: &RawProvider,
    credentials: Option<&Credentials>,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<SecretSource> {
    let what = format!("provider `{name}`: client_secret");
    let Some(s) = &raw.client_secret else {
        let secret = credentials?.client_secret.clone()?;
        let path = dir.join(raw.credentials_file.as_ref().map_or("", |f| f.get_ref()));
        return Some(SecretSource::CredentialsFile { path, secret });
    };
    match s.get_ref() {
        RawSecret::Literal => {
            diags.push(
                Diagnostic::error(format!("{what} is written literally in the config"))
                    .at(Some(s.span()))
                    .help("assets.toml is committed to git, so secrets are not written in it: use client_secret = { env = \"VAR\" } or { file = \"path\" }, or credentials_file; and rotate this secret, since it was in the file"),
            );
            None
        }
        RawSecret::Env(var) if var.is_empty() => {
            diags.push(
                Diagnostic::error(format!("{what}: empty environment variable name"))
                    .at(Some(s.span())),
            );
            None
        }
        // Not echoed: what is pasted where a name belongs is often the secret.
        RawSecret::Env(var) if !scan::is_env_name(var) => {
            diags.push(
                Diagnostic::error(format!(
                    "{what}: `env` takes the name of an environment variable, and this does not read as one (it is not shown, in case it is the secret)"
                ))
                .at(Some(s.span()))
                .help("write the variable's name in upper case: letters, digits and `_`, not starting with a digit, at most 64 characters, e.g. { env = \"GOOGLE_CLIENT_SECRET\" }; if you pasted the secret itself here, rotate it"),
            );
            None
        }
        RawSecret::Env(var) => {
            check_secret_env(&what, var, Some(s.span()), diags);
            Some(SecretSource::Env(var.clone()))
        }
        RawSecret::File(f) if f.trim().is_empty() => {
            diags.push(
                Diagnostic::error(format!("{what}: empty file name"))
                    .at(Some(s.span()))
                    .help("name the file that holds the secret, relative to assets.toml"),
            );
            None
        }
        RawSecret::File(f) => {
            let path = dir.join(f);
            if check_secret_file(
                &what,
                "the OAuth client's secret",
                f,
                &path,
                Some(s.span()),
                diags,
            ) {
                Some(SecretSource::File(path))
            } else {
                None
            }
        }
    }
}

/// An unset variable is a note at validate time: CI validates without
/// secrets, and `plan` fails on it with the same words.
pub(super) fn check_secret_env(what: &str, var: &str, span: Span, diags: &mut Diagnostics) {
    match std::env::var_os(var) {
        None => diags.push(
            Diagnostic::note(format!(
                "{what}: environment variable {var} is not set; plan and apply will need it"
            ))
            .at(span),
        ),
        Some(v) if v.to_str().is_some_and(|v| v.trim().is_empty()) => diags.push(
            Diagnostic::warning(format!("{what}: environment variable {var} is empty"))
                .at(span)
                .help(format!("set {var} to the OAuth client's secret")),
        ),
        Some(_) => {}
    }
}

/// Checks a secret file without showing a byte of it: a folder is an error
/// (returns false), an empty file an error, a missing one a note, one that
/// others may read a warning. `holds` says what belongs in it ("the OAuth
/// client's secret").
pub(super) fn check_secret_file(
    what: &str,
    holds: &str,
    written: &str,
    path: &Path,
    span: Span,
    diags: &mut Diagnostics,
) -> bool {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diags.push(
                Diagnostic::note(format!(
                    "{what}: `{}` does not exist yet; plan and apply will need it",
                    shown(written)
                ))
                .at(span),
            );
            return true;
        }
        Err(e) => {
            diags.push(
                Diagnostic::warning(format!("{what}: cannot read `{}`: {e}", shown(written)))
                    .at(span),
            );
            return true;
        }
    };
    if !meta.is_file() {
        diags.push(
            Diagnostic::error(format!("{what}: `{}` is not a file", shown(written)))
                .at(span)
                .help(format!(
                    "name the file that holds {holds} (the path is relative to assets.toml)"
                )),
        );
        return false;
    }
    match crate::files::read_secret_file(path) {
        Ok(text) if text.trim().is_empty() => {
            diags.push(
                Diagnostic::error(format!("{what}: `{}` is empty", shown(written)))
                    .at(span)
                    .help(format!("write {holds} into the file")),
            );
            return false;
        }
        Ok(_) => {}
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("{what}: `{}` cannot be used: {e}", shown(written)))
                    .at(span)
                    .help(format!("the file holds {holds} as text, nothing else")),
            );
            return false;
        }
    }
    loose_mode_warning(what, written, path, &meta, span, diags);
    true
}

/// A file holding a secret that group or others may read: a warning with
/// the `chmod` that fixes it.
pub(super) fn loose_mode_warning(
    what: &str,
    written: &str,
    path: &Path,
    meta: &std::fs::Metadata,
    span: Span,
    diags: &mut Diagnostics,
) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            diags.push(
                Diagnostic::warning(format!(
                    "{what}: `{}` is readable by others (mode {mode:o})",
                    shown(written)
                ))
                .at(span)
                .help(format!("run: chmod 600 {}", path.display())),
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (what, written, path, meta, span, diags);
}

/// Microsoft's tenant: required by that preset, refused elsewhere.
pub(super) fn resolve_tenant(
    name: &str,
    span: Option<&Range<usize>>,
    raw: Option<&Spanned<String>>,
    preset: Option<Preset>,
    diags: &mut Diagnostics,
) -> String {
    let needs = preset.is_some_and(Preset::needs_tenant);
    match raw {
        Some(t) if needs => {
            if t.get_ref().trim().is_empty() || t.get_ref().contains(['/', '?', '#', ' ']) {
                diags.push(
                    Diagnostic::error(format!("provider `{name}`: tenant: `{}` is not a tenant id or domain", shown(t.get_ref())))
                        .at(Some(t.span()))
                        .help("use the directory (tenant) id, a verified domain such as example.com, or \"organizations\""),
                );
            } else if t.get_ref().eq_ignore_ascii_case("common") {
                diags.push(
                    Diagnostic::note(format!(
                        "provider `{name}`: tenant = \"common\" lets any Microsoft account sign in; an app registered for one tenant (Entra's default) refuses it (AADSTS50194)"
                    ))
                    .at(Some(t.span()))
                    .help("for a single-tenant app, use its directory (tenant) id or a verified domain"),
                );
            }
            t.get_ref().clone()
        }
        Some(t) => {
            diags.push(
                Diagnostic::error(format!(
                    "provider `{name}`: tenant: only the `microsoft` preset takes a tenant"
                ))
                .at(Some(t.span()))
                .help("write the tenant into authorization_url and token_url instead"),
            );
            String::new()
        }
        None if needs => {
            diags.push(
                Diagnostic::error(format!("provider `{name}` (preset microsoft) has no tenant"))
                    .at(span.cloned())
                    .help("add tenant = \"<directory id or domain>\" (\"organizations\" for any work account)"),
            );
            String::new()
        }
        None => String::new(),
    }
}

pub(super) fn resolve_console(
    provider: &str,
    raw: &RawConsole,
    diags: &mut Diagnostics,
) -> Console {
    let test_users = raw
        .test_users
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    let test_users_span = raw.test_users.as_ref().map(Spanned::span);
    for user in &test_users {
        if !is_bare_email(user) {
            diags.push(
                Diagnostic::error(format!(
                    "provider `{provider}`: console.test_users: `{}` is not an email address",
                    shown(user)
                ))
                .at(test_users_span.clone())
                .help("list bare addresses, e.g. [\"support@example.com\"]"),
            );
        }
    }
    if let Some(domains) = &raw.authorized_domains {
        for d in domains.get_ref() {
            let host = url::Host::parse(d);
            if d.contains("://") || d.contains('/') || !matches!(host, Ok(url::Host::Domain(_))) {
                diags.push(
                    Diagnostic::error(format!(
                        "provider `{provider}`: console.authorized_domains: `{}` is not a domain",
                        shown(d)
                    ))
                    .at(Some(domains.span()))
                    .help("list domains as the consent screen shows them, e.g. [\"example.com\"], without https:// or a path"),
                );
            }
        }
    }
    Console {
        user_type: raw.user_type.as_ref().map(|v| *v.get_ref()),
        publishing_status: raw.publishing_status.as_ref().map(|v| *v.get_ref()),
        publishing_status_span: raw.publishing_status.as_ref().map(Spanned::span),
        authorized_domains: raw
            .authorized_domains
            .as_ref()
            .map(|d| d.get_ref().iter().map(|d| d.to_ascii_lowercase()).collect())
            .unwrap_or_default(),
        authorized_domains_span: raw.authorized_domains.as_ref().map(Spanned::span),
        test_users,
        test_users_span,
    }
}

/// Says which redirect URI of the credentials file consent comes back to,
/// and what mailform does with it: a note, or a warning when it is no
/// loopback URI (loopback consent cannot come back there).
fn redirect_note(
    name: &str,
    credentials: &Credentials,
    uri: &Url,
    span: Span,
    diags: &mut Diagnostics,
) {
    let (index, count) = credentials.redirect_choice;
    let which = match (index, count) {
        (_, 1) => "its only redirect URI".to_string(),
        (0, n) => format!("the first of its {n} redirect URIs"),
        (i, n) => format!("redirect URI {} of {n}, the first loopback one", i + 1),
    };
    let loopback = uri.scheme() == "http" && uri.host().is_some_and(|h| is_loopback_host(&h));
    if !loopback {
        diags.push(
            Diagnostic::warning(format!(
                "provider `{name}`: the credentials file lists no loopback redirect URI, so a loopback consent cannot come back to {uri}"
            ))
            .at(span)
            .help("register http://127.0.0.1:8765/callback for the client in the Cloud console (or download a Desktop client), or set redirect_uri; `mailform apply --consent manual` works as it is"),
        );
        return;
    }
    let port = if uri.port().is_none() {
        "; it names no port, so mailform listens on a free one at consent (loopback redirects accept any port)"
    } else {
        ""
    };
    diags.push(
        Diagnostic::note(format!(
            "provider `{name}`: consent comes back to {uri}, {which} in the credentials file{port}"
        ))
        .at(span),
    );
}

/// Largest Google client JSON read.
pub(super) const MAX_CREDENTIALS_FILE: u64 = 256 * 1024;

/// What mailform takes from Google's client JSON.
pub(super) struct Credentials {
    client_id: String,
    client_secret: Option<Secret>,
    auth_uri: Option<String>,
    token_uri: Option<String>,
    redirect_uri: Option<String>,
    /// Which of the file's redirect URIs that is (0-based), and how many
    /// the file lists.
    redirect_choice: (usize, usize),
    /// A "web" client (redirect URIs registered), not "installed" (loopback).
    web: bool,
}

/// Reads Google's "Download JSON" file, in its `installed` or `web` form.
pub(super) fn read_credentials_file(path: &Path) -> Result<Credentials, String> {
    #[derive(Deserialize)]
    struct File {
        installed: Option<Client>,
        web: Option<Client>,
    }
    #[derive(Deserialize)]
    #[allow(clippy::struct_field_names)] // reason: Google's JSON names them so
    struct Client {
        client_id: String,
        client_secret: Option<String>,
        auth_uri: Option<String>,
        token_uri: Option<String>,
        #[serde(default)]
        redirect_uris: Vec<String>,
    }
    let bytes = crate::files::read(path, MAX_CREDENTIALS_FILE, crate::files::Links::Follow)
        .map_err(|e| e.to_string())?;
    // serde_json's own message would quote a value of the wrong type, which
    // may be the secret: say only what kind of problem it is, and where.
    let file: File = serde_json::from_slice(&bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "unexpected content",
            _ => "not valid JSON",
        };
        format!(
            "not a Google client JSON file ({what} at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let web = file.installed.is_none() && file.web.is_some();
    let client = file.installed.or(file.web).ok_or_else(|| {
        "expected an \"installed\" or \"web\" object (Google's client JSON)".to_string()
    })?;
    if client.client_id.trim().is_empty() {
        return Err("its client_id is empty".into());
    }
    // The consent comes back to the first loopback URI the client lists (a
    // "web" client may list the contact center's callback first); when it
    // lists none, to its first, which loopback consent cannot use.
    let loopback = |u: &String| {
        Url::parse(u)
            .is_ok_and(|u| u.scheme() == "http" && u.host().is_some_and(|h| is_loopback_host(&h)))
    };
    let count = client.redirect_uris.len();
    let chosen = client.redirect_uris.iter().position(loopback).unwrap_or(0);
    Ok(Credentials {
        client_id: client.client_id,
        client_secret: client.client_secret.map(Secret::new),
        auth_uri: client.auth_uri,
        token_uri: client.token_uri,
        redirect_uri: client.redirect_uris.into_iter().nth(chosen),
        redirect_choice: (chosen, count),
        web,
    })
}
