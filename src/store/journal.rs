//! Journal lines: one asset's record as it is now (or its removal), amending
//! the stored state of one lineage and serial. Both stores keep them (the
//! file store as lines of `state.json.journal`, the PostgreSQL store as rows)
//! and replay them onto the state they amend.

use crate::error::Error;
use crate::state::{AssetRecord, State};

use super::StateStore;

/// A journal smaller than this is never folded in early.
const FOLD_MIN: u64 = 256 * 1024;

/// What `record` does before appending: a whole write instead when nothing
/// is stored yet to amend, or when the journal (`journal` bytes) has
/// outgrown the stored state (`stored` bytes). `true` when that write made
/// the append needless. A fold that fails for any reason but a moved state
/// (disk full?) lets the append go ahead: the change is kept either way.
pub fn write_instead(
    store: &dyn StateStore,
    state: &mut State,
    journal: u64,
    stored: u64,
) -> Result<bool, Error> {
    if state.serial == 0 {
        store.save(state)?;
        return Ok(true);
    }
    if journal > stored.max(FOLD_MIN) {
        match store.save(state) {
            Ok(()) => return Ok(true),
            // Another writer: the lines would amend a state that is gone.
            Err(e @ Error::StateMoved { .. }) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(false)
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalLine {
    pub lineage: uuid::Uuid,
    pub serial: u64,
    /// The id of the key the state's tokens are sealed with (a first
    /// consent sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub asset: String,
    pub record: Option<AssetRecord>,
}

impl JournalLine {
    /// `asset`'s record in `state` as it is now.
    pub fn of(state: &State, asset: &str) -> Self {
        JournalLine {
            lineage: state.lineage,
            serial: state.serial,
            key_id: state.key_id.clone(),
            asset: asset.to_string(),
            record: state.assets.get(asset).cloned(),
        }
    }

    /// Applies the line to `state` if it amends it (same lineage and
    /// serial); whether it did.
    pub fn apply(self, state: &mut State) -> bool {
        if (self.lineage, self.serial) != (state.lineage, state.serial) {
            return false;
        }
        if self.key_id.is_some() {
            state.key_id = self.key_id;
        }
        match self.record {
            Some(record) => {
                state.assets.insert(self.asset, record);
            }
            None => {
                state.assets.remove(&self.asset);
            }
        }
        true
    }
}
