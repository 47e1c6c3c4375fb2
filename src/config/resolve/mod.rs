//! `assets.toml` text → [`Config`], collecting every problem on the way.
//!
//! The document is parsed once into a spanned tree; each section (`settings`,
//! `state`, every provider, every asset) is then deserialized on its own, so a
//! type error in one asset does not hide the errors in the next. Presets and
//! defaults are applied and every value is checked here; whether the result is
//! *wise* is the business of `lints`.

mod assets;
mod check;
mod grants;
mod providers;
mod spans;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::model::Config;
use super::raw::{CONFIG_VERSION, RawAsset, RawProvider, RawSettings, RawStateConfig};
use super::scan;
use crate::diagnostic::{Diagnostic, Diagnostics, Origin, did_you_mean, shown};

use self::assets::{merge_smtp, resolve_asset};
use self::check::{ca_file_at, check_email, check_scopes, check_url};
pub use self::check::{is_bare_email, is_loopback_host};
use self::providers::{check_secret_file, resolve_provider};
use self::spans::{deep_key_at, entries, section, span_of, toml_error};
use self::state::resolve_state;

/// Top-level keys of `assets.toml`.
const TOP_LEVEL_KEYS: [&str; 5] = ["version", "settings", "state", "providers", "assets"];

/// The default state file, relative to the config's folder.
pub const DEFAULT_STATE_PATH: &str = ".mailform/state.json";

/// Deepest nesting accepted. A config needs four levels
/// (`providers.NAME.console.test_users`); the limit leaves room for style and
/// refuses hostile nesting before the TOML parser spends time on it.
pub const MAX_DEPTH: usize = 16;

/// Longest asset or provider name.
pub const MAX_NAME_LEN: usize = 64;

/// What asset and provider names may hold, for messages.
pub const NAME_RULE: &str =
    "letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 64 characters";

