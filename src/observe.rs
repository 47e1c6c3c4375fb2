//! Read-only checks that feed the planner's [`Observations`].
//!
//! Today: whether each targeted asset's sealed tokens open with the key where
//! they are. A token record edited or copied by hand (another state, another
//! asset, token-binding fields changed along with their fingerprint) no longer
//! opens, and the planner then asks for consent again instead of trusting it.
//! The live checks (token refresh, SMTP login) will add their findings here.

use crate::plan::{AssetObservation, Observations, TokenObservation};
use crate::state::crypto::{CryptoError, Key};
use crate::state::{State, Tokens};

/// Opens every targeted asset's tokens; records those that do not open.
pub fn sealed_tokens(state: &State, key: &Key, targets: &[String]) -> Observations {
    let mut observations = Observations::default();
    for (name, record) in &state.assets {
        if !targets.is_empty() && !targets.contains(name) {
            continue;
        }
        let Some(token) = &record.token else { continue };
        let aad = state.token_aad(name, &record.binding);
        if let Err(e) = Tokens::open(key, &aad, &token.sealed) {
            let why = match e {
                CryptoError::Open => "they were sealed for another state, asset or client: the state file was edited or copied".to_string(),
                other => other.to_string(),
            };
            observations.assets.insert(
                name.clone(),
                AssetObservation {
                    token: Some(TokenObservation::Unreadable { why }),
                    smtp: None,
                },
            );
        }
    }
    observations
}
