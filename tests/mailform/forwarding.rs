//! Gmail forwarding as code (issue 20): live plans read the mailbox's
//! forwarding settings through the Gmail API (the peers' emulation of its
//! documented contract, each token introspected) and report each
//! difference from `forwarding_address` as drift, with the step by hand.

use std::path::Path;

use crate::support::peers::{Peers, peers};
use crate::support::{Mailform, assert_says};

const CONTACT_CENTER: &str = "inbound@contact-center.example";

/// A project whose lab provider reads Gmail's settings at the peers, for
/// `user`, forwarding to the contact center (`extra`: more asset keys).
fn project(p: &Peers, user: &str, extra: &str) -> tempfile::TempDir {
    let smtp = crate::support::peers::LabSmtp {
        port: p.smtp.starttls_port,
        security: "starttls",
        trust_ca: true,
    };
    let text = crate::support::peers::lab_provider(
        p,
        crate::apply::free_port(),
        "[\"mail\", \"offline_access\"]",
        &smtp,
    ) + &format!(
        "gmail_api_url = \"{}\"\n\n[assets.support]\nemail = \"{user}\"\nprovider = \"lab\"\nforwarding_address = \"{CONTACT_CENTER}\"\n{extra}",
        p.issuer
    );
    crate::support::project(&text)
}

fn mf(p: &Peers, dir: &Path) -> Mailform {
    crate::support::lab(p, dir)
}

fn plan(p: &Peers, dir: &Path, code: i32) -> crate::support::Run {
    let run = mf(p, dir).run(["plan", "--detailed-exitcode"]).code(code);
    let tokens = crate::support::fixtures::stored_tokens(dir, "support");
    assert!(
        !run.all().contains(tokens.access_token.expose()),
        "{}",
        run.all()
    );
    run
}

#[test]
fn forwarding_that_is_off_pending_or_elsewhere_is_drift_until_it_is_right() {
    let p = peers();
    let user = "jon@example.test";
    let dir = project(p, user, "forwarding_disposition = \"archive\"\n");
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    // Nothing set up in Gmail yet.
    let off = plan(p, dir.path(), 2);
    assert_says(&off, "~ support  update");
    assert_says(
        &off,
        &format!("Gmail forwarding: {CONTACT_CENTER} is not a forwarding address of the mailbox"),
    );
    assert_says(&off, "Gmail forwarding: forwarding is off");
    assert_says(
        &off,
        "hint: Gmail → Settings → See all settings → Forwarding and POP/IMAP",
    );
    // Found stays found: offline, and apply cannot fix it.
    let offline = mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert_says(
        &offline,
        "Gmail forwarding: forwarding is off (at the last check",
    );
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "Gmail forwarding needs a step by hand");
    // The address added, not confirmed yet.
    p.gmail_settings(user, &[("address", CONTACT_CENTER), ("status", "pending")]);
    let pending = plan(p, dir.path(), 2);
    assert_says(
        &pending,
        &format!("{CONTACT_CENTER} is not confirmed yet (pending)"),
    );
    assert_says(
        &pending,
        &format!(
            "Gmail sent a confirmation to {CONTACT_CENTER}: whoever reads it — the contact center — must confirm it"
        ),
    );
    // Confirmed, and forwarding on, but elsewhere and with Gmail's copy kept.
    p.gmail_settings(
        user,
        &[
            ("address", CONTACT_CENTER),
            ("status", "accepted"),
            ("enabled", "true"),
            ("email", "someone@elsewhere.example"),
            ("disposition", "leaveInInbox"),
        ],
    );
    let elsewhere = plan(p, dir.path(), 2);
    assert_says(
        &elsewhere,
        &format!("mail is forwarded to someone@elsewhere.example, not {CONTACT_CENTER}"),
    );
    assert_says(
        &elsewhere,
        "Gmail forwarding: Gmail's copy of forwarded mail is leaveInInbox, not archive",
    );
    // Right at last: no drift, and the record says so offline too.
    p.gmail_settings(
        user,
        &[("email", CONTACT_CENTER), ("disposition", "archive")],
    );
    plan(p, dir.path(), 0);
    mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
}

