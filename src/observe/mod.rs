//! The observe stage: read-only checks that feed the planner's
//! [`Observations`], and the one place a stored grant is refreshed for use.
//!
//! - `live`: which assets a live plan checks ([`checkable`], [`check_jobs`]),
//!   the checks themselves ([`run_checks`]) and the pipeline plan and apply
//!   share ([`observed`], given one [`LiveRequest`]).
//! - `probe`: one SMTP login to prove ([`Probe`]), where the config says
//!   (apply) or where the last apply recorded (live checks).
//! - `access`: a valid access token for `token` and `send-test`.
//!
//! - [`sealed_tokens`] (offline too): whether each targeted asset's sealed
//!   tokens open with the key where they are. A record edited or copied by
//!   hand (another state, another asset, token-binding fields changed along
//!   with their fingerprint) no longer opens, and the planner asks for consent
//!   again instead of trusting it.
//! - [`check_jobs`] and [`run_checks`] (live plans): one refresh per stored grant, in
//!   parallel up to `parallelism`. `invalid_grant` becomes a revoked grant
//!   (re-consent); a passing failure is a warning and a failed check, never
//!   drift; an expired access token under a live grant is no drift at all.
//!   The new tokens are handed back for the command to store (a rotated
//!   refresh token must be stored at once).
//! - With `--check-smtp`, each job then proves the SMTP login with the
//!   fresh access token (or the stored one, when there is no refresh token),
//!   at the endpoint the last apply recorded — never at one an unapplied
//!   edit names (with a changed `ca_file`, not at all until apply):
//!   a refusal is drift, in the server's words; a passing failure is a
//!   warning and a failed check. [`prove_login`] is the same proof with one
//!   retry on a fresh token, for tokens that come from storage.

mod access;
mod imap;
mod live;
mod probe;

pub use access::{Access, access_token, moved_endpoint};
pub use imap::ImapProbe;
pub use live::{LiveRequest, check_jobs, checkable, observed, run_checks};
pub use probe::{Endpoints, Probe, prove_login};

use crate::oauth::OAuthError;
use crate::plan::{AssetObservation, Observations, TokenObservation};
use crate::smtp::SmtpError;
use crate::state::State;
use crate::state::crypto::{CryptoError, Key};

/// Opens every targeted asset's tokens; records those that do not open.
/// The records are independent, so they are checked on every core.
pub fn sealed_tokens(state: &State, key: &Key, targets: &[String]) -> Observations {
    let records: Vec<(&String, &crate::state::AssetRecord)> = state
        .assets
        .iter()
        .filter(|(name, r)| r.token.is_some() && (targets.is_empty() || targets.contains(name)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = records.len().div_ceil(threads).max(256);
    let check = |part: &[(&String, &crate::state::AssetRecord)]| {
        part.iter()
            .filter_map(|(name, record)| {
                let token = record.token.as_ref()?;
                let aad = state.token_aad(name, &record.binding);
                // Opened, not unpacked: whether the record is genuine is all
                // a plan needs.
                let e = key.open(&aad, &token.sealed).err()?;
                let why = match e {
                    CryptoError::Open => "they were sealed for another state, asset or client: the state file was edited or copied".to_string(),
                    other => other.to_string(),
                };
                Some(((*name).clone(), why))
            })
            .collect::<Vec<_>>()
    };
    let unreadable: Vec<(String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || check(part)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("token checks do not panic"))
            .collect()
    });
    let mut observations = Observations::default();
    for (name, why) in unreadable {
        observations.assets.insert(
            name,
            AssetObservation {
                token: Some(TokenObservation::Unreadable { why }),
                ..AssetObservation::default()
            },
        );
    }
    observations
}

/// Tokens a live check refreshed, to store (a rotated refresh token must be
/// stored at once: the old one is dead).
#[derive(Debug)]
pub struct Refreshed {
    pub name: String,
    /// The provider's answer to the refresh.
    pub grant: crate::oauth::Grant,
    /// The refresh token it was made with (`None`: an organisation grant's).
    pub old: Option<crate::secret::Secret>,
    /// Whether the provider issued a new refresh token.
    pub rotated: bool,
}

/// A check that could not decide.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Token(#[from] OAuthError),
    #[error("SMTP check: {0}")]
    Smtp(#[from] SmtpError),
    #[error("IMAP check: {0}")]
    Imap(#[from] crate::imap::ImapError),
    #[error("SMTP check: {0}")]
    Setup(String),
    #[error("IMAP check: {0}")]
    ImapSetup(String),
    #[error("Gmail forwarding check: {0}")]
    ForwardingSetup(String),
}

impl Failure {
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Token(e) => e.is_transient(),
            Failure::Smtp(e) => e.is_transient(),
            Failure::Imap(e) => e.is_transient(),
            Failure::Setup(_) | Failure::ImapSetup(_) | Failure::ForwardingSetup(_) => false,
        }
    }
}

/// What the live checks found.
#[derive(Debug, Default)]
pub struct LiveChecks {
    pub observations: Observations,
    /// Checks that could not decide (provider down, client refused, SMTP
    /// server unreachable): the planner judged those assets from state, and
    /// the command says so.
    pub failures: Vec<(String, Failure)>,
}
