//! `assets.toml` text → [`Config`], collecting every problem on the way.
//!
//! The document is parsed once into a spanned tree; each section (`settings`,
//! `state`, every provider, every asset) is then deserialized on its own, so a
//! type error in one asset does not hide the errors in the next. Presets and
//! defaults are applied and every value is checked here; whether the result is
//! *wise* is the business of `lints`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use url::Url;

use super::model::{
    Asset, Config, Console, PostgresState, Provider, SecretSource, SmtpEndpoint, Span, StateConfig,
    UrlSource,
};
use super::presets::Preset;
use super::raw::{
    Backend, CONFIG_VERSION, RawAsset, RawConsole, RawProvider, RawSecret, RawSettings, RawSmtp,
    RawStateConfig, RawUrl,
};
use super::{scan, state_url};
use crate::diagnostic::{Diagnostic, Diagnostics, Origin, did_you_mean, shown};
use crate::secret::Secret;

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

/// Where a key first has more than [`MAX_DEPTH`] dotted parts: the offset
/// of the dot that passes the limit, on the first line (before its `=`, if
/// any) that has that many. Linear in the text.
fn deep_key_at(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let key = line.split('=').next().unwrap_or(line);
        if let Some((i, _)) = key.match_indices('.').nth(MAX_DEPTH - 1) {
            return Some(offset + i);
        }
        offset += line.len();
    }
    None
}

/// Parses and resolves a config. Returns `None` when any error was found; the
/// diagnostics then say why. Warnings from lints are added by the caller.
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

    if diags.has_errors() {
        return (None, diags);
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

/// `[state]`, resolved: the path must name a file inside a folder of its own,
/// because the token key is kept beside the state.
fn resolve_state(raw: &RawStateConfig, dir: &Path, diags: &mut Diagnostics) -> StateConfig {
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
fn resolve_postgres(
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

fn resolve_state_path(raw: &RawStateConfig, dir: &Path, diags: &mut Diagnostics) -> StateConfig {
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
fn same_folder(a: &Path, b: &Path) -> bool {
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

/// Rust type names in serde's messages, in the words of a TOML user.
const TYPE_WORDS: [(&str, &str); 6] = [
    ("expected i64", "expected an integer"),
    ("expected u32", "expected a positive integer"),
    ("expected u16", "expected a port number"),
    ("expected a string", "expected a string (in quotes)"),
    (
        "expected a sequence",
        "expected an array like [\"a\", \"b\"]",
    ),
    ("expected a map", "expected a table"),
];

/// A `ca_file` (the provider's or the state database's), read and checked
/// now rather than at the first connection: its path, and the digest of its
/// certificates (what an apply records as the trust it used). `label` starts
/// the error, e.g. `state.ca_file`.
fn ca_file_at(
    dir: &Path,
    file: &Spanned<String>,
    label: &str,
    diags: &mut Diagnostics,
) -> Option<(PathBuf, String)> {
    let path = dir.join(file.get_ref());
    match crate::security::ca_certificates(&path) {
        Ok(certs) => Some((path, crate::security::trust_digest(&certs))),
        Err(problem) => {
            diags.push(
                Diagnostic::error(format!("{label} `{}` {problem}", shown(file.get_ref())))
                    .at(Some(file.span()))
                    .help(
                        "name a PEM file of CA certificates; the path is relative to assets.toml",
                    ),
            );
            None
        }
    }
}

/// Turns a toml error into a diagnostic, adding "did you mean" to unknown fields.
fn toml_error(e: &toml::de::Error, context: &str) -> Diagnostic {
    toml_error_in(e, context).origin(Origin::Shape)
}

/// serde's `invalid type: string "…", expected …` (and `invalid value:`)
/// with the value named by its kind only: a message never quotes a value
/// from the file (it may be a secret that landed where a table belongs);
/// the masked snippet shows where it is.
fn without_values(message: &str) -> String {
    for lead in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(lead) else {
            continue;
        };
        // The expected part is mailform's own words: the last ", expected"
        // is the real one even if the value holds those words.
        let (found, expected) = match rest.rfind(", expected ") {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let kind = [
            ("string", "a string"),
            ("integer", "an integer"),
            ("floating point", "a number"),
            ("character", "a character"),
            ("boolean", "a boolean"),
        ]
        .iter()
        .find(|(k, _)| found.starts_with(k))
        .map_or(found, |(_, word)| *word);
        return format!("{lead}{kind}{expected}");
    }
    message.to_string()
}

fn toml_error_in(e: &toml::de::Error, context: &str) -> Diagnostic {
    let mut message = without_values(e.message().trim());
    for (from, to) in TYPE_WORDS {
        if message.ends_with(from) {
            message = format!("{}{to}", &message[..message.len() - from.len()]);
        }
    }
    let mut d = Diagnostic::error(format!("{context}{message}")).at(e.span());
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let quoted: Vec<&str> = rest.split('`').collect();
        // quoted = [field, ", expected one of ", a, ", ", b, ...]
        if let Some((field, others)) = quoted.split_first() {
            let expected: Vec<&str> = others.iter().skip(1).step_by(2).copied().collect();
            if let Some(s) = did_you_mean(field, expected.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
        }
    }
    d
}

/// Deserializes one section; on failure records the error and yields `None`.
fn section<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    context: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(toml_error(&e, context));
            None
        }
    }
}

/// Deserializes each entry of a table of tables (`[providers.*]`, `[assets.*]`)
/// on its own, so every broken entry is reported.
fn entries<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Vec<(String, Range<usize>, T)> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        diags.push(
            Diagnostic::error(format!("`{what}` must be a table of tables"))
                .at(Some(span))
                .help(format!("write each entry as [{what}.NAME]")),
        );
        return Vec::new();
    };
    let kind = if what == "assets" {
        "asset"
    } else {
        "provider"
    };
    let mut out = Vec::with_capacity(table.len());
    for (key, entry) in table {
        let name = key.get_ref().to_string();
        if let Some(v) = section::<T>(entry, &format!("{kind} `{name}`: "), diags) {
            out.push((name, key.span(), v));
        }
    }
    out
}

