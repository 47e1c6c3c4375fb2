//! The SMTP login proof through the real binary, against the real SMTP
//! server (smtp-server, both ports and its Microsoft-worded port) and the
//! real OAuth server that introspects each token: `plan --check-smtp`,
//! `send-test`, and the proof `apply` records.

use std::path::Path;

use base64::Engine as _;
use chrono::Utc;
use mailform::config;
use mailform::secret::Secret;
use mailform::state::{State, Tokens};
use mailform::store::{FileStore, StateStore as _, key};
use serde_json::Value;

use crate::support::peers::{
    LabSmtp, Peers, consent_and_exchange, lab_provider, offline_tokens, peers,
};
use crate::support::{Mailform, Run};

/// How the asset reaches the SMTP server.
struct Lab {
    user: &'static str,
    /// The account named in `username` (default: `user`).
    username: Option<&'static str>,
    port: u16,
    security: &'static str,
    scopes: &'static str,
    trust_ca: bool,
    /// The loopback consent listener's port (for apply).
    callback_port: u16,
}

impl Lab {
    fn starttls(p: &Peers, user: &'static str) -> Lab {
        Lab {
            user,
            username: None,
            port: p.smtp.starttls_port,
            security: "starttls",
            scopes: r#"["mail", "offline_access"]"#,
            trust_ca: true,
            callback_port: 8765,
        }
    }

    fn config(&self, p: &Peers) -> String {
        let smtp = LabSmtp {
            port: self.port,
            security: self.security,
            trust_ca: self.trust_ca,
        };
        format!(
            "{}\n[assets.support]\nemail = \"{}\"\nprovider = \"lab\"\n",
            lab_provider(p, self.callback_port, self.scopes, &smtp),
            self.username.unwrap_or(self.user),
        )
    }
}

/// A project whose state holds tokens for the one asset.
struct Project {
    dir: tempfile::TempDir,
    secrets: Vec<String>,
    /// Who the XOAUTH2 initial response names.
    user: String,
}

impl Project {
    /// `tokens`: the access token and maybe a refresh token, as stored.
    fn new(p: &Peers, lab: &Lab, access: &str, refresh: Option<&str>, granted: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = lab.config(p);
        std::fs::write(dir.path().join("assets.toml"), &text).unwrap();
        let parsed = config::parse(&dir.path().join("assets.toml"), text);
        let config = parsed
            .config
            .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics));
        let (key, _) = key::create(&dir.path().join(".mailform")).unwrap();
        let mut state = State::new();
        let sealed = Tokens {
            access_token: Secret::new(access),
            refresh_token: refresh.map(Secret::new),
        };
        let record = state.insert_applied(
            "support",
            mailform::plan::applied(&config, &config.assets["support"]),
            Some((
                &key,
                &sealed,
                granted.iter().map(ToString::to_string).collect(),
            )),
            Utc::now(),
        );
        record.token.as_mut().unwrap().access_expires_at =
            Some(Utc::now() + chrono::Duration::minutes(50));
        FileStore::new(dir.path().join(".mailform/state.json"))
            .save(&mut state)
            .unwrap();
        let user = lab.username.unwrap_or(lab.user).to_string();
        let mut secrets = vec![p.clients.confidential.client_secret.clone().unwrap()];
        secrets.extend(xoauth2_secrets(&user, access, refresh));
        Project { dir, secrets, user }
    }

    /// With tokens `user` consented to (scopes `mail offline_access`).
    fn consented(p: &Peers, lab: &Lab) -> Self {
        let t = offline_tokens(p, &p.clients.confidential, lab.user);
        Self::new(
            p,
            lab,
            t["access_token"].as_str().unwrap(),
            t["refresh_token"].as_str(),
            &["mail", "offline_access"],
        )
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mf(&self) -> Mailform {
        Mailform::new(self.path()).env(
            "LAB_CLIENT_SECRET",
            peers()
                .clients
                .confidential
                .client_secret
                .as_deref()
                .unwrap(),
        )
    }

    fn state(&self) -> State {
        crate::support::fixtures::stored_state(self.path())
    }

    /// Nothing printed or stored in clear holds a token, the XOAUTH2 initial
    /// response, or the client secret: of the tokens the project started
    /// with, and of those stored now (a refresh replaced them).
    #[track_caller]
    fn assert_clean(&self, run: &Run) {
        let state = std::fs::read_to_string(self.path().join(".mailform/state.json")).unwrap();
        let (key, _) = key::load(&self.path().join(".mailform")).unwrap().unwrap();
        let mut secrets = self.secrets.clone();
        if let Some(Ok(now)) = self.state().open_tokens(&key, "support") {
            secrets.extend(xoauth2_secrets(
                &self.user,
                now.access_token.expose(),
                now.refresh_token.as_ref().map(Secret::expose),
            ));
        }
        for s in &secrets {
            assert!(
                !run.all().contains(s.as_str()),
                "a secret leaked:\n{}",
                run.all()
            );
            assert!(
                !state.contains(s.as_str()),
                "a secret is in the state file in clear"
            );
        }
    }

    /// `plan --check-smtp --json`'s one change.
    fn checked(&self, extra: &[&str]) -> (Run, Value) {
        let mut args = vec!["plan", "--check-smtp", "--json"];
        args.extend(extra);
        let run = self.mf().run(args);
        self.assert_clean(&run);
        let plan: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        (run, plan["changes"][0].clone())
    }
}

