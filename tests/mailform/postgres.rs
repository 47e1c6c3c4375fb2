//! The PostgreSQL state backend through the real binary, against a real
//! PostgreSQL server (see `support::postgres`) and the real OAuth and SMTP
//! servers: the whole consent flow with the state in the database, two
//! applies at once, a holder killed with -9, a serial conflict, state
//! push/pull, TLS with verify-full, and the failures an operator meets
//! (wrong password, nothing listening, a server that never answers, a role
//! without privileges, a newer schema), each in words and without a secret.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailform::state::{State, Tokens};
use mailform::store::{PgStore, StateStore as _, key};

use crate::support::peers::{Peers, peers};
use crate::support::postgres::{pg, store};
use crate::support::{Mailform, wait, wait_for};

/// A project whose state is in its own schema of the test server.
struct Project {
    dir: tempfile::TempDir,
    schema: String,
    url: String,
}

impl Project {
    fn new(p: &Peers, assets: &[(&str, &str)]) -> Self {
        let pg = pg();
        let dir = tempfile::tempdir().unwrap();
        let schema = pg.schema();
        let mut text = crate::apply::config_text(
            p,
            crate::apply::free_port(),
            assets,
            "[\"mail\", \"offline_access\"]",
        );
        text.push_str(&state_section(&schema, ""));
        std::fs::write(dir.path().join("assets.toml"), text).unwrap();
        Project {
            dir,
            schema,
            url: pg.admin_url("postgres", "disable"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mf(&self, p: &Peers) -> Mailform {
        crate::support::lab(p, self.path()).env("MAILFORM_STATE_URL", &self.url)
    }

    fn store(&self) -> PgStore {
        store(&self.url, &self.schema)
    }

    fn state(&self) -> Option<State> {
        self.store().load().unwrap()
    }

    fn tokens(&self, name: &str) -> Tokens {
        let state = self.state().unwrap();
        let (key, _) = key::load(&self.path().join(".mailform")).unwrap().unwrap();
        let r = &state.assets[name];
        Tokens::open(
            &key,
            &state.token_aad(name, &r.binding),
            &r.token.as_ref().unwrap().sealed,
        )
        .unwrap()
    }

    /// Every table of the project's schema, as text.
    fn dump(&self) -> String {
        let s = &self.schema;
        pg().sql(&format!(
            "SELECT string_agg(t::text, E'\\n') FROM (SELECT s::text AS t FROM {s}.states s UNION ALL SELECT j::text FROM {s}.journal j UNION ALL SELECT l::text FROM {s}.locks l) x"
        ))
    }

    /// The tokens and the client secret appear nowhere: not in the runs'
    /// output, not in the database in clear, not in a local state file.
    #[track_caller]
    fn assert_clean(&self, p: &Peers, outputs: &[&str]) {
        let state = self.state().unwrap();
        let client_secret = p.clients.confidential.client_secret.clone().unwrap();
        let mut secrets = vec![client_secret, pg().admin_password().to_string()];
        for (name, r) in &state.assets {
            if r.token.is_some() {
                let t = self.tokens(name);
                secrets.push(t.access_token.expose().to_string());
                secrets.extend(t.refresh_token.map(|r| r.expose().to_string()));
            }
        }
        let dump = self.dump();
        assert!(!dump.is_empty());
        for s in &secrets {
            assert!(
                !dump.contains(s.as_str()),
                "a secret is in the database in clear"
            );
            for out in outputs {
                assert!(!out.contains(s.as_str()), "a secret was printed:\n{out}");
            }
        }
        assert!(
            !self.path().join(".mailform/state.json").exists(),
            "the postgres backend wrote a local state file"
        );
    }
}

fn state_section(schema: &str, extra: &str) -> String {
    format!(
        "\n[state]\nbackend = \"postgres\"\nurl = {{ env = \"MAILFORM_STATE_URL\" }}\nschema = \"{schema}\"\n{extra}"
    )
}

/// A project with no assets, for the connection tests: `state pull` on an
/// empty schema says "no state is stored" once it has connected.
fn bare(schema: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("assets.toml"),
        format!("version = 1\n{}", state_section(schema, extra)),
    )
    .unwrap();
    dir
}

fn pull(dir: &Path, url: &str) -> crate::support::Run {
    Mailform::new(dir)
        .env("MAILFORM_STATE_URL", url)
        .run(["state", "pull"])
}

#[test]
fn plan_apply_and_token_work_with_the_state_in_postgres() {
    let p = peers();
    let project = Project::new(
        p,
        &[
            ("support", "alice@example.test"),
            ("billing", "bob@example.test"),
        ],
    );
    let validate = project.mf(p).run(["validate"]).ok();
    let first = project.mf(p).run(["plan", "--detailed-exitcode"]).code(2);
    assert!(
        first.stdout.contains("+ support  create"),
        "{}",
        first.all()
    );
    let apply = project.mf(p).run(["apply", "--auto-approve"]).ok();
    assert!(
        apply
            .stdout
            .contains("Apply: 2 created, 0 updated, 0 re-consented, 0 deleted, 0 failed."),
        "{}",
        apply.all()
    );
    // One row: the document, its lineage and serial in columns of their own.
    let s = &project.schema;
    let row = pg().sql(&format!(
        "SELECT name, serial, lineage = (doc::jsonb->>'lineage')::uuid, serial = (doc::jsonb->>'serial')::bigint FROM {s}.states"
    ));
    let cols: Vec<&str> = row.split('|').collect();
    assert_eq!((cols[0], cols[2], cols[3]), ("default", "t", "t"), "{row}");
    assert_eq!(
        pg().sql(&format!("SELECT count(*) FROM {s}.journal")),
        "0",
        "folded"
    );
    assert_eq!(
        pg().sql(&format!("SELECT count(*) FROM {s}.locks")),
        "0",
        "released"
    );
    let plan = project
        .mf(p)
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    let token = project.mf(p).run(["token", "support"]).ok();
    let info = p.introspect(token.stdout.trim());
    assert_eq!(info["sub"], "alice@example.test", "{info}");
    let show = project.mf(p).run(["show", "billing"]).ok();
    assert!(show.stdout.contains("bob@example.test"), "{}", show.stdout);
    let pulled = project.mf(p).run(["state", "pull"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&pulled.stdout).unwrap();
    assert_eq!(doc["assets"].as_object().unwrap().len(), 2);
    // The URL's password is in no message either.
    project.assert_clean(
        p,
        &[
            &validate.all(),
            &first.all(),
            &apply.all(),
            &plan.all(),
            &show.all(),
            &pulled.stderr,
        ],
    );
}

/// A `$BROWSER` that waits for `gate` to exist before consenting.
fn gated_browser(p: &Peers, dir: &Path, gate: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let browser = dir.join("browser.sh");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\n# At most a minute: a test that failed before opening the gate leaves no loop behind.\nfor _ in $(seq 600); do [ -e '{}' ] && break; sleep 0.1; done\nexec '{}' \"$1\"\n",
            gate.display(),
            p.consent_browser.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    browser
}

#[test]
fn a_second_apply_waits_for_the_first_and_names_it() {
    let p = peers();
    let project = Project::new(p, &[("support", "carol@example.test")]);
    let gate = project.path().join("gate");
    let browser = gated_browser(p, project.path(), &gate);
    let out = tempfile::tempdir().unwrap();
    let mut first = project
        .mf(p)
        .env("BROWSER", browser.to_str().unwrap())
        .spawn(
            ["apply", "--auto-approve", "--consent-timeout", "2m"],
            out.path(),
        );
    let s = project.schema.clone();
    wait_for("the first apply's lock", Duration::from_secs(30), || {
        pg().sql(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{s}'"
        )) == "1"
            && pg().sql(&format!("SELECT count(*) FROM {s}.locks")) == "1"
    });
    let second = project
        .mf(p)
        .run(["apply", "--auto-approve", "--lock-timeout", "1s"])
        .code(1);
    assert!(
        second.stderr.contains("Waiting for the state lock held by")
            && second.stderr.contains("(apply since ")
            && second
                .stderr
                .contains(&format!("pid {}, lock ID ", first.id())),
        "{}",
        second.stderr
    );
    // force-unlock never breaks a live holder's lock.
    let info: serde_json::Value =
        serde_json::from_str(&pg().sql(&format!("SELECT info FROM {s}.locks"))).unwrap();
    let id = info["id"].as_str().unwrap();
    let refused = project.mf(p).run(["force-unlock", id, "--force"]).code(1);
    assert!(
        refused.stderr.contains("is held by a live session")
            && refused.stderr.contains("pg_terminate_backend("),
        "{}",
        refused.stderr
    );
    std::fs::write(&gate, "").unwrap();
    assert_eq!(wait(&mut first, Duration::from_secs(60)), 0);
    // Once it is done, the next one gets the lock at once.
    let after = project
        .mf(p)
        .run(["apply", "--auto-approve", "--lock-timeout", "1s"])
        .ok();
    assert!(after.stdout.starts_with("No changes."), "{}", after.all());
}

#[test]
fn a_holder_killed_with_9_takes_its_lock_along_and_loses_no_consent() {
    let p = peers();
    let project = Project::new(
        p,
        &[
            ("first", "alice@example.test"),
            ("second", "bob@example.test"),
        ],
    );
    // A state exists already, so the first consent is a journal row.
    project.mf(p).run(["init"]).ok();
    let out = tempfile::tempdir().unwrap();
    let mut child = project
        .mf(p)
        .env("CONSENT_SILENT_USERS", "bob@example.test")
        .spawn(
            ["apply", "--auto-approve", "--consent-timeout", "2m"],
            out.path(),
        );
    wait_for("the first consent", Duration::from_secs(60), || {
        project
            .state()
            .is_some_and(|s| s.assets.get("first").is_some_and(|r| r.token.is_some()))
    });
    let s = &project.schema;
    assert_eq!(
        pg().sql(&format!("SELECT count(*) FROM {s}.journal")),
        "1",
        "a journal row"
    );
    child.kill().unwrap();
    let _ = child.wait();
    // The session went with the process; the info row stays for the record.
    wait_for(
        "the server to end the session",
        Duration::from_secs(10),
        || {
            pg().sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = (SELECT backend_pid FROM {s}.locks)"
        )) == "0"
        },
    );
    let plan = project
        .mf(p)
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert!(
        plan.stdout.contains("+ second  create") && !plan.stdout.contains("first  "),
        "{}",
        plan.stdout
    );
    // The next writer takes the lock at once, and says whose it was: saving
    // a plan folds the journal rows first, so the plan's serial is the
    // folded state's, and the saved plan applies as it is.
    let saved = project
        .mf(p)
        .run([
            "plan",
            "--offline",
            "--out",
            "p.json",
            "--lock-timeout",
            "0s",
        ])
        .ok();
    assert!(
        saved
            .stderr
            .contains(&format!("(apply, pid {}, lock ID ", child.id()))
            && saved.stderr.contains("which is no longer running"),
        "{}",
        saved.stderr
    );
    assert_eq!(
        pg().sql(&format!("SELECT count(*) FROM {s}.journal")),
        "0",
        "folded"
    );
    let run = project.mf(p).run(["apply", "p.json"]).ok();
    assert!(run.stdout.contains("1 created"), "{}", run.all());
    let state = project.state().unwrap();
    assert!(state.assets["first"].token.is_some() && state.assets["second"].token.is_some());
    project.assert_clean(p, &[&run.all(), &plan.all(), &saved.all()]);
}