/// Span of a nested key's value, for errors found after deserialization.
fn span_of(root: &DeTable<'_>, path: &[&str]) -> Span {
    let (first, rest) = path.split_first()?;
    let mut value = root.get(*first)?;
    for key in rest {
        let DeValue::Table(t) = value.get_ref() else {
            return None;
        };
        value = t.get(*key)?;
    }
    Some(value.span())
}

fn resolve_provider(
    name: &str,
    span: Range<usize>,
    raw: &RawProvider,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<Provider> {
    let before = diags.error_count();
    let span = Some(span);
    let ctx = |field: &str| format!("provider `{name}`: {field}");

    let preset = resolve_preset(name, raw.preset.as_ref(), diags).ok()?;

    let credentials = read_credentials(name, raw, dir, diags);

    let client_id = match (&raw.client_id, &credentials) {
        (Some(id), _) if id.get_ref().trim().is_empty() => {
            diags.push(
                Diagnostic::error(format!("{} is empty", ctx("client_id"))).at(Some(id.span())),
            );
            String::new()
        }
        (Some(id), _) => id.get_ref().clone(),
        (None, Some(c)) => c.client_id.clone(),
        (None, None) if raw.credentials_file.is_some() => String::new(), // already reported
        (None, None) => {
            diags.push(
                Diagnostic::error(format!("provider `{name}` has no client_id"))
                    .at(span.clone())
                    .help("add client_id = \"...\" (from the provider's console), or credentials_file = \"client_secret.json\""),
            );
            String::new()
        }
    };

    let client_secret = resolve_client_secret(name, raw, credentials.as_ref(), dir, diags);

    let tenant = resolve_tenant(name, span.as_ref(), raw.tenant.as_ref(), preset, diags);

    let defaults = preset.map(|p| p.defaults(&tenant));
    let missing = |field: &str, diags: &mut Diagnostics| {
        diags.push(
            Diagnostic::error(format!("custom provider `{name}` must name {field}"))
                .at(span.clone())
                .help(format!("no preset supplies it; add {field} = ... (or preset = \"google\" / \"microsoft\")")),
        );
    };

    let url_field = |field: &str,
                     raw: &Option<Spanned<String>>,
                     fallback: Option<String>,
                     required: bool,
                     diags: &mut Diagnostics|
     -> Option<Url> {
        match raw {
            Some(v) => check_url(&ctx(field), v.get_ref(), Some(v.span()), diags),
            None => {
                if let Some(f) = fallback {
                    Url::parse(&f).ok()
                } else {
                    if required {
                        missing(field, diags);
                    }
                    None
                }
            }
        }
    };
    let authorization_url = url_field(
        "authorization_url",
        &raw.authorization_url,
        defaults
            .as_ref()
            .map(|d| d.authorization_url.clone())
            .or_else(|| credentials.as_ref().and_then(|c| c.auth_uri.clone())),
        true,
        diags,
    );
    let token_url = url_field(
        "token_url",
        &raw.token_url,
        defaults
            .as_ref()
            .map(|d| d.token_url.clone())
            .or_else(|| credentials.as_ref().and_then(|c| c.token_uri.clone())),
        true,
        diags,
    );
    let revocation_url = url_field(
        "revocation_url",
        &raw.revocation_url,
        defaults.as_ref().and_then(|d| d.revocation_url.clone()),
        false,
        diags,
    );
    let device_authorization_url = url_field(
        "device_authorization_url",
        &raw.device_authorization_url,
        defaults
            .as_ref()
            .and_then(|d| d.device_authorization_url.clone()),
        false,
        diags,
    );
    let redirect_uri = url_field(
        "redirect_uri",
        &raw.redirect_uri,
        credentials.as_ref().and_then(|c| c.redirect_uri.clone()),
        false,
        diags,
    );
    let redirect_span = raw
        .redirect_uri
        .as_ref()
        .or(raw.credentials_file.as_ref())
        .map(Spanned::span);
    if redirect_uri.as_ref().is_some_and(|u| u.port() == Some(0)) {
        diags.push(
            Diagnostic::error(format!("{} uses port 0", ctx("redirect_uri")))
                .at(redirect_span.clone())
                .help("name the port the consent listener waits on, e.g. http://127.0.0.1:8765/callback, and register that exact URI with the provider"),
        );
    }
    if redirect_uri.is_none() && credentials.as_ref().is_some_and(|c| c.web) {
        diags.push(
            Diagnostic::error(format!(
                "provider `{name}`: the credentials file holds a \"web\" client with no redirect URI, and the config names none"
            ))
            .at(redirect_span.clone())
            .help("add redirect_uri = \"...\" as registered for the client in the Cloud console, or download a Desktop (\"installed\") client instead"),
        );
    }

    let scopes = match &raw.scopes {
        Some(s) => {
            check_scopes(&ctx("scopes"), s, diags);
            s.get_ref().clone()
        }
        None => {
            if let Some(d) = &defaults {
                d.scopes.clone()
            } else {
                missing("scopes", diags);
                Vec::new()
            }
        }
    };

    let mut auth_params = defaults
        .as_ref()
        .map(|d| d.auth_params.clone())
        .unwrap_or_default();
    if let Some(p) = &raw.auth_params {
        for key in p.get_ref().keys() {
            if scan::looks_secret(key) {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: `{}` looks like a secret; authorization parameters are sent in the browser's address bar",
                        ctx("auth_params"),
                        shown(key)
                    ))
                    .at(Some(p.span()))
                    .help("the client secret belongs in client_secret = { env = \"VAR\" }; if a secret was written here, rotate it"),
                );
            }
        }
        auth_params.extend(p.get_ref().iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    let base_smtp = defaults.as_ref().map(|d| SmtpEndpoint {
        host: d.smtp_host.clone(),
        port: d.smtp_port,
        security: d.smtp_security,
        port_span: None,
        security_span: None,
    });
    let smtp = merge_smtp(&ctx("smtp"), base_smtp.as_ref(), raw.smtp.as_ref(), diags);
    if smtp.is_none() && base_smtp.is_none() {
        let have = raw.smtp.as_ref();
        for (field, present) in [
            ("smtp.host", have.is_some_and(|s| s.host.is_some())),
            ("smtp.port", have.is_some_and(|s| s.port.is_some())),
            ("smtp.security", have.is_some_and(|s| s.security.is_some())),
        ] {
            if !present {
                missing(field, diags);
            }
        }
    }

    let ca_file = raw
        .ca_file
        .as_ref()
        .and_then(|f| ca_file_at(dir, f, &format!("{}:", ctx("ca_file")), diags));

    let console = raw
        .console
        .as_ref()
        .map(|c| resolve_console(name, c, diags));

    if diags.error_count() > before {
        return None;
    }
    Some(Provider {
        name: name.to_string(),
        preset,
        client_id,
        client_secret,
        redirect_uri,
        authorization_url: authorization_url?,
        token_url: token_url?,
        revocation_url,
        device_authorization_url,
        scopes,
        auth_params,
        smtp: smtp?,
        ca_digest: ca_file.as_ref().map(|(_, d)| d.clone()),
        ca_file: ca_file.map(|(p, _)| p),
        console,
        span,
        redirect_uri_span: raw.redirect_uri.as_ref().map(Spanned::span),
        scopes_span: raw.scopes.as_ref().map(Spanned::span),
        client_secret_span: raw
            .client_secret
            .as_ref()
            .map(Spanned::span)
            .or(raw.credentials_file.as_ref().map(Spanned::span)),
    })
}