/// The tokens, and what a leak of the XOAUTH2 initial response made of
/// the access token would look like.
fn xoauth2_secrets(user: &str, access: &str, refresh: Option<&str>) -> Vec<String> {
    let mut secrets = vec![
        access.to_string(),
        base64::engine::general_purpose::STANDARD
            .encode(format!("user={user}\x01auth=Bearer {access}\x01\x01")),
    ];
    secrets.extend(refresh.map(ToString::to_string));
    secrets
}

/// The one SMTP refusal reason of a change.
fn refusal(change: &Value) -> &Value {
    change["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "smtp_login_refused")
        .unwrap_or_else(|| panic!("no SMTP refusal in {change}"))
}

#[test]
fn a_good_token_logs_in_on_the_starttls_and_the_tls_port() {
    let p = peers();
    for (port, security) in [(p.smtp.starttls_port, "starttls"), (p.smtp.tls_port, "tls")] {
        let lab = Lab {
            port,
            security,
            ..Lab::starttls(p, "alice@example.test")
        };
        let project = Project::consented(p, &lab);
        let run = project
            .mf()
            .run(["plan", "--check-smtp", "--detailed-exitcode", "-v"])
            .code(0);
        assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
        assert!(
            run.stderr
                .contains("SMTP logins: 1 accepted, 0 refused, 0 could not be checked."),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!(
                "SMTP 127.0.0.1:{port} ({security}) as alice@example.test: 235 2.7.0 Authentication successful"
            )),
            "{}",
            run.stderr
        );
        project.assert_clean(&run);
    }
}

