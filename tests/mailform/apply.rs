//! A first `apply` through the real binary, against the real OAuth server:
//! consent through `$BROWSER` (the harness's headless person) and the one
//! loopback listener, for one asset and for several at once (one owner says
//! no); stray callbacks ignored; a revoked grant consented again; a removed
//! asset revoked at the provider; a scope left unticked; no person at all.

use std::fmt::Write as _;
use std::path::Path;

use mailform::state::{State, Tokens};

use crate::support::peers::{LabSmtp, Peers, lab_provider, peers};
use crate::support::{Mailform, Run};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn config_text(p: &Peers, port: u16, assets: &[(&str, &str)], scopes: &str) -> String {
    let smtp = LabSmtp {
        port: p.smtp.starttls_port,
        security: "starttls",
        trust_ca: true,
    };
    let mut text = lab_provider(p, port, scopes, &smtp);
    for (name, email) in assets {
        let _ = write!(
            text,
            "\n[assets.{name}]\nemail = \"{email}\"\nprovider = \"lab\"\n"
        );
    }
    text
}

struct Project {
    dir: tempfile::TempDir,
    port: u16,
}

impl Project {
    fn new(p: &Peers, assets: &[(&str, &str)]) -> Self {
        Self::with_scopes(p, assets, "[\"mail\", \"offline_access\"]")
    }

    fn with_scopes(p: &Peers, assets: &[(&str, &str)], scopes: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("assets.toml"),
            config_text(p, port, assets, scopes),
        )
        .unwrap();
        Project { dir, port }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// mailform with the secret, and the headless person as `$BROWSER`.
    fn mf(&self, p: &Peers) -> Mailform {
        crate::support::lab(p, self.path())
    }

    fn state(&self) -> State {
        crate::support::fixtures::stored_state(self.path())
    }

    fn tokens(&self, name: &str) -> Tokens {
        crate::support::fixtures::stored_tokens(self.path(), name)
    }

    /// No output holds any stored token or the client secret.
    #[track_caller]
    fn assert_clean(&self, p: &Peers, run: &Run) {
        let state = self.state();
        let mut secrets = vec![p.clients.confidential.client_secret.clone().unwrap()];
        for name in state.assets.keys() {
            if state.assets[name].token.is_some() {
                let t = self.tokens(name);
                secrets.push(t.access_token.expose().to_string());
                if let Some(r) = t.refresh_token {
                    secrets.push(r.expose().to_string());
                }
            }
        }
        let file = std::fs::read_to_string(self.path().join(".mailform/state.json")).unwrap();
        for s in &secrets {
            assert!(
                !run.all().contains(s.as_str()),
                "a secret was printed:\n{}",
                run.all()
            );
            if !s.starts_with(&p.clients.confidential.client_secret.clone().unwrap()) {
                assert!(
                    !file.contains(s.as_str()),
                    "a token is in the state file in clear"
                );
            }
        }
    }
}

#[test]
fn a_first_apply_consents_through_the_browser_then_the_plan_is_clean() {
    let p = peers();
    let project = Project::new(p, &[("support", "alice@example.test")]);
    let run = project.mf(p).run(["apply", "--auto-approve"]).ok();
    assert!(
        run.stdout.contains("+ support  create")
            && run
                .stdout
                .contains("Apply: 1 created, 0 updated, 0 re-consented, 0 deleted, 0 failed."),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "Consent needed for 1 mailbox (listening on 127.0.0.1:{}",
            project.port
        )) && run.stderr.contains("support: consented; tokens stored"),
        "{}",
        run.stderr
    );
    project.assert_clean(p, &run);
    // The grant is alice's, with a refresh token, and it is live.
    let tokens = project.tokens("support");
    let info = p.introspect(tokens.access_token.expose());
    assert_eq!(
        (info["active"].clone(), info["sub"].clone()),
        (true.into(), "alice@example.test".into()),
        "{info}"
    );
    assert!(tokens.refresh_token.is_some());
    project.mf(p).run(["plan", "--detailed-exitcode"]).code(0);
    // Nothing to do: apply says so and exits 0.
    let again = project.mf(p).run(["apply", "--auto-approve"]).ok();
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
}

