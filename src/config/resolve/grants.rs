//! A provider's `grant`: a person's consent (the default), or an
//! organisation grant no person consents for — Microsoft 365's client
//! credentials (a client secret or a certificate) and Google's service
//! accounts with domain-wide delegation (the downloaded key file).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::model::ServiceAccount;
use crate::config::presets::{MICROSOFT_APP_SCOPE, Preset};
use crate::config::raw::{GrantKind, RawProvider, RawSecret};
use crate::diagnostic::{Diagnostic, Diagnostics, shown};
use crate::secret::Secret;

use super::providers::loose_mode_warning;

/// Largest service-account key file read (Google's are about 2.4 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A provider's grant, resolved.
pub(super) struct Resolved {
    pub kind: GrantKind,
    pub service_account: Option<ServiceAccount>,
    /// The service account's client id (the numeric one Google's Admin
    /// console lists under domain-wide delegation) and its `token_uri`.
    pub identity: Option<(String, String)>,
    pub certificate: Option<PathBuf>,
}

/// Reads `grant` and what it needs; every finding goes to `diags`.
pub(super) fn resolve_grant(
    name: &str,
    raw: &RawProvider,
    preset: Option<Preset>,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Resolved {
    let kind = raw
        .grant
        .as_ref()
        .map_or(GrantKind::Consent, |g| *g.get_ref());
    let mut resolved = Resolved {
        kind,
        service_account: None,
        identity: None,
        certificate: None,
    };
    // A key that belongs to the other grant.
    for (field, span, belongs) in [
        (
            "service_account_file",
            raw.service_account_file.as_ref().map(Spanned::span),
            GrantKind::ServiceAccount,
        ),
        (
            "client_certificate",
            raw.client_certificate.as_ref().map(Spanned::span),
            GrantKind::ClientCredentials,
        ),
    ] {
        if let Some(span) = span.filter(|_| kind != belongs) {
            diags.push(
                Diagnostic::error(format!(
                    "provider `{name}`: {field} is for grant = \"{}\"",
                    belongs.as_str()
                ))
                .at(Some(span))
                .help(format!(
                    "set grant = \"{}\" on the provider, or remove {field}",
                    belongs.as_str()
                )),
            );
        }
    }
    if kind.is_organisation()
        && let Some(f) = &raw.credentials_file
    {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: credentials_file (an OAuth client for a person's consent) cannot serve grant = \"{}\"",
                kind.as_str()
            ))
            .at(Some(f.span()))
            .help(match kind {
                GrantKind::ServiceAccount => "name the service account's key in service_account_file instead",
                _ => "name the app with client_id and client_secret (or client_certificate) instead",
            }),
        );
    }
    if kind.is_organisation() {
        for (field, span) in [
            ("redirect_uri", raw.redirect_uri.as_ref().map(Spanned::span)),
            ("auth_params", raw.auth_params.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                diags.push(
                    Diagnostic::warning(format!(
                        "provider `{name}`: {field} is not used by grant = \"{}\": no person consents",
                        kind.as_str()
                    ))
                    .at(Some(span))
                    .help(format!("remove {field}")),
                );
            }
        }
    }
    match kind {
        GrantKind::Consent => {}
        GrantKind::ServiceAccount => service_account(name, raw, dir, diags, &mut resolved),
        GrantKind::ClientCredentials => {
            client_credentials(name, raw, preset, dir, diags, &mut resolved);
        }
    }
    resolved
}

