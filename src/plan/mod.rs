//! The planner: desired config + state + live observations + time → [`Plan`].
//!
//! [`plan`] is a pure function. It decides, per asset, one [`Action`] and the
//! [`Reason`]s for it, lists field changes (before → after, and whether each
//! forces re-consent), and adds warnings such as a refresh token about to
//! expire. Rendering and applying a plan are someone else's job.

pub mod observation;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use observation::{
    AssetObservation, ForwardingObservation, Observations, SmtpObservation, TokenObservation,
};

use crate::config::lints::TESTING_REFRESH_TOKEN_DAYS;
use crate::config::raw::{PublishingStatus, UserType};
use crate::config::{Asset, Config};
use crate::state::{self, AppliedAsset, AssetRecord, Field, State, Value};

/// The record of an asset as it would be applied: every non-secret field
/// that the plan compares against state. (Here, not in `config`, so that
/// config and state stay independent of each other.)
pub fn applied(config: &Config, asset: &Asset) -> AppliedAsset {
    let p = config.provider_of(asset);
    AppliedAsset {
        email: asset.email.clone(),
        username: asset.username.clone(),
        provider: p.name.clone(),
        client_id: p.client_id.clone(),
        authorization_url: p.authorization_url.to_string(),
        token_url: p.token_url.to_string(),
        revocation_url: p.revocation_url.as_ref().map(ToString::to_string),
        device_authorization_url: p.device_authorization_url.as_ref().map(ToString::to_string),
        redirect_uri: p.redirect_uri.as_ref().map(ToString::to_string),
        auth_params: p.auth_params.clone(),
        scopes: asset.scopes.clone(),
        smtp_host: asset.smtp.host.clone(),
        smtp_port: asset.smtp.port,
        smtp_security: asset.smtp.security,
        smtp_trust: p.ca_digest.clone(),
        forwarding_address: asset.forwarding_address.clone(),
        labels: asset.labels.clone(),
        grant: p
            .grant
            .is_organisation()
            .then(|| p.grant.as_str().to_string()),
        forwarding_disposition: asset.forwarding_disposition.map(|d| d.as_str().to_string()),
        // Recorded only where it is used: an asset that forwards.
        gmail_api_url: p
            .gmail_api_url
            .as_ref()
            .filter(|_| asset.forwarding_address.is_some())
            .map(ToString::to_string),
        imap: asset
            .imap
            .as_ref()
            .map(|e| state::imap_record(&e.host, e.port, e.security)),
    }
}

/// Whether `record`'s tokens were granted for `asset` as the config has it
/// now: the token-binding fields (client, endpoints, scopes, account) are
/// unchanged. Tokens bound to other settings are neither refreshed, proven
/// nor handed out; the plan asks for consent again instead.
pub fn binding_matches(config: &Config, asset: &Asset, record: &crate::state::AssetRecord) -> bool {
    record.binding == applied_over(config, asset, record).binding_fingerprint()
}

/// [`applied`], for an asset applied as `record`: a service account whose
/// key file is not here (pull-request CI has no secrets) and whose client
/// the config does not name is taken to be the one applied.
pub fn applied_over(config: &Config, asset: &Asset, record: &AssetRecord) -> AppliedAsset {
    let mut desired = applied(config, asset);
    let p = config.provider_of(asset);
    if p.grant == crate::config::raw::GrantKind::ServiceAccount
        && p.service_account.is_none()
        && p.client_id.is_empty()
    {
        desired.client_id.clone_from(&record.applied.client_id);
    }
    desired
}

/// The plan JSON format this mailform writes and reads.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Scopes that shape the grant rather than name a permission; providers do not
/// always echo them back in the token response, so they are not required to
/// appear among the granted scopes.
const GRANT_SHAPING_SCOPES: [&str; 2] = ["offline_access", "openid"];

/// Warn about a refresh token's death this long in advance.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// A plan: what `apply` would do, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mailform plan")]
pub struct Plan {
    pub format_version: u32,
    pub mailform_version: String,
    /// Lineage of the state planned against (`null` when there was no state yet).
    pub lineage: Option<Uuid>,
    /// Serial of the state planned against; `apply` refuses a plan whose state moved on.
    pub serial: u64,
    /// SHA-256 of the config file planned from.
    pub config_digest: String,
    /// Whether tokens and SMTP logins were checked live.
    pub live: bool,
    /// `--target` names; empty means every asset.
    pub targets: Vec<String>,
    pub changes: Vec<Change>,
    pub summary: Summary,
}

