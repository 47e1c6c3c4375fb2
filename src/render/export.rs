//! `mailform export NAME --format webex|json`: the Webex Connect email-asset
//! form, field for field and in its order (Asset name, Email ID, Forwarding
//! address, Authentication type, SMTP server, Port, Client ID, Call back
//! URL, Authorization URL, Scope, Access token URL, Refresh token URL,
//! Username, Security, Client secret), ready to paste; or the same fields
//! as JSON, keyed by their labels in `snake_case`. The client secret is never
//! printed: the field says where it comes from.

use std::fmt::Write as _;

use crate::config::{Asset, Config, SecretSource, Security};
use crate::diagnostic::escaped;

/// The Gmail host, whose implicit-TLS port the form's "SSL" needs.
const GMAIL_SMTP: &str = "smtp.gmail.com";

/// The form's fields, in its order: (label, value).
pub fn webex_fields(config: &Config, asset: &Asset) -> (Vec<(&'static str, String)>, Vec<String>) {
    let p = config.provider_of(asset);
    let mut notes = Vec::new();
    let mut auth = p.authorization_url.clone();
    if !p.auth_params.is_empty() {
        auth.query_pairs_mut().extend_pairs(p.auth_params.iter());
    }
    let secret = match &p.client_secret {
        None => "(none: public client)".to_string(),
        Some(SecretSource::Env(var)) => {
            format!("(not printed: the value of environment variable {var})")
        }
        Some(SecretSource::File(path)) => {
            format!("(not printed: the contents of {})", path.display())
        }
        Some(SecretSource::CredentialsFile { path, .. }) => {
            format!("(not printed: \"client_secret\" in {})", path.display())
        }
    };
    // The form's Security offers SSL (implicit TLS). Gmail serves that on
    // 465 as well as STARTTLS on 587; other STARTTLS-only servers are named
    // as what they are.
    let (port, security) = match asset.smtp.security {
        Security::Tls => (asset.smtp.port, "SSL".to_string()),
        Security::Starttls if asset.smtp.host.eq_ignore_ascii_case(GMAIL_SMTP) => {
            notes.push(format!(
                "Port and Security are {GMAIL_SMTP}'s implicit-TLS pair (465, SSL), which the form offers; mailform itself proves the login on {} with STARTTLS",
                asset.smtp.port
            ));
            (465, "SSL".to_string())
        }
        Security::Starttls => {
            notes.push(format!(
                "{} offers STARTTLS on port {}, not implicit TLS: pick the form's TLS/STARTTLS option, not SSL",
                asset.smtp.host, asset.smtp.port
            ));
            (asset.smtp.port, "TLS (STARTTLS)".to_string())
        }
    };
    // Webex Connect's form runs its own consent ("Generate Token"): an app
    // grant serves mailform's proofs and its token broker, not the form.
    if p.grant.is_organisation() {
        notes.push(format!(
            "provider `{}` has grant = \"{}\": mailform needs no person for this mailbox, but Webex Connect's form always runs its own consent (\"Generate Token\") with a person's sign-in; fill it with an OAuth client that allows that consent (its client id and secret), not with this app grant",
            p.name,
            p.grant.as_str()
        ));
    }
    let secret = match (&p.service_account, &p.client_certificate) {
        (Some(sa), _) => format!(
            "(none: a service account signs with its key in {}, which the form cannot use)",
            sa.path.display()
        ),
        (None, Some(cert)) => format!(
            "(none: the app authenticates with the certificate in {}, which the form cannot use)",
            cert.display()
        ),
        (None, None) => secret,
    };
    let fields = vec![
        ("Asset name", asset.name.clone()),
        ("Email ID", asset.email.clone()),
        (
            "Forwarding address",
            asset.forwarding_address.clone().unwrap_or_else(|| {
                "(none: set forwarding_address to the contact center's inbound address)".into()
            }),
        ),
        ("Authentication type", "OAuth 2.0".into()),
        ("SMTP server", asset.smtp.host.clone()),
        ("Port", port.to_string()),
        ("Client ID", p.client_id.clone()),
        (
            "Call back URL",
            "(shown by Webex Connect on this form: add it to the OAuth client's authorized redirect URIs, and its domain to the consent screen's authorized domains)".into(),
        ),
        ("Authorization URL", auth.to_string()),
        ("Scope", asset.scopes.join(" ")),
        ("Access token URL", p.token_url.to_string()),
        ("Refresh token URL", p.token_url.to_string()),
        ("Username", asset.username.clone()),
        ("Security", security),
        ("Client secret", secret),
    ];
    (fields, notes)
}

/// The form as text: one `Label: value` line per field, then the notes.
pub fn webex(config: &Config, asset: &Asset) -> String {
    let (fields, notes) = webex_fields(config, asset);
    let mut out = String::new();
    for (label, value) in fields {
        let _ = writeln!(out, "{:<21}{}", format!("{label}:"), escaped(&value));
    }
    for note in notes {
        let _ = writeln!(out, "\nNote: {}", escaped(&note));
    }
    out
}

/// `export --format json`: the form's fields in its order, keyed by their
/// labels in `snake_case`, and the notes last.
struct WebexForm<'a> {
    fields: &'a [(&'static str, String)],
    notes: &'a [String],
}