/// The preset a provider starts from: named by `preset`, or implied by the
/// provider's name (`Ok(None)`: a custom provider). `Err` once reported.
fn resolve_preset(
    name: &str,
    raw: Option<&Spanned<String>>,
    diags: &mut Diagnostics,
) -> Result<Option<Preset>, ()> {
    let Some(p) = raw else {
        return Ok(Preset::from_name(name));
    };
    if let Some(preset) = Preset::from_name(p.get_ref()) {
        return Ok(Some(preset));
    }
    let mut d = Diagnostic::error(format!(
        "provider `{name}`: preset: unknown preset `{}`",
        shown(p.get_ref())
    ))
    .at(Some(p.span()));
    if let Some(s) = did_you_mean(p.get_ref(), Preset::NAMES) {
        d = d.help(format!("did you mean `{s}`?"));
    }
    diags.push(d.help("the built-in presets are `google` and `microsoft`; leave `preset` out for a custom provider"));
    Err(())
}

/// Google's "Download JSON" client file, when the provider names one.
fn read_credentials(
    name: &str,
    raw: &RawProvider,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<Credentials> {
    let f = raw.credentials_file.as_ref()?;
    let what = format!("provider `{name}`: credentials_file");
    if raw.client_id.is_some() || raw.client_secret.is_some() {
        diags.push(
            Diagnostic::error(format!(
                "{what}: set either credentials_file or client_id/client_secret, not both"
            ))
            .at(Some(f.span()))
            .help("credentials_file already holds the client id and secret"),
        );
        return None;
    }
    read_credentials_file(&dir.join(f.get_ref()))
        .map_err(|why| {
            diags.push(
                Diagnostic::error(format!("{what}: cannot use `{}`: {why}", f.get_ref()))
                    .at(Some(f.span()))
                    .help("download the OAuth client's JSON from the Cloud console (Credentials → your client → Download JSON); the path is relative to assets.toml"),
            );
        })
        .ok()
}

/// Where the client secret comes from; a literal secret is refused (and
/// masked wherever the line is shown).
fn resolve_client_secret(
    name: &str,
    raw: &RawProvider,
    credentials: Option<&Credentials>,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<SecretSource> {
    let what = format!("provider `{name}`: client_secret");
    let Some(s) = &raw.client_secret else {
        let secret = credentials?.client_secret.clone()?;
        let path = dir.join(raw.credentials_file.as_ref().map_or("", |f| f.get_ref()));
        return Some(SecretSource::CredentialsFile { path, secret });
    };
    match s.get_ref() {
        RawSecret::Literal => {
            diags.push(
                Diagnostic::error(format!("{what} is written literally in the config"))
                    .at(Some(s.span()))
                    .help("assets.toml is committed to git, so secrets are not written in it: use client_secret = { env = \"VAR\" } or { file = \"path\" }, or credentials_file; and rotate this secret, since it was in the file"),
            );
            None
        }
        RawSecret::Env(var) if var.is_empty() => {
            diags.push(
                Diagnostic::error(format!("{what}: empty environment variable name"))
                    .at(Some(s.span())),
            );
            None
        }
        // Not echoed: what is pasted where a name belongs is often the secret.
        RawSecret::Env(var) if !scan::is_env_name(var) => {
            diags.push(
                Diagnostic::error(format!(
                    "{what}: `env` takes the name of an environment variable, and this does not read as one (it is not shown, in case it is the secret)"
                ))
                .at(Some(s.span()))
                .help("write the variable's name in upper case: letters, digits and `_`, not starting with a digit, at most 64 characters, e.g. { env = \"GOOGLE_CLIENT_SECRET\" }; if you pasted the secret itself here, rotate it"),
            );
            None
        }
        RawSecret::Env(var) => {
            check_secret_env(&what, var, Some(s.span()), diags);
            Some(SecretSource::Env(var.clone()))
        }
        RawSecret::File(f) if f.trim().is_empty() => {
            diags.push(
                Diagnostic::error(format!("{what}: empty file name"))
                    .at(Some(s.span()))
                    .help("name the file that holds the secret, relative to assets.toml"),
            );
            None
        }
        RawSecret::File(f) => {
            let path = dir.join(f);
            if check_secret_file(
                &what,
                "the OAuth client's secret",
                f,
                &path,
                Some(s.span()),
                diags,
            ) {
                Some(SecretSource::File(path))
            } else {
                None
            }
        }
    }
}

/// An unset variable is a note at validate time: CI validates without
/// secrets, and `plan` fails on it with the same words.
fn check_secret_env(what: &str, var: &str, span: Span, diags: &mut Diagnostics) {
    match std::env::var_os(var) {
        None => diags.push(
            Diagnostic::note(format!(
                "{what}: environment variable {var} is not set; plan and apply will need it"
            ))
            .at(span),
        ),
        Some(v) if v.to_str().is_some_and(|v| v.trim().is_empty()) => diags.push(
            Diagnostic::warning(format!("{what}: environment variable {var} is empty"))
                .at(span)
                .help(format!("set {var} to the OAuth client's secret")),
        ),
        Some(_) => {}
    }
}

/// Checks a secret file without showing a byte of it: a folder is an error
/// (returns false), an empty file an error, a missing one a note, one that
/// others may read a warning. `holds` says what belongs in it ("the OAuth
/// client's secret").
fn check_secret_file(
    what: &str,
    holds: &str,
    written: &str,
    path: &Path,
    span: Span,
    diags: &mut Diagnostics,
) -> bool {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diags.push(
                Diagnostic::note(format!(
                    "{what}: `{}` does not exist yet; plan and apply will need it",
                    shown(written)
                ))
                .at(span),
            );
            return true;
        }
        Err(e) => {
            diags.push(
                Diagnostic::warning(format!("{what}: cannot read `{}`: {e}", shown(written)))
                    .at(span),
            );
            return true;
        }
    };
    if !meta.is_file() {
        diags.push(
            Diagnostic::error(format!("{what}: `{}` is not a file", shown(written)))
                .at(span)
                .help(format!(
                    "name the file that holds {holds} (the path is relative to assets.toml)"
                )),
        );
        return false;
    }
    match crate::files::read_secret_file(path) {
        Ok(text) if text.trim().is_empty() => {
            diags.push(
                Diagnostic::error(format!("{what}: `{}` is empty", shown(written)))
                    .at(span)
                    .help(format!("write {holds} into the file")),
            );
            return false;
        }
        Ok(_) => {}
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("{what}: `{}` cannot be used: {e}", shown(written)))
                    .at(span)
                    .help(format!("the file holds {holds} as text, nothing else")),
            );
            return false;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            diags.push(
                Diagnostic::warning(format!(
                    "{what}: `{}` is readable by others (mode {mode:o})",
                    shown(written)
                ))
                .at(span)
                .help(format!("run: chmod 600 {}", path.display())),
            );
        }
    }
    true
}