#[test]
fn a_writer_whose_serial_moved_on_writes_nothing() {
    let pg = pg();
    let schema = pg.schema();
    let url = pg.admin_url("postgres", "disable");
    let (a, b) = (store(&url, &schema), store(&url, &schema));
    assert!(a.load().unwrap().is_none());
    let mut state = State::new();
    a.save(&mut state).unwrap();
    let mut mine = b.load().unwrap().unwrap();
    let mut theirs = a.load().unwrap().unwrap();
    theirs.key_id = Some("theirs".into());
    a.save(&mut theirs).unwrap();
    mine.key_id = Some("mine".into());
    let e = b.save(&mut mine).unwrap_err().to_string();
    assert!(
        e.contains("was not written: it changed since it was read (serial 1, now 2); nothing was overwritten"),
        "{e}"
    );
    assert_eq!(mine.serial, 1, "the caller's serial is left as it was");
    let stored = b.load().unwrap().unwrap();
    assert_eq!(
        (stored.serial, stored.key_id.as_deref()),
        (2, Some("theirs"))
    );
    // Journal rows for a state that moved on are refused too.
    let e = b.record(&mut mine, &["x"]).unwrap_err().to_string();
    assert!(
        e.contains("it changed since it was read (serial 1, now 2)"),
        "{e}"
    );
    // A first write where a state appeared meanwhile is refused too.
    let e = b.save(&mut State::new()).unwrap_err().to_string();
    assert!(
        e.contains("a state (serial 2) appeared there meanwhile"),
        "{e}"
    );
}