/// Whether `name` may name an asset or a provider: it is printed in plans,
/// typed on command lines (`--target`) and used as a key in state.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses and resolves a config. Returns `None` when the text is not TOML
/// (or too deep to read); the diagnostics then say why. With errors in some
/// tables the config holds the tables that resolved, for the caller's lints
/// (so one run reports everything) and no further use. Warnings from lints
/// are added by the caller.
#[allow(clippy::too_many_lines)] // reason: the one pass over the document: sections in file order, then cross-checks
pub fn resolve(path: &Path, text: &str) -> (Option<Config>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);

    let depth = scan::scan(text, MAX_DEPTH);
    if let Some(at) = depth.too_deep_at {
        diags.push(
            Diagnostic::error(format!(
                "nesting deeper than {MAX_DEPTH} levels (tables, dotted keys, arrays and inline tables)"
            ))
            .at(Some(at..at))
            .origin(Origin::Syntax)
            .help("assets.toml needs four levels at most, e.g. [providers.NAME.console] test_users = [...]"),
        );
        return (None, diags);
    }
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            // The parser's own depth limit (on a line broken enough that
            // the scan above lost it) has no location: find the key.
            if e.span().is_none() && e.message().trim() == "recursion limit" {
                let at = deep_key_at(text);
                diags.push(
                    Diagnostic::error(format!(
                        "nesting deeper than {MAX_DEPTH} levels (a dotted key of too many parts)"
                    ))
                    .at(at.map(|a| a..a))
                    .origin(Origin::Syntax)
                    .help("assets.toml needs four levels at most, e.g. [providers.NAME.console] test_users = [...]"),
                );
                continue;
            }
            diags.push(toml_error(&e, "TOML syntax: ").origin(Origin::Syntax));
        }
        return (None, diags);
    }
    let root_span = root.span();
    let root = root.into_inner();
    // Read what later checks need, then consume the tree section by section
    // (no copies of the parsed values).
    let has_version = root.get("version").is_some();
    let lock_timeout_span = span_of(&root, &["settings", "lock_timeout"]);
    let smtp_timeout_span = span_of(&root, &["settings", "smtp_timeout"]);
    let parallelism_span = span_of(&root, &["settings", "parallelism"]);
    let declared: Vec<String> = root
        .get("providers")
        .and_then(|v| match v.get_ref() {
            DeValue::Table(t) => Some(t.keys().map(|k| k.get_ref().to_string()).collect()),
            _ => None,
        })
        .unwrap_or_default();
    let declared: Vec<&str> = declared.iter().map(String::as_str).collect();

    let mut version = None;
    let mut settings = RawSettings::default();
    let mut state = RawStateConfig::default();
    let mut raw_providers = Vec::new();
    let mut raw_assets = Vec::new();
    for (key, value) in root {
        match key.get_ref().as_ref() {
            "version" => version = section::<Spanned<i64>>(value, "version: ", &mut diags),
            "settings" => settings = section(value, "settings: ", &mut diags).unwrap_or_default(),
            "state" => state = section(value, "state: ", &mut diags).unwrap_or_default(),
            "providers" => raw_providers = entries::<RawProvider>(value, "providers", &mut diags),
            "assets" => raw_assets = entries::<RawAsset>(value, "assets", &mut diags),
            other => {
                let mut d = Diagnostic::error(format!("unknown top-level key `{}`", shown(other)))
                    .at(Some(key.span()));
                if let Some(s) = did_you_mean(other, TOP_LEVEL_KEYS) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                diags.push(d.help(format!(
                    "the top-level keys are {}",
                    TOP_LEVEL_KEYS.map(|k| format!("`{k}`")).join(", ")
                )));
            }
        }
    }

    match &version {
        None if !has_version => diags.push(
            Diagnostic::error("missing `version`")
                .at(Some(root_span.start..root_span.start))
                .help(format!("start the file with `version = {CONFIG_VERSION}`")),
        ),
        Some(v) if *v.get_ref() != CONFIG_VERSION => diags.push(
            Diagnostic::error(format!(
                "unsupported config version {}; this mailform reads version {CONFIG_VERSION}",
                v.get_ref()
            ))
            .at(Some(v.span()))
            .help(format!("set `version = {CONFIG_VERSION}` (or use the mailform release that wrote this file)")),
        ),
        _ => {}
    }

    // The same rules as for the environment and flags (settings.rs), here
    // with the file's line.
    for (key, value, span, rule) in [
        (
            "lock_timeout",
            &settings.lock_timeout,
            lock_timeout_span,
            super::raw::rules::lock_timeout as fn(&str) -> Result<std::time::Duration, String>,
        ),
        (
            "smtp_timeout",
            &settings.smtp_timeout,
            smtp_timeout_span,
            super::raw::rules::smtp_timeout,
        ),
    ] {
        if let Some(value) = value
            && let Err(why) = rule(value)
        {
            diags.push(
                Diagnostic::error(format!("settings.{key} `{}` {why}", shown(value)))
                    .at(span)
                    .help("write it like \"30s\" or \"2m\", or a number of seconds"),
            );
        }
    }
    if let Some(Err(why)) = settings.parallelism.map(super::raw::rules::parallelism) {
        diags.push(
            Diagnostic::error(format!("settings.parallelism {why}"))
                .at(parallelism_span)
                .help(format!(
                    "leave it out for the default ({})",
                    super::raw::DEFAULT_PARALLELISM
                )),
        );
    }

    let state = resolve_state(&state, &dir, &mut diags);

    let mut providers = BTreeMap::new();
    for (name, span, raw) in raw_providers {
        check_name("provider", &name, &span, &mut diags);
        if let Some(p) = resolve_provider(&name, span, &raw, &dir, &mut diags) {
            providers.insert(name, p);
        }
    }
    let mut assets = BTreeMap::new();
    let mut emails: HashMap<String, String> = HashMap::new();
    for (name, span, raw) in raw_assets {
        check_name("asset", &name, &span, &mut diags);
        let Some(asset) = resolve_asset(&name, raw, &providers, &declared, &mut diags) else {
            continue;
        };
        let key = asset.email.to_ascii_lowercase();
        if let Some(other) = emails.get(&key) {
            diags.push(
                Diagnostic::error(format!(
                    "asset `{name}`: email `{}` is also used by asset `{other}`",
                    asset.email
                ))
                .at(asset.email_span.clone())
                .help("each mailbox is declared once; remove one of the two or fix the address"),
            );
        } else {
            emails.insert(key, name.clone());
        }
        assets.insert(name, asset);
    }

    let config = Config {
        path: path.to_path_buf(),
        dir,
        settings,
        state,
        providers,
        assets,
        digest: crate::digest::sha256_hex(text.as_bytes()),
        source: text.to_string(),
    };
    (Some(config), diags)
}

/// Refuses an asset or provider name outside [`NAME_RULE`].
fn check_name(kind: &str, name: &str, span: &Range<usize>, diags: &mut Diagnostics) {
    if is_valid_name(name) {
        return;
    }
    let message = if name.is_empty() {
        format!("{kind} name is empty")
    } else {
        format!("{kind} name `{}` is not allowed", shown(name))
    };
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    diags.push(
        Diagnostic::error(message)
            .at(Some(span.clone()))
            .help(format!("{article} {kind} name has {NAME_RULE}")),
    );
}
