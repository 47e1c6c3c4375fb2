//! The trust rules, against the real OAuth and SMTP servers: a consent given
//! by the wrong account is revoked and never replaces a working grant (the
//! ID token decides, else the SMTP login); a delegate named by `consent_as`
//! consents for a shared mailbox.
//!
//! Each test has accounts of its own, so counting a person's grants at the
//! provider tells whether mailform revoked the one it was handed.

use std::path::Path;

use crate::apply::{config_text, free_port};
use crate::support::peers::{Peers, peers};
use crate::support::{Mailform, Run, assert_says};

/// The test provider asking for `openid email`, as the presets do.
const WITH_ID_TOKEN: &str = r#"["openid", "email", "mail", "offline_access"]"#;
/// A provider that asks for no `openid`: no ID token comes back.
const WITHOUT_ID_TOKEN: &str = r#"["mail", "offline_access"]"#;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(p: &Peers, assets: &[(&str, &str)], scopes: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(p, free_port(), assets, scopes) + extra;
        std::fs::write(dir.path().join("assets.toml"), text).unwrap();
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mf(&self, p: &Peers) -> Mailform {
        crate::support::lab(p, self.path())
    }

    /// The stored refresh token of `name`.
    fn refresh(&self, name: &str) -> String {
        crate::support::fixtures::stored_tokens(self.path(), name)
            .refresh_token
            .unwrap()
            .expose()
            .to_string()
    }

    /// `apply --reconsent NAME` where `user` signs in; it fails.
    fn reconsent_as(&self, p: &Peers, name: &str, user: &str) -> Run {
        self.mf(p)
            .env("CONSENT_USER", user)
            .run(["apply", "--auto-approve", "--reconsent", name])
            .code(1)
    }

    fn has_tokens(&self, name: &str) -> bool {
        if !self.path().join(".mailform/state.json").exists() {
            return false;
        }
        crate::support::fixtures::stored_state(self.path())
            .assets
            .get(name)
            .is_some_and(|r| r.token.is_some())
    }
}

/// Whose the access token `mailform token NAME` prints is, per the provider.
fn token_owner(p: &Peers, project: &Project, name: &str) -> String {
    let run = project.mf(p).run(["token", name]).ok();
    let info = p.introspect(run.stdout.trim());
    assert_eq!(info["active"], true, "{info}");
    info["sub"].as_str().unwrap().to_string()
}

#[test]
fn a_wrong_account_at_create_is_revoked_and_never_stored() {
    let p = peers();
    let project = Project::new(p, &[("support", "rita@example.test")], WITH_ID_TOKEN, "");
    let run = project
        .mf(p)
        .env("CONSENT_USER", "sam@example.test")
        .run(["apply", "--auto-approve"])
        .code(1);
    assert_says(
        &run,
        "support: consent was given as sam@example.test, not rita@example.test: the new grant was revoked — consent again signed in as rita@example.test",
    );
    assert!(!project.has_tokens("support"));
    assert!(
        !run.all().contains("consented; tokens stored"),
        "{}",
        run.all()
    );
    // Revoked at the provider: sam holds no grant any more.
    assert_eq!(p.revoke_grants("sam@example.test"), 0);
    // The next apply, by the right person, creates it.
    project.mf(p).run(["apply", "--auto-approve"]).ok();
    assert_eq!(token_owner(p, &project, "support"), "rita@example.test");
}

#[test]
fn a_wrong_account_at_reconsent_keeps_the_working_grant() {
    let p = peers();
    let project = Project::new(p, &[("support", "tess@example.test")], WITH_ID_TOKEN, "");
    project.mf(p).run(["apply", "--auto-approve"]).ok();
    let before = project.refresh("support");
    let run = project.reconsent_as(p, "support", "uma@example.test");
    assert_says(
        &run,
        "support: consent was given as uma@example.test, not tess@example.test: the new grant was revoked and the stored one kept — consent again signed in as tess@example.test",
    );
    assert_eq!(
        project.refresh("support"),
        before,
        "the working grant stays"
    );
    assert_eq!(p.introspect(&before)["active"], true);
    assert_eq!(token_owner(p, &project, "support"), "tess@example.test");
    assert_eq!(p.revoke_grants("uma@example.test"), 0);
    project
        .mf(p)
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
}

