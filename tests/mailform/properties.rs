//! Bounded property tests of the config front door, in process (no binary
//! per case), so thousands of inputs run in seconds:
//!
//! - a mutation fuzz of `validate`: good files broken at random, with secret
//!   lines planted in them, never panic, never show a planted secret, and get
//!   a bounded answer;
//! - every config the committed JSON Schema accepts passes `validate` or fails
//!   it for a semantic reason only, never a syntax or shape one.

use std::path::{Path, PathBuf};

use mailform::config;
use mailform::config::scan::mask_secrets;
use mailform::diagnostic::Origin;
use mailform::render::diagnostic::render;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::support::root;

/// The good files the fuzz starts from.
fn seeds() -> Vec<(PathBuf, String)> {
    let mut files = vec![root().join("assets.toml.example")];
    let mut good: Vec<PathBuf> = std::fs::read_dir(root().join("tests/good"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    good.sort();
    files.extend(good);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Bits of TOML that break files in interesting ways.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "[",
    "]",
    "[[",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "#",
    "\\",
    ".",
    " ",
    "\t",
    "\r\n",
    "\u{0}",
    "\u{1b}[31m",
    "é",
    "\u{202e}",
    "0",
    "-1",
    "99999999999999999999",
    "true",
    "inf",
    "1979-05-27T07:32:00Z",
    "[providers.x]",
    "[assets.y]",
    "[[assets]]",
    "email = ",
    "provider = \"lab\"",
    "smtp = { port = 465 }",
    "\nversion = 2\n",
    "\nassets = 1\n",
    "x.y.z = 1",
    "{ a = [",
    "\"\n\"",
    // A key of 90 parts: past the parser's own depth limit, on a line the
    // mutations may break before the scan can count it.
    "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a",
];

/// Secret lines planted at line starts: the value always contains SENTINEL,
/// the line is damaged in a way that defeats a parser-based mask.
const PLANTED: &[&str] = &[
    "client_secret = \"SENTINEL1\"\n",
    "client_secret = \"SENTINEL2\n",
    "client_secret = \"SENTI\\qNEL3\"\n",
    "client_secret = \"SENTINEL4\" trailing junk\n",
    "client_secert = 'SENTINEL5'\n",
    "password = [\"SENTINEL6\"]\n",
    "refresh_token = { value = \"SENTINEL7\" }\n",
    "\"client_secret\" = \"SENTINEL8\"\n",
    "providers.lab.client_secret = \"SENTINEL9\"\n",
    "client_secret = { env = \"SENTINEL-10\" }\n",
    "client_secret = \"\"\"\nSENTINEL11\nSENTINEL12\"\"\"\n",
    "api_key: SENTINEL13\n",
    "client_secret SENTINEL14\n",
    "access_token = SENTINEL15\n",
    "\"client_secret\": \"SENTINEL16\",\n",
    "client = {\"client_id\":\"x\",\"client_secret\":\"SENTINEL17\"}\n",
    "[providers.zz] client_secret = \"SENTINEL18\"\n",
    "client_secret: c2VjcmV0SENTINEL19==\n",
    "client_id = \"x\", client_secret = \"SENTINEL20\"\n",
    "client_secret =\n  \"SENTINEL21\"\n",
    "clientSecert = \"SENTINEL22\"\n",
    "refresh_tokn = \"SENTINEL23\"\n",
    "x = {\n  client_secret = \"SENTINEL24\",\n}\n",
    // A secret where a table belongs: serde's message would quote it.
    "[providers]\nclient_secret = \"SENTINEL25\"\n",
    "[assets]\nclient_secret = \"SENTINEL26\"\n",
    // Multi-line secrets whose opening a broken line hides from the scanner.
    "\"client_secret = \"\"\"\nSENTINEL28\nSENTINEL29\"\"\"\n",
    "client_secret =\"\"\nSENTINEL30\nSENTINEL31\"\"\"\n",
    "client_#cret = '''\nSENTINEL32\n'''\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, usize),
    Delete(usize, usize),
    DuplicateLine(usize),
    Plant(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..TOKENS.len()).prop_map(|(p, t)| Mutation::Insert(p, t)),
        2 => (any::<usize>(), 1usize..40).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        2 => (any::<usize>(), 0..PLANTED.len()).prop_map(|(p, t)| Mutation::Plant(p, t)),
    ]
}

/// A char boundary near `pos` (taken modulo the length).
fn boundary(text: &str, pos: usize) -> usize {
    let mut at = pos % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Applies the mutations; planted lines go in last, at line starts, so the
/// byte mutations cannot cut a planted secret in two.
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut text = text.to_string();
    for m in mutations {
        match *m {
            Mutation::Insert(p, t) => {
                let at = boundary(&text, p);
                text.insert_str(at, TOKENS[t]);
            }
            Mutation::Delete(p, n) => {
                let at = boundary(&text, p);
                let end = boundary(&text, at + n).max(at);
                text.replace_range(at..end, "");
            }
            Mutation::DuplicateLine(p) => {
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let line = lines[p % lines.len()].to_string();
                    let at = boundary(&text, p);
                    text.insert_str(at, &line);
                }
            }
            Mutation::Plant(..) => {}
        }
    }
    // Each plant at its own line start of the mutated text, inserted back to
    // front, so no plant lands inside another's (multi-line) value.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut plants: Vec<(usize, usize)> = mutations
        .iter()
        .filter_map(|m| match *m {
            Mutation::Plant(p, t) => Some((starts[p % starts.len()], t)),
            _ => None,
        })
        .collect();
    plants.sort_unstable();
    plants.dedup_by_key(|(at, _)| *at);
    for (at, t) in plants.into_iter().rev() {
        text.insert_str(at, PLANTED[t]);
    }
    text
}