/// Microsoft's tenant: required by that preset, refused elsewhere.
fn resolve_tenant(
    name: &str,
    span: Option<&Range<usize>>,
    raw: Option<&Spanned<String>>,
    preset: Option<Preset>,
    diags: &mut Diagnostics,
) -> String {
    let needs = preset.is_some_and(Preset::needs_tenant);
    match raw {
        Some(t) if needs => {
            if t.get_ref().trim().is_empty() || t.get_ref().contains(['/', '?', '#', ' ']) {
                diags.push(
                    Diagnostic::error(format!("provider `{name}`: tenant: `{}` is not a tenant id or domain", shown(t.get_ref())))
                        .at(Some(t.span()))
                        .help("use the directory (tenant) id, a verified domain such as example.com, or \"organizations\""),
                );
            }
            t.get_ref().clone()
        }
        Some(t) => {
            diags.push(
                Diagnostic::error(format!(
                    "provider `{name}`: tenant: only the `microsoft` preset takes a tenant"
                ))
                .at(Some(t.span()))
                .help("write the tenant into authorization_url and token_url instead"),
            );
            String::new()
        }
        None if needs => {
            diags.push(
                Diagnostic::error(format!("provider `{name}` (preset microsoft) has no tenant"))
                    .at(span.cloned())
                    .help("add tenant = \"<directory id or domain>\" (\"organizations\" for any work account)"),
            );
            String::new()
        }
        None => String::new(),
    }
}