#[test]
fn a_bogus_token_is_refused_in_the_servers_words() {
    let p = peers();
    let lab = Lab::starttls(p, "alice@example.test");
    let project = Project::new(p, &lab, "bogus-access-token-SENTINEL", None, &["mail"]);
    let (run, change) = project.checked(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    // Refused as the wrong account's token (and no refresh token to try
    // another): only a new consent fixes that.
    assert_eq!(change["action"], "reconsent", "{change}");
    let r = refusal(&change);
    assert_eq!(r["server"], format!("127.0.0.1:{}", lab.port));
    assert_eq!(r["reconsent"], true);
    // The whole dialogue: 334 <base64 JSON> (decoded), the empty line, 535.
    assert_eq!(
        r["reply"],
        "535 5.7.8 Error: Username and Password not accepted (token status 401, scope mail https://mail.google.com/)"
    );
    assert!(
        r["hint"]
            .as_str()
            .unwrap()
            .contains("was consent given while signed in as alice@example.test?"),
        "{r}"
    );
    let human = project
        .mf()
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(2);
    assert!(
        human.stdout.contains(&format!(
            "! support  re-consent  alice@example.test (lab): SMTP login refused by 127.0.0.1:{} as not this mailbox's token — 535 5.7.8 Error: Username and Password not accepted (token status 401, scope mail https://mail.google.com/)",
            lab.port
        )),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("      hint: the token's account"),
        "{}",
        human.stdout
    );
    project.assert_clean(&human);
    let verbose = project.mf().run(["plan", "--check-smtp", "-v"]);
    project.assert_clean(&verbose);
    assert!(verbose.stderr.contains("535 5.7.8"), "{}", verbose.stderr);
}

#[test]
fn a_token_without_the_mail_scope_is_told_which_scope_to_add() {
    let p = peers();
    let user = "bob@example.test";
    let t = consent_and_exchange(
        p,
        &p.clients.confidential,
        user,
        "openid offline_access",
        &[("prompt", "consent")],
    );
    let lab = Lab {
        scopes: r#"["openid", "offline_access"]"#,
        ..Lab::starttls(p, user)
    };
    let project = Project::new(
        p,
        &lab,
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str(),
        &["openid", "offline_access"],
    );
    let (run, change) = project.checked(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let r = refusal(&change);
    assert!(r["reply"].as_str().unwrap().starts_with("535 5.7.8"), "{r}");
    assert!(
        r["hint"].as_str().unwrap().contains(
            "it asks for mail or https://mail.google.com/): add it to the scopes of `support`"
        ),
        "{r}"
    );
}

#[test]
fn another_accounts_token_gets_the_wrong_account_hint() {
    let p = peers();
    // bob consented; the asset logs in as alice.
    let lab = Lab {
        username: Some("alice@example.test"),
        ..Lab::starttls(p, "bob@example.test")
    };
    let project = Project::consented(p, &lab);
    let (run, change) = project.checked(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let r = refusal(&change);
    assert!(
        r["hint"]
            .as_str()
            .unwrap()
            .contains("does not match username alice@example.test: was consent given while signed in as alice@example.test?"),
        "{r}"
    );
}

#[test]
fn microsoft_with_smtp_auth_disabled_is_named() {
    let p = peers();
    let lab = Lab {
        port: p.smtp.microsoft_port,
        ..Lab::starttls(p, "alice@example.test")
    };
    let project = Project::consented(p, &lab);
    let (_, change) = project.checked(&[]);
    let r = refusal(&change);
    assert!(
        r["reply"].as_str().unwrap().starts_with(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."
        ),
        "{r}"
    );
    assert!(
        r["hint"]
            .as_str()
            .unwrap()
            .contains("authenticated SMTP is disabled"),
        "{r}"
    );
    // A bad token there: 5.7.3 at once, no challenge.
    let bad = Project::new(p, &lab, "bogus-access-token-SENTINEL", None, &["mail"]);
    let (_, change) = bad.checked(&[]);
    let r = refusal(&change);
    assert!(
        r["reply"]
            .as_str()
            .unwrap()
            .starts_with("535 5.7.3 Authentication unsuccessful"),
        "{r}"
    );
    assert!(
        r["hint"]
            .as_str()
            .unwrap()
            .contains("not licensed or not allowed to send"),
        "{r}"
    );
}

/// `plan --check-smtp` that could not check: exit 1, the reason on stderr.
#[track_caller]
fn failed_check(project: &Project, env: &[(&str, &str)]) -> String {
    let mut m = project.mf();
    for (k, v) in env {
        m = m.env(k, v);
    }
    let run = m.run(["plan", "--check-smtp"]).code(1);
    project.assert_clean(&run);
    assert!(
        run.stderr
            .contains("SMTP logins: 0 accepted, 0 refused, 1 could not be checked."),
        "{}",
        run.stderr
    );
    run.stderr
}

/// `failed_check` of a project holding only an access token (no refresh
/// token, so nothing is sent to the OAuth server).
#[track_caller]
fn failed_with_access_only(p: &Peers, lab: &Lab, env: &[(&str, &str)]) -> String {
    let project = Project::new(p, lab, "some-access-token-SENTINEL", None, &["mail"]);
    failed_check(&project, env)
}

#[test]
fn an_untrusted_certificate_is_named_with_the_fix() {
    let p = peers();
    let lab = Lab {
        trust_ca: false,
        ..Lab::starttls(p, "alice@example.test")
    };
    // No refresh token: nothing is sent to the (equally untrusted) OAuth server.
    let err = failed_with_access_only(p, &lab, &[]);
    assert!(
        err.contains(&format!(
            "error: support: SMTP check: TLS with 127.0.0.1:{} failed: the server's certificate is not signed by an authority mailform trusts: if the server uses a private CA, set ca_file on provider `lab`",
            lab.port
        )),
        "{err}"
    );
}

#[test]
fn tls_spoken_to_the_starttls_port_and_the_reverse_get_a_port_hint() {
    let p = peers();
    let tls_on_starttls = Lab {
        security: "tls",
        ..Lab::starttls(p, "alice@example.test")
    };
    let err = failed_with_access_only(p, &tls_on_starttls, &[]);
    assert!(
        err.contains(&format!(
            "TLS with 127.0.0.1:{port} failed: the server did not answer in TLS (it sent plain text): port {port} may expect STARTTLS (usually 587): try smtp.security = \"starttls\"",
            port = p.smtp.starttls_port
        )),
        "{err}"
    );

    let starttls_on_tls = Lab {
        port: p.smtp.tls_port,
        ..Lab::starttls(p, "alice@example.test")
    };
    let err = failed_with_access_only(p, &starttls_on_tls, &[("MAILFORM_SMTP_TIMEOUT", "1s")]);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{port} did not answer within 1s while waiting for the greeting and the answer to EHLO (connected, but the server did not answer; if port {port} expects TLS from the first byte (implicit TLS, usually 465), set smtp.security = \"tls\")",
            port = p.smtp.tls_port
        )),
        "{err}"
    );
}

#[test]
fn a_server_that_never_greets_and_a_closed_port_fail_in_bounded_time() {
    let p = peers();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepts (the kernel's backlog does), never says a word.
    let lab = Lab {
        port,
        ..Lab::starttls(p, "alice@example.test")
    };
    let started = std::time::Instant::now();
    let err = failed_with_access_only(p, &lab, &[("MAILFORM_SMTP_TIMEOUT", "1")]);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{port} did not answer within 1s while waiting for the greeting and the answer to EHLO"
        )),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    drop(silent);

    // Nothing listens there now.
    let err = failed_with_access_only(p, &lab, &[]);
    assert!(
        err.contains(&format!(
            "cannot connect to 127.0.0.1:{port}: connection refused (nothing listens on port {port}: check smtp.host and smtp.port)"
        )),
        "{err}"
    );
}

