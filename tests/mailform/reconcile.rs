//! The reconciler at scale and under faults, through the real binary: saved
//! plans, `--reconsent`, `apply --json`, O(N) state writes, Ctrl-C and
//! `kill -9` in the middle of an apply (with the real OAuth server and the
//! headless person consenting).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use mailform::secret::Secret;
use mailform::state::{State, Tokens};
use mailform::store::{FileStore, StateStore as _};
use serde_json::Value;

use crate::support::fixtures::applied_state;
use crate::support::peers::{Peers, peers};
use crate::support::{Mailform, Run, lab, wait};

const SECRET: &str = "client-secret-SENTINEL";

/// A provider nobody answers at (the tests here that use it never call it).
fn offline_config(n: usize, label: &str) -> String {
    let mut text = crate::support::offline_lab!().to_string();
    for i in 0..n {
        let _ = write!(
            text,
            "\n[assets.box-{i:03}]\nemail = \"box-{i:03}@example.com\"\nprovider = \"lab\"\nlabels = {{ team = \"{label}\" }}\n"
        );
    }
    text
}

/// `n` assets applied with access tokens only (so no check calls out).
fn offline_project(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = offline_config(n, "care");
    std::fs::write(dir.path().join("assets.toml"), &text).unwrap();
    applied_state(dir.path(), &text, |a| Tokens {
        access_token: Secret::new(format!("access-token-SENTINEL-{}", a.name)),
        refresh_token: None,
    });
    dir
}

fn mf(dir: &Path) -> Mailform {
    Mailform::new(dir).env("LAB_CLIENT_SECRET", SECRET)
}

fn state(dir: &Path) -> State {
    crate::support::fixtures::stored_state(dir)
}

#[track_caller]
fn assert_no_secrets(run: &Run) {
    for s in ["access-token-SENTINEL", SECRET] {
        assert!(!run.all().contains(s), "{s} leaked:\n{}", run.all());
    }
}