/// What happens to one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// In config, not in state: consent will be needed.
    Create,
    /// Fields changed that keep the tokens valid.
    Update,
    /// Tokens unusable or unfit: revoke them, then consent again.
    Reconsent,
    /// In state, not in config: revoke tokens, then forget.
    Delete,
    NoOp,
}

/// Why an asset gets its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    NotInState,
    NotInConfig,
    /// No tokens were ever stored (or consent did not finish).
    TokenMissing,
    /// The provider answered `invalid_grant` (or similar) to a refresh.
    TokenRevoked {
        error: String,
        description: Option<String>,
    },
    /// The sealed tokens do not open where they are (edited or copied state).
    TokenUnreadable {
        why: String,
    },
    /// The refresh token's lifetime is over (or there is none and the access token expired).
    TokenExpired {
        at: DateTime<Utc>,
    },
    /// The grant lacks scopes the config requires.
    ScopesShort {
        missing: Vec<String>,
    },
    /// A field the tokens are bound to changed.
    BindingChanged {
        fields: Vec<Field>,
    },
    /// Fields changed that keep the tokens valid.
    FieldsChanged {
        fields: Vec<Field>,
    },
    /// `--reconsent` asked for consent again although the tokens are fine.
    ReconsentRequested,
    /// Not applied yet, and no person consents: the app asks for its own
    /// token (an organisation grant).
    AppGrantNeeded,
    /// The provider refused the app's own token request (an organisation
    /// grant): no consent fixes it, an administrator does (`hint`).
    AppGrantRefused {
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        hint: String,
    },
    /// The SMTP server refused the XOAUTH2 login: now (a live check), or at
    /// the last check recorded in state (`checked_at`).
    SmtpLoginRefused {
        /// `host:port`.
        server: String,
        /// The server's words, e.g. "535 5.7.8 ... (token status 401, scope ...)".
        reply: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checked_at: Option<DateTime<Utc>>,
        /// The server refused the token as another account's (Gmail's
        /// 5.7.8 after a fresh token): a new consent is the fix, so it
        /// forces one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reconsent: bool,
    },
    /// The IMAP server refused the XOAUTH2 login: now (a live check), or
    /// at the last check recorded in state (`checked_at`).
    ImapLoginRefused {
        /// `host:port`.
        server: String,
        /// The server's words, e.g. "NO [AUTHENTICATIONFAILED] Authentication failed."
        reply: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checked_at: Option<DateTime<Utc>>,
    },
    /// Gmail's forwarding is not as configured: what differs, and the
    /// step that fixes it (by hand in Gmail's settings). Now (a live
    /// plan), or at the last reading recorded in state (`checked_at`).
    ForwardingDrift {
        what: String,
        hint: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checked_at: Option<DateTime<Utc>>,
    },
    /// The IMAP login was never proven: apply's proof could not be tried
    /// to the end (port closed, no STARTTLS, no XOAUTH2, no answer).
    ImapNotProven {
        server: String,
        why: String,
        checked_at: DateTime<Utc>,
    },
    /// The SMTP login was never proven: apply's proof could not be tried
    /// to the end (port closed, no STARTTLS, no XOAUTH2, no answer).
    SmtpNotProven {
        /// `host:port`.
        server: String,
        /// What happened, in words.
        why: String,
        checked_at: DateTime<Utc>,
    },
}

impl Reason {
    /// Whether this reason makes the tokens unusable or unfit, so consent
    /// must run again (the planner's re-consent).
    pub fn forces_reconsent(&self) -> bool {
        matches!(
            self,
            Reason::TokenMissing
                | Reason::TokenRevoked { .. }
                | Reason::AppGrantRefused { .. }
                | Reason::TokenUnreadable { .. }
                | Reason::TokenExpired { .. }
                | Reason::ScopesShort { .. }
                | Reason::BindingChanged { .. }
                | Reason::SmtpLoginRefused {
                    reconsent: true,
                    ..
                }
        )
    }