/// Fixed unless `PROPTEST_RNG_SEED` says otherwise, so CI runs the same
/// cases every time; explore with e.g.
/// `PROPTEST_RNG_SEED=7 PROPTEST_CASES=100000 cargo test --test mailform properties`.
fn config(cases: u32) -> ProptestConfig {
    use proptest::test_runner::RngSeed;
    let base = ProptestConfig::default();
    let rng_seed = match base.rng_seed {
        RngSeed::Random => RngSeed::Fixed(0x6d61_696c_666f_726d),
        fixed @ RngSeed::Fixed(_) => fixed,
    };
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        base.cases
    } else {
        cases
    };
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed,
        ..base
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn validate_survives_broken_files_and_never_shows_a_planted_secret(
        seed in 0usize..64,
        mutations in proptest::collection::vec(mutation(), 1..12),
    ) {
        let seeds = seeds_cached();
        let (path, text) = &seeds[seed % seeds.len()];
        let text = mutate(text, &mutations);

        let masked = mask_secrets(&text);
        prop_assert_eq!(masked.len(), text.len());
        prop_assert!(
            masked.match_indices('\n').eq(text.match_indices('\n')),
            "masking moved a line break"
        );
        prop_assert!(!masked.contains("SENTINEL"), "unmasked:\n{}", masked);

        let loaded = config::parse(path, text.clone());
        let out = render(Path::new("assets.toml"), &loaded.source, &loaded.diagnostics);
        prop_assert!(!out.contains("SENTINEL"), "shown:\n{}", out);
        prop_assert!(!out.contains('\u{1b}'), "a control sequence reached the output");
        prop_assert!(out.len() < 128 * 1024, "{} bytes of output", out.len());
        for d in &loaded.diagnostics {
            prop_assert!(
                d.span.is_some() || d.origin != mailform::diagnostic::Origin::Syntax,
                "a syntax error without a location: {}",
                d.message
            );
        }
        if loaded.diagnostics.has_errors() {
            prop_assert!(loaded.config.is_none());
        }
    }

    #[test]
    fn schema_valid_configs_fail_only_for_semantic_reasons(doc in config_doc()) {
        let validator = schema_validator();
        prop_assert!(validator.is_valid(&doc), "generator made a schema-invalid file: {doc}");
        let text = toml::to_string(&doc).expect("JSON without nulls is TOML");
        let loaded = config::parse(&root().join("tests/good/generated.toml"), text.clone());
        for d in &loaded.diagnostics {
            prop_assert_eq!(
                d.origin,
                Origin::Rule,
                "the schema accepted what validate rejects as {:?}: {}\n{}",
                d.origin,
                d.message,
                text
            );
        }
    }
}

fn seeds_cached() -> &'static [(PathBuf, String)] {
    static SEEDS: std::sync::OnceLock<Vec<(PathBuf, String)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(seeds)
}

fn schema_validator() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("schemas/assets.schema.json")).unwrap(),
        )
        .unwrap();
        jsonschema::validator_for(&schema).unwrap()
    })
}

// ---- A generator of configs the schema accepts -------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "[a-z]{1,6}@[a-z]{1,6}\\.(com|org)",
        "https://[a-z]{1,8}\\.example/[a-z]{0,6}",
        "http://127\\.0\\.0\\.1:[0-9]{1,5}/[a-z]{0,6}",
        ".{0,12}",
    ]
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::weighted(0.5, s)
}

fn one_of(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(items).prop_map(str::to_string)
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..4)
}

fn smtp() -> impl Strategy<Value = Value> {
    (
        opt(text()),
        opt(0u32..=65535),
        opt(one_of(&["starttls", "tls", "ssl"])),
    )
        .prop_map(|(host, port, security)| {
            let mut m = Map::new();
            put(&mut m, "host", host.map(Value::from));
            put(&mut m, "port", port.map(Value::from));
            put(&mut m, "security", security.map(Value::from));
            Value::Object(m)
        })
}

