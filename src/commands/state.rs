//! `mailform state pull` / `state push FILE [--force]`: print the stored
//! state, or replace it; `state list`, `state mv OLD NEW` (rename, keeping
//! the grant) and `state rm NAME…` (forget without revoking). Terraform's
//! commands of the same names.
//! Tokens stay sealed with the key either way; moving a team from the state
//! file to PostgreSQL is a pull with one config and a push with the other.

use std::io::Read as _;
use std::path::Path;

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::state::State;
use crate::state::parse_state;
use crate::store::file::MAX_STATE_BYTES;
use crate::store::key;

pub fn pull(ctx: &Context<'_>) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    let Some(state) = store.load()? else {
        return Err(Error::Usage(format!(
            "no state is stored at {} yet: nothing to pull",
            store.location()
        )));
    };
    ctx.printer.out(&document(&state))?;
    Ok(ExitStatus::Success)
}

pub fn list(ctx: &Context<'_>) -> Result<ExitStatus, Error> {
    let (config, _settings) = ctx.config()?;
    let boxed = Context::store(&config)?;
    let state = boxed.load()?.unwrap_or_default();
    let mut out = String::new();
    for name in state.assets.keys() {
        out.push_str(&crate::diagnostic::escaped(name));
        out.push('\n');
    }
    ctx.printer.out(&out)?;
    Ok(ExitStatus::Success)
}

/// Renames `old` to `new` in state, under the lock: the grant stays, its
/// tokens sealed again for the new name, so no consent runs again.
pub fn mv(ctx: &Context<'_>, old: &str, new: &str) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    if !crate::config::resolve::is_valid_name(new) {
        return Err(Error::Usage(format!(
            "state mv: `{}` is not an asset name: {}",
            crate::diagnostic::shown(new),
            crate::config::resolve::NAME_RULE
        )));
    }
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    let _lock = ctx.lock(store, "state mv", settings.lock_timeout)?;
    let mut state = store.load_folded()?.unwrap_or_default();
    crate::config::known_asset(old, state.assets.keys().map(String::as_str), &config)?;
    let key = key::for_state(&config.state_dir(), &state)?;
    state
        .rename(key.as_ref(), old, new)
        .map_err(|why| Error::Usage(format!("state mv {old} {new}: {why}")))?;
    store.save(&mut state)?;
    let hint = if config.assets.contains_key(new) {
        String::new()
    } else {
        format!(
            "; rename [assets.{old}] to [assets.{new}] in {} too, or the next apply revokes it",
            config.path.display()
        )
    };
    ctx.printer.err(&format!(
        "Moved {old} to {new} in state (its grant kept){hint}.\n"
    ))?;
    Ok(ExitStatus::Success)
}

/// Forgets `names` in state, under the lock, without revoking their grants.
pub fn rm(ctx: &Context<'_>, names: &[String]) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    let _lock = ctx.lock(store, "state rm", settings.lock_timeout)?;
    let mut state = store.load_folded()?.unwrap_or_default();
    for name in names {
        crate::config::known_asset(name, state.assets.keys().map(String::as_str), &config)?;
    }
    for name in names {
        state.assets.remove(name);
    }
    store.save(&mut state)?;
    let mut text = String::new();
    for name in names {
        let _ = std::fmt::Write::write_fmt(
            &mut text,
            format_args!(
                "Removed {name} from state; its grant was not revoked (revoke it in the provider's console if nothing uses it){}.\n",
                if config.assets.contains_key(name) {
                    ", and it is still in the config: the next apply asks for consent again"
                } else {
                    ""
                }
            ),
        );
    }
    ctx.printer.err(&text)?;
    Ok(ExitStatus::Success)
}

/// The state as the file backend writes it.
fn document(state: &State) -> String {
    let mut text = serde_json::to_string_pretty(state).expect("a state always encodes");
    text.push('\n');
    text
}

