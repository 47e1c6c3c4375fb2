//! Read-only checks that feed the planner's [`Observations`].
//!
//! Today: whether each targeted asset's sealed tokens open with the key where
//! they are. A token record edited or copied by hand (another state, another
//! asset, token-binding fields changed along with their fingerprint) no longer
//! opens, and the planner then asks for consent again instead of trusting it.
//! The live checks (token refresh, SMTP login) will add their findings here.

use crate::plan::{AssetObservation, Observations, TokenObservation};
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
                smtp: None,
            },
        );
    }
    observations
}
