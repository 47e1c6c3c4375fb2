//! `mailform init`: create what is missing, never overwrite.
//!
//! Writes `assets.toml` from the example, `schemas/assets.schema.json` for
//! editors, the key (0600) and an empty state in `.mailform/`, and a
//! `.gitignore` line for `.mailform/`. Running it again is harmless.

use std::fmt::Write as _;
use std::path::Path;

use super::{Context, ExitStatus};
use crate::cli::SchemaKind;
use crate::error::Error;
use crate::state::State;
use crate::store::{StateStore as _, key};

/// The example config that `init` writes.
pub const EXAMPLE: &str = include_str!("../../assets.toml.example");

pub fn run(ctx: &Context<'_>) -> Result<ExitStatus, Error> {
    let path = &ctx.cli.config;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut report: Vec<String> = Vec::new();
    create_folder(dir)?;
    if write_new(path, EXAMPLE)? {
        report.push(format!(
            "Wrote {} from the example; edit it for your mailboxes.\n",
            path.display()
        ));
    } else {
        report.push(format!("Kept {} (it exists).\n", path.display()));
    }
    let schema = dir.join(crate::schema::file_name(SchemaKind::Config));
    let folder = schema.parent().unwrap_or(dir).to_path_buf();
    create_folder(&folder)?;
    if write_new(&schema, &crate::schema::json(SchemaKind::Config))? {
        report.push(format!(
            "Wrote {} (for editor completion).\n",
            schema.display()
        ));
    }

    let (config, settings) = ctx.config()?;
    let state_dir = config.state_dir();
    let store = Context::store(&config);
    let _lock = store.lock("init", settings.lock_timeout, &mut |info| {
        let _ = ctx.printer.err(&format!(
            "Waiting for the state lock held by {} ({})...\n",
            info.who, info.operation
        ));
    })?;

    let key = if let Some((k, source)) = key::load(&state_dir)? {
        report.push(format!("Using the key from {source}.\n"));
        k
    } else {
        let (k, path) = key::create(&state_dir)?;
        report.push(format!(
            "Created the token-encryption key {} (mode 0600). Back it up: without it stored tokens are lost.\n",
            path.display()
        ));
        k
    };
    if let Some(state) = store.load()? {
        key::check_matches(
            &state,
            &key,
            &key::KeySource::File(state_dir.join(key::KEY_FILE)),
        )?;
        report.push(format!(
            "Kept the state {} (serial {}).\n",
            store.path().display(),
            state.serial
        ));
    } else {
        let mut state = State::new();
        state.key_id = Some(key.id().to_string());
        store.save(&mut state)?;
        report.push(format!(
            "Created an empty state {} (lineage {}).\n",
            store.path().display(),
            state.lineage
        ));
    }

    if let Ok(rel) = state_dir.strip_prefix(dir) {
        let line = format!("{}/", rel.display());
        let gitignore = dir.join(".gitignore");
        let existing = std::fs::read_to_string(&gitignore).unwrap_or_default();
        if !existing
            .lines()
            .any(|l| l.trim() == line || l.trim() == line.trim_end_matches('/'))
        {
            let mut text = existing;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(
                "# mailform state and token key: never commit
",
            );
            text.push_str(&line);
            text.push('\n');
            std::fs::write(&gitignore, text).map_err(|source| Error::Io {
                action: "write",
                path: gitignore.clone(),
                source,
            })?;
            report.push(format!("Added {line} to {}.\n", gitignore.display()));
        }
    }
    report.push(next_steps(&config));
    ctx.printer.err(&report.concat())?;
    Ok(ExitStatus::Success)
}

/// The closing lines: which secrets the config names that are not there
/// yet, then the commands to run.
fn next_steps(config: &crate::config::Config) -> String {
    use crate::config::SecretSource;
    let mut missing = Vec::new();
    for p in config.providers.values() {
        match &p.client_secret {
            Some(SecretSource::Env(var)) if std::env::var_os(var).is_none() => {
                missing.push(format!("set {var} (provider `{}`)", p.name));
            }
            Some(SecretSource::File(f)) if !f.exists() => {
                missing.push(format!(
                    "write provider `{}`'s client secret to {}",
                    p.name,
                    f.display()
                ));
            }
            _ => {}
        }
    }
    let config_flag = if config.path == Path::new("assets.toml") {
        String::new()
    } else {
        format!("-c {} ", config.path.display())
    };
    let mut out = String::from("Next:\n");
    for m in missing {
        let _ = writeln!(out, "  - {m}");
    }
    let _ = writeln!(
        out,
        "  - run `mailform {config_flag}validate`, then `mailform {config_flag}plan --offline`"
    );
    out
}

fn create_folder(folder: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(folder).map_err(|source| Error::Io {
        action: "create folder",
        path: folder.to_path_buf(),
        source,
    })
}

/// Writes a file that does not exist yet; `Ok(false)` when it does (another
/// `init` may have written it a moment ago: it is kept either way).
fn write_new(path: &Path, text: &str) -> Result<bool, Error> {
    use std::io::Write as _;
    let io = |source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => f.write_all(text.as_bytes()).map(|()| true).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(e)),
    }
}