#[test]
fn a_saved_plan_is_applied_exactly_and_a_stale_one_refused() {
    let dir = offline_project(2);
    std::fs::write(dir.path().join("assets.toml"), offline_config(2, "sales")).unwrap();
    let run = mf(dir.path())
        .run(["plan", "--offline", "--out", "plan.json"])
        .ok();
    assert!(run.stdout.contains("~ box-000  update"), "{}", run.stdout);
    let plan = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    assert!(!plan.contains("SENTINEL"), "a secret is in the plan file");

    // Applied without asking (no terminal, no --auto-approve) and without planning again.
    let run = mf(dir.path()).run(["apply", "plan.json", "--json"]).ok();
    assert_no_secrets(&run);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let errors: Vec<String> = crate::schemas::validator("apply.schema.json")
        .iter_errors(&doc)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(doc["summary"]["updated"], 2, "{doc}");
    assert_eq!(doc["plan_file"], "plan.json");
    assert_eq!(doc["assets"][0]["outcome"], "applied");
    assert!(doc["assets"][0]["duration_ms"].is_u64(), "{doc}");
    assert_eq!(
        state(dir.path()).assets["box-001"].applied.labels["team"],
        "sales"
    );

    // The same file again: the state moved on.
    let run = mf(dir.path()).run(["apply", "plan.json"]).code(1);
    let serial = state(dir.path()).serial;
    let made_at = serde_json::from_str::<Value>(&plan).unwrap()["serial"]
        .as_u64()
        .unwrap();
    assert!(
        run.stderr.contains(&format!(
            "saved plan is stale: state serial is {serial}, the plan was made at {made_at} — run mailform plan again"
        )),
        "{}",
        run.stderr
    );

    // A plan for a config that changed since.
    mf(dir.path())
        .run(["plan", "--offline", "--out", "plan.json"])
        .ok();
    std::fs::write(dir.path().join("assets.toml"), offline_config(2, "ops")).unwrap();
    let run = mf(dir.path()).run(["apply", "plan.json"]).code(1);
    assert!(
        run.stderr
            .contains("assets.toml changed since the plan was made — run mailform plan again"),
        "{}",
        run.stderr
    );

    // Edited, truncated or foreign files say so without quoting them.
    let good = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    for (bad, why) in [
        (
            good.replace("\"no_op\": 2", "\"no_op\": 5"),
            "its summary does not match its changes",
        ),
        (
            good[..good.len() / 2].to_string(),
            "it is not a mailform plan (cut short at line",
        ),
        (
            "{\"format_version\": 9}".to_string(),
            "its format_version is 9; this mailform reads 1",
        ),
        (
            "SENTINEL-not-json".to_string(),
            "it is not a mailform plan (invalid JSON at line 1, column 1)",
        ),
    ] {
        std::fs::write(dir.path().join("bad.json"), &bad).unwrap();
        let run = mf(dir.path()).run(["apply", "bad.json"]).code(1);
        assert!(run.stderr.contains(why), "{why}: {}", run.stderr);
        assert!(!run.stderr.contains("SENTINEL"), "{}", run.stderr);
    }
    // An edited action, with its summary edited to match, is still refused:
    // a configured mailbox cannot be deleted by a file.
    let forged = good
        .replacen("\"action\": \"no_op\"", "\"action\": \"delete\"", 1)
        .replace("\"delete\": 0", "\"delete\": 1")
        .replace("\"no_op\": 2", "\"no_op\": 1");
    std::fs::write(dir.path().join("plan.json"), &forged).unwrap();
    std::fs::write(dir.path().join("assets.toml"), offline_config(2, "sales")).unwrap();
    let before = state(dir.path());
    let run = mf(dir.path()).run(["apply", "plan.json"]).code(1);
    assert!(
        run.stderr.contains("it says Delete for `box-000`, but the config and state allow only NoOp (was it edited?)"),
        "{}",
        run.stderr
    );
    assert_eq!(state(dir.path()).assets, before.assets);
    // A saved plan already says what to apply.
    let run = mf(dir.path())
        .run(["apply", "plan.json", "--target", "box-000"])
        .code(1);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

#[test]
fn a_saved_plan_cannot_skip_a_reconsent_the_config_requires() {
    let dir = offline_project(1);
    // Another OAuth client: the stored tokens are bound to the old one.
    let text = offline_config(1, "care").replace(
        "client_id = \"mailform-test\"",
        "client_id = \"another-client\"",
    );
    std::fs::write(dir.path().join("assets.toml"), &text).unwrap();
    let saved = mf(dir.path())
        .run(["plan", "--offline", "--out", "plan.json"])
        .ok();
    assert!(saved.stdout.contains("re-consent"), "{}", saved.stdout);
    let good = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    // Edited to a plain update (summary to match): the new client_id would
    // be written over tokens made for the old one.
    let forged = good
        .replace("\"action\": \"reconsent\"", "\"action\": \"update\"")
        .replace("\"reconsent\": 1", "\"reconsent\": 0")
        .replace("\"update\": 0", "\"update\": 1");
    assert_ne!(forged, good);
    std::fs::write(dir.path().join("plan.json"), &forged).unwrap();
    let before = state(dir.path());
    let run = mf(dir.path()).run(["apply", "plan.json"]).code(1);
    assert!(
        run.stderr.contains("it says Update for `box-000`, but the config and state allow only Reconsent (was it edited?)"),
        "{}",
        run.stderr
    );
    assert_eq!(state(dir.path()).assets, before.assets);
    assert_no_secrets(&run);
}

#[test]
fn state_bytes_written_grow_linearly_with_the_assets() {
    let bytes = |n: usize| {
        let dir = offline_project(n);
        std::fs::write(dir.path().join("assets.toml"), offline_config(n, "sales")).unwrap();
        let run = mf(dir.path())
            .run(["apply", "--auto-approve", "--json"])
            .ok();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["summary"]["updated"], n, "{doc}");
        (
            doc["state_writes"]["count"].as_u64().unwrap(),
            doc["state_writes"]["bytes"].as_u64().unwrap(),
        )
    };
    let (small_writes, small) = bytes(20);
    let (large_writes, large) = bytes(200);
    // One journal line per asset, one whole state at the end: 10× the
    // assets is about 10× the bytes (rewriting the state after every asset
    // would be 100×).
    println!(
        "state writes: 20 assets {small_writes} writes {small} bytes; 200 assets {large_writes} writes {large} bytes"
    );
    assert_eq!((small_writes, large_writes), (21, 201));
    assert!(
        large < small * 14,
        "20 assets: {small} bytes, 200 assets: {large} bytes"
    );
}