fn put(m: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        m.insert(key.to_string(), v);
    }
}

fn provider() -> impl Strategy<Value = Value> {
    let secret = prop_oneof![
        "[A-Z_]{1,10}".prop_map(|v| json!({ "env": v })),
        "[a-z]{1,8}".prop_map(|f| json!({ "file": f })),
    ];
    let console = (
        opt(one_of(&["internal", "external"])),
        opt(one_of(&["testing", "production", "in_production"])),
        opt(strings()),
        opt(strings()),
    )
        .prop_map(|(u, p, d, t)| {
            let mut m = Map::new();
            put(&mut m, "user_type", u.map(Value::from));
            put(&mut m, "publishing_status", p.map(Value::from));
            put(&mut m, "authorized_domains", d.map(Value::from));
            put(&mut m, "test_users", t.map(Value::from));
            Value::Object(m)
        });
    (
        (
            opt(one_of(&["google", "microsoft", "other"])),
            opt(text()),
            opt(secret),
            opt(text()),
            opt(text()),
            opt(text()),
        ),
        (
            opt(text()),
            opt(strings()),
            opt(proptest::collection::btree_map("[a-z_]{1,8}", text(), 0..3)),
            opt(text()),
            opt(smtp()),
            opt(console),
        ),
    )
        .prop_map(
            |(
                (preset, id, secret, redirect, auth, token),
                (revoke, scopes, params, tenant, smtp, console),
            )| {
                let mut m = Map::new();
                put(&mut m, "preset", preset.map(Value::from));
                put(&mut m, "client_id", id.map(Value::from));
                put(&mut m, "client_secret", secret);
                put(&mut m, "redirect_uri", redirect.map(Value::from));
                put(&mut m, "authorization_url", auth.map(Value::from));
                put(&mut m, "token_url", token.map(Value::from));
                put(&mut m, "revocation_url", revoke.map(Value::from));
                put(&mut m, "scopes", scopes.map(Value::from));
                put(&mut m, "auth_params", params.map(|p| json!(p)));
                put(&mut m, "tenant", tenant.map(Value::from));
                put(&mut m, "smtp", smtp);
                put(&mut m, "console", console);
                Value::Object(m)
            },
        )
}

fn asset() -> impl Strategy<Value = Value> {
    (
        text(),
        one_of(&["google", "microsoft", "lab", "nope"]),
        opt(text()),
        opt(strings()),
        opt(smtp()),
        opt(text()),
        proptest::collection::btree_map("[a-z ]{1,8}", text(), 0..3),
    )
        .prop_map(|(email, provider, username, scopes, smtp, fwd, labels)| {
            let mut m = Map::new();
            m.insert("email".into(), email.into());
            m.insert("provider".into(), provider.into());
            put(&mut m, "username", username.map(Value::from));
            put(&mut m, "scopes", scopes.map(Value::from));
            put(&mut m, "smtp", smtp);
            put(&mut m, "forwarding_address", fwd.map(Value::from));
            if !labels.is_empty() {
                m.insert("labels".into(), json!(labels));
            }
            Value::Object(m)
        })
}

fn config_doc() -> impl Strategy<Value = Value> {
    let settings = (
        opt(1u32..100_000),
        opt(one_of(&["loopback", "manual", "device", "never"])),
        opt(prop_oneof![
            "[0-9]{1,3}(s|m|h)?".prop_map(Value::from),
            (0u32..10_000).prop_map(Value::from),
            ".{0,6}".prop_map(Value::from),
        ]),
        opt(one_of(&["auto", "always", "never"])),
    )
        .prop_map(|(p, c, l, col)| {
            let mut m = Map::new();
            put(&mut m, "parallelism", p.map(Value::from));
            put(&mut m, "consent", c.map(Value::from));
            put(&mut m, "lock_timeout", l);
            put(&mut m, "color", col.map(Value::from));
            Value::Object(m)
        });
    let state = opt(prop_oneof![
        text(),
        Just(".mailform/state.json".to_string())
    ])
    .prop_map(|path| {
        let mut m = Map::new();
        m.insert("backend".into(), "file".into());
        put(&mut m, "path", path.map(Value::from));
        Value::Object(m)
    });
    (
        opt(settings),
        opt(state),
        proptest::collection::btree_map(
            one_of(&["google", "microsoft", "lab", "other"]),
            provider(),
            0..3,
        ),
        proptest::collection::btree_map("[a-z0-9 ._-]{0,10}", asset(), 0..4),
    )
        .prop_map(|(settings, state, providers, assets)| {
            let mut m = Map::new();
            m.insert("version".into(), 1.into());
            put(&mut m, "settings", settings);
            put(&mut m, "state", state);
            m.insert("providers".into(), json!(providers));
            m.insert("assets".into(), json!(assets));
            Value::Object(m)
        })
}