#[test]
fn owners_who_swap_links_in_a_bulk_consent_are_both_refused() {
    let p = peers();
    let project = Project::new(
        p,
        &[
            ("billing", "wendy@example.test"),
            ("support", "xena@example.test"),
        ],
        WITH_ID_TOKEN,
        "",
    );
    let run = project
        .mf(p)
        .env(
            "CONSENT_SWAP",
            "wendy@example.test=xena@example.test xena@example.test=wendy@example.test",
        )
        .run(["apply", "--auto-approve"])
        .code(1);
    assert_says(
        &run,
        "billing: consent was given as xena@example.test, not wendy@example.test",
    );
    assert_says(
        &run,
        "support: consent was given as wendy@example.test, not xena@example.test",
    );
    assert_says(&run, "0 created");
    assert!(!project.has_tokens("billing") && !project.has_tokens("support"));
    assert_eq!(p.revoke_grants("wendy@example.test"), 0);
    assert_eq!(p.revoke_grants("xena@example.test"), 0);
}

#[test]
fn without_an_id_token_the_smtp_login_decides_before_the_grant_is_replaced() {
    let p = peers();
    let project = Project::new(p, &[("support", "yuri@example.test")], WITHOUT_ID_TOKEN, "");
    // The right account: the login is proven once, before the grant is stored.
    let first = project.mf(p).run(["apply", "--auto-approve"]).ok();
    assert_eq!(
        first.all().matches("support: SMTP login proven by").count(),
        1,
        "{}",
        first.all()
    );
    let before = project.refresh("support");
    let run = project.reconsent_as(p, "support", "zoe@example.test");
    assert_says(&run, "refused the new grant's login as yuri@example.test");
    assert_says(
        &run,
        "it may be another account's (the provider sent no ID token to say who consented): the new grant was revoked and the stored one kept — consent again signed in as yuri@example.test",
    );
    assert_eq!(project.refresh("support"), before);
    assert_eq!(token_owner(p, &project, "support"), "yuri@example.test");
    assert_eq!(p.revoke_grants("zoe@example.test"), 0);
}

#[test]
fn a_delegate_named_by_consent_as_consents_for_a_shared_mailbox() {
    let p = peers();
    let project = Project::new(
        p,
        &[("shared", "shared@example.test")],
        WITH_ID_TOKEN,
        "consent_as = \"Quinn@Example.test\"\n",
    );
    let run = project
        .mf(p)
        .env("CONSENT_USER", "quinn@example.test")
        .run(["apply", "--auto-approve"])
        .ok();
    // The link names the delegate, who signs in; the login is the mailbox's.
    assert_says(&run, "login_hint=Quinn%40Example.test");
    assert_says(&run, "shared: consented; tokens stored");
    assert_says(&run, "shared: SMTP login proven by");
    assert_eq!(token_owner(p, &project, "shared"), "quinn@example.test");
    // Anyone else is refused, the mailbox's own name included.
    let run = project.reconsent_as(p, "shared", "vic@example.test");
    assert_says(
        &run,
        "consent was given as vic@example.test, not Quinn@Example.test",
    );
    assert_eq!(token_owner(p, &project, "shared"), "quinn@example.test");
}

#[test]
fn an_unapplied_smtp_endpoint_gets_no_token_before_apply() {
    let p = peers();
    let user = "amy@example.test";
    let project = Project::new(p, &[("support", user)], WITH_ID_TOKEN, "");
    project.mf(p).run(["apply", "--auto-approve"]).ok();
    // A branch points the mailbox at a server nobody approved (with a
    // certificate the trusted CA signed, so only the rule stops it).
    let config = project.path().join("assets.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}smtp = {{ host = \"127.0.0.1\", port = {}, security = \"starttls\" }}\n",
            p.smtp.capture_port
        ),
    )
    .unwrap();
    let plan = project
        .mf(p)
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(2);
    assert_says(&plan, "~ support  update");
    assert_says(
        &plan,
        "not proved: the new SMTP endpoint gets a token only after apply",
    );
    let token = project.mf(p).run(["token", "support"]).ok();
    assert_says(&token, "which is not applied");
    let sent = project
        .mf(p)
        .run(["send-test", "support", "--to", "someone@example.test"])
        .ok();
    assert_says(&sent, "sending through the proven one");
    assert!(
        !p.captured_logins().iter().any(|u| u == user),
        "a token reached the unapplied server"
    );
    // Once a person approves it, apply proves it there (and this server
    // refuses every login).
    let apply = project.mf(p).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "SMTP login refused by 127.0.0.1:");
    assert!(p.captured_logins().iter().any(|u| u == user));
}

