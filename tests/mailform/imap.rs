//! The inbound half (issue 20): the IMAP XOAUTH2 login proof, through the
//! binary, against Dovecot (its `oauth2` passdb introspecting the OAuth
//! peer) serving the mailboxes the SMTP peer delivers into.

use std::path::Path;

use crate::support::dovecot::{Dovecot, dovecot};
use crate::support::peers::{Peers, peers};
use crate::support::{Mailform, assert_says};

/// A project whose lab provider proves `user`'s IMAP login at `imap`
/// (a TOML value), trusting the peers' and Dovecot's CAs.
fn project(p: &Peers, d: &Dovecot, user: &str, imap: &str) -> tempfile::TempDir {
    let smtp = crate::support::peers::LabSmtp {
        port: p.smtp.starttls_port,
        security: "starttls",
        trust_ca: true,
    };
    let text =
        crate::support::peers::lab_provider(
            p,
            crate::apply::free_port(),
            "[\"mail\", \"offline_access\"]",
            &smtp,
        )
        .replace(
            &format!("ca_file = \"{}\"", p.ca_file.display()),
            &format!("ca_file = \"{}\"", d.ca_file.display()),
        ) + &format!("\n[assets.support]\nemail = \"{user}\"\nprovider = \"lab\"\nimap = {imap}\n");
    crate::support::project(&text)
}

fn imaps(d: &Dovecot) -> String {
    format!(
        "{{ host = \"127.0.0.1\", port = {}, security = \"tls\" }}",
        d.imaps_port
    )
}

fn mf(p: &Peers, dir: &Path) -> Mailform {
    crate::support::lab(p, dir)
}

/// No token in `run`'s output.
fn assert_no_token(dir: &Path, run: &crate::support::Run) {
    let tokens = crate::support::fixtures::stored_tokens(dir, "support");
    let all = run.all();
    assert!(!all.contains(tokens.access_token.expose()), "{all}");
}

#[test]
fn apply_and_live_plans_prove_the_imap_login() {
    let p = peers();
    let d = dovecot(p);
    let dir = project(p, d, "gus@example.test", &imaps(d));
    let plan = mf(p, dir.path()).run(["plan"]).ok();
    assert_says(&plan, "+ support");
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    assert_says(&apply, "support: SMTP login proven by");
    assert_says(
        &apply,
        &format!(
            "support: IMAP login proven by 127.0.0.1:{} (OK",
            d.imaps_port
        ),
    );
    assert_no_token(dir.path(), &apply);
    let check = mf(p, dir.path())
        .run(["plan", "--check", "--detailed-exitcode"])
        .code(0);
    assert_says(
        &check,
        "IMAP logins: 1 accepted, 0 refused, 0 could not be checked.",
    );
    assert_says(
        &check,
        "SMTP logins: 1 accepted, 0 refused, 0 could not be checked.",
    );
    assert_no_token(dir.path(), &check);
    let show = mf(p, dir.path()).run(["show"]).ok();
    assert_says(&show, "imap check   accepted at");
    // The grant revoked: drift, found by the same check.
    p.revoke_grants("gus@example.test");
    let revoked = mf(p, dir.path())
        .run(["plan", "--check-imap", "--detailed-exitcode"])
        .code(2);
    assert_says(&revoked, "! support  re-consent");
}

#[test]
fn starttls_comes_before_authenticate_and_a_wrong_security_is_named() {
    let p = peers();
    let d = dovecot(p);
    let starttls = format!(
        "{{ host = \"127.0.0.2\", port = {}, security = \"starttls\" }}",
        d.starttls_port
    );
    let dir = project(p, d, "hana@example.test", &starttls);
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    assert_says(
        &apply,
        &format!(
            "support: IMAP login proven by 127.0.0.2:{}",
            d.starttls_port
        ),
    );
    // Implicit TLS spoken to the STARTTLS port: a TLS failure, with the fix.
    let wrong = format!(
        "{{ host = \"127.0.0.2\", port = {}, security = \"tls\" }}",
        d.starttls_port
    );
    let text = std::fs::read_to_string(dir.path().join("assets.toml"))
        .unwrap()
        .replace(&starttls, &wrong);
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "try imap.security = \"starttls\"");
    let offline = mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert_says(&offline, "IMAP login never proven at 127.0.0.2:");
}

#[test]
fn a_token_of_another_account_is_refused_in_the_servers_words() {
    let p = peers();
    let d = dovecot(p);
    // quinn may send as shared@ (SMTP's delegation), but IMAP logs in as
    // the token's own account only.
    let dir = project(p, d, "shared@example.test", &imaps(d));
    let text = std::fs::read_to_string(dir.path().join("assets.toml")).unwrap()
        + "consent_as = \"quinn@example.test\"\n";
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "support: SMTP login proven by");
    assert_says(&apply, "IMAP login refused by 127.0.0.1:");
    assert_says(&apply, "NO [AUTHENTICATIONFAILED] Authentication failed.");
    assert_says(&apply, "\"status\":\"401\"");
    assert_says(
        &apply,
        "hint: the token's account (or scope) does not match username shared@example.test",
    );
    assert_no_token(dir.path(), &apply);
    // Drift that stays found, offline, and live.
    let offline = mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert_says(&offline, "IMAP login refused by 127.0.0.1:");
    let live = mf(p, dir.path())
        .run(["plan", "--check-imap", "--detailed-exitcode"])
        .code(2);
    assert_says(&live, "IMAP logins: 0 accepted, 1 refused");
}