/// `grant = "service_account"`: the key file, read now.
fn service_account(
    name: &str,
    raw: &RawProvider,
    dir: &Path,
    diags: &mut Diagnostics,
    resolved: &mut Resolved,
) {
    let grant_span = raw.grant.as_ref().map(Spanned::span);
    if let Some(s) = &raw.client_secret {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: a service account has no client_secret; its key file signs the requests"
            ))
            .at(Some(s.span()))
            .help("remove client_secret"),
        );
    }
    let Some(f) = &raw.service_account_file else {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: grant = \"service_account\" needs service_account_file"
            ))
            .at(grant_span)
            .help("add service_account_file = \"secrets/sa.json\" (Cloud console → IAM → Service accounts → Keys → Add key → JSON)"),
        );
        return;
    };
    let what = format!("provider `{name}`: service_account_file");
    let path = dir.join(f.get_ref());
    match std::fs::metadata(&path) {
        Ok(meta) => loose_mode_warning(&what, f.get_ref(), &path, &meta, Some(f.span()), diags),
        // Not here (pull-request CI has no secrets): an offline plan judges
        // the service account from state; whatever talks to Google needs it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diags.push(
                Diagnostic::note(format!(
                    "{what}: `{}` does not exist here; plan --offline judges from state, and plan, apply and token will need it",
                    shown(f.get_ref())
                ))
                .at(Some(f.span()))
                .help("download the service account's key from the Cloud console (IAM → Service accounts → Keys → Add key → JSON); the path is relative to assets.toml"),
            );
            return;
        }
        Err(_) => {}
    }
    match read_key_file(&path) {
        Ok((account, client_id, token_uri)) => {
            if let Some(id) = raw.client_id.as_ref().filter(|id| *id.get_ref() != client_id) {
                diags.push(
                    Diagnostic::error(format!(
                        "provider `{name}`: client_id is not the key file's ({client_id})"
                    ))
                    .at(Some(id.span()))
                    .help("remove client_id (the key file names it), or name the right key file"),
                );
            }
            resolved.identity = Some((client_id, token_uri));
            resolved.service_account = Some(account);
        }
        Err(why) => diags.push(
            Diagnostic::error(format!("{what}: cannot use `{}`: {why}", shown(f.get_ref())))
                .at(Some(f.span()))
                .help("download the service account's key from the Cloud console (IAM → Service accounts → Keys → Add key → JSON); the path is relative to assets.toml"),
        ),
    }
}

/// `grant = "client_credentials"`: one credential, and Microsoft's rules.
fn client_credentials(
    name: &str,
    raw: &RawProvider,
    preset: Option<Preset>,
    dir: &Path,
    diags: &mut Diagnostics,
    resolved: &mut Resolved,
) {
    match (&raw.client_secret, &raw.client_certificate) {
            (Some(_), Some(c)) => diags.push(
                Diagnostic::error(format!(
                    "provider `{name}`: set either client_secret or client_certificate, not both"
                ))
                .at(Some(c.span()))
                .help("the app authenticates with one credential"),
            ),
            (None, None) => diags.push(
                Diagnostic::error(format!(
                    "provider `{name}`: grant = \"client_credentials\" needs client_secret or client_certificate"
                ))
                .at(raw.grant.as_ref().map(Spanned::span))
                .help("add client_secret = { env = \"VAR\" }, or client_certificate = { file = \"app.pem\" } (the certificate uploaded to the app registration, with its private key)"),
            ),
            _ => {}
        }
    if preset == Some(Preset::Microsoft) {
        microsoft_app_only(name, raw, diags);
    }
    if let Some(c) = &raw.client_certificate {
        let what = format!("provider `{name}`: client_certificate");
        match c.get_ref() {
                RawSecret::File(f) => {
                    let path = dir.join(f);
                    if super::providers::check_secret_file(
                        &what,
                        "the certificate and its private key (PEM)",
                        f,
                        &path,
                        Some(c.span()),
                        diags,
                    ) {
                        resolved.certificate = Some(path);
                    }
                }
                _ => diags.push(
                    Diagnostic::error(format!("{what}: expected {{ file = \"path\" }}"))
                        .at(Some(c.span()))
                        .help("client_certificate = { file = \"app.pem\" }: a PEM file with the certificate and its private key"),
                ),
            }
    }
}