fn resolve_console(provider: &str, raw: &RawConsole, diags: &mut Diagnostics) -> Console {
    let test_users = raw
        .test_users
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    let test_users_span = raw.test_users.as_ref().map(Spanned::span);
    for user in &test_users {
        if !is_bare_email(user) {
            diags.push(
                Diagnostic::error(format!(
                    "provider `{provider}`: console.test_users: `{}` is not an email address",
                    shown(user)
                ))
                .at(test_users_span.clone())
                .help("list bare addresses, e.g. [\"support@example.com\"]"),
            );
        }
    }
    if let Some(domains) = &raw.authorized_domains {
        for d in domains.get_ref() {
            let host = url::Host::parse(d);
            if d.contains("://") || d.contains('/') || !matches!(host, Ok(url::Host::Domain(_))) {
                diags.push(
                    Diagnostic::error(format!(
                        "provider `{provider}`: console.authorized_domains: `{}` is not a domain",
                        shown(d)
                    ))
                    .at(Some(domains.span()))
                    .help("list domains as the consent screen shows them, e.g. [\"example.com\"], without https:// or a path"),
                );
            }
        }
    }
    Console {
        user_type: raw.user_type.as_ref().map(|v| *v.get_ref()),
        publishing_status: raw.publishing_status.as_ref().map(|v| *v.get_ref()),
        publishing_status_span: raw.publishing_status.as_ref().map(Spanned::span),
        authorized_domains: raw
            .authorized_domains
            .as_ref()
            .map(|d| d.get_ref().iter().map(|d| d.to_ascii_lowercase()).collect())
            .unwrap_or_default(),
        authorized_domains_span: raw.authorized_domains.as_ref().map(Spanned::span),
        test_users,
        test_users_span,
    }
}