#[test]
fn state_push_moves_a_team_from_the_file_to_postgres_and_refuses_what_would_lose_work() {
    let p = peers();
    let project = Project::new(p, &[("support", "carol@example.test")]);
    // The team's old config: the same assets, the state in a file.
    let file_config = std::fs::read_to_string(project.path().join("assets.toml"))
        .unwrap()
        .replace(&state_section(&project.schema, ""), "");
    let old = project.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("assets.toml"), &file_config).unwrap();
    crate::support::lab(p, &old)
        .run(["apply", "--auto-approve"])
        .ok();
    let key = std::fs::read_to_string(old.join(".mailform/key")).unwrap();
    let pulled = Mailform::new(&old).run(["state", "pull"]).ok();
    let backup = project.path().join("backup.json");
    std::fs::write(&backup, &pulled.stdout).unwrap();
    let file_state: State = serde_json::from_str(&pulled.stdout).unwrap();

    // Push it into PostgreSQL, with the team's key.
    let mf = || project.mf(p).env("MAILFORM_KEY", key.trim());
    let pushed = mf().run(["state", "push", "backup.json"]).ok();
    assert!(
        pushed
            .stderr
            .contains("Pushed backup.json to PostgreSQL admin@127.0.0.1:"),
        "{}",
        pushed.stderr
    );
    let stored = project.state().unwrap();
    assert_eq!(stored.lineage, file_state.lineage);
    assert_eq!(stored.serial, file_state.serial + 1);
    assert_eq!(stored.assets.keys().collect::<Vec<_>>(), ["support"]);
    // The tokens work from the database: a live plan is clean, token prints one.
    mf().run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    let token = mf().run(["token", "support"]).ok();
    assert_eq!(
        p.introspect(token.stdout.trim())["sub"],
        "carol@example.test"
    );
    // Pull gives back the document; pushing it again changes nothing.
    let round = mf().run(["state", "pull"]).ok();
    std::fs::write(project.path().join("round.json"), &round.stdout).unwrap();
    let again = mf().run(["state", "push", "round.json"]).ok();
    assert!(
        again.stderr.contains("already holds this state"),
        "{}",
        again.stderr
    );

    // The old backup is older than what is stored now (the live plan stored
    // its fresh access token): refused, then forced.
    let now_serial = project.state().unwrap().serial;
    assert_eq!(now_serial, stored.serial + 1);
    let older = mf().run(["state", "push", "backup.json"]).code(1);
    assert!(
        older.stderr.contains(&format!(
            "the file has serial {}, older than the stored state's {}",
            file_state.serial, now_serial
        )),
        "{}",
        older.stderr
    );
    // Another lineage: refused.
    let mut other = State::new();
    other.serial = 50;
    std::fs::write(
        project.path().join("other.json"),
        serde_json::to_string(&other).unwrap(),
    )
    .unwrap();
    let foreign = mf().run(["state", "push", "other.json"]).code(1);
    assert!(
        foreign.stderr.contains("has another lineage"),
        "{}",
        foreign.stderr
    );
    // Same serial, other content: refused.
    let mut forked: State = serde_json::from_str(&round.stdout).unwrap();
    forked.assets.clear();
    std::fs::write(
        project.path().join("forked.json"),
        serde_json::to_string(&forked).unwrap(),
    )
    .unwrap();
    let fork = mf().run(["state", "push", "forked.json"]).code(1);
    assert!(
        fork.stderr.contains("have gone separate ways"),
        "{}",
        fork.stderr
    );
    // A cut-short file is refused in words, and nothing is written.
    std::fs::write(
        project.path().join("cut.json"),
        &round.stdout[..round.stdout.len() / 2],
    )
    .unwrap();
    let cut = mf().run(["state", "push", "cut.json"]).code(1);
    assert!(
        cut.stderr.contains("cut.json is not valid"),
        "{}",
        cut.stderr
    );
    // A state whose tokens the key here cannot open: refused without --force.
    let (_, other_key) = mailform::state::crypto::Key::generate();
    let wrong_key = project
        .mf(p)
        .env("MAILFORM_KEY", other_key.as_str())
        .run(["state", "push", "round.json"])
        .code(1);
    assert!(
        wrong_key
            .stderr
            .contains("cannot be opened with the key here"),
        "{}",
        wrong_key.stderr
    );
    assert_eq!(
        project.state().unwrap().serial,
        now_serial,
        "nothing was written"
    );
    // --force goes back to the backup.
    let back = mf().run(["state", "push", "backup.json", "--force"]).ok();
    assert!(back.stderr.contains("Pushed"), "{}", back.stderr);
    assert_eq!(project.state().unwrap().serial, now_serial + 1);
    for run in [&pushed, &round, &older, &foreign, &fork, &cut, &back] {
        assert!(!run.all().contains(pg().admin_password()));
    }
}