#[test]
fn a_server_that_never_greets_is_bounded_and_reported() {
    let p = peers();
    let d = dovecot(p);
    let dir = project(p, d, "ivy@example.test", &imaps(d));
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    // The same endpoint later answers nothing (the peers' mute server):
    // applied, then checked with a short timeout.
    let mute = format!(
        "{{ host = \"127.0.0.1\", port = {}, security = \"starttls\" }}",
        p.smtp.mute_port
    );
    let text = std::fs::read_to_string(dir.path().join("assets.toml"))
        .unwrap()
        .replace(&imaps(d), &mute);
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    let apply = mf(p, dir.path())
        .env("MAILFORM_SMTP_TIMEOUT", "1s")
        .run(["apply", "--auto-approve"])
        .code(1);
    assert_says(&apply, "did not answer within 1s while greeting");
    let live = mf(p, dir.path())
        .env("MAILFORM_SMTP_TIMEOUT", "1s")
        .run(["plan", "--check-imap", "--detailed-exitcode"])
        .code(1);
    assert_says(
        &live,
        "IMAP logins: 0 accepted, 0 refused, 1 could not be checked.",
    );
    // Not a refusal: the plan judges from what apply recorded, and says so.
    assert_says(&live, "the IMAP login could not be checked now");
    assert_says(&live, "IMAP login never proven at 127.0.0.1:");
    assert!(!live.all().contains("IMAP login refused"), "{}", live.all());
}

#[test]
fn an_unapplied_imap_endpoint_gets_no_token() {
    let p = peers();
    let d = dovecot(p);
    let dir = project(p, d, "jon@example.test", &imaps(d));
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    // A pull request points IMAP at a server that never answers: the live
    // check still logs in where the last apply did, and only there.
    let mute = format!(
        "{{ host = \"127.0.0.1\", port = {}, security = \"tls\" }}",
        p.smtp.mute_port
    );
    let text = std::fs::read_to_string(dir.path().join("assets.toml"))
        .unwrap()
        .replace(&imaps(d), &mute);
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    let live = mf(p, dir.path())
        .env("MAILFORM_SMTP_TIMEOUT", "1s")
        .run(["plan", "--check-imap", "--detailed-exitcode"])
        .code(2);
    assert_says(
        &live,
        "not proved: the new IMAP endpoint gets a token only after apply",
    );
    assert_says(
        &live,
        "IMAP logins: 1 accepted, 0 refused, 0 could not be checked.",
    );
}

#[test]
fn a_round_trip_that_never_arrives_fails_after_its_wait() {
    let p = peers();
    let d = dovecot(p);
    // The asset's address is another mailbox than the one its login
    // reads: the message goes there, and never shows in this INBOX.
    let dir = project(p, d, "elsewhere@example.test", &imaps(d));
    let text = std::fs::read_to_string(dir.path().join("assets.toml")).unwrap()
        + "username = \"kim@example.test\"\n";
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    let trip = mf(p, dir.path())
        .run(["send-test", "support", "--round-trip", "--timeout", "2s"])
        .code(1);
    assert_says(&trip, "did not see the message");
    assert_says(&trip, "within 2s: it was sent, but not (yet) delivered");
}

#[test]
fn microsofts_imap_scope_comes_with_imap() {
    let text = "version = 1\n[providers.ms]\npreset = \"microsoft\"\ntenant = \"contoso.example\"\nclient_id = \"x\"\nclient_secret = { env = \"MS_SECRET\" }\n\n[assets.support]\nemail = \"support@contoso.example\"\nprovider = \"ms\"\nimap = true\n";
    let dir = crate::support::project(text);
    let plan = Mailform::new(dir.path()).run(["plan", "--offline"]).ok();
    assert_says(&plan, "+ support");
    let show = Mailform::new(dir.path())
        .run(["export", "support", "--format", "json"])
        .ok();
    assert_says(&show, "https://outlook.office.com/IMAP.AccessAsUser.All");
}

#[test]
fn a_round_trip_is_sent_through_smtp_and_seen_arriving_over_imap() {
    let p = peers();
    let d = dovecot(p);
    let dir = project(p, d, "lou@example.test", &imaps(d));
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    let trip = mf(p, dir.path())
        .run(["send-test", "support", "--round-trip", "--timeout", "20s"])
        .ok();
    assert_says(
        &trip,
        "Sent a test message from lou@example.test to lou@example.test",
    );
    assert_says(&trip, &format!("127.0.0.1:{} (OK", d.imaps_port));
    assert_says(&trip, "sees it in INBOX after");
    assert_no_token(dir.path(), &trip);
    // Without IMAP, arrival cannot be observed: nothing is sent.
    let text = std::fs::read_to_string(dir.path().join("assets.toml"))
        .unwrap()
        .replace(&format!("imap = {}\n", imaps(d)), "");
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    let none = mf(p, dir.path())
        .run(["send-test", "support", "--round-trip"])
        .code(1);
    assert_says(
        &none,
        "a round trip cannot observe arrival: the asset declares no IMAP",
    );
}
