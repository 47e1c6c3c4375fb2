//! What live checks saw, as input to the planner.
//!
//! The planner never does I/O: `observe` (token refresh, introspection, SMTP
//! login probe) fills [`Observations`], and an offline plan passes an empty
//! one. An asset absent from the map was not checked; the planner then decides
//! from state alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Live findings, by asset name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    pub assets: BTreeMap<String, AssetObservation>,
    /// Whether the live checks ran (a live plan with nothing to check is
    /// still live; an offline plan with a local finding is not).
    pub live: bool,
}

/// Findings about one asset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetObservation {
    pub token: Option<TokenObservation>,
    pub smtp: Option<SmtpObservation>,
    /// The IMAP login, in the same terms as the SMTP one.
    pub imap: Option<SmtpObservation>,
    /// Gmail's forwarding settings, when the asset forwards.
    pub forwarding: Option<ForwardingObservation>,
}

/// What the Gmail API said of a mailbox's forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ForwardingObservation {
    /// The settings, as read.
    Seen {
        enabled: bool,
        email_address: Option<String>,
        disposition: Option<String>,
        /// Each forwarding address and its `verificationStatus`.
        addresses: Vec<(String, String)>,
    },
    /// The API refused to answer (403: the API disabled in the project; a
    /// certificate not trusted: code 0), in its words.
    Refused { code: u16, words: String },
    /// No answer in time, 5xx, an unreadable answer: says nothing.
    Transient { detail: String },
}

/// What the token endpoint said when the refresh token was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TokenObservation {
    /// A refresh worked; the provider granted these scopes (when it says).
    Valid {
        granted_scopes: Option<Vec<String>>,
        access_expires_at: Option<DateTime<Utc>>,
    },
    /// The grant is gone: `invalid_grant` (revoked, expired, password change).
    Revoked {
        error: String,
        description: Option<String>,
    },
    /// Timeout, 429, 5xx: says nothing about the grant. Never drift.
    Transient { detail: String },
    /// The sealed tokens do not open with this key where they are: the state
    /// file was edited or copied (or the key is another one).
    Unreadable { why: String },
}

/// What the SMTP server said to an XOAUTH2 login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SmtpObservation {
    /// The login worked: the server's reply, e.g. "235 2.7.0 Accepted".
    Accepted { server: String, reply: String },
    /// The server refused the token: its words, decoded, and what to do.
    Refused {
        server: String,
        reply: String,
        hint: Option<String>,
        /// A new consent is the fix: the token is another account's.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reconsent: bool,
    },
    /// Nothing listened, no answer in time, a 4xx: says nothing about the token.
    Transient { detail: String },
}

impl SmtpObservation {
    /// What state records of this login at `server`, seen `at`: proven,
    /// refused (with what fixes it), or not tried to the end (unproven,
    /// which is drift too until a proof passes).
    pub fn record(&self, server: &str, at: DateTime<Utc>) -> crate::state::SmtpCheck {
        let check = |ok, server: &str, detail: &str| crate::state::SmtpCheck {
            at,
            ok,
            server: server.to_string(),
            detail: detail.to_string(),
            hint: None,
            unproven: false,
            reconsent: false,
        };
        match self {
            SmtpObservation::Accepted { server, reply } => check(true, server, reply),
            SmtpObservation::Refused {
                server,
                reply,
                hint,
                reconsent,
            } => crate::state::SmtpCheck {
                hint: hint.clone(),
                reconsent: *reconsent,
                ..check(false, server, reply)
            },
            SmtpObservation::Transient { detail } => crate::state::SmtpCheck {
                unproven: true,
                ..check(false, server, detail)
            },
        }
    }
}