#[test]
fn verify_full_trusts_the_ca_file_and_names_what_is_wrong() {
    let pg = pg();
    let url = pg.admin_url("postgres", "verify-full");
    let schema = pg.schema();
    let ca = format!("ca_file = \"{}\"\n", pg.ca_file.display());
    // Trusting the test CA: connected (and the tables made).
    let ok = pull(bare(&schema, &ca).path(), &url).code(1);
    assert!(
        ok.stderr
            .contains("no state is stored at PostgreSQL admin@127.0.0.1:"),
        "{}",
        ok.stderr
    );
    assert_eq!(
        pg.sql(&format!("SELECT max(version) FROM {schema}.schema_version")),
        "1"
    );
    // The web's roots alone do not know it.
    let untrusted = pull(bare(&schema, "").path(), &url).code(1);
    assert!(
        untrusted.stderr.contains("TLS with 127.0.0.1:")
            && untrusted.stderr.contains("not signed by an authority mailform trusts: if the server uses a private CA, set state.ca_file"),
        "{}",
        untrusted.stderr
    );
    let other = format!("ca_file = \"{}\"\n", pg.other_ca_file.display());
    let wrong_ca = pull(bare(&schema, &other).path(), &url).code(1);
    assert!(
        wrong_ca.stderr.contains("(nor by state.ca_file)"),
        "{}",
        wrong_ca.stderr
    );
    // require encrypts without checking whose certificate it is.
    let require = pull(
        bare(&schema, "").path(),
        &pg.admin_url("postgres", "require"),
    )
    .code(1);
    assert!(
        require.stderr.contains("no state is stored"),
        "{}",
        require.stderr
    );
    // The session really is encrypted (and a disable one is not).
    let tls_of = |sslmode: &str, ca_file: Option<PathBuf>| {
        let app = format!("probe_{schema}_{}", sslmode.replace('-', "_"));
        let url = format!(
            "{}&application_name={app}",
            pg.admin_url("postgres", sslmode)
        );
        let store = crate::support::postgres::store_trusting(&url, &schema, ca_file);
        assert!(store.load().unwrap().is_none());
        pg.sql(&format!(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'"
        ))
    };
    assert_eq!(tls_of("verify-full", Some(pg.ca_file.clone())), "t");
    assert_eq!(tls_of("disable", None), "f");
    for run in [&ok, &untrusted, &wrong_ca, &require] {
        assert!(!run.all().contains(pg.admin_password()));
    }
}

