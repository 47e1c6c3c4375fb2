//! `mailform export NAME --format webex`: the fields an email-asset form asks
//! for (SMTP server, port, client id/secret, authorization and token URLs,
//! scope, callback URL), ready to paste. The client secret is never printed;
//! the line says where to find it.

use std::fmt::Write as _;

use url::Url;

use crate::config::{Asset, Config, SecretSource, Security};

pub fn webex(config: &Config, asset: &Asset) -> String {
    let p = config.provider_of(asset);
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
    let rows: [(&str, String); 12] = [
        ("Email address", asset.email.clone()),
        ("SMTP server", asset.smtp.host.clone()),
        ("Port", asset.smtp.port.to_string()),
        (
            "Security",
            match asset.smtp.security {
                Security::Starttls => "STARTTLS".into(),
                Security::Tls => "SSL/TLS".into(),
            },
        ),
        ("Username", asset.username.clone()),
        ("Client ID", p.client_id.clone()),
        ("Client secret", secret),
        ("Authorization URL", auth.to_string()),
        ("Token URL", p.token_url.to_string()),
        ("Scope", asset.scopes.join(" ")),
        (
            "Callback URL",
            p.redirect_uri
                .as_ref()
                .map_or("(not set in assets.toml)".into(), Url::to_string),
        ),
        (
            "Forwarding address",
            asset
                .forwarding_address
                .clone()
                .unwrap_or_else(|| "(none)".into()),
        ),
    ];
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{:<20}{value}", format!("{label}:"));
    }
    out
}
