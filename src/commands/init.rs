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
use crate::store::key;

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
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    store.prepare()?;
    let lock = ctx.lock(store, "init", settings.lock_timeout)?;

    let mut state = store.load()?;
    let (key, origin) = key::load_or_create(&state_dir, state.as_ref())?;
    report.push(match origin {
        key::Origin::Loaded(source) => format!("Using the key from {source}.\n"),
        key::Origin::Created(path) if config.state.postgres.is_some() => format!(
            "Created the token-encryption key {} (mode 0600). The state is shared (PostgreSQL): everyone who runs mailform on it, CI too, needs this same key — give them its content as MAILFORM_KEY. Back it up: without it stored tokens are lost.\n",
            path.display()
        ),
        key::Origin::Created(path) => format!(
            "Created the token-encryption key {} (mode 0600). Back it up: without it stored tokens are lost.\n",
            path.display()
        ),
    });
    match &mut state {
        Some(state) if state.key_id.as_deref() == Some(key.id()) => {
            report.push(format!(
                "Kept the state {} (serial {}).\n",
                store.location(),
                state.serial
            ));
        }
        Some(state) => {
            // No tokens (checked above): the state simply adopts this key.
            state.key_id = Some(key.id().to_string());
            store.save(state)?;
            report.push(format!(
                "Kept the state {} and recorded the key's id in it (serial {}).\n",
                store.location(),
                state.serial
            ));
        }
        None => {
            let mut state = State::new();
            state.key_id = Some(key.id().to_string());
            store.save(&mut state)?;
            report.push(format!(
                "Created an empty state {} (lineage {}).\n",
                store.location(),
                state.lineage
            ));
        }
    }
    drop(lock);

    let unignored = ignore_state(dir, &state_dir, &config.state.path, &mut report)?;
    report.push(next_steps(&config));
    ctx.printer.err(&report.concat())?;
    if let Some(path) = unignored {
        return Err(Error::NotIgnored { path });
    }
    Ok(ExitStatus::Success)
}

/// Adds the state folder to `.gitignore` (anchored, so exactly that folder),
/// never through a symlink; then asks git, when this is a work tree, whether
/// the key and state are really ignored. Returns a path git would commit.
fn ignore_state(
    dir: &Path,
    state_dir: &Path,
    state: &Path,
    report: &mut Vec<String>,
) -> Result<Option<std::path::PathBuf>, Error> {
    if let Ok(rel) = state_dir.strip_prefix(dir)
        && !rel.as_os_str().is_empty()
    {
        add_ignore_line(dir, &rel.display().to_string(), report)?;
    }
    // Asked of git whatever the paths look like (absolute, or elsewhere in
    // the work tree): git knows best what it would commit.
    for path in [state_dir.join(key::KEY_FILE), state.to_path_buf()] {
        let Ok(absolute) = std::path::absolute(&path) else {
            continue;
        };
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["check-ignore", "-q", "--"])
            .arg(&absolute)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // 0: ignored; 1: not ignored; 128 or no git: not in a work tree.
        if status.is_ok_and(|s| s.code() == Some(1)) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Adds `/REL/` to `dir`'s `.gitignore` unless a line already ignores it;
/// never writes through a symlink.
fn add_ignore_line(dir: &Path, rel: &str, report: &mut Vec<String>) -> Result<(), Error> {
    let line = format!("/{rel}/");
    let gitignore = dir.join(".gitignore");
    let io = |source| Error::Io {
        action: "write",
        path: gitignore.clone(),
        source,
    };
    if std::fs::symlink_metadata(&gitignore).is_ok_and(|m| m.file_type().is_symlink()) {
        report.push(format!(
            "Did not touch {}: it is a symbolic link. Add the line {line} to the file it points to.\n",
            gitignore.display()
        ));
        return Ok(());
    }
    let existing = match std::fs::read_to_string(&gitignore) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let bare = rel.trim_end_matches('/');
    let accepted = [
        format!("/{bare}/"),
        format!("/{bare}"),
        format!("{bare}/"),
        bare.to_string(),
    ];
    if existing
        .lines()
        .any(|l| accepted.iter().any(|a| a == l.trim()))
    {
        return Ok(());
    }
    let mut text = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# mailform state and token key: never commit\n");
    text.push_str(&line);
    text.push('\n');
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&gitignore)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(io)?;
    report.push(format!("Added {line} to {}.\n", gitignore.display()));
    Ok(())
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
/// `init` may have written it a moment ago: it is kept either way). The text
/// goes to a temp file first and is linked into place whole, so a second
/// `init` never reads a half-written file.
fn write_new(path: &Path, text: &str) -> Result<bool, Error> {
    use std::io::Write as _;
    let io = |source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".mailform-init-");
    // An ordinary file (0666 less the umask), not tempfile's private 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(e.error)),
    }
}