#[test]
fn connection_failures_are_told_in_words_without_the_password() {
    let pg = pg();
    let schema = pg.schema();
    let dir = bare(&schema, "");
    let secret = "Wr0ng-pa55word";
    let cases = [
        (
            format!(
                "postgres://admin:{secret}@127.0.0.1:{}/postgres?sslmode=disable",
                pg.port
            ),
            "authentication failed for role admin",
        ),
        (
            pg.admin_url("nosuchdb", "disable"),
            "database nosuchdb does not exist on 127.0.0.1:",
        ),
        (
            format!(
                "postgres://admin:{secret}@127.0.0.1:{}/postgres?sslmode=disable",
                crate::apply::free_port()
            ),
            "connection refused (nothing listens there",
        ),
    ];
    for (url, says) in &cases {
        let run = pull(dir.path(), url).code(1);
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
        assert!(
            run.stderr.contains("PostgreSQL admin@127.0.0.1:"),
            "{}",
            run.stderr
        );
        assert!(!run.all().contains(secret) && !run.all().contains(pg.admin_password()));
    }
    // A server that accepts and never answers: bounded by connect_timeout.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    let started = Instant::now();
    let run = pull(
        dir.path(),
        &format!(
            "postgres://admin:{secret}@127.0.0.1:{port}/postgres?sslmode=disable&connect_timeout=1"
        ),
    )
    .code(1);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        run.stderr
            .contains("did not answer within 1s (connect_timeout)"),
        "{}",
        run.stderr
    );
    drop(mute);
    // A URL that is not one, from the environment: named by its source.
    let bad = pull(dir.path(), &format!("mysql://admin:{secret}@db/x")).code(1);
    assert!(
        bad.stderr.contains(
            "state.url (environment variable MAILFORM_STATE_URL): it must start with postgres://"
        ),
        "{}",
        bad.stderr
    );
    assert!(!bad.all().contains(secret));
    let unset = Mailform::new(dir.path())
        .env_remove("MAILFORM_STATE_URL")
        .run(["state", "pull"])
        .code(1);
    assert!(
        unset.stderr.contains("MAILFORM_STATE_URL is not set"),
        "{}",
        unset.stderr
    );
}