#[test]
fn bulk_consent_takes_callbacks_in_any_order_and_one_refusal_fails_alone() {
    let p = peers();
    let project = Project::new(
        p,
        &[
            ("billing", "bob@example.test"),
            ("sales", "dave@example.test"),
            ("support", "alice@example.test"),
        ],
    );
    let run = project
        .mf(p)
        .env("CONSENT_DENY_USERS", "dave@example.test")
        .run(["apply", "--auto-approve"])
        .code(1);
    assert!(
        run.stdout
            .contains("Apply: 2 created, 0 updated, 0 re-consented, 0 deleted, 1 failed.")
            && run
                .stdout
                .contains("sales: consent denied by the user (access_denied"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("Consent needed for 3 mailboxes"),
        "{}",
        run.stderr
    );
    // Each link names its own mailbox (login_hint), with its own state.
    for (name, email) in [("billing", "bob"), ("sales", "dave"), ("support", "alice")] {
        assert!(
            run.stderr
                .contains(&format!("  {name} ({email}@example.test): https://"))
                && run
                    .stderr
                    .contains(&format!("login_hint={email}%40example.test")),
            "{}",
            run.stderr
        );
    }
    let state = project.state();
    assert!(state.assets.contains_key("billing") && state.assets.contains_key("support"));
    assert!(!state.assets.contains_key("sales"));
    let who = p.introspect(project.tokens("billing").access_token.expose());
    assert_eq!(
        who["sub"], "bob@example.test",
        "each owner consented for their own mailbox"
    );
    project.assert_clean(p, &run);
    // The next plan wants only the refused one.
    let plan = project.mf(p).run(["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("+ sales  create") && !plan.stdout.contains("+ support"),
        "{}",
        plan.stdout
    );
}

#[test]
fn stray_callbacks_get_400_while_the_real_one_succeeds() {
    let p = peers();
    let project = Project::new(p, &[("support", "alice@example.test")]);
    // A $BROWSER that first knocks on the listener with a wrong path and a
    // wrong state, then lets the person consent.
    let knocks = project.path().join("knocks.txt");
    let browser = project.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nnode -e '\nconst base = \"http://127.0.0.1:{port}\";\n(async () => {{\n  const a = await fetch(base + \"/elsewhere?code=x&state=y\");\n  const b = await fetch(base + \"/callback?code=x&state=forged\");\n  require(\"fs\").writeFileSync(process.argv[1], a.status + \" \" + b.status);\n}})();' '{}' && exec '{}' \"$1\"\n",
            knocks.display(),
            p.consent_browser.display(),
            port = project.port
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = project
        .mf(p)
        .env("BROWSER", browser.to_str().unwrap())
        .run(["apply", "--auto-approve"])
        .ok();
    assert_eq!(std::fs::read_to_string(&knocks).unwrap(), "400 400");
    assert!(run.stdout.contains("1 created"), "{}", run.stdout);
}

#[test]
fn a_revoked_grant_is_consented_again_and_the_plan_is_clean() {
    let p = peers();
    let user = "judy@example.test";
    let project = Project::new(p, &[("support", user)]);
    project.mf(p).run(["apply", "--auto-approve"]).ok();
    let old = project.tokens("support");
    assert!(p.revoke_grants(user) >= 1, "the user removed access");
    let plan = project.mf(p).run(["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("! support  re-consent"),
        "{}",
        plan.stdout
    );
    let run = project.mf(p).run(["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("1 re-consented"), "{}", run.stdout);
    let new = project.tokens("support");
    assert_ne!(
        new.refresh_token.as_ref().unwrap().expose(),
        old.refresh_token.unwrap().expose()
    );
    project.mf(p).run(["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_removed_asset_is_revoked_at_the_provider_then_forgotten() {
    let p = peers();
    let user = "ken@example.test";
    let project = Project::new(p, &[("support", user), ("billing", "bob@example.test")]);
    project.mf(p).run(["apply", "--auto-approve"]).ok();
    let tokens = project.tokens("support");
    let refresh = tokens.refresh_token.unwrap();
    assert_eq!(p.introspect(refresh.expose())["active"], true);
    std::fs::write(
        project.path().join("assets.toml"),
        config_text(
            p,
            project.port,
            &[("billing", "bob@example.test")],
            "[\"mail\", \"offline_access\"]",
        ),
    )
    .unwrap();
    let run = project.mf(p).run(["apply", "--auto-approve"]).ok();
    assert!(
        run.stderr
            .contains("support: tokens revoked at the provider, then forgotten")
            && run.stdout.contains("1 deleted"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        p.introspect(refresh.expose())["active"],
        false,
        "the provider confirms it is dead"
    );
    assert!(!project.state().assets.contains_key("support"));
}

#[test]
fn a_scope_left_unticked_is_a_failure_naming_it() {
    let p = peers();
    let project = Project::with_scopes(
        p,
        &[("support", "alice@example.test")],
        "[\"mail\", \"https://mail.google.com/\", \"offline_access\"]",
    );
    let run = project
        .mf(p)
        .env("CONSENT_SCOPES", "mail offline_access")
        .run(["apply", "--auto-approve"])
        .code(1);
    assert!(
        run.stdout
            .contains("support: the grant lacks https://mail.google.com/ (boxes left unticked"),
        "{}",
        run.stdout
    );
}

#[test]
fn without_a_person_apply_refuses_to_guess() {
    let p = peers();
    let project = Project::new(p, &[("support", "alice@example.test")]);
    let mf = || {
        Mailform::new(project.path()).env(
            "LAB_CLIENT_SECRET",
            p.clients.confidential.client_secret.as_deref().unwrap(),
        )
    };
    let run = mf().run(["apply"]).code(1);
    assert!(run.stderr.contains("pass --auto-approve"), "{}", run.stderr);
    let run = mf().run(["apply", "--auto-approve"]).code(1);
    assert!(
        run.stdout.contains(
            "support: consent required for support: run `mailform apply` where a person can consent"
        ),
        "{}",
        run.stdout
    );
    let run = mf()
        .run(["apply", "--auto-approve", "--consent", "device"])
        .code(1);
    assert!(
        run.stdout
            .contains("provider `lab` has no device_authorization_url"),
        "{}",
        run.stdout
    );
}

/// Runs `apply --consent manual`, answering the prompt with what `answer`
/// makes of the printed link; returns the exit code and both streams.
fn apply_manually(
    project: &Project,
    p: &Peers,
    answer: impl FnOnce(&str) -> String,
) -> (i32, String, String) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailform"))
        .args(["apply", "--auto-approve", "--consent", "manual"])
        .current_dir(project.path())
        .env("NO_COLOR", "1")
        .env(
            "LAB_CLIENT_SECRET",
            p.clients.confidential.client_secret.as_deref().unwrap(),
        )
        .env_remove("BROWSER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no link printed:\n{seen}"
        );
        seen.push_str(&line);
        if let Some(url) = line.trim().strip_prefix("https://") {
            break format!("https://{url}");
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", answer(&url)).unwrap();
    drop(stdin);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        seen + &rest,
    )
}

#[test]
fn manual_consent_reads_the_pasted_address_from_stdin() {
    let p = peers();
    let project = Project::new(p, &[("support", "alice@example.test")]);
    let (code, stdout, stderr) = apply_manually(&project, p, |url| {
        p.consent(url, "alice@example.test", &["--no-callback"])
            .unwrap()
            .trim()
            .to_string()
    });
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 created"), "{stdout}");
    assert!(
        stderr.contains("Consent for support: open this link signed in as alice@example.test"),
        "{stderr}"
    );
    assert!(project.tokens("support").refresh_token.is_some());

    // An address from another consent (another state) is refused.
    let project = Project::new(p, &[("support", "alice@example.test")]);
    let (code, stdout, _) = apply_manually(&project, p, |_| {
        "http://127.0.0.1:1/callback?code=abc&state=someone-else".to_string()
    });
    assert_eq!(code, 1);
    assert!(
        stdout.contains("the pasted address belongs to another consent"),
        "{stdout}"
    );

    // A mis-paste asks again; the right address then goes through.
    let project = Project::new(p, &[("support", "alice@example.test")]);
    let (code, stdout, stderr) = apply_manually(&project, p, |url| {
        let right = p
            .consent(url, "alice@example.test", &["--no-callback"])
            .unwrap();
        format!(
            "http://127.0.0.1:1/callback?code=abc&state=someone-else\n{}",
            right.trim()
        )
    });
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("That was not it: the pasted address belongs to another consent"),
        "{stderr}"
    );
    assert!(stdout.contains("1 created"), "{stdout}");
}

#[test]
fn device_consent_shows_the_code_and_waits_for_the_person() {
    let p = peers();
    let public = &p.clients.public;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        p,
        free_port(),
        &[("support", "alice@example.test")],
        "[\"mail\", \"offline_access\"]",
    )
    .replace(
        &format!(
            "client_id = \"{}\"\nclient_secret = {{ env = \"LAB_CLIENT_SECRET\" }}",
            p.clients.confidential.client_id
        ),
        &format!(
            "client_id = \"{}\"\ndevice_authorization_url = \"{}\"",
            public.client_id, p.endpoints.device_authorization
        ),
    );
    assert!(text.contains("device_authorization_url"), "{text}");
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    let run = Mailform::new(dir.path())
        .env("BROWSER", p.consent_browser.to_str().unwrap())
        .env("PEERS_CA", p.ca_file.to_str().unwrap())
        .env("CONSENT_USER", "alice@example.test")
        .run(["apply", "--auto-approve", "--consent", "device"])
        .ok();
    assert!(
        run.stderr
            .contains("Consent for support: signed in as alice@example.test, open ")
            && run.stderr.contains(" and enter the code "),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("1 created"), "{}", run.stdout);
    let state = crate::support::fixtures::stored_state(dir.path());
    assert!(
        state.assets["support"]
            .token
            .as_ref()
            .unwrap()
            .has_refresh_token
    );
}

#[test]
fn a_reconsent_that_cannot_happen_keeps_the_working_grant() {
    let p = peers();
    let project = Project::new(p, &[("support", "alice@example.test")]);
    project.mf(p).run(["apply", "--auto-approve"]).ok();
    let old = project.tokens("support").refresh_token.unwrap();
    // A new scope binds the tokens anew: re-consent. But no person is here.
    let text = std::fs::read_to_string(project.path().join("assets.toml"))
        .unwrap()
        .replace(
            "scopes = [\"mail\", \"offline_access\"]",
            "scopes = [\"mail\", \"offline_access\", \"https://mail.google.com/\"]",
        );
    std::fs::write(project.path().join("assets.toml"), text).unwrap();
    let run = Mailform::new(project.path())
        .env(
            "LAB_CLIENT_SECRET",
            p.clients.confidential.client_secret.as_deref().unwrap(),
        )
        .run(["apply", "--auto-approve"])
        .code(1);
    assert!(
        run.stdout.contains("! support  re-consent"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("consent required for support"),
        "{}",
        run.stdout
    );
    // Nothing was revoked or forgotten: the mailbox keeps working meanwhile.
    assert_eq!(p.introspect(old.expose())["active"], true);
    assert_eq!(
        project.tokens("support").refresh_token.unwrap().expose(),
        old.expose()
    );
}