    /// Whether this reason forces re-consent from config and state alone,
    /// so that no live check can clear it (a revoked grant and a login
    /// refused as another account's are known only from the servers).
    pub fn forces_reconsent_offline(&self) -> bool {
        self.forces_reconsent()
            && !matches!(
                self,
                Reason::TokenRevoked { .. }
                    | Reason::AppGrantRefused { .. }
                    | Reason::SmtpLoginRefused { .. }
            )
    }
}

/// Which tokens prove an asset's SMTP login after apply changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofWith {
    /// A new grant, just consented.
    NewGrant,
    /// The stored tokens: a refusal is tried once more with a fresh token.
    Stored,
}

impl Change {
    /// Whether apply proves this asset's IMAP login once its change went
    /// through (when it declares IMAP), and with which tokens: every new
    /// grant, and every update of the IMAP endpoint or of a login that was
    /// refused or never proven.
    pub fn imap_proof(&self) -> Option<ProofWith> {
        self.proof(
            |f| f == Field::Imap || f == Field::SmtpTrust,
            |r| {
                matches!(
                    r,
                    Reason::ImapLoginRefused { .. } | Reason::ImapNotProven { .. }
                )
            },
        )
    }

    /// Whether apply proves this asset's SMTP login once its change went
    /// through, and with which tokens: every new grant, and every update of
    /// the SMTP endpoint or of a login that was refused.
    pub fn smtp_proof(&self) -> Option<ProofWith> {
        self.proof(Field::is_smtp_endpoint, |r| {
            matches!(
                r,
                Reason::SmtpLoginRefused { .. } | Reason::SmtpNotProven { .. }
            )
        })
    }

    /// A login proof after this change: with the new grant, or with the
    /// stored tokens when an update moved the `endpoint` or the login was
    /// `refused` (or never proven).
    fn proof(
        &self,
        endpoint: impl Fn(Field) -> bool,
        refused: impl Fn(&Reason) -> bool,
    ) -> Option<ProofWith> {
        match self.action {
            Action::Create | Action::Reconsent => Some(ProofWith::NewGrant),
            Action::Update
                if self.fields.iter().any(|f| endpoint(f.field))
                    || self.reasons.iter().any(refused) =>
            {
                Some(ProofWith::Stored)
            }
            Action::Update | Action::Delete | Action::NoOp => None,
        }
    }
}

/// One field, before → after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldChange {
    pub field: Field,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub forces_reconsent: bool,
}

/// One asset's entry in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub asset: String,
    pub email: String,
    pub provider: String,
    pub action: Action,
    pub reasons: Vec<Reason>,
    pub fields: Vec<FieldChange>,
    pub warnings: Vec<String>,
    /// An organisation grant's kind: no person consents (a "re-consent"
    /// asks the provider for a new token, a delete revokes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// Counts by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub reconsent: usize,
    pub delete: usize,
    pub no_op: usize,
}

impl Summary {
    /// Counts `changes` by action.
    pub fn of(changes: &[Change]) -> Summary {
        let mut summary = Summary::default();
        for c in changes {
            *match c.action {
                Action::Create => &mut summary.create,
                Action::Update => &mut summary.update,
                Action::Reconsent => &mut summary.reconsent,
                Action::Delete => &mut summary.delete,
                Action::NoOp => &mut summary.no_op,
            } += 1;
        }
        summary
    }
}

/// Largest saved plan read (a plan of 10,000 assets is a few MB).
pub const MAX_PLAN_BYTES: u64 = 64 * 1024 * 1024;

impl Plan {
    /// Marks `names` (applied assets still in the config) for consent
    /// again although their tokens are fine (`--reconsent`, e.g. after a
    /// password reset). Assets to be created consent anyway.
    pub fn force_reconsent(&mut self, names: &[String]) {
        for c in self
            .changes
            .iter_mut()
            .filter(|c| names.contains(&c.asset))
            .filter(|c| matches!(c.action, Action::NoOp | Action::Update | Action::Reconsent))
        {
            c.action = Action::Reconsent;
            if !c.reasons.contains(&Reason::ReconsentRequested) {
                c.reasons.push(Reason::ReconsentRequested);
            }
        }
        self.summary = Summary::of(&self.changes);
    }