#[test]
fn access_tokens_expired_at_the_provider_are_no_drift() {
    let p = peers();
    let user = "leo@example.test";
    let project = Project::consented(p, &Lab::starttls(p, user));
    assert!(p.expire_access_tokens(user) >= 1);
    let run = project
        .mf()
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
    assert!(run.stderr.contains("1 accepted"), "{}", run.stderr);
    project.assert_clean(&run);
}

#[test]
fn a_bad_smtp_timeout_is_a_clear_error() {
    let p = peers();
    let project = Project::new(
        p,
        &Lab::starttls(p, "alice@example.test"),
        "x-SENTINEL",
        None,
        &["mail"],
    );
    let run = project
        .mf()
        .env("MAILFORM_SMTP_TIMEOUT", "soon")
        .run(["plan", "--check-smtp"])
        .code(1);
    assert!(
        run.stderr.contains("invalid environment variable MAILFORM_SMTP_TIMEOUT: `soon` is not a duration above zero"),
        "{}",
        run.stderr
    );
}

/// `send-test support --to bob@example.test --subject SUBJECT`, which must succeed.
fn send_test(project: &Project, subject: &str) -> Run {
    let run = project
        .mf()
        .run([
            "send-test",
            "support",
            "--to",
            "bob@example.test",
            "--subject",
            subject,
        ])
        .ok();
    project.assert_clean(&run);
    run
}

/// The message of `subject` in the server's store: (envelope, text).
fn delivered(p: &Peers, subject: &str) -> (Value, String) {
    p.messages()
        .into_iter()
        .find(|(_, eml)| eml.contains(&format!("Subject: {subject}\r\n")))
        .unwrap_or_else(|| panic!("no message with subject {subject}"))
}

#[test]
fn send_test_delivers_a_well_formed_message() {
    let p = peers();
    let project = Project::consented(p, &Lab::starttls(p, "alice@example.test"));
    let subject = format!("mailform send-test {}", crate::support::peers::random(6));
    let run = send_test(&project, &subject);
    // The server's reply to the message, with its queue id.
    assert!(
        run.stdout.starts_with("250 2.6.0 Ok: queued as "),
        "{}",
        run.stdout
    );
    let queued = run.stdout.trim().rsplit(' ').next().unwrap().to_string();
    let (envelope, eml) = delivered(p, &subject);
    assert_eq!(envelope["user"], "alice@example.test");
    assert_eq!(envelope["from"], "alice@example.test");
    assert_eq!(envelope["to"], serde_json::json!(["bob@example.test"]));
    assert_eq!(envelope["secure"], true);
    let headers = eml.split("\r\n\r\n").next().unwrap();
    for want in [
        "From: alice@example.test",
        "To: bob@example.test",
        "Date: ",
        "Message-ID: <",
    ] {
        assert!(headers.contains(want), "{want} missing from:\n{headers}");
    }
    assert!(headers.contains("@example.test>"), "{headers}");
    assert!(eml.contains("logged in as alice@example.test"), "{eml}");
    // The queue id in the reply names the file the server stored it under.
    assert_eq!(
        std::fs::read_to_string(p.mailbox.join(format!("{queued}.eml"))).ok(),
        Some(eml),
        "queue id {queued}"
    );
}

