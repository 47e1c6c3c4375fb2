//! The committed schemas match the types, and the example obeys its schema.
//! Regenerate with: `UPDATE_SCHEMAS=1 cargo test --test mailform schemas`.

use mailform::cli::SchemaKind;
use mailform::schema;

use crate::support::{Mailform, root};

#[test]
fn committed_schemas_are_up_to_date() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (arg, kind) in [
        ("config", SchemaKind::Config),
        ("state", SchemaKind::State),
        ("plan", SchemaKind::Plan),
        ("diagnostics", SchemaKind::Diagnostics),
        ("apply", SchemaKind::Apply),
    ] {
        let fresh = Mailform::new(&root()).run(["schema", arg]).ok().stdout;
        let file = schema::file_name(kind);
        if update {
            std::fs::write(root().join(file), &fresh).unwrap();
        }
        if std::fs::read_to_string(root().join(file)).unwrap_or_default() != fresh {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale: {}; regenerate with: UPDATE_SCHEMAS=1 cargo test --test mailform schemas",
        stale.join(", ")
    );
}

pub fn validator(file: &str) -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schemas").join(file)).unwrap())
            .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn toml_as_json(text: &str) -> serde_json::Value {
    serde_json::to_value(toml::from_str::<toml::Table>(text).unwrap()).unwrap()
}

#[test]
fn the_example_obeys_the_config_schema() {
    let v = validator("assets.schema.json");
    let example =
        toml_as_json(&std::fs::read_to_string(root().join("assets.toml.example")).unwrap());
    let errors: Vec<String> = v
        .iter_errors(&example)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        std::fs::read_to_string(root().join("assets.toml.example"))
            .unwrap()
            .starts_with("#:schema ./schemas/assets.schema.json\n")
    );
}

#[test]
fn the_config_schema_rejects_what_mailform_rejects() {
    let v = validator("assets.schema.json");
    for bad in [
        "version = 1\n[assets.a]\nemail = \"a@b.c\"\nprovider = \"p\"\nemial = \"x\"\n",
        "version = 1\n[providers.p]\nclient_secret = \"literal\"\n",
        "version = 1\n[assets.a]\nemail = \"a@b.c\"\nprovider = \"p\"\nsmtp = { security = \"plain\" }\n",
        "version = 2\n",
    ] {
        assert!(!v.is_valid(&toml_as_json(bad)), "schema accepted:\n{bad}");
    }
}

#[test]
fn plan_and_state_json_obey_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    Mailform::new(dir.path()).run(["init"]).ok();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".mailform/state.json")).unwrap(),
    )
    .unwrap();
    assert!(validator("state.schema.json").is_valid(&state));
    let run = Mailform::new(dir.path())
        .env("GOOGLE_CLIENT_SECRET", "x")
        .env("MICROSOFT_CLIENT_SECRET", "y")
        .run(["plan", "--offline", "--json"])
        .ok();
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let v = validator("plan.schema.json");
    let errors: Vec<String> = v.iter_errors(&plan).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Every good file obeys the schema and passes `validate --strict`, so
/// editors never flag what mailform accepts.
#[test]
fn every_good_config_obeys_the_schema_and_passes_validate() {
    let v = validator("assets.schema.json");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root().join("tests/good"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.push(root().join("assets.toml.example"));
    assert!(files.len() >= 3);
    crate::support::private_fixtures();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let errors: Vec<String> = v
            .iter_errors(&toml_as_json(&text))
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        Mailform::new(&root())
            .env("GOOGLE_CLIENT_SECRET", "x")
            .env("MICROSOFT_CLIENT_SECRET", "y")
            .run([
                "-c".as_ref(),
                file.as_os_str(),
                "validate".as_ref(),
                "--strict".as_ref(),
            ])
            .ok();
    }
}

#[test]
fn json_diagnostics_name_the_place_and_obey_their_schema() {
    let v = validator("diagnostics.schema.json");
    let bad = root().join("tests/bad");
    let run = Mailform::new(&bad)
        .run(["-c", "many_errors_at_once.toml", "validate", "--json"])
        .code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(v.is_valid(&doc), "{doc}");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"], 4);
    let first = &doc["diagnostics"][0];
    assert_eq!(
        (first["line"].clone(), first["column"].clone()),
        (4.into(), 13.into())
    );
    assert_eq!(first["severity"], "error");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("token_url uses http://")
    );
    // The human words still go to stderr.
    assert!(run.stderr.contains("--> many_errors_at_once.toml:4:13"));

    // A good file: ok, with its warnings.
    let run = Mailform::new(&root())
        .run(["-c", "assets.toml.example", "validate", "--json"])
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(v.is_valid(&doc) && doc["ok"] == true, "{doc}");

    // plan --json on a bad config, and on a config whose state is corrupt.
    let run = Mailform::new(&bad)
        .run(["-c", "bad_email.toml", "plan", "--offline", "--json"])
        .code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        v.is_valid(&doc) && doc["diagnostics"][0]["line"].is_u64(),
        "{doc}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/good/minimal_custom_provider.toml"),
        dir.path().join("assets.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join(".mailform")).unwrap();
    std::fs::write(dir.path().join(".mailform/state.json"), "{ nope").unwrap();
    let run = Mailform::new(dir.path())
        .run(["plan", "--offline", "--json"])
        .code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(v.is_valid(&doc), "{doc}");
    assert!(
        doc["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is not valid"),
        "{doc}"
    );
    assert!(doc["diagnostics"][0]["line"].is_null());
}
