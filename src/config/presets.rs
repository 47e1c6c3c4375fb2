//! Built-in provider presets: the endpoints, scopes and SMTP settings of the
//! providers most shared mailboxes live at, with their quirks.
//!
//! - Google returns a refresh token only when the authorization request says
//!   `access_type=offline`, and returns a *new* one on re-consent only with
//!   `prompt=consent`. Its device flow does not allow the mail scope, so no
//!   device endpoint is preset.
//! - Microsoft's endpoints are per tenant, and it issues a refresh token only
//!   when `offline_access` is among the scopes. It has no RFC 7009 revocation
//!   endpoint: deleting an asset can only forget its tokens.

use std::collections::BTreeMap;

use super::raw::Security;

/// The delegated scope Microsoft 365's IMAP needs beside SMTP's.
pub const MICROSOFT_IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";

/// The one scope Microsoft's client credentials grant for SMTP: the app's
/// `SMTP.SendAsApp` permission, through `.default`.
pub const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";

/// The scope with which a Google service account (domain-wide delegation)
/// may change a mailbox's forwarding settings.
pub const GMAIL_SETTINGS_SCOPE: &str = "https://www.googleapis.com/auth/gmail.settings.sharing";

/// A built-in provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Google,
    Microsoft,
}

/// Everything a preset supplies; a provider table may override each field.
#[derive(Debug, Clone)]
pub struct PresetDefaults {
    pub authorization_url: String,
    pub token_url: String,
    pub revocation_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub scopes: Vec<String>,
    pub auth_params: BTreeMap<String, String>,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: Security,
}

impl Preset {
    pub const NAMES: [&'static str; 2] = ["google", "microsoft"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "google" => Some(Preset::Google),
            "microsoft" => Some(Preset::Microsoft),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Google => "google",
            Preset::Microsoft => "microsoft",
        }
    }

    /// The provider's IMAP endpoint (host, port, security).
    pub fn imap(self) -> (&'static str, u16, Security) {
        match self {
            Preset::Google => ("imap.gmail.com", 993, Security::Tls),
            Preset::Microsoft => ("outlook.office365.com", 993, Security::Tls),
        }
    }

    /// Whether the preset's endpoints depend on a tenant.
    pub fn needs_tenant(self) -> bool {
        matches!(self, Preset::Microsoft)
    }

    /// The preset's settings; `tenant` is used by Microsoft only.
    pub fn defaults(self, tenant: &str) -> PresetDefaults {
        match self {
            Preset::Google => PresetDefaults {
                authorization_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
                token_url: "https://oauth2.googleapis.com/token".into(),
                revocation_url: Some("https://oauth2.googleapis.com/revoke".into()),
                device_authorization_url: None,
                scopes: vec!["https://mail.google.com/".into()],
                auth_params: BTreeMap::from([
                    ("access_type".into(), "offline".into()),
                    ("prompt".into(), "consent".into()),
                ]),
                smtp_host: "smtp.gmail.com".into(),
                smtp_port: 587,
                smtp_security: Security::Starttls,
            },
            Preset::Microsoft => {
                let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
                PresetDefaults {
                    authorization_url: format!("{base}/authorize"),
                    token_url: format!("{base}/token"),
                    revocation_url: None,
                    device_authorization_url: Some(format!("{base}/devicecode")),
                    scopes: vec![
                        "https://outlook.office.com/SMTP.Send".into(),
                        "offline_access".into(),
                    ],
                    auth_params: BTreeMap::new(),
                    smtp_host: "smtp.office365.com".into(),
                    smtp_port: 587,
                    smtp_security: Security::Starttls,
                }
            }
        }
    }
}
