//! `apply --json`: one document of outcomes at the end of an apply.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plan::{Action, Reason};

/// The format of [`ApplyDoc`].
pub const APPLY_FORMAT_VERSION: u32 = 1;

/// What an apply did, asset by asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mailform apply")]
pub struct ApplyDoc {
    pub format_version: u32,
    pub mailform_version: String,
    /// The state's lineage and serial after the apply (`null`: no state).
    pub lineage: Option<Uuid>,
    pub serial: u64,
    /// The saved plan applied, when one was.
    pub plan_file: Option<String>,
    /// Whether a Ctrl-C stopped the apply before every change was made.
    pub interrupted: bool,
    pub assets: Vec<AssetOutcome>,
    pub summary: ApplySummary,
    /// What the apply wrote to the state store.
    pub state_writes: StateWrites,
}

/// One asset's change and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetOutcome {
    pub asset: String,
    pub action: Action,
    /// `applied`, `failed`, or `not_started` (interrupted first).
    pub outcome: Outcome,
    /// What happened, or why it failed, in words.
    pub detail: String,
    /// Why the plan chose the action.
    pub reasons: Vec<Reason>,
    pub started_at: Option<DateTime<Utc>>,
    /// From the first step to the last (consent, revocation, SMTP proof).
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Failed,
    NotStarted,
}

/// Counts of what went through, by action, and of failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplySummary {
    pub created: usize,
    pub updated: usize,
    pub reconsented: usize,
    pub deleted: usize,
    pub failed: usize,
    pub not_started: usize,
}

/// Writes to the state store (journal lines and whole state files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateWrites {
    pub count: u64,
    pub bytes: u64,
}

/// What an apply achieved, for its closing lines.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    pub reconsented: usize,
    pub deleted: usize,
    /// Each failed asset, with why.
    pub failures: Vec<(String, String)>,
}

/// The closing lines of an apply: the counts, then each failure.
pub fn summary(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "\nApply: {} created, {} updated, {} re-consented, {} deleted, {} failed.\n",
        s.created,
        s.updated,
        s.reconsented,
        s.deleted,
        s.failures.len()
    );
    for (asset, why) in &s.failures {
        let _ = writeln!(text, "  {asset}: {why}");
    }
    text
}

/// The `apply --json` document of `plan`'s outcomes `assets`, with the
/// state as it ended and what was written to the store.
pub fn document(
    plan: &crate::plan::Plan,
    assets: &[AssetOutcome],
    state: &crate::state::State,
    written: (u64, u64),
    plan_file: Option<&std::path::Path>,
    interrupted: bool,
) -> String {
    let mut summary = ApplySummary::default();
    for a in assets {
        match (a.outcome, a.action) {
            (Outcome::Failed, _) => summary.failed += 1,
            (Outcome::NotStarted, _) => summary.not_started += 1,
            (Outcome::Applied, Action::Create) => summary.created += 1,
            (Outcome::Applied, Action::Update) => summary.updated += 1,
            (Outcome::Applied, Action::Reconsent) => summary.reconsented += 1,
            (Outcome::Applied, Action::Delete) => summary.deleted += 1,
            (Outcome::Applied, Action::NoOp) => {}
        }
    }
    let (count, bytes) = written;
    let doc = ApplyDoc {
        format_version: APPLY_FORMAT_VERSION,
        mailform_version: env!("CARGO_PKG_VERSION").to_string(),
        lineage: (state.serial > 0).then_some(state.lineage).or(plan.lineage),
        serial: state.serial,
        plan_file: plan_file.map(|p| p.display().to_string()),
        interrupted,
        assets: assets.to_vec(),
        summary,
        state_writes: StateWrites { count, bytes },
    };
    serde_json::to_string_pretty(&doc).expect("apply documents serialize") + "\n"
}