    /// A saved plan (`plan --out`, read with at most [`MAX_PLAN_BYTES`]),
    /// read back: well-formed JSON of this
    /// format, whose changes agree with its summary. Says why not, in a
    /// few words that quote nothing of the file.
    pub fn read_saved(bytes: &[u8]) -> Result<Plan, String> {
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<u32>,
        }
        let plan: Plan = serde_json::from_slice(bytes).map_err(
            |e| match serde_json::from_slice::<Version>(bytes).map(|v| v.format_version) {
                Ok(Some(v)) if v != PLAN_FORMAT_VERSION => {
                    format!("its format_version is {v}; this mailform reads {PLAN_FORMAT_VERSION}")
                }
                _ => format!(
                    "it is not a mailform plan ({} at line {}, column {})",
                    match e.classify() {
                        serde_json::error::Category::Io => "unreadable",
                        serde_json::error::Category::Syntax => "invalid JSON",
                        serde_json::error::Category::Data => "an unexpected value",
                        serde_json::error::Category::Eof => "cut short",
                    },
                    e.line(),
                    e.column()
                ),
            },
        )?;
        if plan.format_version != PLAN_FORMAT_VERSION {
            return Err(format!(
                "its format_version is {}; this mailform reads {PLAN_FORMAT_VERSION}",
                plan.format_version
            ));
        }
        if Summary::of(&plan.changes) != plan.summary {
            return Err("its summary does not match its changes (was it edited?)".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(c) = plan.changes.iter().find(|c| !seen.insert(c.asset.as_str())) {
            return Err(format!(
                "it lists asset `{}` twice (was it edited?)",
                crate::diagnostic::shown(&c.asset)
            ));
        }
        Ok(plan)
    }

    /// True when nothing would change: the CI drift check passes.
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(|c| c.action == Action::NoOp)
    }
}

/// Plans `config` against `state` (None: nothing applied yet).
pub fn plan(
    config: &Config,
    state: Option<&State>,
    observations: &Observations,
    now: DateTime<Utc>,
    targets: &[String],
) -> Plan {
    let empty = std::collections::BTreeMap::new();
    let applied = state.map_or(&empty, |s| &s.assets);
    let names: BTreeSet<&String> = config.assets.keys().chain(applied.keys()).collect();
    let wanted = |name: &str| targets.is_empty() || targets.iter().any(|t| t == name);

    let mut changes = Vec::with_capacity(names.len());
    for name in names.into_iter().filter(|n| wanted(n)) {
        let observed = observations.assets.get(name.as_str());
        let change = match (config.assets.get(name), applied.get(name)) {
            (Some(asset), None) => {
                let p = config.provider_of(asset);
                let mut warnings = Vec::new();
                if let Some(c) = &p.console
                    && c.publishing_status == Some(PublishingStatus::Testing)
                    && c.user_type != Some(UserType::Internal)
                {
                    warnings.push(format!(
                            "provider `{}` is in testing: the refresh token will expire {TESTING_REFRESH_TOKEN_DAYS} days after consent",
                            p.name
                        ));
                }
                Change {
                    asset: name.clone(),
                    email: asset.email.clone(),
                    provider: asset.provider.clone(),
                    action: Action::Create,
                    reasons: vec![if p.grant.is_organisation() {
                        Reason::AppGrantNeeded
                    } else {
                        Reason::NotInState
                    }],
                    fields: Vec::new(),
                    warnings,
                    grant: p
                        .grant
                        .is_organisation()
                        .then(|| p.grant.as_str().to_string()),
                }
            }
            (None, Some(record)) => {
                let mut warnings = Vec::new();
                if record.token.is_some()
                    && record.applied.revocation_url.is_none()
                    && record.applied.grant.is_none()
                {
                    warnings.push(format!(
                        "provider `{}` has no revocation endpoint: the tokens will only be forgotten; remove the app's access in the account's security settings",
                        record.applied.provider
                    ));
                }
                Change {
                    asset: name.clone(),
                    email: record.applied.email.clone(),
                    provider: record.applied.provider.clone(),
                    action: Action::Delete,
                    reasons: vec![Reason::NotInConfig],
                    fields: Vec::new(),
                    warnings,
                    grant: record.applied.grant.clone(),
                }
            }
            (Some(asset), Some(record)) => {
                let p = config.provider_of(asset);
                let desired = applied_over(config, asset, record);
                let mut change = compare(name, &desired, record, observed, now);
                // An organisation grant refused: the provider's words, and
                // what an administrator does about them.
                if p.grant.is_organisation() {
                    for r in &mut change.reasons {
                        if let Reason::TokenRevoked { error, description } = r {
                            *r = Reason::AppGrantRefused {
                                hint: crate::config::grants::admin_step(p, &asset.username, error),
                                error: error.clone(),
                                description: description.clone(),
                            };
                        }
                    }
                }
                change
            }
            (None, None) => unreachable!("name came from one of the maps"),
        };
        changes.push(change);
    }

    let summary = Summary::of(&changes);
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        mailform_version: env!("CARGO_PKG_VERSION").to_string(),
        lineage: state.map(|s| s.lineage),
        serial: state.map_or(0, |s| s.serial),
        config_digest: config.digest.clone(),
        live: observations.live,
        targets: targets.to_vec(),
        changes,
        summary,
    }
}