fn resolve_asset(
    name: &str,
    raw: RawAsset,
    providers: &BTreeMap<String, Provider>,
    declared: &[&str],
    diags: &mut Diagnostics,
) -> Option<Asset> {
    let before = diags.error_count();
    let ctx = |field: &str| format!("asset `{name}`: {field}");

    check_email(&ctx("email"), &raw.email, diags);
    if let Some(u) = &raw.username
        && u.get_ref().trim().is_empty()
    {
        diags.push(
            Diagnostic::error(format!("{} is empty", ctx("username")))
                .at(Some(u.span()))
                .help("leave username out to log in as the email address"),
        );
    }
    if let Some(f) = &raw.forwarding_address {
        check_email(&ctx("forwarding_address"), f, diags);
    }
    if let Some(c) = &raw.consent_as {
        check_email(&ctx("consent_as"), c, diags);
    }
    if let Some(s) = &raw.scopes {
        check_scopes(&ctx("scopes"), s, diags);
    }
    // A label named for a secret is refused; one a typo away (`broken` is
    // one letter from `token`) is only pointed out.
    if let Some(labels) = &raw.labels
        && let Some(key) = labels.get_ref().keys().find(|k| scan::looks_secret(k))
    {
        let exact = scan::names_secret(key);
        let message = format!(
            "{}: `{}` looks like a secret; labels are shown by plan and show, and kept in state",
            ctx("labels"),
            shown(key)
        );
        let d = if exact {
            Diagnostic::error(message)
        } else {
            Diagnostic::warning(message)
        };
        diags.push(d.at(Some(labels.span())).help(
            "labels are for names like team or queue; if a secret was written here, rotate it",
        ));
    }

    let provider_name = raw.provider.get_ref();
    let Some(provider) = providers.get(provider_name) else {
        if !declared.contains(&provider_name.as_str()) {
            let mut d = Diagnostic::error(format!(
                "{}: no provider named `{}`",
                ctx("provider"),
                shown(provider_name)
            ))
            .at(Some(raw.provider.span()));
            let candidates = declared.iter().copied().chain(Preset::NAMES);
            if let Some(s) = did_you_mean(provider_name, candidates).filter(|s| *s != provider_name)
            {
                d = d.help(if declared.contains(&s) {
                    format!("did you mean `{s}`?")
                } else {
                    format!("did you mean `{s}`? It is a preset, but it still needs a [providers.{s}] table with your client_id and client_secret")
                });
            } else if Preset::from_name(provider_name).is_some() {
                d = d.help(format!("`{provider_name}` is a preset, but it still needs a [providers.{provider_name}] table with your client_id and client_secret"));
            } else {
                d = d.help(format!("declare it as [providers.{provider_name}]"));
            }
            diags.push(d);
        }
        // A declared provider that failed to resolve has its own errors already;
        // the asset's own SMTP fields can still be checked.
        merge_smtp(&ctx("smtp"), None, raw.smtp.as_ref(), diags);
        return None;
    };

    let smtp = merge_smtp(&ctx("smtp"), Some(&provider.smtp), raw.smtp.as_ref(), diags);
    if diags.error_count() > before {
        return None;
    }
    let smtp_own_span = raw.smtp.as_ref().and_then(|s| {
        s.security
            .as_ref()
            .map(Spanned::span)
            .or(s.port.as_ref().map(Spanned::span))
    });
    let scopes_span = raw.scopes.as_ref().map(Spanned::span);
    Some(Asset {
        name: name.to_string(),
        email: raw.email.get_ref().clone(),
        username: raw
            .username
            .map_or_else(|| raw.email.get_ref().clone(), Spanned::into_inner),
        provider: provider_name.clone(),
        scopes: raw
            .scopes
            .map_or_else(|| provider.scopes.clone(), Spanned::into_inner),
        smtp: smtp?,
        forwarding_address: raw.forwarding_address.map(Spanned::into_inner),
        consent_as: raw.consent_as.map(Spanned::into_inner),
        labels: raw.labels.map(Spanned::into_inner).unwrap_or_default(),
        email_span: Some(raw.email.span()),
        scopes_span,
        smtp_own_span,
    })
}