#[test]
fn send_test_retries_once_with_a_fresh_token() {
    let p = peers();
    let user = "mia@example.test";
    let project = Project::consented(p, &Lab::starttls(p, user));
    let before = project.state().assets["support"].token.clone().unwrap();
    assert!(p.expire_access_tokens(user) >= 1);
    let subject = format!("retry {}", crate::support::peers::random(6));
    send_test(&project, &subject);
    delivered(p, &subject);
    // The fresh token was stored.
    let after = project.state().assets["support"].token.clone().unwrap();
    assert_ne!(before.sealed, after.sealed);
}

#[test]
fn send_test_reports_a_refusal_and_bad_input() {
    let p = peers();
    let project = Project::new(
        p,
        &Lab::starttls(p, "alice@example.test"),
        "bogus-access-token-SENTINEL",
        None,
        &["mail"],
    );
    let run = project
        .mf()
        .run(["send-test", "support", "--to", "bob@example.test"])
        .code(1);
    project.assert_clean(&run);
    assert!(
        run.stderr.contains(&format!(
            "support: SMTP login refused by 127.0.0.1:{} — 535 5.7.8 Error: Username and Password not accepted (token status 401, scope mail https://mail.google.com/)",
            p.smtp.starttls_port
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: the token's account"),
        "{}",
        run.stderr
    );
    // The advice is given once (it once came twice: the error and again).
    assert_eq!(run.stderr.matches("535 5.7.8").count(), 1, "{}", run.stderr);
    assert_eq!(run.stderr.matches("hint:").count(), 1, "{}", run.stderr);
    let run = project
        .mf()
        .run(["send-test", "support", "--to", "not an address\u{1b}[31m"])
        .code(1);
    assert!(
        run.stderr
            .contains("invalid --to `not an address\\u{1b}[31m`"),
        "{}",
        run.stderr
    );
    let run = project
        .mf()
        .run(["send-test", "suport", "--to", "bob@example.test"])
        .code(1);
    assert!(
        run.stderr.contains("did you mean `support`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn apply_proves_the_login_records_it_and_fails_a_refused_one() {
    let p = peers();
    let port = crate::apply::free_port();
    let good = Lab {
        callback_port: port,
        ..Lab::starttls(p, "bob@example.test")
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("assets.toml"), good.config(p)).unwrap();
    let mf = || crate::support::lab(p, dir.path());
    let run = mf().run(["apply", "--auto-approve"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "support: SMTP login proven by 127.0.0.1:{} (235 2.7.0 Authentication successful)",
            p.smtp.starttls_port
        )),
        "{}",
        run.stderr
    );
    let show = mf().run(["show"]).ok();
    assert!(
        show.stdout.contains("smtp check   accepted at "),
        "{}",
        show.stdout
    );
    // Nothing printed holds the tokens the consent stored, or the secret.
    let tokens = crate::support::fixtures::stored_tokens(dir.path(), "support");
    let secrets = [
        tokens.access_token.expose().to_string(),
        tokens.refresh_token.as_ref().unwrap().expose().to_string(),
        p.clients.confidential.client_secret.clone().unwrap(),
    ];
    for out in [run.all(), show.all()] {
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "a secret leaked:\n{out}");
        }
    }

    // The same mailbox moved to a tenant with SMTP AUTH disabled: the update
    // proves the login again, and the refusal fails the asset.
    let moved = Lab {
        port: p.smtp.microsoft_port,
        ..good
    };
    std::fs::write(dir.path().join("assets.toml"), moved.config(p)).unwrap();
    let run = mf().run(["apply", "--auto-approve"]).code(1);
    for s in &secrets {
        assert!(
            !run.all().contains(s.as_str()),
            "a secret leaked:\n{}",
            run.all()
        );
    }
    assert!(
        run.stdout
            .contains("support: updated, but SMTP login refused by")
            && run.stdout.contains("535 5.7.139")
            && run.stdout.contains("hint: authenticated SMTP is disabled"),
        "{}",
        run.all()
    );
    let show = mf().run(["show"]).ok();
    assert!(
        show.stdout.contains("smtp check   REFUSED at "),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("smtp hint    authenticated SMTP is disabled"),
        "{}",
        show.stdout
    );
    // Still drift, offline too, until a check passes; the tokens stay.
    let plan = mf()
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert!(plan.stdout.contains("at the last check"), "{}", plan.stdout);
    let state = crate::support::fixtures::stored_state(dir.path());
    assert!(state.assets["support"].token.is_some());
}

#[test]
fn apply_retries_a_stored_token_the_server_refuses() {
    let p = peers();
    let user = "nina@example.test";
    let project = Project::consented(p, &Lab::starttls(p, user));
    assert!(p.expire_access_tokens(user) >= 1);
    // The port changes: apply proves the login with the stored (dead) access
    // token, is refused, refreshes once and is let in.
    let lab = Lab {
        port: p.smtp.tls_port,
        security: "tls",
        ..Lab::starttls(p, user)
    };
    std::fs::write(project.path().join("assets.toml"), lab.config(p)).unwrap();
    let before = project.state().assets["support"].token.clone().unwrap();
    let run = project.mf().run(["apply", "--auto-approve"]).ok();
    project.assert_clean(&run);
    assert!(
        run.stderr.contains("support: SMTP login proven by"),
        "{}",
        run.stderr
    );
    let state = project.state();
    let check = state.assets["support"].smtp_check.clone().unwrap();
    assert!(check.ok, "{check:?}");
    assert_ne!(
        before.sealed,
        state.assets["support"].token.clone().unwrap().sealed
    );
}

#[test]
fn a_server_without_starttls_or_xoauth2_is_reported_plainly() {
    let p = peers();
    let no_starttls = Lab {
        port: p.smtp.no_starttls_port,
        ..Lab::starttls(p, "alice@example.test")
    };
    let err = failed_with_access_only(p, &no_starttls, &[]);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{} does not offer STARTTLS, so the login cannot be protected (AUTH is never sent in the clear)",
            p.smtp.no_starttls_port
        )),
        "{err}"
    );
    let plain_auth = Lab {
        port: p.smtp.plain_auth_port,
        security: "tls",
        ..Lab::starttls(p, "alice@example.test")
    };
    let err = failed_with_access_only(p, &plain_auth, &[]);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{} does not offer AUTH XOAUTH2 (it offers PLAIN, LOGIN)",
            p.smtp.plain_auth_port
        )),
        "{err}"
    );
}

