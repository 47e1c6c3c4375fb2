//! The commands, end to end through the real binary.

use std::path::Path;
use std::time::Duration;

use mailform::config;
use mailform::secret::Secret;
use mailform::state::crypto::Key;
use mailform::state::{State, Tokens};
use mailform::store::{FileStore, StateStore as _};

use crate::support::fixtures::applied_state;
use crate::support::{Mailform, Run, project, root};

const ACCESS: &str = "access-token-SENTINEL";
const REFRESH: &str = "refresh-token-SENTINEL";
const CLIENT_SECRET: &str = "client-secret-SENTINEL";

const CONFIG: &str = concat!(
    crate::support::offline_lab!(revocation),
    r#"
[assets.support]
email = "support@example.com"
provider = "lab"
labels = { team = "care" }

[assets.billing]
email = "billing@example.com"
provider = "lab"
"#
);

fn mf(dir: &Path) -> Mailform {
    Mailform::new(dir).env("LAB_CLIENT_SECRET", CLIENT_SECRET)
}

/// Writes a key and a state in which every asset of `text` is applied, with
/// tokens that contain the sentinels.
fn applied(dir: &Path, text: &str) -> (Key, State) {
    applied_state(dir, text, |asset| Tokens {
        access_token: Secret::new(format!("{ACCESS}-{}", asset.name)),
        refresh_token: Some(Secret::new(format!("{REFRESH}-{}", asset.name))),
    })
}

#[track_caller]
fn assert_no_secrets(run: &Run) {
    for s in [ACCESS, REFRESH, CLIENT_SECRET] {
        assert!(!run.all().contains(s), "{s} leaked:\n{}", run.all());
    }
}

#[test]
fn version_and_help_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let run = Mailform::new(dir.path()).run(["--version"]).ok();
    assert!(run.stdout.starts_with("mailform "), "{}", run.stdout);
    Mailform::new(dir.path()).run(["--help"]).ok();
}

#[test]
fn usage_errors_exit_one_never_two() {
    let dir = tempfile::tempdir().unwrap();
    let run = Mailform::new(dir.path())
        .run(["plan", "--no-such-flag"])
        .code(1);
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);
}