/// The scopes of `wanted` a grant of `granted` lacks (scopes that only
/// shape the grant, such as `offline_access`, are not reported back by
/// providers, so they are never missing).
pub fn missing_scopes(wanted: &[String], granted: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter(|s| !GRANT_SHAPING_SCOPES.contains(&s.as_str()) && !granted.contains(s))
        .cloned()
        .collect()
}

/// Plans an asset that is both desired and applied.
#[allow(clippy::too_many_lines)] // reason: one asset's decision in order: fields, tokens, SMTP, then the action; split, the order would hide
fn compare(
    name: &str,
    desired: &AppliedAsset,
    record: &AssetRecord,
    observed: Option<&AssetObservation>,
    now: DateTime<Utc>,
) -> Change {
    let (wanted, had) = (desired.fields(), record.applied.fields());
    let binding_changed = state::fingerprint(&wanted) != record.binding;
    let fields: Vec<FieldChange> = if desired == &record.applied {
        Vec::new()
    } else {
        wanted
            .into_iter()
            .zip(had)
            .filter(|((_, after), (_, before))| after != before)
            .map(|((field, after), (_, before))| FieldChange {
                field,
                before: before.as_ref().map(state::FieldValue::to_value),
                after: after.as_ref().map(state::FieldValue::to_value),
                forces_reconsent: field.binds_tokens(),
            })
            .collect()
    };
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();

    if binding_changed {
        let fields = fields
            .iter()
            .filter(|f| f.forces_reconsent)
            .map(|f| f.field)
            .collect();
        reasons.push(Reason::BindingChanged { fields });
    }

    let token_seen = observed.and_then(|o| o.token.as_ref());
    match (&record.token, token_seen) {
        (None, _) => reasons.push(Reason::TokenMissing),
        (Some(_), Some(TokenObservation::Revoked { error, description })) => {
            reasons.push(Reason::TokenRevoked {
                error: error.clone(),
                description: description.clone(),
            });
        }
        (Some(_), Some(TokenObservation::Unreadable { why })) => {
            reasons.push(Reason::TokenUnreadable { why: why.clone() });
        }
        // Refused at an earlier live check, and no refresh has gone through
        // since: the drift stands until one does.
        (Some(token), None | Some(TokenObservation::Transient { .. }))
            if token.revoked.is_some() =>
        {
            let r = token.revoked.as_ref().expect("matched");
            reasons.push(Reason::TokenRevoked {
                error: r.error.clone(),
                description: r.description.clone(),
            });
        }
        (Some(token), seen) => {
            if let Some(TokenObservation::Transient { detail }) = seen {
                warnings.push(format!(
                    "token check failed for a passing reason ({detail}); judged from state"
                ));
            }
            // An organisation grant's token is asked for again when due.
            let app = desired.grant.is_some();
            let refresh_dead = token.refresh_expires_at.filter(|at| *at <= now);
            let access_dead = token
                .access_expires_at
                .filter(|at| !token.has_refresh_token && !app && *at <= now);
            if let Some(at) = refresh_dead.or(access_dead) {
                reasons.push(Reason::TokenExpired { at });
            } else if let Some(at) = token.refresh_expires_at {
                let days = (at - now).num_days();
                if days < EXPIRY_WARNING_DAYS {
                    warnings.push(format!(
                        "refresh token expires in {} ({} UTC); consent will be needed again",
                        plural(days, "day"),
                        at.format("%Y-%m-%d %H:%M")
                    ));
                }
            }
            if !token.has_refresh_token && !app && refresh_dead.is_none() && access_dead.is_none() {
                warnings.push(
                    "no refresh token was issued: mail stops when the access token expires".into(),
                );
            }
            if !binding_changed {
                let granted = match seen {
                    Some(TokenObservation::Valid {
                        granted_scopes: Some(g),
                        ..
                    }) => g,
                    _ => &token.granted_scopes,
                };
                let missing = missing_scopes(&desired.scopes, granted);
                if !missing.is_empty() {
                    reasons.push(Reason::ScopesShort { missing });
                }
            }
        }
    }

    let smtp_server = crate::security::server_name(&desired.smtp_host, desired.smtp_port);
    reasons.extend(
        login_verdict(
            "SMTP",
            observed.and_then(|o| o.smtp.as_ref()),
            record.smtp_check.as_ref(),
            &smtp_server,
            &mut warnings,
        )
        .map(Verdict::smtp),
    );

    // Gmail's forwarding, when read now or recorded: what differs.
    if let Some(want) = &desired.forwarding_address {
        forwarding_reasons(want, desired, record, observed, &mut reasons, &mut warnings);
    }

    // The IMAP login, when declared: the same rules as the SMTP one.
    if let Some((host, port, _)) = desired.imap_endpoint() {
        let server = crate::security::server_name(&host, port);
        reasons.extend(
            login_verdict(
                "IMAP",
                observed.and_then(|o| o.imap.as_ref()),
                record.imap_check.as_ref(),
                &server,
                &mut warnings,
            )
            .map(Verdict::imap),
        );
    }

    let other: Vec<Field> = fields
        .iter()
        .filter(|f| !f.forces_reconsent)
        .map(|f| f.field)
        .collect();
    if !other.is_empty() {
        reasons.push(Reason::FieldsChanged { fields: other });
    }
    let reconsent = reasons.iter().any(Reason::forces_reconsent);
    let action = if reconsent {
        Action::Reconsent
    } else if reasons.is_empty() {
        Action::NoOp
    } else {
        Action::Update
    };
    // Live checks log in only where the last apply did (a branch's edit
    // must not collect tokens): the moved endpoint waits for apply.
    if action == Action::Update && fields.iter().any(|f| f.field.is_smtp_endpoint()) {
        warnings.push(
            "not proved: the new SMTP endpoint gets a token only after apply (live checks log in where the last apply did)".into(),
        );
    }
    if let Some(f) = fields
        .iter()
        .find(|f| f.field == Field::GmailApiUrl && f.after.is_some())
        .filter(|_| action == Action::Update)
    {
        warnings.push(if f.before.is_none() {
            "first recorded: live plans read Gmail's forwarding settings at this API once apply records it (apply changes nothing at Google)".into()
        } else {
            "not read: Gmail's forwarding settings are read at the new gmail_api_url only after apply".into()
        });
    }
    if action == Action::Update
        && fields
            .iter()
            .any(|f| f.field == Field::Imap && f.after.is_some())
    {
        warnings.push(
            "not proved: the new IMAP endpoint gets a token only after apply (live checks log in where the last apply did)".into(),
        );
    }
    Change {
        asset: name.to_string(),
        email: desired.email.clone(),
        provider: desired.provider.clone(),
        action,
        reasons,
        fields,
        warnings,
        grant: desired.grant.clone(),
    }
}