#[test]
fn a_real_server_that_stalls_before_the_greeting_or_at_auth_is_bounded() {
    let p = peers();
    // smtp-server holding the connection before its greeting.
    let port = p.smtp.mute_port;
    let lab = Lab {
        port,
        ..Lab::starttls(p, "alice@example.test")
    };
    let started = std::time::Instant::now();
    let err = failed_with_access_only(p, &lab, &[("MAILFORM_SMTP_TIMEOUT", "1")]);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{port} did not answer within 1s while waiting for the greeting and the answer to EHLO"
        )),
        "{err}"
    );
    // The real server, stalled at AUTH: AUTH times out, and so does the
    // polite QUIT after it (bounded too).
    let lab = Lab {
        port: p.smtp.stall_port,
        ..Lab::starttls(p, "alice@example.test")
    };
    let err = failed_with_access_only(p, &lab, &[("MAILFORM_SMTP_TIMEOUT", "1")]);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{} did not answer within 1s while waiting for the answer to AUTH",
            p.smtp.stall_port
        )),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_that_never_ends_a_line_is_cut_off_before_and_after_starttls() {
    let p = peers();
    // smtp-server greeting with a 16 MB line, and answering AUTH (over TLS)
    // with one: each is cut off after 4 KiB, never read whole.
    for port in [p.smtp.flood_greeting_port, p.smtp.flood_auth_port] {
        let lab = Lab {
            port,
            ..Lab::starttls(p, "alice@example.test")
        };
        let err = failed_with_access_only(p, &lab, &[("MAILFORM_SMTP_TIMEOUT", "20")]);
        assert!(
            err.contains(&format!(
                "127.0.0.1:{port}: the server sent an over-long reply (over 4 KiB in a line, or 64 KiB in one answer)"
            )),
            "{err}"
        );
    }
}