/// A device-flow config of the public client, whose device authorization
/// answers with `interval` (the real server's answer, that field replaced).
fn device_project(p: &Peers, interval: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let hostile = format!("{}/__hostile/device?interval={interval}", p.issuer);
    let text = config_text(
        p,
        free_port(),
        &[("support", "alice@example.test")],
        WITHOUT_ID_TOKEN,
    )
    .replace(
        &format!(
            "client_id = \"{}\"\nclient_secret = {{ env = \"LAB_CLIENT_SECRET\" }}",
            p.clients.confidential.client_id
        ),
        &format!(
            "client_id = \"{}\"\ndevice_authorization_url = \"{hostile}\"",
            p.clients.public.client_id
        ),
    );
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    dir
}

#[test]
fn a_device_flow_interval_from_a_hostile_provider_is_bounded() {
    let p = peers();
    // Nobody enters the code ($BROWSER does nothing).
    let run_with = |interval: &str| {
        let dir = device_project(p, interval);
        let started = std::time::Instant::now();
        let run = Mailform::new(dir.path())
            .env("BROWSER", "true")
            .env("PEERS_CA", p.ca_file.to_str().unwrap())
            .run([
                "-v",
                "apply",
                "--auto-approve",
                "--consent",
                "device",
                "--consent-timeout",
                "4s",
            ])
            .code(1);
        (run, started.elapsed())
    };
    // A day and more: the wait still ends with the consent timeout.
    let (run, took) = run_with("100000000");
    assert_says(&run, "no one entered the device code in time");
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    // Zero: polled about once a second (and slower after slow_down), not
    // in a loop.
    let (run, _) = run_with("0");
    assert_says(&run, "no one entered the device code in time");
    let polls = run
        .stderr
        .lines()
        .filter(|l| l.contains("POST") && l.contains("/token"))
        .count();
    assert!((1..=6).contains(&polls), "{polls} polls:\n{}", run.stderr);
}

/// The threads a process runs, from /proc.
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// What the floods left: the most threads seen, and how much of an
/// endless header the listener took before it cut the writer off.
struct Flooded {
    threads: usize,
    endless_sent: usize,
    held: Vec<std::net::TcpStream>,
}

/// Floods the consent listener on `port` of mailform `pid` for 3 s: 400
/// idle connections, a header without end, a client that sends requests
/// and never reads an answer.
fn flood(port: u16, pid: u32) -> Flooded {
    use std::io::Write as _;
    let address = format!("127.0.0.1:{port}");
    crate::support::wait_for("the listener", std::time::Duration::from_secs(30), || {
        std::net::TcpStream::connect(&address).is_ok()
    });
    let started = std::time::Instant::now();
    let mut held: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    let endless = std::thread::spawn({
        let address = address.clone();
        move || {
            let mut s = std::net::TcpStream::connect(&address).unwrap();
            s.set_write_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let _ = s.write_all(b"GET /callback?state=x HTTP/1.1\r\nX-Flood: ");
            let chunk = vec![b'a'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 64 * 1024 * 1024 && s.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        }
    });
    let mut mute = std::net::TcpStream::connect(&address).unwrap();
    for _ in 0..200 {
        if mute
            .write_all(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_err()
        {
            break;
        }
    }
    held.push(mute);
    let mut threads_seen = 0;
    while started.elapsed() < std::time::Duration::from_secs(3) {
        threads_seen = threads_seen.max(threads(pid));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Flooded {
        threads: threads_seen,
        endless_sent: endless.join().unwrap(),
        held,
    }
}

#[test]
fn the_consent_listener_holds_under_floods_and_keeps_its_deadline_and_ctrl_c() {
    let p = peers();
    for (timeout, interrupt) in [("6s", false), ("5m", true)] {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(p, port, &[("support", "alice@example.test")], WITH_ID_TOKEN);
        std::fs::write(dir.path().join("assets.toml"), text).unwrap();
        // Nobody consents: $BROWSER does nothing.
        let mut child = crate::support::lab(p, dir.path())
            .env("BROWSER", "true")
            .spawn(
                ["apply", "--auto-approve", "--consent-timeout", timeout],
                dir.path(),
            );
        let flooded = flood(port, child.id());
        assert!(
            flooded.threads < 40,
            "{} threads under the flood",
            flooded.threads
        );
        assert!(
            flooded.endless_sent < 64 * 1024 * 1024,
            "an endless header was read to its end"
        );
        if interrupt {
            let pid = child.id().to_string();
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap();
        }
        // The wait ends on time (or at the Ctrl-C), whatever is still open.
        let code = crate::support::wait(&mut child, std::time::Duration::from_secs(20));
        let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
        if interrupt {
            assert_eq!(code, 130, "{stdout}");
        } else {
            assert_eq!(code, 1);
            assert!(stdout.contains("no consent arrived within 6s"), "{stdout}");
        }
        drop(flooded.held);
    }
}