/// Layers `over` onto `base`; `None` when a field is missing or invalid.
fn merge_smtp(
    what: &str,
    base: Option<&SmtpEndpoint>,
    over: Option<&RawSmtp>,
    diags: &mut Diagnostics,
) -> Option<SmtpEndpoint> {
    let empty = RawSmtp::default();
    let over = over.unwrap_or(&empty);
    let port = match &over.port {
        Some(p) => {
            match u16::try_from(*p.get_ref()) {
                Ok(port) if port != 0 => Some((port, Some(p.span()))),
                _ => {
                    diags.push(
                    Diagnostic::error(format!("{what}.port {} is out of range", p.get_ref()))
                        .at(Some(p.span()))
                        .help("a port is 1–65535; SMTP submission uses 587 (STARTTLS) or 465 (TLS)"),
                );
                    return None;
                }
            }
        }
        None => base.map(|b| (b.port, b.port_span.clone())),
    };
    if let Some(h) = &over.host {
        let host = h.get_ref();
        if host.is_empty()
            || url::Host::parse(host).is_err()
            || host.contains(':') && host.parse::<IpAddr>().is_err()
        {
            diags.push(
                Diagnostic::error(format!("{what}.host `{}` is not a host name", shown(host)))
                    .at(Some(h.span()))
                    .help("write the bare host, e.g. \"smtp.gmail.com\"; the port goes in `port`"),
            );
            return None;
        }
    }
    let host = over
        .host
        .as_ref()
        .map(|h| h.get_ref().clone())
        .or_else(|| base.map(|b| b.host.clone()));
    let security = over
        .security
        .as_ref()
        .map(|s| (*s.get_ref(), Some(s.span())))
        .or_else(|| base.map(|b| (b.security, b.security_span.clone())));
    let ((port, port_span), (security, security_span)) = (port?, security?);
    Some(SmtpEndpoint {
        host: host?,
        port,
        security,
        port_span,
        security_span,
    })
}

/// Whether `address` is a bare address (`local@domain`, no display name).
pub fn is_bare_email(address: &str) -> bool {
    let options = email_address::Options::default().without_display_text();
    email_address::EmailAddress::parse_with_options(address, options).is_ok()
}

fn check_email(what: &str, value: &Spanned<String>, diags: &mut Diagnostics) {
    if !is_bare_email(value.get_ref()) {
        let help = if value.get_ref().contains('<') {
            "write the bare address without a display name, e.g. \"billing@example.com\""
        } else {
            "write it as local@domain, e.g. \"support@example.com\""
        };
        diags.push(
            Diagnostic::error(format!(
                "{what} `{}` is not a valid email address",
                shown(value.get_ref())
            ))
            .at(Some(value.span()))
            .help(help),
        );
    }
}

