//! `mailform show`: what state holds, tokens redacted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::style;
use crate::diagnostic::{escaped as e, shown_up_to};
use crate::secret::REDACTED;
use crate::state::{AppliedAsset, AssetRecord, SmtpCheck, State};

/// `show --json`: state without the sealed tokens.
#[derive(Debug, Serialize)]
pub struct ShowDoc<'a> {
    pub format_version: u32,
    /// `null` when no state was ever written.
    pub lineage: Option<Uuid>,
    pub serial: u64,
    pub assets: BTreeMap<&'a str, AssetView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct AssetView<'a> {
    pub applied: &'a AppliedAsset,
    pub token: Option<TokenView<'a>>,
    pub smtp_check: Option<&'a SmtpCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imap_check: Option<&'a SmtpCheck>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct TokenView<'a> {
    pub access_token: &'static str,
    pub refresh_token: Option<&'static str>,
    pub granted_scopes: &'a [String],
    pub obtained_at: DateTime<Utc>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The provider refused the refresh token at a live check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<&'a crate::state::Revocation>,
}

pub fn doc<'a>(state: Option<&'a State>, only: Option<&str>) -> ShowDoc<'a> {
    ShowDoc {
        format_version: state.map_or(crate::state::STATE_FORMAT_VERSION, |s| s.format_version),
        lineage: state.map(|s| s.lineage),
        serial: state.map_or(0, |s| s.serial),
        assets: state
            .iter()
            .flat_map(|s| s.assets.iter())
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .map(|(n, r)| (n.as_str(), view(r)))
            .collect(),
    }
}

fn view(r: &AssetRecord) -> AssetView<'_> {
    AssetView {
        applied: &r.applied,
        token: r.token.as_ref().map(|t| TokenView {
            access_token: REDACTED,
            refresh_token: t.has_refresh_token.then_some(REDACTED),
            granted_scopes: &t.granted_scopes,
            obtained_at: t.obtained_at,
            access_expires_at: t.access_expires_at,
            refresh_expires_at: t.refresh_expires_at,
            revoked: t.revoked.as_ref(),
        }),
        smtp_check: r.smtp_check.as_ref(),
        imap_check: r.imap_check.as_ref(),
        updated_at: r.updated_at,
    }
}

/// The human form.
pub fn human(doc: &ShowDoc<'_>) -> String {
    let mut out = String::new();
    if doc.assets.is_empty() {
        out.push_str("No assets in state.\n");
        return out;
    }
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    // State can be edited by hand, and a team's is shared: every string in
    // it is escaped before it reaches the terminal.
    for (name, a) in &doc.assets {
        let p = a.applied;
        let _ = writeln!(
            out,
            "{b}{}{b:#}  {} ({})",
            e(name),
            e(&p.email),
            e(&p.provider),
            b = style::BOLD
        );
        let _ = writeln!(
            out,
            "  smtp         {}:{} ({})",
            e(&p.smtp_host),
            p.smtp_port,
            p.smtp_security
        );
        if p.username != p.email {
            let _ = writeln!(out, "  username     {}", e(&p.username));
        }
        let _ = writeln!(out, "  client_id    {}", e(&p.client_id));
        if let Some(g) = &p.grant {
            let _ = writeln!(
                out,
                "  grant        {} (an app grant: no person consents)",
                e(g)
            );
        }
        let _ = writeln!(out, "  scopes       {}", e(&p.scopes.join(" ")));
        match &a.token {
            None => {
                let _ = writeln!(out, "  token        none (consent needed)");
            }
            Some(t) => {
                let _ = writeln!(
                    out,
                    "  token        access {REDACTED}, refresh {}; obtained {}",
                    t.refresh_token.unwrap_or(if p.grant.is_some() {
                        "none (asked for again when due)"
                    } else {
                        "none"
                    }),
                    time(t.obtained_at)
                );
                if let Some(at) = t.access_expires_at {
                    let _ = writeln!(out, "  access until {}", time(at));
                }
                if let Some(at) = t.refresh_expires_at {
                    let _ = writeln!(out, "  refresh until {}", time(at));
                }
                let _ = writeln!(out, "  granted      {}", e(&t.granted_scopes.join(" ")));
                if let Some(r) = t.revoked {
                    let (label, what, fix) = if p.grant.is_some() {
                        (
                            "REFUSED",
                            "the app's token request",
                            "an administrator fixes it (mailform plan --check-smtp says how)",
                        )
                    } else {
                        (
                            "REVOKED",
                            "the refresh token",
                            "run mailform apply to consent again",
                        )
                    };
                    let _ = writeln!(
                        out,
                        "  {label:<12} the provider refused {what} at {} ({}{}): {fix}",
                        time(r.at),
                        e(&r.error),
                        r.description
                            .as_deref()
                            .map(|d| format!(": {}", e(d)))
                            .unwrap_or_default()
                    );
                }
            }
        }
        if let Some(imap) = &p.imap {
            let _ = writeln!(out, "  imap         {}", e(imap));
        }
        for (what, check) in [("smtp", a.smtp_check), ("imap", a.imap_check)] {
            let Some(c) = check else { continue };
            let _ = writeln!(
                out,
                "  {what} check   {} at {}{}: {}",
                if c.ok {
                    "accepted"
                } else if c.unproven {
                    "NOT PROVEN"
                } else {
                    "REFUSED"
                },
                time(c.at),
                if c.server.is_empty() {
                    String::new()
                } else {
                    // State can be edited by hand: its words cannot move the cursor.
                    format!(" by {}", shown_up_to(&c.server, 200))
                },
                shown_up_to(&c.detail, 2000)
            );
            if let Some(h) = &c.hint {
                let _ = writeln!(out, "  {what} hint    {}", shown_up_to(h, 2000));
            }
        }
        for (k, v) in &p.labels {
            let _ = writeln!(out, "  label        {} = \"{}\"", e(k), e(v));
        }
    }
    out
}