#[test]
fn plan_reconsent_marks_a_healthy_asset() {
    let dir = offline_project(2);
    let run = mf(dir.path())
        .run([
            "plan",
            "--offline",
            "--reconsent",
            "box-001",
            "--detailed-exitcode",
        ])
        .code(2);
    assert!(
        run.stdout
            .contains("! box-001  re-consent  box-001@example.com (lab): consent again requested (--reconsent)"),
        "{}",
        run.stdout
    );
    let run = mf(dir.path())
        .run(["plan", "--offline", "--reconsent", "box-01"])
        .code(1);
    assert!(
        run.stderr.contains("did you mean `box-001`?"),
        "{}",
        run.stderr
    );
    // A re-consent the targets leave out would be planned away: refused.
    let run = mf(dir.path())
        .run([
            "plan",
            "--offline",
            "--target",
            "box-000",
            "--reconsent",
            "box-001",
        ])
        .code(1);
    assert!(
        run.stderr
            .contains("--reconsent box-001 is outside the --target list"),
        "{}",
        run.stderr
    );
    let run = mf(dir.path())
        .run(["apply", "--consent-timeout", "0s", "--auto-approve"])
        .code(1);
    assert!(
        run.stderr
            .contains("invalid --consent-timeout `0s`: it must be longer than 0s"),
        "{}",
        run.stderr
    );
}

// ---- against the real OAuth server -------------------------------------

/// The apply tests' config: the test provider, loopback consent on `port`.
fn lab_config(p: &Peers, port: u16, assets: &[(&str, &str)]) -> String {
    crate::apply::config_text(p, port, assets, "[\"mail\", \"offline_access\"]")
}