#[test]
fn a_gmail_api_disabled_in_the_project_is_named_with_the_fix() {
    let p = peers();
    let user = "kim@example.test";
    let dir = project(p, user, "");
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    p.gmail_settings(user, &[("api", "disabled")]);
    let run = plan(p, dir.path(), 2);
    assert_says(
        &run,
        "the Gmail API refused to read the forwarding settings (403: the Gmail API is disabled in the project: Gmail API has not been used in project",
    );
    assert_says(
        &run,
        "hint: enable the Gmail API in the OAuth client's Cloud project",
    );
}

#[test]
fn an_unapplied_gmail_api_url_gets_no_token() {
    let p = peers();
    let user = "lou@example.test";
    let dir = project(p, user, "");
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    // A pull request points the Gmail API elsewhere: until apply, the
    // settings are read only at the recorded one (and nothing is sent to
    // the new one, where nothing would answer).
    let elsewhere = format!("https://127.0.0.1:{}", crate::apply::free_port());
    let text = std::fs::read_to_string(dir.path().join("assets.toml"))
        .unwrap()
        .replace(
            &format!("gmail_api_url = \"{}\"", p.issuer),
            &format!("gmail_api_url = \"{elsewhere}\""),
        );
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    let run = mf(p, dir.path()).run(["plan"]).ok();
    assert_says(
        &run,
        "not read: Gmail's forwarding settings are read at the new gmail_api_url only after apply",
    );
    assert!(
        !run.all().contains("could not be read now"),
        "{}",
        run.all()
    );
}

/// A service account's project (the peers' `main`, whose delegation covers
/// Gmail's settings) for `mailbox`, forwarding to `to`.
fn service_account_project(p: &Peers, mailbox: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.json");
    std::fs::write(&key, p.service_accounts["main"].to_string()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = format!(
        "version = 1\n\n[providers.workspace]\ngrant = \"service_account\"\nservice_account_file = \"sa.json\"\ntoken_url = \"{}\"\nscopes = [\"https://mail.google.com/\", \"https://www.googleapis.com/auth/gmail.settings.sharing\"]\nca_file = \"{}\"\ngmail_api_url = \"{}\"\nsmtp = {{ host = \"{}\", port = {}, security = \"starttls\" }}\n\n[assets.desk]\nemail = \"{mailbox}\"\nprovider = \"workspace\"\nforwarding_address = \"{to}\"\nforwarding_disposition = \"archive\"\n",
        p.endpoints.token,
        p.ca_file.display(),
        p.issuer,
        p.smtp.host,
        p.smtp.starttls_port,
    );
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    dir
}

#[test]
fn a_service_account_allowed_to_sets_forwarding_at_apply() {
    let p = peers();
    // An address of the domain: Gmail takes it at once.
    let dir = service_account_project(p, "app-fwd-one@example.test", "desk@example.test");
    Mailform::new(dir.path())
        .run(["apply", "--auto-approve"])
        .ok();
    let drift = Mailform::new(dir.path())
        .run(["plan", "--detailed-exitcode"])
        .code(2);
    assert_says(&drift, "Gmail forwarding: forwarding is off");
    assert_says(
        &drift,
        "hint: mailform apply sets it (the service account may change Gmail's forwarding settings)",
    );
    let apply = Mailform::new(dir.path())
        .run(["apply", "--auto-approve"])
        .ok();
    assert_says(
        &apply,
        "desk: Gmail forwarding to desk@example.test turned on (service account)",
    );
    Mailform::new(dir.path())
        .run(["plan", "--detailed-exitcode"])
        .code(0);
    // An address elsewhere waits for its owner's confirmation.
    let dir = service_account_project(p, "app-fwd-two@example.test", CONTACT_CENTER);
    Mailform::new(dir.path())
        .run(["apply", "--auto-approve"])
        .ok();
    let apply = Mailform::new(dir.path())
        .run(["apply", "--auto-approve"])
        .code(1);
    assert_says(
        &apply,
        &format!(
            "Gmail sent a confirmation to {CONTACT_CENTER}: whoever reads it — the contact center — must confirm it"
        ),
    );
}
