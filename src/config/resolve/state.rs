//! `[state]`: where state lives, the file backend's path or the
//! PostgreSQL backend's URL, name, schema and trust.

use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use crate::config::model::{PostgresState, StateConfig, UrlSource};
use crate::config::raw::{Backend, RawStateConfig, RawUrl};
use crate::config::{scan, state_url};
use crate::diagnostic::{Diagnostic, Diagnostics, shown};

use super::{DEFAULT_STATE_PATH, ca_file_at, check_secret_file};

/// `[state]`, resolved: the path must name a file inside a folder of its own,
/// because the token key is kept beside the state.
pub(super) fn resolve_state(
    raw: &RawStateConfig,
    dir: &Path,
    diags: &mut Diagnostics,
) -> StateConfig {
    let mut state = resolve_state_path(raw, dir, diags);
    if raw.backend == Backend::Postgres {
        state.postgres = resolve_postgres(raw, dir, diags);
    } else {
        for (key, span) in [
            ("url", raw.url.as_ref().map(Spanned::span)),
            ("name", raw.name.as_ref().map(Spanned::span)),
            ("schema", raw.schema.as_ref().map(Spanned::span)),
            ("ca_file", raw.ca_file.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                diags.push(
                    Diagnostic::error(format!("state.{key} is for the postgres backend"))
                        .at(Some(span))
                        .help("set backend = \"postgres\" to keep state in PostgreSQL, or remove this line to keep the state file"),
                );
            }
        }
    }
    state
}

/// `[state]` with `backend = "postgres"`: the URL's source and shape (a
/// literal URL with a password is refused like a literal client secret),
/// the state name, the schema, the CA file. Nothing connects here.
#[allow(clippy::too_many_lines)] // reason: the PostgreSQL settings read top to bottom, each with its own diagnostic
pub(super) fn resolve_postgres(
    raw: &RawStateConfig,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<PostgresState> {
    if let Some(p) = &raw.path {
        diags.push(
            Diagnostic::warning(
                "state.path is not used by the postgres backend (the state is in the database)",
            )
            .at(Some(p.span()))
            .help(
                "remove the line; the key file, when MAILFORM_KEY is not set, stays in .mailform/",
            ),
        );
    }
    let name = match &raw.name {
        None => "default".to_string(),
        Some(n) => {
            let text = n.get_ref();
            if text.trim().is_empty() || text.len() > 200 || text.chars().any(char::is_control) {
                diags.push(
                    Diagnostic::error("state.name must be 1 to 200 characters of text, without control characters")
                        .at(Some(n.span()))
                        .help("e.g. name = \"production\"; leave it out for \"default\""),
                );
                return None;
            }
            text.clone()
        }
    };
    let schema = match &raw.schema {
        None => "mailform".to_string(),
        Some(n) if state_url::is_plain_identifier(n.get_ref()) => n.get_ref().clone(),
        Some(n) => {
            diags.push(
                Diagnostic::error(format!("state.schema `{}` is not a plain PostgreSQL name", shown(n.get_ref())))
                    .at(Some(n.span()))
                    .help("use lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 characters, not starting with pg_ (default \"mailform\")"),
            );
            return None;
        }
    };
    let ca_file = match &raw.ca_file {
        None => None,
        Some(f) if f.get_ref().trim().is_empty() => {
            diags.push(
                Diagnostic::error("state.ca_file is empty")
                    .at(Some(f.span()))
                    .help("name a PEM file of CA certificates, relative to assets.toml, or remove the line"),
            );
            return None;
        }
        // Checked as the provider's ca_file is: a bad one is found here,
        // not at the first connection.
        Some(f) => Some(ca_file_at(dir, f, "state.ca_file", diags)?.0),
    };
    let Some(url) = &raw.url else {
        diags.push(
            Diagnostic::error("state: backend = \"postgres\" needs url")
                .at(raw.name.as_ref().map(Spanned::span))
                .help("add url = { env = \"MAILFORM_STATE_URL\" } and export MAILFORM_STATE_URL=postgres://ROLE:PASSWORD@HOST:5432/DATABASE?sslmode=verify-full"),
        );
        return None;
    };
    let span = Some(url.span());
    let shape = |text: &str, from: &str, diags: &mut Diagnostics| {
        if let Err(why) = state_url::parse(text) {
            diags.push(Diagnostic::error(format!("state.url{from}: {why}")).at(span.clone()));
        }
    };
    let source = match url.get_ref() {
        RawUrl::Literal(text) => {
            match state_url::parse(text.expose()) {
                Ok(u) if u.password.is_some() => {
                    diags.push(
                        Diagnostic::error("state.url holds a password, written literally in the config")
                            .at(span)
                            .help("assets.toml is committed to git, so secrets are not written in it: use url = { env = \"MAILFORM_STATE_URL\" } or { file = \"path\" }; and change that password, since it was in the file"),
                    );
                    return None;
                }
                Ok(_) => {}
                Err(why) => {
                    diags.push(Diagnostic::error(format!("state.url: {why}")).at(span));
                    return None;
                }
            }
            UrlSource::Literal(text.clone())
        }
        RawUrl::Env(var) if !scan::is_env_name(var) => {
            diags.push(
                Diagnostic::error("state.url: `env` takes the name of an environment variable, and this does not read as one (it is not shown, in case it is the URL)")
                    .at(span)
                    .help("e.g. url = { env = \"MAILFORM_STATE_URL\" }; if you pasted the URL with its password here, change that password"),
            );
            return None;
        }
        RawUrl::Env(var) => {
            match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => shape(&v, &format!(" (environment variable {var})"), diags),
                _ => diags.push(
                    Diagnostic::note(format!(
                        "state.url: environment variable {var} is not set; commands that need state will need it"
                    ))
                    .at(span),
                ),
            }
            UrlSource::Env(var.clone())
        }
        RawUrl::File(f) if f.trim().is_empty() => {
            diags.push(
                Diagnostic::error("state.url: empty file name")
                    .at(span)
                    .help("name the file that holds the URL, relative to assets.toml"),
            );
            return None;
        }
        // Not echoed: a URL pasted where a path belongs may hold a password.
        RawUrl::File(f) if f.contains("://") || f.contains('@') => {
            diags.push(
                Diagnostic::error("state.url: `file` takes the path of a file that holds the URL, and this reads as a URL itself (it is not shown, in case it holds a password)")
                    // The line itself is masked only for a full URL (`://`).
                    .at(span.filter(|_| f.contains("://")))
                    .help("e.g. url = { file = \"secrets/state-url\" }, or url = { env = \"MAILFORM_STATE_URL\" }; if you pasted the URL with its password here, change that password"),
            );
            return None;
        }
        RawUrl::File(f) => {
            let path = dir.join(f);
            if check_secret_file(
                "state.url",
                "the PostgreSQL URL",
                f,
                &path,
                span.clone(),
                diags,
            ) && let Ok(text) = crate::files::read_secret_file(&path)
            {
                shape(text.trim(), &format!(" (file {})", shown(f)), diags);
            }
            UrlSource::File(path)
        }
    };
    Some(PostgresState {
        url: source,
        name,
        schema,
        ca_file,
    })
}