/// What a login (SMTP or IMAP, `what`) comes to: refused now, or as the
/// check recorded for `server` says (refused, or never proven) when it was
/// not checked now or not to the end; `None` when it passed or nothing is
/// known against it.
enum Verdict {
    Refused {
        server: String,
        reply: String,
        hint: Option<String>,
        checked_at: Option<DateTime<Utc>>,
        reconsent: bool,
    },
    NotProven {
        server: String,
        why: String,
        checked_at: DateTime<Utc>,
    },
}

impl Verdict {
    /// As an SMTP login's reason.
    fn smtp(self) -> Reason {
        match self {
            Verdict::Refused {
                server,
                reply,
                hint,
                checked_at,
                reconsent,
            } => Reason::SmtpLoginRefused {
                server,
                reply,
                hint,
                checked_at,
                reconsent,
            },
            Verdict::NotProven {
                server,
                why,
                checked_at,
            } => Reason::SmtpNotProven {
                server,
                why,
                checked_at,
            },
        }
    }

    /// As an IMAP login's reason (never a re-consent: the SMTP proof
    /// decides account questions).
    fn imap(self) -> Reason {
        match self {
            Verdict::Refused {
                server,
                reply,
                hint,
                checked_at,
                ..
            } => Reason::ImapLoginRefused {
                server,
                reply,
                hint,
                checked_at,
            },
            Verdict::NotProven {
                server,
                why,
                checked_at,
            } => Reason::ImapNotProven {
                server,
                why,
                checked_at,
            },
        }
    }
}

