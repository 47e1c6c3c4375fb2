//! `mailform key rotate [--out FILE]`: a new token-encryption key, every
//! stored token sealed again with it in one state write (file or
//! PostgreSQL), under the state lock.
//!
//! The order keeps a key that opens the state on disk at every moment: the
//! new key is written first (beside the old one, as `key.new`, or to
//! `--out`), then the state sealed with it, then the new key file takes the
//! old one's place. A rotation that stops after the state write is finished
//! by the next command that reads the key.

use std::path::Path;

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::state::crypto::Key;
use crate::store::key;

pub fn rotate(ctx: &Context<'_>, out: Option<&Path>) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let from_env = std::env::var_os(key::KEY_ENV).is_some();
    if from_env && out.is_none() {
        return Err(Error::Usage(format!(
            "the key comes from {}: name a file for the new one (mailform key rotate --out FILE), then put its text in {} where it is kept",
            key::KEY_ENV,
            key::KEY_ENV
        )));
    }
    if !from_env && out.is_some() {
        return Err(Error::Usage(format!(
            "the key is the file {}, which the rotation replaces; --out is for a key kept in {}",
            config.state_dir().join(key::KEY_FILE).display(),
            key::KEY_ENV
        )));
    }
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    store.prepare()?;
    let _lock = ctx.lock(store, "key rotate", settings.lock_timeout)?;
    let mut state = store.load_folded()?.unwrap_or_default();
    let dir = config.state_dir();
    let Some(old) = key::for_state(&dir, &state)? else {
        return Err(Error::Usage(
            "the state holds no tokens, so there is nothing to seal again; the key is unchanged"
                .into(),
        ));
    };
    let (new, text) = Key::generate();
    // Sealed again in memory (every token opened first: one that does not
    // open changes nothing); written only once the new key is on disk.
    let count = state.reseal(&old, &new).map_err(|why| Error::Key {
        why: format!("{why}; nothing was changed"),
    })?;
    let new_path = out.map_or_else(|| dir.join(key::NEW_KEY_FILE), Path::to_path_buf);
    key::write_key_file(&new_path, &text)?;
    store.save(&mut state)?;
    let said = if out.is_some() {
        format!(
            "Sealed the tokens of {} asset{} with a new key (id {}), written to {}; the old key opens nothing now: put the new key's text in {} where it is kept, then delete the file.\n",
            count,
            if count == 1 { "" } else { "s" },
            new.id(),
            new_path.display(),
            key::KEY_ENV
        )
    } else {
        key::promote_new_key(&dir)?;
        format!(
            "Sealed the tokens of {} asset{} with a new key (id {}) in {}; back it up: the old key opens nothing now.\n",
            count,
            if count == 1 { "" } else { "s" },
            new.id(),
            dir.join(key::KEY_FILE).display()
        )
    };
    ctx.printer.err(&said)?;
    Ok(ExitStatus::Success)
}