pub fn push(ctx: &Context<'_>, file: &Path, force: bool) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let bytes = read(file)?;
    let mut pushed = parse_state(file, &bytes)?;
    if pushed.serial == 0 {
        return Err(Error::StateCorrupt {
            path: file.to_path_buf(),
            why: "its serial is 0, which no written state has".into(),
        });
    }
    // Tokens nobody here can open would be a state nobody here can use.
    if !force {
        key::for_state(&config.state_dir(), &pushed).map_err(|e| {
            Error::Usage(format!(
                "{} was not pushed: its tokens cannot be opened with the key here ({e}); run `mailform state push {} --force` to push it anyway",
                file.display(),
                file.display()
            ))
        })?;
    }
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    store.prepare()?;
    let _lock = ctx.lock(store, "state push", settings.lock_timeout)?;
    // What is stored, with what a killed apply recorded since (as `state
    // pull` shows it): a file pulled from it is the same state. Anything
    // else is compared with those records folded in, so the serial says
    // whether the file has seen them, and a push never drops them unseen.
    let mut current = store.load()?;
    let same = |a: &State, b: &State| serde_json::to_value(a).ok() == serde_json::to_value(b).ok();
    if store.has_pending() && !current.as_ref().is_some_and(|now| same(now, &pushed)) {
        current = store.load_folded()?;
    }
    let refuse = |why: String| {
        Err(Error::Usage(format!(
            "{} was not pushed to {}: {why}",
            file.display(),
            store.location()
        )))
    };
    let expected = match &current {
        None => None,
        Some(now) => {
            let same_content = || same(now, &pushed);
            if !force {
                if now.lineage != pushed.lineage {
                    return refuse(format!(
                        "the stored state has another lineage ({}, serial {}) than the file ({}, serial {}), so they are different states; run `mailform state push {} --force` to replace it",
                        now.lineage,
                        now.serial,
                        pushed.lineage,
                        pushed.serial,
                        file.display()
                    ));
                }
                if pushed.serial < now.serial {
                    return refuse(format!(
                        "the file has serial {}, older than the stored state's {}; pull the current state and start from it, or run `mailform state push {} --force` to go back",
                        pushed.serial,
                        now.serial,
                        file.display()
                    ));
                }
                if pushed.serial == now.serial && !same_content() {
                    return refuse(format!(
                        "the file and the stored state both have serial {} but differ, so they have gone separate ways; run `mailform state push {} --force` to replace the stored one",
                        now.serial,
                        file.display()
                    ));
                }
            }
            if now.lineage == pushed.lineage && now.serial == pushed.serial && same_content() {
                ctx.printer.err(&format!(
                    "{} already holds this state (serial {}); nothing was written.\n",
                    store.location(),
                    now.serial
                ))?;
                return Ok(ExitStatus::Success);
            }
            Some((now.lineage, now.serial))
        }
    };
    store.write(&mut pushed, expected)?;
    ctx.printer.err(&format!(
        "Pushed {} to {}: {} asset{}, serial {}, lineage {}.\n",
        file.display(),
        store.location(),
        pushed.assets.len(),
        if pushed.assets.len() == 1 { "" } else { "s" },
        pushed.serial,
        pushed.lineage
    ))?;
    Ok(ExitStatus::Success)
}

/// The file's bytes (`-`: standard input), bounded like a state file.
fn read(file: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        action: "read",
        path: file.to_path_buf(),
        source,
    };
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(Error::StateCorrupt {
                path: file.to_path_buf(),
                why: format!("it is larger than {MAX_STATE_BYTES} bytes"),
            });
        }
        return Ok(bytes);
    }
    match crate::files::read(file, MAX_STATE_BYTES, crate::files::Links::Follow) {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(crate::files::FileError::Io(e)) => Err(io(e)),
        Err(e) => Err(Error::StateCorrupt {
            path: file.to_path_buf(),
            why: e.to_string(),
        }),
    }
}