/// Microsoft's client credentials for SMTP: one tenant, and the one scope
/// they are granted for (both are certain refusals otherwise).
fn microsoft_app_only(name: &str, raw: &RawProvider, diags: &mut Diagnostics) {
    if let Some(t) = &raw.tenant
        && ["common", "organizations", "consumers"]
            .iter()
            .any(|m| t.get_ref().eq_ignore_ascii_case(m))
    {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: client credentials need the app's own tenant, not \"{}\"",
                shown(t.get_ref())
            ))
            .at(Some(t.span()))
            .help("set tenant to the directory (tenant) id or a verified domain of the tenant whose mailboxes the app sends for"),
        );
    }
    if let Some(s) = &raw.scopes
        && s.get_ref().as_slice() != [MICROSOFT_APP_SCOPE]
    {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: client credentials are granted only the scope {MICROSOFT_APP_SCOPE} (the app's SMTP.SendAsApp permission); a delegated scope such as SMTP.Send is refused"
            ))
            .at(Some(s.span()))
            .help(format!("write scopes = [\"{MICROSOFT_APP_SCOPE}\"], or leave scopes out")),
        );
    }
}

/// Reads Google's service-account key file: the account, its client id
/// and its `token_uri`. Nothing of the file is quoted in an error.
fn read_key_file(path: &Path) -> Result<(ServiceAccount, String, String), String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(rename = "type")]
        kind: Option<String>,
        client_email: Option<String>,
        client_id: Option<String>,
        private_key_id: Option<String>,
        private_key: Option<String>,
        token_uri: Option<String>,
    }
    let bytes = zeroize::Zeroizing::new(
        crate::files::read(path, MAX_KEY_FILE, crate::files::Links::Follow)
            .map_err(|e| e.to_string())?,
    );
    let file: File = serde_json::from_slice(&bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "unexpected content",
            _ => "not valid JSON",
        };
        format!(
            "not a service-account key file ({what} at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if file.kind.as_deref() != Some("service_account") {
        return Err(
            "its \"type\" is not \"service_account\" (an OAuth client file belongs in credentials_file)"
                .into(),
        );
    }
    let field = |v: Option<String>, name: &str| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("it has no {name}"))
    };
    let private_key = field(file.private_key, "private_key")?;
    // Read as PEM (the same crate the signer's reader uses), not matched
    // as text: a key block, PKCS#8 or PKCS#1.
    let is_key = pem::parse(private_key.as_bytes())
        .is_ok_and(|block| matches!(block.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"));
    if !is_key {
        return Err("its private_key is not a PEM private key".into());
    }
    Ok((
        ServiceAccount {
            path: path.to_path_buf(),
            client_email: field(file.client_email, "client_email")?,
            private_key_id: file.private_key_id,
            private_key: Secret::new(private_key),
        },
        field(file.client_id, "client_id")?,
        field(file.token_uri, "token_uri")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a key file holds, reading it ends in an account or a
        /// reason, and the reason quotes nothing of the file.
        #[test]
        fn a_key_file_is_read_or_refused_without_quoting_it(
            fields in proptest::collection::vec(
                (prop_oneof![
                    Just("type"), Just("client_email"), Just("client_id"),
                    Just("private_key"), Just("private_key_id"), Just("token_uri"),
                ], prop_oneof![
                    Just("\"service_account\"".to_string()),
                    Just("\"SENTINEL\"".to_string()),
                    Just("[\"SENTINEL\"]".to_string()),
                    Just("7".to_string()),
                    // A key block holding the sentinel, made by the PEM
                    // encoder (JSON-escaped): read as a key, never quoted.
                    Just(serde_json::to_string(&pem::encode(&pem::Pem::new(
                        "PRIVATE KEY",
                        b"SENTINEL".to_vec(),
                    )))
                    .unwrap()),
                ]),
                0..8,
            ),
            cut in 0usize..400,
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            let text = format!("{{{}}}", body.join(", "));
            let text = &text[..text.len().min(cut.max(1))];
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sa.json");
            std::fs::write(&path, text).unwrap();
            if let Err(why) = read_key_file(&path) {
                prop_assert!(!why.contains("SENTINEL"), "{why}");
            }
        }
    }
}