fn check_scopes(what: &str, scopes: &Spanned<Vec<String>>, diags: &mut Diagnostics) {
    if scopes.get_ref().is_empty() {
        diags.push(
            Diagnostic::error(format!("{what} is empty"))
                .at(Some(scopes.span()))
                .help("list at least one scope, or leave `scopes` out to use the provider's"),
        );
    } else if let Some(bad) = scopes
        .get_ref()
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        diags.push(
            Diagnostic::error(format!(
                "{what}: `{}` is not a scope (empty or contains spaces)",
                shown(bad)
            ))
            .at(Some(scopes.span()))
            .help("write one scope per list item: [\"mail\", \"offline_access\"]"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = scopes.get_ref().iter().find(|s| !seen.insert(s.as_str())) {
        diags.push(
            Diagnostic::warning(format!("{what}: `{}` is listed twice", shown(dup)))
                .at(Some(scopes.span()))
                .help("list each scope once"),
        );
    }
}

/// Whether `host` is a loopback host, where plain `http://` is allowed.
pub fn is_loopback_host<S: AsRef<str>>(host: &url::Host<S>) -> bool {
    match host {
        url::Host::Domain(d) => d.as_ref().eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Parses an endpoint URL: https, or http on a loopback host.
fn check_url(what: &str, value: &str, span: Span, diags: &mut Diagnostics) -> Option<Url> {
    let url = match Url::parse(value) {
        Ok(u) => u,
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("{what} `{}` is not a valid URL: {e}", shown(value)))
                    .at(span)
                    .help("write an absolute URL such as \"https://idp.example/token\""),
            );
            return None;
        }
    };
    let loopback = url.host().is_some_and(|h| is_loopback_host(&h));
    match url.scheme() {
        "https" => Some(url),
        "http" if loopback => Some(url),
        "http" => {
            diags.push(
                Diagnostic::error(format!(
                    "{what} uses http:// on `{}`, which is not a loopback host",
                    url.host_str().unwrap_or_default()
                ))
                .at(span)
                .help("use https:// (plain http is allowed only on 127.0.0.1, ::1 and localhost)"),
            );
            None
        }
        other => {
            diags.push(
                Diagnostic::error(format!(
                    "{what}: scheme `{}` is not supported",
                    shown(other)
                ))
                .at(span)
                .help("use https://"),
            );
            None
        }
    }
}

/// Largest Google client JSON read.
const MAX_CREDENTIALS_FILE: u64 = 256 * 1024;

/// What mailform takes from Google's client JSON.
struct Credentials {
    client_id: String,
    client_secret: Option<Secret>,
    auth_uri: Option<String>,
    token_uri: Option<String>,
    redirect_uri: Option<String>,
    /// A "web" client (redirect URIs registered), not "installed" (loopback).
    web: bool,
}

/// Reads Google's "Download JSON" file, in its `installed` or `web` form.
fn read_credentials_file(path: &Path) -> Result<Credentials, String> {
    #[derive(Deserialize)]
    struct File {
        installed: Option<Client>,
        web: Option<Client>,
    }
    #[derive(Deserialize)]
    #[allow(clippy::struct_field_names)] // reason: Google's JSON names them so
    struct Client {
        client_id: String,
        client_secret: Option<String>,
        auth_uri: Option<String>,
        token_uri: Option<String>,
        #[serde(default)]
        redirect_uris: Vec<String>,
    }
    let bytes = crate::files::read(path, MAX_CREDENTIALS_FILE, crate::files::Links::Follow)
        .map_err(|e| e.to_string())?;
    // serde_json's own message would quote a value of the wrong type, which
    // may be the secret: say only what kind of problem it is, and where.
    let file: File = serde_json::from_slice(&bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "unexpected content",
            _ => "not valid JSON",
        };
        format!(
            "not a Google client JSON file ({what} at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let web = file.installed.is_none() && file.web.is_some();
    let client = file.installed.or(file.web).ok_or_else(|| {
        "expected an \"installed\" or \"web\" object (Google's client JSON)".to_string()
    })?;
    if client.client_id.trim().is_empty() {
        return Err("its client_id is empty".into());
    }
    Ok(Credentials {
        client_id: client.client_id,
        client_secret: client.client_secret.map(Secret::new),
        auth_uri: client.auth_uri,
        token_uri: client.token_uri,
        redirect_uri: client.redirect_uris.into_iter().next(),
        web,
    })
}