#[test]
fn init_creates_config_state_key_and_gitignore_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let run = Mailform::new(dir.path()).run(["init"]).ok();
    assert!(
        run.stderr.contains("Created the token-encryption key"),
        "{}",
        run.stderr
    );
    let p = dir.path();
    assert_eq!(
        std::fs::read_to_string(p.join("assets.toml")).unwrap(),
        std::fs::read_to_string(root().join("assets.toml.example")).unwrap()
    );
    assert!(p.join("schemas/assets.schema.json").is_file());
    assert!(
        std::fs::read_to_string(p.join(".gitignore"))
            .unwrap()
            .lines()
            .any(|l| l == "/.mailform/")
    );
    let key_text = std::fs::read_to_string(p.join(".mailform/key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in [".mailform/key", ".mailform/state.json"] {
            assert_eq!(
                std::fs::metadata(p.join(f)).unwrap().permissions().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
    }
    let state = crate::support::fixtures::stored_state(p);
    assert_eq!(state.serial, 1);

    let again = Mailform::new(p).run(["init"]).ok();
    assert!(again.stderr.contains("Kept"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(p.join(".mailform/key")).unwrap(),
        key_text
    );
    let gitignore = std::fs::read_to_string(p.join(".gitignore")).unwrap();
    assert_eq!(gitignore.matches(".mailform/").count(), 1);
    let after = crate::support::fixtures::stored_state(p);
    assert_eq!((after.lineage, after.serial), (state.lineage, 1));
    // The key never appears in what init prints.
    assert!(!again.all().contains(key_text.trim()) && !run.all().contains(key_text.trim()));
}

#[test]
fn the_example_passes_strict_validation() {
    let run = Mailform::new(&root())
        .env("GOOGLE_CLIENT_SECRET", "x")
        .env("MICROSOFT_CLIENT_SECRET", "y")
        .run(["-c", "assets.toml.example", "validate", "--strict"])
        .ok();
    assert_eq!(run.stderr, "assets.toml.example: ok\n");
    // Unset secrets are notes: validate passes (CI validates without secrets)
    // and says what plan will need.
    let run = Mailform::new(&root())
        .run(["-c", "assets.toml.example", "validate", "--strict"])
        .ok();
    assert!(
        run.stderr.contains("note: provider `google`: client_secret: environment variable GOOGLE_CLIENT_SECRET is not set; plan and apply will need it"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with("assets.toml.example: ok\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn warnings_pass_validate_but_fail_strict() {
    let text = CONFIG.replace("host = \"127.0.0.1\"", "host = \"smtp.example.com\"");
    let dir = project(&text);
    let run = Mailform::new(dir.path()).run(["validate"]).ok();
    assert!(
        run.stderr
            .contains("warning: asset `billing`: smtp.port 2587 is not an SMTP submission port"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("= help: did you mean 587 (STARTTLS) or 465 (TLS)?"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with("assets.toml: ok, 2 warnings\n"),
        "{}",
        run.stderr
    );
    let strict = Mailform::new(dir.path())
        .run(["validate", "--strict"])
        .code(1);
    assert!(
        strict
            .stderr
            .ends_with("error: assets.toml has 2 warnings and --strict is set\n"),
        "{}",
        strict.stderr
    );
}

#[test]
fn mailform_config_variable_names_the_file() {
    let dir = project(CONFIG);
    std::fs::rename(dir.path().join("assets.toml"), dir.path().join("mail.toml")).unwrap();
    Mailform::new(dir.path())
        .env("MAILFORM_CONFIG", "mail.toml")
        .run(["validate"])
        .ok();
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(
        run.stderr.contains(
            "no assets.toml in this folder: run `mailform init` to create one from the example, or name your file with -c PATH"
        ),
        "{}",
        run.stderr
    );
    let run = Mailform::new(dir.path())
        .env("MAILFORM_CONFIG", "nope.toml")
        .run(["validate"])
        .code(1);
    assert!(
        run.stderr
            .contains("nope.toml does not exist (the path comes from MAILFORM_CONFIG)"),
        "{}",
        run.stderr
    );
    let run = Mailform::new(dir.path())
        .run(["-c", "nope.toml", "validate"])
        .code(1);
    assert!(
        run.stderr
            .contains("nope.toml does not exist: check the -c path"),
        "{}",
        run.stderr
    );
}

#[test]
fn offline_plan_of_a_fresh_project_creates_everything() {
    let dir = project(CONFIG);
    let run = mf(dir.path()).run(["plan", "--offline"]).ok();
    assert!(
        run.stdout
            .contains("+ billing  create      billing@example.com (lab): consent needed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Plan: 2 to create, 0 to update, 0 to re-consent, 0 to delete, 0 unchanged.")
    );
    mf(dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    // Planning wrote nothing.
    assert!(!dir.path().join(".mailform").exists());
}

#[test]
fn a_live_plan_with_nothing_to_refresh_asks_no_one_and_writes_nothing() {
    let dir = project(CONFIG);
    let run = mf(dir.path()).run(["plan", "--detailed-exitcode"]).code(2);
    assert!(run.stdout.contains("+ support  create"), "{}", run.stdout);
    assert!(!dir.path().join(".mailform").exists());
    // Nothing applied, so no login to prove: still nothing written.
    let run = mf(dir.path()).run(["plan", "--check-smtp"]).ok();
    assert!(
        run.stderr
            .contains("SMTP logins: 0 accepted, 0 refused, 0 could not be checked."),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join(".mailform").exists());
}

#[test]
fn plan_against_applied_state_reports_no_changes_then_drift() {
    let dir = project(CONFIG);
    applied(dir.path(), CONFIG);
    let run = mf(dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
    assert!(
        run.stdout
            .starts_with("No changes. 2 assets match the configuration."),
        "{}",
        run.stdout
    );
    assert_no_secrets(&run);

    std::fs::write(
        dir.path().join("assets.toml"),
        CONFIG
            .replace("\"care\"", "\"sales\"")
            .replace("client_id = \"mailform-test\"", "client_id = \"other\""),
    )
    .unwrap();
    let run = mf(dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert!(
        run.stdout
            .contains("! support  re-consent  support@example.com (lab): client_id changed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("client_id: \"mailform-test\" → \"other\"  (forces re-consent)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("        - team = \"care\"\n        + team = \"sales\""),
        "{}",
        run.stdout
    );
    assert_no_secrets(&run);
}

#[test]
fn json_plan_and_saved_plan_record_lineage_and_serial() {
    let dir = project(CONFIG);
    let (_key, state) = applied(dir.path(), CONFIG);
    std::fs::write(
        dir.path().join("assets.toml"),
        CONFIG.replace("\"care\"", "\"sales\""),
    )
    .unwrap();
    let run = mf(dir.path())
        .run(["plan", "--offline", "--json", "--out", "saved.json"])
        .ok();
    assert_no_secrets(&run);
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("saved.json")).unwrap())
            .unwrap();
    assert_eq!(printed, saved);
    assert_eq!(saved["format_version"], 1);
    assert_eq!(saved["lineage"], state.lineage.to_string());
    assert_eq!(saved["serial"], 1);
    assert_eq!(saved["summary"]["update"], 1);
    let change = &saved["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["asset"] == "support")
        .unwrap();
    assert_eq!(change["action"], "update");
    assert_eq!(change["fields"][0]["field"], "labels");
    assert!(
        !std::fs::read_to_string(dir.path().join("saved.json"))
            .unwrap()
            .contains("SENTINEL")
    );
}

#[test]
fn target_limits_the_plan_and_unknown_targets_are_named() {
    let dir = project(CONFIG);
    let run = mf(dir.path())
        .run(["plan", "--offline", "--target", "billing"])
        .ok();
    assert!(
        run.stdout.contains("billing") && !run.stdout.contains("support"),
        "{}",
        run.stdout
    );
    let run = mf(dir.path())
        .run(["plan", "--offline", "--target", "suport"])
        .code(1);
    assert!(
        run.stderr
            .contains("no asset named `suport` in assets.toml; did you mean `support`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_wrong_key_is_a_clear_error() {
    let dir = project(CONFIG);
    applied(dir.path(), CONFIG);
    let (_other, text) = Key::generate();
    let run = mf(dir.path())
        .env("MAILFORM_KEY", &text)
        .run(["plan", "--offline"])
        .code(1);
    assert!(
        run.stderr
            .contains("is not the one this state was written with"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains(text.as_str()));
    let run = mf(dir.path())
        .env("MAILFORM_KEY", "not-a-key")
        .run(["plan", "--offline"])
        .code(1);
    assert!(
        run.stderr
            .contains("MAILFORM_KEY: the key is not base64 of 32 bytes"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(dir.path().join(".mailform/key")).unwrap();
    let run = mf(dir.path()).run(["plan", "--offline"]).code(1);
    assert!(
        run.stderr
            .contains("the state holds tokens but there is no key"),
        "{}",
        run.stderr
    );
}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = project(CONFIG);
    applied(dir.path(), CONFIG);
    let key = dir.path().join(".mailform/key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = mf(dir.path()).run(["plan", "--offline"]).code(1);
    assert!(
        run.stderr
            .contains("is readable by others (mode 644); run: chmod 600"),
        "{}",
        run.stderr
    );
}

#[test]
fn corrupt_or_newer_state_is_refused_and_left_untouched() {
    let dir = project(CONFIG);
    std::fs::create_dir_all(dir.path().join(".mailform")).unwrap();
    let state = dir.path().join(".mailform/state.json");
    for (text, words) in [
        (
            "{\"format_version\": 1, \"lineage\": ",
            "is not valid: EOF while parsing",
        ),
        (
            "{\"format_version\": 3, \"lineage\": \"x\"}",
            "has format version 3, newer than this mailform reads (2)",
        ),
    ] {
        std::fs::write(&state, text).unwrap();
        let run = mf(dir.path()).run(["plan", "--offline"]).code(1);
        assert!(run.stderr.contains(words), "{}", run.stderr);
        assert!(run.stderr.contains("left untouched"), "{}", run.stderr);
        Mailform::new(dir.path()).run(["init"]).code(1);
        assert_eq!(std::fs::read_to_string(&state).unwrap(), text);
    }
}

#[test]
fn show_redacts_tokens_in_both_forms() {
    let dir = project(CONFIG);
    applied(dir.path(), CONFIG);
    let run = mf(dir.path()).run(["show"]).ok();
    assert!(
        run.stdout
            .contains("token        access [redacted], refresh [redacted]"),
        "{}",
        run.stdout
    );
    assert_no_secrets(&run);
    let run = mf(dir.path()).run(["show", "support", "--json"]).ok();
    assert_no_secrets(&run);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        doc["assets"]["support"]["token"]["access_token"],
        "[redacted]"
    );
    assert!(doc["assets"].get("billing").is_none());
    assert!(!run.stdout.contains("ciphertext"));
    mf(dir.path()).run(["show", "nobody"]).code(1);
}

#[test]
fn export_prints_the_form_fields_but_never_the_secret() {
    let dir = project(CONFIG);
    let run = mf(dir.path())
        .run(["export", "support", "--format", "webex"])
        .ok();
    assert_no_secrets(&run);
    for line in [
        "Asset name:          support",
        "Email ID:            support@example.com",
        "Authentication type: OAuth 2.0",
        "SMTP server:         127.0.0.1",
        "Port:                2587",
        "Client ID:           mailform-test",
        "Call back URL:       (shown by Webex Connect on this form",
        "Scope:               mail offline_access",
        "Access token URL:    https://127.0.0.1:9/token",
        "Refresh token URL:   https://127.0.0.1:9/token",
        "Security:            TLS (STARTTLS)",
        "Client secret:       (not printed: the value of environment variable LAB_CLIENT_SECRET)",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing {line:?} in\n{}",
            run.stdout
        );
    }
    // The form's order, field for field.
    let labels: Vec<&str> = run
        .stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(
        labels,
        [
            "Asset name",
            "Email ID",
            "Forwarding address",
            "Authentication type",
            "SMTP server",
            "Port",
            "Client ID",
            "Call back URL",
            "Authorization URL",
            "Scope",
            "Access token URL",
            "Refresh token URL",
            "Username",
            "Security",
            "Client secret"
        ]
    );
    // The same as JSON, keyed by snake_case label.
    let json = mf(dir.path())
        .run(["export", "support", "--format", "json"])
        .ok();
    assert_no_secrets(&json);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["asset_name"], "support");
    assert_eq!(doc["refresh_token_url"], "https://127.0.0.1:9/token");
    assert_eq!(doc["security"], "TLS (STARTTLS)");
    assert!(doc["notes"][0].as_str().unwrap().contains("STARTTLS"));
}

#[test]
fn a_credentials_file_secret_is_never_printed() {
    let text = "version = 1\n[providers.google]\ncredentials_file = \"client.json\"\nredirect_uri = \"http://127.0.0.1:8765/callback\"\n[assets.support]\nemail = \"support@example.com\"\nprovider = \"google\"\n";
    let dir = project(text);
    std::fs::copy(
        root().join("tests/bad/fixtures/installed_client.json"),
        dir.path().join("client.json"),
    )
    .unwrap();
    let secret = "FAKE-test-fixture-secret";
    for args in [
        vec!["validate"],
        vec!["plan", "--offline"],
        vec!["plan", "--offline", "--json"],
        vec!["export", "support"],
    ] {
        let run = Mailform::new(dir.path()).run(&args).ok();
        assert!(
            !run.all().contains(secret),
            "{args:?} printed the secret:\n{}",
            run.all()
        );
    }
    let loaded = config::load(&dir.path().join("assets.toml")).unwrap();
    let debug = format!("{loaded:?}");
    assert!(
        debug.contains("[redacted]") && !debug.contains(secret),
        "Debug shows the secret"
    );
    let run = Mailform::new(dir.path()).run(["export", "support"]).ok();
    assert!(
        run.stdout
            .contains("Client ID:           1234.apps.googleusercontent.com"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("(not printed: \"client_secret\" in ./client.json)"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_waiting_command_names_the_live_holder_and_force_unlock_never_breaks_it() {
    let dir = project(CONFIG);
    let store = FileStore::new(dir.path().join(".mailform/state.json"));
    let held = store.lock("apply", Duration::ZERO, &mut |_| {}).unwrap();
    let id = held.info().id.clone();

    let run = Mailform::new(dir.path())
        .run(["init", "--lock-timeout", "200ms"])
        .code(1);
    assert!(
        run.stderr
            .contains(&format!("the state is locked by {}", held.info().who)),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("which is still running")
            && run
                .stderr
                .contains("a lock left by a mailform that died is taken over automatically")
            && !run.stderr.contains("force-unlock"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Waiting for the state lock held by"),
        "{}",
        run.stderr
    );

    // The holder is alive: force-unlock refuses, even with --force.
    let run = Mailform::new(dir.path())
        .run(["force-unlock", &id, "--force"])
        .code(1);
    assert!(
        run.stderr
            .contains(&format!("lock ID {id} is held by a running mailform"))
            && run.stderr.contains("it was not removed"),
        "{}",
        run.stderr
    );
    assert!(store.lock_path().exists());
    drop(held);
    let run = Mailform::new(dir.path()).run(["force-unlock", &id]).code(1);
    assert!(run.stderr.contains("no lock is held"), "{}", run.stderr);
}

#[test]
fn a_dead_holders_lock_is_taken_over_or_removed_with_confirmation() {
    let dir = project(CONFIG);
    Mailform::new(dir.path()).run(["init"]).ok();
    // What a mailform killed mid-apply leaves: a lock file with its info,
    // and no OS lock (the kernel released it with the process).
    let dead = mailform::store::LockInfo::new("apply");
    let lock = dir.path().join(".mailform/state.json.lock");
    std::fs::write(&lock, serde_json::to_vec(&dead).unwrap()).unwrap();

    let run = Mailform::new(dir.path())
        .run(["force-unlock", "wrong-id", "--force"])
        .code(1);
    assert!(
        run.stderr.contains("does not match the lock held"),
        "{}",
        run.stderr
    );
    // Not on a terminal and no --force: it asks for --force, removes nothing.
    let run = Mailform::new(dir.path())
        .run(["force-unlock", &dead.id])
        .code(1);
    assert!(run.stderr.contains("pass --force"), "{}", run.stderr);
    assert!(lock.exists());
    let run = Mailform::new(dir.path())
        .run(["force-unlock", &dead.id, "--force"])
        .ok();
    assert!(
        run.stderr.contains(&format!("Removed lock {}", dead.id)),
        "{}",
        run.stderr
    );
    assert!(!lock.exists());

    // Or the next command simply takes it over, and says so.
    std::fs::write(&lock, serde_json::to_vec(&dead).unwrap()).unwrap();
    let run = Mailform::new(dir.path()).run(["init"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "Took over the state lock left by {} (apply, pid {}, lock ID {}), which is no longer running.",
            dead.who, dead.pid, dead.id
        )),
        "{}",
        run.stderr
    );
    assert!(!lock.exists(), "released at the end");
}

#[test]
fn bad_settings_from_the_environment_are_named() {
    let dir = project(CONFIG);
    let run = mf(dir.path())
        .env("MAILFORM_LOCK_TIMEOUT", "soon")
        .run(["show"])
        .code(1);
    assert!(
        run.stderr.contains(
            "invalid environment variable MAILFORM_LOCK_TIMEOUT: `soon` is not a duration"
        ),
        "{}",
        run.stderr
    );
    let run = mf(dir.path())
        .run(["show", "--lock-timeout", "later"])
        .code(1);
    assert!(
        run.stderr
            .contains("invalid --lock-timeout: `later` is not a duration"),
        "{}",
        run.stderr
    );
    let run = mf(dir.path())
        .env("MAILFORM_PARALLELISM", "0")
        .run(["show"])
        .code(1);
    assert!(
        run.stderr.contains(
            "invalid environment variable MAILFORM_PARALLELISM: must be at least 1 (default 10)"
        ),
        "{}",
        run.stderr
    );
    // figment's words are translated: which variable, what is wrong, what is allowed.
    let run = mf(dir.path())
        .env("MAILFORM_COLOR", "bogus")
        .run(["show"])
        .code(1);
    assert!(
        run.stderr.ends_with(
            "error: invalid environment variable MAILFORM_COLOR: `bogus` is not one of auto, always, never\n"
        ),
        "{}",
        run.stderr
    );
    let run = mf(dir.path())
        .env("MAILFORM_PARALLELISM", "many")
        .run(["show"])
        .code(1);
    assert!(
        run.stderr.contains(
            "invalid environment variable MAILFORM_PARALLELISM: expected a whole number from 1 up, found string \"many\""
        ),
        "{}",
        run.stderr
    );
    // --parallelism outranks the environment (and the file), checked the
    // same way, in the same words.
    let run = mf(dir.path())
        .env("MAILFORM_PARALLELISM", "4")
        .run(["plan", "--offline", "--parallelism", "0"])
        .code(1);
    assert!(
        run.stderr
            .contains("invalid --parallelism: must be at least 1 (default 10)"),
        "{}",
        run.stderr
    );
    mf(dir.path())
        .env("MAILFORM_PARALLELISM", "0")
        .run(["plan", "--offline", "--parallelism", "3"])
        .ok();
    let run = mf(dir.path()).run(["plan", "-parallelism=3"]).code(1);
    assert!(run.stderr.contains("--parallelism=3"), "{}", run.stderr);
    // A bare number is seconds, from the environment and from the flag.
    mf(dir.path())
        .env("MAILFORM_LOCK_TIMEOUT", "1")
        .run(["show"])
        .ok();
    mf(dir.path()).run(["show", "--lock-timeout", "1"]).ok();
}

#[test]
fn colour_only_when_asked_and_never_with_no_color() {
    let dir = project(CONFIG);
    let plain = mf(dir.path()).run(["plan", "--offline"]).ok();
    assert!(!plain.stdout.contains('\x1b'));
    let coloured = mf(dir.path())
        .run(["plan", "--offline", "--color", "always"])
        .ok();
    assert!(coloured.stdout.contains("\x1b["), "{}", coloured.stdout);
    let env = Mailform::new(dir.path())
        .env("LAB_CLIENT_SECRET", "x")
        .env("MAILFORM_COLOR", "always")
        .run(["plan", "--offline"])
        .ok();
    assert!(env.stdout.contains("\x1b["));
}

#[test]
fn completions_and_schemas_print() {
    let dir = tempfile::tempdir().unwrap();
    let run = Mailform::new(dir.path()).run(["completions", "bash"]).ok();
    assert!(run.stdout.contains("mailform"));
    for kind in ["config", "state", "plan"] {
        let run = Mailform::new(dir.path()).run(["schema", kind]).ok();
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap();
    }
}