impl serde::Serialize for WebexForm<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        for (label, value) in self.fields {
            map.serialize_entry(&label.to_ascii_lowercase().replace(' ', "_"), value)?;
        }
        map.serialize_entry("notes", self.notes)?;
        map.end()
    }
}

/// The same fields as one JSON object, keyed by label in `snake_case`, in
/// the form's order (`notes` last).
pub fn json(config: &Config, asset: &Asset) -> String {
    let (fields, notes) = webex_fields(config, asset);
    let form = WebexForm {
        fields: &fields,
        notes: &notes,
    };
    serde_json::to_string_pretty(&form).expect("the form serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(provider: &str) -> Config {
        let text = format!(
            "version = 1\n{provider}\n[assets.support]\nemail = \"support@example.com\"\nprovider = \"p\"\nforwarding_address = \"inbound@contact-center.example\"\n"
        );
        let loaded = crate::config::parse(std::path::Path::new("assets.toml"), text);
        loaded.config.expect("a valid config")
    }

    #[test]
    fn an_app_grant_says_the_form_runs_its_own_consent() {
        let c = config(
            "[providers.p]\npreset = \"microsoft\"\ngrant = \"client_credentials\"\ntenant = \"contoso.example\"\nclient_id = \"app\"\nclient_secret = { env = \"S\" }\n",
        );
        let text = webex(&c, &c.assets["support"]);
        assert!(
            text.contains("Webex Connect's form always runs its own consent (\"Generate Token\")"),
            "{text}"
        );
        assert!(
            text.contains("Scope:               https://outlook.office365.com/.default"),
            "{text}"
        );
    }

    #[test]
    fn the_webex_form_for_the_google_preset() {
        let c = config(
            "[providers.p]\npreset = \"google\"\nclient_id = \"1234.apps.googleusercontent.com\"\nclient_secret = { env = \"GOOGLE_CLIENT_SECRET\" }\nredirect_uri = \"http://127.0.0.1:8765/callback\"\n",
        );
        let a = &c.assets["support"];
        insta::assert_snapshot!(webex(&c, a));
        insta::assert_snapshot!(json(&c, a));
    }

    #[test]
    fn the_webex_form_for_the_microsoft_preset() {
        let c = config(
            "[providers.p]\npreset = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000000\"\nclient_secret = { file = \"secrets/m365.txt\" }\n",
        );
        let a = &c.assets["support"];
        insta::assert_snapshot!(webex(&c, a));
        insta::assert_snapshot!(json(&c, a));
    }
}