#[test]
fn a_role_without_privileges_is_told_what_to_grant_and_a_newer_schema_is_left_alone() {
    let pg = pg();
    pg.role("mailform_limited", "limited-pw");
    let schema = pg.schema();
    let dir = bare(&schema, "");
    let limited = format!(
        "postgres://mailform_limited:limited-pw@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    );
    let run = pull(dir.path(), &limited).code(1);
    assert!(
        run.stderr
            .contains("role mailform_limited lacks a privilege")
            && run
                .stderr
                .contains("GRANT CREATE ON DATABASE postgres TO mailform_limited"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("limited-pw"));
    // An admin makes the schema for it: then the role needs no CREATE on the database.
    pg.sql(&format!(
        "CREATE SCHEMA {schema} AUTHORIZATION mailform_limited"
    ));
    let owned = pull(dir.path(), &limited).code(1);
    assert!(
        owned.stderr.contains("no state is stored"),
        "{}",
        owned.stderr
    );

    // Tables an admin made, and only the grants the message names: a role
    // can read, write, journal and lock.
    let admin_made = pg.schema();
    pull(
        bare(&admin_made, "").path(),
        &pg.admin_url("postgres", "disable"),
    )
    .code(1);
    pg.sql(&format!(
        "GRANT USAGE ON SCHEMA {admin_made} TO mailform_limited; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {admin_made} TO mailform_limited"
    ));
    let store = store(&limited, &admin_made);
    let lock = store
        .lock("test", Duration::ZERO, &mut |_| {})
        .expect("locks");
    let mut state = State::new();
    store.save(&mut state).unwrap();
    state.key_id = Some("recorded".into());
    store.record(&mut state, &["gone"]).expect("journals");
    // The role reads its journal row back, replayed onto the state.
    let read = store.load().unwrap().expect("a state");
    assert_eq!(read.key_id.as_deref(), Some("recorded"));
    assert!(
        store.has_pending(),
        "the row is replayed, not yet folded in"
    );
    drop(lock);
    assert_eq!(
        pg.sql(&format!("SELECT count(*) FROM {admin_made}.journal")),
        "1"
    );

    // Tables of other column types (made by hand): an error, not a panic.
    let odd = pg.schema();
    pg.sql(&format!(
        "CREATE SCHEMA {odd}; CREATE TABLE {odd}.schema_version (version bigint, applied_at timestamptz, applied_by text); INSERT INTO {odd}.schema_version VALUES (1, now(), 'a person')"
    ));
    let run = pull(bare(&odd, "").path(), &pg.admin_url("postgres", "disable")).code(1);
    assert!(
        run.stderr.contains("PostgreSQL admin@127.0.0.1:") && run.stderr.contains("column 0"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    // A schema made by a newer mailform: refused, untouched.
    let newer = pg.schema();
    let admin = pg.admin_url("postgres", "disable");
    let dir = bare(&newer, "");
    pull(dir.path(), &admin).code(1);
    pg.sql(&format!(
        "INSERT INTO {newer}.schema_version (version, applied_by) VALUES (7, 'mailform 9')"
    ));
    let run = pull(dir.path(), &admin).code(1);
    assert!(
        run.stderr.contains(&format!("the tables in schema {newer} were made by a newer mailform (schema version 7; this one knows up to 1)")),
        "{}",
        run.stderr
    );
    assert_eq!(
        pg.sql(&format!("SELECT count(*) FROM {newer}.schema_version")),
        "2"
    );
}

#[test]
fn processes_starting_at_once_on_an_empty_database_all_migrate_it() {
    let pg = pg();
    let schema = pg.schema();
    let dir = bare(&schema, "");
    let url = pg.admin_url("postgres", "disable");
    let children: Vec<_> = (0..4)
        .map(|n| {
            let out = dir.path().join(format!("out{n}"));
            std::fs::create_dir(&out).unwrap();
            (
                Mailform::new(dir.path())
                    .env("MAILFORM_STATE_URL", &url)
                    .spawn(["state", "pull"], &out),
                out,
            )
        })
        .collect();
    for (mut child, out) in children {
        assert_eq!(wait(&mut child, Duration::from_secs(30)), 1);
        let stderr = std::fs::read_to_string(out.join("stderr")).unwrap();
        assert!(stderr.contains("no state is stored"), "{stderr}");
    }
    assert_eq!(
        pg.sql(&format!(
            "SELECT string_agg(version::text, ',') FROM {schema}.schema_version"
        )),
        "1"
    );
}

#[test]
fn validate_refuses_a_literal_url_with_a_password_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let write = |state: &str| {
        std::fs::write(
            dir.path().join("assets.toml"),
            format!("version = 1\n\n[state]\n{state}"),
        )
        .unwrap();
    };
    write("backend = \"postgres\"\nurl = \"postgres://ops:S3CRETPW@db.example.com/mail\"\n");
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(
        run.stderr
            .contains("state.url holds a password, written literally in the config"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("postgres://ops:********@db.example.com/mail"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("S3CRETPW"), "{}", run.all());
    // A password with a `/` in it breaks the URL, and is still never shown;
    // nor is a URL pasted where a file name belongs.
    for state in [
        "backend = \"postgres\"\nurl = \"postgres://ops:S3C/RETPW@db.example.com/mail\"\n",
        "backend = \"postgres\"\nurl = { file = \"postgres://ops:S3CRETPW@db.example.com/mail\" }\n",
        "backend = \"postgres\"\nurl = { env = \"postgres://ops:S3CRETPW@db.example.com/mail\" }\n",
        "backend = \"postgres\"\nurl = { file = \"ops:S3CRETPW@db.example.com/mail\" }\n",
        "backend = \"postgres\"\nurl = \"postgres://ops:my S3CRET PW@db.example.com/mail\"\n",
        "backend = \"postgres\"\nurl = \"postgres://ops@db.example.com/mail?password=S3CRETPW\"\n",
    ] {
        write(state);
        let run = Mailform::new(dir.path()).run(["validate"]).code(1);
        assert!(run.stderr.contains("state.url"), "{}", run.stderr);
        assert!(
            !run.all().contains("RETPW") && !run.all().contains("RET PW"),
            "{}",
            run.all()
        );
    }
    // From the environment, the shape is checked offline too.
    write("backend = \"postgres\"\nurl = { env = \"MF_TEST_URL\" }\n");
    let run = Mailform::new(dir.path())
        .env(
            "MF_TEST_URL",
            "postgres://ops:S3CRETPW@db.example.com/mail?sslmode=disable",
        )
        .run(["validate"])
        .code(1);
    assert!(
        run.stderr
            .contains("sslmode=disable would send the password and the state in plain text"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("S3CRETPW"));
    // A literal URL without a password is fine; file-backend keys are not.
    write(
        "backend = \"postgres\"\nurl = \"postgres://ops@db.example.com/mail\"\nschema = \"Bad-Name\"\n",
    );
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(
        run.stderr
            .contains("state.schema `Bad-Name` is not a plain PostgreSQL name"),
        "{}",
        run.stderr
    );
    write("url = \"postgres://ops@db.example.com/mail\"\n");
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(
        run.stderr.contains("state.url is for the postgres backend"),
        "{}",
        run.stderr
    );
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    write(
        "backend = \"postgres\"\nurl = \"postgres://ops@db.example.com/mail\"\nca_file = \"ca.pem\"\n",
    );
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(
        run.stderr
            .contains("state.ca_file `ca.pem` is not a PEM certificate file"),
        "{}",
        run.stderr
    );
    write("backend = \"postgres\"\n");
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(
        run.stderr.contains("backend = \"postgres\" needs url"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_damaged_row_is_refused_in_words_and_left_alone() {
    let pg = pg();
    let schema = pg.schema();
    let url = pg.admin_url("postgres", "disable");
    let mut state = State::new();
    store(&url, &schema).save(&mut state).unwrap();
    let load = || store(&url, &schema).load().unwrap_err().to_string();
    let s = &schema;
    pg.sql(&format!(
        "INSERT INTO {s}.journal (name, lineage, serial, entry) SELECT name, lineage, serial, 'not json' FROM {s}.states"
    ));
    let e = load();
    assert!(
        e.contains("PostgreSQL admin@127.0.0.1:") && e.contains("journal row 1 of 1"),
        "{e}"
    );
    pg.sql(&format!(
        "DELETE FROM {s}.journal; CREATE TABLE {s}.good AS SELECT doc, serial FROM {s}.states"
    ));
    let restore = format!("UPDATE {s}.states SET doc = g.doc, serial = g.serial FROM {s}.good g");
    for (damage, says) in [
        ("doc = '{'", "is not valid: EOF while parsing"),
        (
            "doc = '{\"format_version\": 9}'",
            "has format version 9, newer than this mailform reads (2); it was left untouched",
        ),
        (
            "serial = 5",
            "its lineage and serial columns disagree with its document",
        ),
    ] {
        pg.sql(&format!("UPDATE {s}.states SET {damage}"));
        let before = pg.sql(&format!("SELECT md5(doc) || serial FROM {s}.states"));
        let e = load();
        assert!(e.contains(says), "{damage}: {e}");
        assert!(e.contains("PostgreSQL admin@127.0.0.1:"), "{e}");
        let after = pg.sql(&format!("SELECT md5(doc) || serial FROM {s}.states"));
        assert_eq!(before, after, "the row was left as it was");
        pg.sql(&restore);
        assert!(store(&url, &schema).load().unwrap().is_some());
    }
}

#[test]
fn a_holder_whose_session_the_server_ends_writes_nothing_more() {
    let pg = pg();
    let schema = pg.schema();
    let app = format!("ended_{schema}");
    let url = format!(
        "{}&application_name={app}",
        pg.admin_url("postgres", "disable")
    );
    let holder = store(&url, &schema);
    let lock = holder.lock("apply", Duration::ZERO, &mut |_| {}).unwrap();
    let mut state = State::new();
    holder.save(&mut state).unwrap();
    // Someone else waits for it, naming the holder.
    let other = store(&pg.admin_url("postgres", "disable"), &schema);
    let mut named = None;
    let e = other
        .lock("plan", Duration::from_millis(300), &mut |info| {
            named = Some(info.clone());
        })
        .err()
        .expect("busy");
    assert_eq!(
        named.as_ref().map(|i| i.id.as_str()),
        Some(lock.info().id.as_str())
    );
    assert!(e.to_string().contains("still running"), "{e}");
    // An admin ends the holder's session: its lock goes with it.
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'"
        )),
        "1"
    );
    let e = holder.save(&mut state).unwrap_err().to_string();
    assert!(
        e.contains("the connection to the server was lost (terminating connection due to administrator command), and the state lock with it: nothing more is written"),
        "{e}"
    );
    // Its row stays behind (the kill -9 test sees the next holder take it
    // over); force-unlock removes it, by its ID only.
    let e = other
        .force_unlock("not-the-id", &mut |_| Ok(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match the lock held"), "{e}");
    let removed = other
        .force_unlock(&lock.info().id, &mut |_| Ok(true))
        .unwrap();
    assert_eq!(removed.id, lock.info().id);
    assert_eq!(pg.sql(&format!("SELECT count(*) FROM {schema}.locks")), "0");
    let taken = other
        .lock("plan", Duration::from_secs(5), &mut |_| {})
        .unwrap();
    assert!(taken.taken_over().is_none(), "nothing left to take over");
    drop(lock);
    assert_eq!(other.load().unwrap().unwrap().serial, 1);
}

#[test]
fn a_push_sees_what_a_killed_apply_recorded() {
    let pg = pg();
    let schema = pg.schema();
    let url = pg.admin_url("postgres", "disable");
    let dir = bare(&schema, "");
    let s = store(&url, &schema);
    let mut state = State::new();
    s.save(&mut state).unwrap();
    let before = serde_json::to_string(&state).unwrap();
    // Recorded, not folded in: what an apply killed halfway leaves.
    state.key_id = Some("recorded".into());
    s.record(&mut state, &["gone"]).unwrap();
    let journal = || pg.sql(&format!("SELECT count(*) FROM {schema}.journal"));
    assert_eq!(journal(), "1");
    let push = |file: &str, text: &str| {
        std::fs::write(dir.path().join(file), text).unwrap();
        Mailform::new(dir.path())
            .env("MAILFORM_STATE_URL", &url)
            .run(["state", "push", file])
    };
    // Pulled and pushed back: the same state, nothing written.
    let pulled = pull(dir.path(), &url).ok();
    assert!(
        pulled.stdout.contains("\"key_id\": \"recorded\""),
        "{}",
        pulled.stdout
    );
    let same = push("pulled.json", &pulled.stdout).ok();
    assert!(
        same.stderr.contains("already holds this state (serial 1)"),
        "{}",
        same.stderr
    );
    assert_eq!(journal(), "1");
    // A file from before the record: folded first, then refused as older.
    let old = push("before.json", &before).code(1);
    assert!(
        old.stderr
            .contains("the file has serial 1, older than the stored state's 2"),
        "{}",
        old.stderr
    );
    assert_eq!(journal(), "0");
    let now = s.load().unwrap().unwrap();
    assert_eq!((now.serial, now.key_id.as_deref()), (2, Some("recorded")));
}
