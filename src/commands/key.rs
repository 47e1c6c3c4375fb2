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
use crate::state::Tokens;
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
    // Every token opened with the old key before anything is written.
    let mut opened: Vec<(String, Tokens)> = Vec::new();
    for name in state.assets.keys() {
        if let Some(tokens) = state.open_tokens(&old, name) {
            let tokens = tokens.map_err(|e| Error::Key {
                why: format!("the tokens of {name} do not open with the current key ({e}); nothing was changed"),
            })?;
            opened.push((name.clone(), tokens));
        }
    }
    let new_path = out.map_or_else(|| dir.join(key::NEW_KEY_FILE), Path::to_path_buf);
    key::write_key_file(&new_path, &text)?;
    for (name, tokens) in &opened {
        let record = state.assets.get_mut(name).expect("opened above");
        let aad = crate::state::token_aad(&state.lineage, name, &record.binding);
        if let Some(t) = record.token.as_mut() {
            t.sealed = tokens.seal(&new, &aad);
        }
    }
    state.key_id = Some(new.id().to_string());
    store.save(&mut state)?;
    let said = if out.is_some() {
        format!(
            "Sealed the tokens of {} asset{} with a new key (id {}), written to {}; the old key opens nothing now: put the new key's text in {} where it is kept, then delete the file.\n",
            opened.len(),
            if opened.len() == 1 { "" } else { "s" },
            new.id(),
            new_path.display(),
            key::KEY_ENV
        )
    } else {
        key::promote_new_key(&dir)?;
        format!(
            "Sealed the tokens of {} asset{} with a new key (id {}) in {}; back it up: the old key opens nothing now.\n",
            opened.len(),
            if opened.len() == 1 { "" } else { "s" },
            new.id(),
            dir.join(key::KEY_FILE).display()
        )
    };
    ctx.printer.err(&said)?;
    Ok(ExitStatus::Success)
}