fn login_verdict(
    what: &str,
    seen: Option<&SmtpObservation>,
    recorded: Option<&state::SmtpCheck>,
    server: &str,
    warnings: &mut Vec<String>,
) -> Option<Verdict> {
    match seen {
        Some(SmtpObservation::Refused {
            server,
            reply,
            hint,
            reconsent,
        }) => {
            return Some(Verdict::Refused {
                server: server.clone(),
                reply: reply.clone(),
                hint: hint.clone(),
                checked_at: None,
                reconsent: *reconsent,
            });
        }
        Some(SmtpObservation::Accepted { .. }) => return None,
        Some(SmtpObservation::Transient { detail }) => warnings.push(format!(
            "the {what} login could not be checked now ({detail}); judged from state"
        )),
        None => {}
    }
    // Not checked now (or not to the end): the last refusal recorded for
    // this server stands until a check passes.
    let check = recorded.filter(|c| !c.ok && c.server == server)?;
    Some(if check.unproven {
        Verdict::NotProven {
            server: check.server.clone(),
            why: check.detail.clone(),
            checked_at: check.at,
        }
    } else {
        Verdict::Refused {
            server: check.server.clone(),
            reply: check.detail.clone(),
            hint: check.hint.clone(),
            checked_at: Some(check.at),
            reconsent: check.reconsent,
        }
    })
}

/// Gmail's forwarding against `want`: read now (each difference a reason),
/// else as recorded at the last reading.
fn forwarding_reasons(
    want: &str,
    desired: &AppliedAsset,
    record: &AssetRecord,
    observed: Option<&AssetObservation>,
    reasons: &mut Vec<Reason>,
    warnings: &mut Vec<String>,
) {
    let seen = observed.and_then(|o| o.forwarding.as_ref());
    if let Some(found) = seen.and_then(|s| {
        forwarding::findings(
            want,
            desired.forwarding_disposition.as_deref(),
            s,
            forwarding::apply_sets(desired),
        )
    }) {
        for (what, hint) in found {
            reasons.push(Reason::ForwardingDrift {
                what,
                hint,
                checked_at: None,
            });
        }
        return;
    }
    if let Some(ForwardingObservation::Transient { detail }) = seen {
        warnings.push(format!(
            "Gmail's forwarding settings could not be read now ({detail}); judged from state"
        ));
    }
    if let Some(check) = record.forwarding_check.as_ref().filter(|c| !c.ok) {
        let hints: Vec<&str> = check
            .hint
            .as_deref()
            .map_or(Vec::new(), |h| h.split('\n').collect());
        for (i, what) in check.detail.split('\n').enumerate() {
            reasons.push(Reason::ForwardingDrift {
                what: what.to_string(),
                hint: hints.get(i).copied().unwrap_or_default().to_string(),
                checked_at: Some(check.at),
            });
        }
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

pub mod forwarding;
pub mod saved;

#[cfg(test)]
mod tests;