/// An apply of two mailboxes whose second owner never comes back, started
/// in the background; returns once the first one's tokens are stored.
#[allow(clippy::zombie_processes)] // reason: the caller signals the child and waits for it
fn apply_halfway(p: &Peers, dir: &Path) -> std::process::Child {
    let text = lab_config(
        p,
        crate::apply::free_port(),
        &[
            ("first", "alice@example.test"),
            ("second", "bob@example.test"),
        ],
    );
    std::fs::write(dir.join("assets.toml"), text).unwrap();
    // A state exists already, so the first consent is a journal line.
    lab(p, dir).run(["init"]).ok();
    let child = lab(p, dir)
        .env("CONSENT_SILENT_USERS", "bob@example.test")
        .spawn(["apply", "--auto-approve", "--consent-timeout", "2m"], dir);
    let started = Instant::now();
    loop {
        let stored = FileStore::new(dir.join(".mailform/state.json"))
            .load()
            .ok()
            .flatten()
            .is_some_and(|s| s.assets.get("first").is_some_and(|r| r.token.is_some()));
        if stored {
            return child;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the first consent never arrived: {}",
                std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_mid_apply_exits_130_with_state_consistent_and_the_lock_released() {
    let p = peers();
    let dir = tempfile::tempdir().unwrap();
    let mut child = apply_halfway(p, dir.path());
    let pid = child.id().to_string();
    // A second apply meanwhile waits for the lock, then fails naming the holder.
    let second = lab(p, dir.path())
        .run(["apply", "--auto-approve", "--lock-timeout", "1s"])
        .code(1);
    assert!(
        second.stderr.contains("Waiting for the state lock held by")
            && second.stderr.contains("(apply since ")
            && second.stderr.contains(&format!("pid {pid}, lock ID ")),
        "{}",
        second.stderr
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let code = wait(&mut child, Duration::from_secs(15));
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("mailform: interrupted"), "{stderr}");
    assert!(
        stderr.contains("interrupted: 1 of 2 changes were made and stored"),
        "{stderr}"
    );
    // The journal was folded in; the first consent stands, the second is still to do.
    assert!(!dir.path().join(".mailform/state.json.journal").exists());
    let plan = lab(p, dir.path()).run(["plan", "--offline"]).ok();
    assert!(plan.stdout.contains("+ second  create"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("first  "), "{}", plan.stdout);
    // The lock is free: a writer gets it at once, and finds no dead holder.
    let live = lab(p, dir.path()).run(["plan"]).ok();
    assert!(!live.stderr.contains("Took over"), "{}", live.stderr);
}

#[test]
fn kill_9_after_the_first_consent_loses_no_consent_and_the_lock_is_named() {
    let p = peers();
    let dir = tempfile::tempdir().unwrap();
    let mut child = apply_halfway(p, dir.path());
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    // The consent is in the journal, not yet folded in.
    assert!(dir.path().join(".mailform/state.json.journal").exists());
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".mailform/state.json")).unwrap())
            .unwrap();
    assert!(file["assets"].get("first").is_none(), "{file}");
    // The first consent is not asked for again.
    let plan = lab(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert!(plan.stdout.contains("+ second  create"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("Plan: 1 to create, 0 to update, 0 to re-consent, 0 to delete, 1 unchanged."),
        "{}",
        plan.stdout
    );
    // The dead apply's lock is named, with the ID force-unlock takes; the
    // next writer takes it over.
    let lock: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(".mailform/state.json.lock")).unwrap(),
    )
    .unwrap();
    let id = lock["id"].as_str().unwrap();
    // Saving a plan folds the journal first (taking the lock over), so the
    // plan's serial is the folded state's and the plan applies as it is.
    let saved = lab(p, dir.path())
        .run(["plan", "--offline", "--out", "p.json"])
        .ok();
    assert!(
        saved.stderr.contains(&format!(
            "Took over the state lock left by {} (apply, pid {}, lock ID {id}), which is no longer running.",
            lock["who"].as_str().unwrap(),
            child.id()
        )),
        "{}",
        saved.stderr
    );
    assert!(!dir.path().join(".mailform/state.json.journal").exists());
    let run = lab(p, dir.path()).run(["apply", "p.json"]).ok();
    assert!(run.stdout.contains("1 created"), "{}", run.all());
    let state = state(dir.path());
    assert!(state.assets["first"].token.is_some() && state.assets["second"].token.is_some());
}

#[test]
fn apply_reconsent_consents_again_for_a_healthy_asset() {
    let p = peers();
    let dir = tempfile::tempdir().unwrap();
    let text = lab_config(
        p,
        crate::apply::free_port(),
        &[("support", "carol@example.test")],
    );
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    lab(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    let before = state(dir.path()).assets["support"].token.clone().unwrap();
    let run = lab(p, dir.path())
        .run([
            "apply",
            "--auto-approve",
            "--reconsent",
            "support",
            "--json",
        ])
        .ok();
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["summary"]["reconsented"], 1, "{doc}");
    assert_eq!(
        doc["assets"][0]["reasons"][0]["kind"],
        "reconsent_requested"
    );
    let after = state(dir.path()).assets["support"].token.clone().unwrap();
    assert_ne!(before.sealed, after.sealed, "a new grant was stored");
}

#[test]
fn a_progress_display_only_on_a_terminal() {
    let p = peers();
    let dir = tempfile::tempdir().unwrap();
    let mut text = lab_config(p, crate::apply::free_port(), &[]);
    for i in 0..8 {
        let _ = write!(
            text,
            "\n[assets.box-{i}]\nemail = \"box-{i}@example.test\"\nusername = \"alice@example.test\"\nprovider = \"lab\"\n"
        );
    }
    std::fs::write(dir.path().join("assets.toml"), &text).unwrap();
    let granted =
        crate::support::peers::offline_tokens(p, &p.clients.confidential, "alice@example.test");
    applied_state(dir.path(), &text, |_| Tokens {
        access_token: Secret::new(granted["access_token"].as_str().unwrap()),
        refresh_token: Some(Secret::new(granted["refresh_token"].as_str().unwrap())),
    });
    // Not a terminal: none of it.
    let run = lab(p, dir.path()).run(["plan", "--check-smtp"]).ok();
    assert!(!run.stderr.contains("checking tokens"), "{}", run.stderr);
    assert!(run.stderr.contains("8 accepted"), "{}", run.stderr);
    // On a terminal (a pseudo-terminal from util-linux `script`).
    let command = format!("{} plan --check-smtp", env!("CARGO_BIN_EXE_mailform"));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env(
            "LAB_CLIENT_SECRET",
            p.clients.confidential.client_secret.as_deref().unwrap(),
        )
        .env("MAILFORM_PARALLELISM", "2")
        .output()
        .expect("util-linux `script` runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("checking tokens and SMTP logins ["), "{text}");
    assert!(text.contains("/8 "), "{text}");
    assert!(text.contains("No changes."), "{text}");
    assert!(!text.contains(granted["access_token"].as_str().unwrap()));
}