pub(super) fn resolve_state_path(
    raw: &RawStateConfig,
    dir: &Path,
    diags: &mut Diagnostics,
) -> StateConfig {
    let default = || StateConfig {
        path: dir.join(DEFAULT_STATE_PATH),
        postgres: None,
    };
    let Some(p) = &raw.path else {
        return default();
    };
    let text = p.get_ref();
    let bad = |diags: &mut Diagnostics, why: String, help: &str| {
        diags.push(
            Diagnostic::error(format!("state.path {why}"))
                .at(Some(p.span()))
                .help(help.to_string()),
        );
        default()
    };
    if text.trim().is_empty() {
        return bad(
            diags,
            "is empty".into(),
            "leave `path` out for the default, .mailform/state.json",
        );
    }
    if Path::new(text)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return bad(
            diags,
            format!("`{}` climbs out with `..`", shown(text)),
            "name the state file without `..`, e.g. \".mailform/state.json\", or an absolute path",
        );
    }
    if text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
        return bad(
            diags,
            format!("`{}` names a folder, not a file", shown(text)),
            "name the state file, e.g. \".mailform/state.json\"",
        );
    }
    let path = dir.join(text);
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if same_folder(&folder, dir) {
        return bad(
            diags,
            format!(
                "`{}` puts the state (and the token key beside it) in the config's own folder, which is committed to git",
                shown(text)
            ),
            "keep state in a folder of its own, e.g. \".mailform/state.json\"",
        );
    }
    StateConfig {
        path,
        postgres: None,
    }
}

/// Whether two folder paths name the same folder (lexically, then on disk).
pub(super) fn same_folder(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    };
    if norm(a) == norm(b) {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
