//! The operator's first week (issue 18), through the binary and against
//! the peers: Google's downloaded client file used as it is downloaded.

use std::path::Path;

use crate::support::peers::{Peers, peers};
use crate::support::{Mailform, assert_says};

/// Google's "Download JSON" of a Desktop ("installed") or Web client, as the
/// Cloud console writes it, for the test server's confidential client.
fn client_file(p: &Peers, kind: &str, redirect_uris: &[&str]) -> String {
    let client = &p.clients.confidential;
    serde_json::json!({
        kind: {
            "client_id": client.client_id,
            "project_id": "mailform-test",
            "auth_uri": p.endpoints.authorization,
            "token_uri": p.endpoints.token,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_secret": client.client_secret,
            "redirect_uris": redirect_uris,
        }
    })
    .to_string()
}

/// Writes `text` to `path`, readable by its owner only (a secret file).
fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A project whose provider reads `file` (written mode 0600, as a secret
/// file must be), with one asset for `user`.
fn project(p: &Peers, file: &str, user: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    private(&dir.path().join("client_secret.json"), file);
    let text = format!(
        r#"version = 1

[providers.lab]
credentials_file = "client_secret.json"
revocation_url = "{}"
scopes = ["openid", "email", "mail", "offline_access"]
auth_params = {{ prompt = "consent" }}
ca_file = "{}"
smtp = {{ host = "{}", port = {}, security = "starttls" }}

[assets.support]
email = "{user}"
provider = "lab"
"#,
        p.endpoints.revocation,
        p.ca_file.display(),
        p.smtp.host,
        p.smtp.starttls_port,
    );
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    dir
}

/// The test provider (loopback consent on a free port, the mail scopes)
/// with one asset for `user`, logging in at SMTP `port` (STARTTLS), trusting
/// the test CA or not.
fn lab_text(p: &Peers, port: u16, user: &str, trust_ca: bool) -> String {
    let smtp = crate::support::peers::LabSmtp {
        port,
        security: "starttls",
        trust_ca,
    };
    crate::support::peers::lab_provider(
        p,
        crate::apply::free_port(),
        "[\"mail\", \"offline_access\"]",
        &smtp,
    ) + &format!("\n[assets.support]\nemail = \"{user}\"\nprovider = \"lab\"\n")
}

/// The SMTP check state records for `support` in the project in `dir`.
fn smtp_check(dir: &Path) -> mailform::state::SmtpCheck {
    crate::support::fixtures::stored_state(dir).assets["support"]
        .smtp_check
        .clone()
        .expect("an SMTP check is recorded")
}

/// `plan --offline --detailed-exitcode` in `dir`, which must exit `code`.
fn offline_plan(p: &Peers, dir: &Path, code: i32) -> crate::support::Run {
    crate::support::lab(p, dir)
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(code)
}

/// mailform in `dir` with the headless person as `$BROWSER`.
fn mf(p: &Peers, dir: &Path) -> Mailform {
    Mailform::new(dir)
        .env("BROWSER", p.consent_browser.to_str().unwrap())
        .env("PEERS_CA", p.ca_file.to_str().unwrap())
}

#[test]
fn a_desktop_client_file_with_a_portless_localhost_redirect_works_as_downloaded() {
    let p = peers();
    let dir = project(
        p,
        &client_file(p, "installed", &["http://localhost"]),
        "alice@example.test",
    );
    let validate = mf(p, dir.path()).run(["validate"]).ok();
    assert_says(
        &validate,
        "provider `lab`: consent comes back to http://localhost/, its only redirect URI in the credentials file; it names no port, so mailform listens on a free one at consent",
    );
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    assert_says(&apply, "(listening on localhost:");
    assert_says(&apply, ", a free port: the redirect URI names none");
    assert_says(&apply, "redirect_uri=http%3A%2F%2Flocalhost%3A");
    assert_says(&apply, "support: consented; tokens stored");
    assert_says(&apply, "Apply: 1 created");
}

#[test]
fn a_web_client_file_listing_the_contact_center_callback_first_uses_its_loopback_uri() {
    let p = peers();
    let port = crate::apply::free_port();
    let loopback = format!("http://127.0.0.1:{port}/callback");
    let dir = project(
        p,
        &client_file(
            p,
            "web",
            &[
                "https://hooks.contact-center.example/oauth/callback",
                &loopback,
            ],
        ),
        "alice@example.test",
    );
    let validate = mf(p, dir.path()).run(["validate"]).ok();
    assert_says(
        &validate,
        &format!(
            "consent comes back to {loopback}, redirect URI 2 of 2, the first loopback one in the credentials file"
        ),
    );
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    assert_says(&apply, &format!("(listening on 127.0.0.1:{port} for up to"));
    assert_says(&apply, "Apply: 1 created");
    // A web client that lists no loopback URI at all: said up front.
    let dir = project(
        p,
        &client_file(
            p,
            "web",
            &["https://hooks.contact-center.example/oauth/callback"],
        ),
        "alice@example.test",
    );
    let validate = mf(p, dir.path()).run(["validate"]).ok();
    assert_says(
        &validate,
        "warning: provider `lab`: the credentials file lists no loopback redirect URI, so a loopback consent cannot come back to https://hooks.contact-center.example/oauth/callback",
    );
}

/// An applied project of the offline test provider (nobody answers at its
/// endpoints): every asset holds tokens good for an hour.
fn applied_offline(config: &str) -> tempfile::TempDir {
    let dir = crate::support::project(config);
    crate::support::fixtures::applied_state(dir.path(), config, |asset| mailform::state::Tokens {
        access_token: mailform::secret::Secret::new(format!("access-{}", asset.name)),
        refresh_token: Some(mailform::secret::Secret::new(format!(
            "refresh-{}",
            asset.name
        ))),
    });
    dir
}

const TWO: &str = concat!(
    crate::support::offline_lab!(),
    "\n[assets.support]\nemail = \"support@example.com\"\nprovider = \"lab\"\n",
    "\n[assets.billing]\nemail = \"billing@example.com\"\nprovider = \"lab\"\n"
);

#[test]
fn state_list_mv_and_rm_work_like_terraforms() {
    let dir = applied_offline(TWO);
    // No client secret in the environment: an offline plan sends nothing.
    let mf = || Mailform::new(dir.path());
    mf().run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
    let list = mf().run(["state", "list"]).ok();
    assert_eq!(list.stdout, "billing\nsupport\n");
    // Renamed in the config and in state: the same grant, no re-consent.
    let config = dir.path().join("assets.toml");
    std::fs::write(
        &config,
        TWO.replace("[assets.support]", "[assets.helpdesk]"),
    )
    .unwrap();
    let plan = mf()
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert!(
        plan.stdout.contains("+ helpdesk  create"),
        "{}",
        plan.stdout
    );
    let mv = mf().run(["state", "mv", "support", "helpdesk"]).ok();
    assert_says(&mv, "Moved support to helpdesk in state (its grant kept).");
    mf().run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
    let token = mf().run(["token", "helpdesk"]).ok();
    assert_eq!(
        token.stdout, "access-support\n",
        "the same grant, opened under its new name"
    );
    // Refused: a name in use, an unknown one (with a suggestion), a bad name.
    let run = mf().run(["state", "mv", "helpdesk", "billing"]).code(1);
    assert_says(&run, "`billing` is in state already");
    let run = mf().run(["state", "mv", "helpdsk", "x"]).code(1);
    assert_says(&run, "did you mean `helpdesk`?");
    mf().run(["state", "mv", "helpdesk", "no spaces"]).code(1);
    // Forgotten without revoking (the provider is never asked).
    let rm = mf().run(["state", "rm", "billing"]).ok();
    assert_says(&rm, "Removed billing from state; its grant was not revoked");
    assert_says(&rm, "the next apply asks for consent again");
    assert_eq!(mf().run(["state", "list"]).ok().stdout, "helpdesk\n");
    let plan = mf().run(["plan", "--offline"]).ok();
    assert!(plan.stdout.contains("+ billing  create"), "{}", plan.stdout);
}

#[test]
fn token_refresh_forces_a_refresh() {
    let p = peers();
    let dir = project(
        p,
        &client_file(p, "installed", &["http://localhost"]),
        "alice@example.test",
    );
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    let first = mf(p, dir.path()).run(["token", "support"]).ok().stdout;
    // Still good for an hour: the stored token, twice.
    assert_eq!(
        mf(p, dir.path()).run(["token", "support"]).ok().stdout,
        first
    );
    let fresh = mf(p, dir.path())
        .run(["token", "support", "--refresh"])
        .ok()
        .stdout;
    assert_ne!(fresh, first, "--refresh asked the provider for a new token");
    assert_eq!(p.introspect(fresh.trim())["active"], true);
    // The new one is stored: the next plain `token` gives it.
    assert_eq!(
        mf(p, dir.path()).run(["token", "support"]).ok().stdout,
        fresh
    );
}

#[test]
fn a_revoked_grant_stays_found_offline_and_token_refuses_it() {
    let p = peers();
    let user = "bea@example.test";
    let dir = project(p, &client_file(p, "installed", &["http://localhost"]), user);
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    assert!(p.revoke_grants(user) >= 1, "the user removed access");
    let live = mf(p, dir.path())
        .run(["plan", "--detailed-exitcode"])
        .code(2);
    assert_says(&live, "! support  re-consent");
    // What the live check learned is kept: offline, show and token know it.
    let offline = mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert_says(&offline, "! support  re-consent");
    assert_says(&offline, "refresh token revoked or expired (invalid_grant");
    let show = mf(p, dir.path()).run(["show"]).ok();
    assert_says(&show, "REVOKED      the provider refused the refresh token");
    let token = mf(p, dir.path()).run(["token", "support"]).code(1);
    assert!(token.stdout.is_empty(), "{}", token.stdout);
    assert_says(
        &token,
        "the provider refused its refresh token at the check of",
    );
    // Only a new grant clears it.
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
    let token = mf(p, dir.path()).run(["token", "support"]).ok();
    assert_eq!(p.introspect(token.stdout.trim())["active"], true);
}

#[test]
fn every_access_token_a_live_check_obtains_is_stored() {
    let p = peers();
    let user = "cal@example.test";
    let dir = project(p, &client_file(p, "installed", &["http://localhost"]), user);
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    let before = mf(p, dir.path()).run(["token", "support"]).ok().stdout;
    // The provider drops its access tokens (the refresh token lives on, and
    // is not rotated: Google's way).
    assert!(p.expire_access_tokens(user) >= 1);
    assert_eq!(p.introspect(before.trim())["active"], false);
    mf(p, dir.path())
        .run(["plan", "--detailed-exitcode"])
        .code(0);
    // The live plan refreshed it, and the fresh access token is what
    // `token` hands out now, not the dead one.
    let after = mf(p, dir.path()).run(["token", "support"]).ok().stdout;
    assert_ne!(after, before);
    assert_eq!(p.introspect(after.trim())["active"], true);
}

#[test]
fn an_untrusted_certificate_at_the_token_endpoint_is_a_setup_error_not_transient() {
    let p = peers();
    // The test server, without the test CA: its certificate is untrusted.
    let text = lab_text(p, p.smtp.starttls_port, "alice@example.test", false);
    let dir = applied_offline(&text);
    let run = crate::support::lab(p, dir.path()).run(["plan"]).code(1);
    assert_says(
        &run,
        "provider `lab`: its certificate is not signed by an authority mailform trusts — if the provider uses a private CA, set ca_file on provider `lab`",
    );
    assert!(!run.all().contains("transient"), "{}", run.all());
}

#[test]
fn a_temporary_smtp_answer_to_auth_is_retried_before_it_is_reported() {
    let p = peers();
    // A server that answers 454 4.7.0 to every other AUTH: each proof's
    // first try is refused for a passing reason, the retry goes through.
    let text = lab_text(p, p.smtp.flaky_port, "dave@example.test", true);
    let dir = crate::support::project(&text);
    let apply = crate::support::lab(p, dir.path())
        .run(["apply", "--auto-approve"])
        .ok();
    assert_says(&apply, "support: SMTP login proven by");
    let plan = crate::support::lab(p, dir.path())
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    assert_says(
        &plan,
        "SMTP logins: 1 accepted, 0 refused, 0 could not be checked.",
    );
}

#[test]
fn a_login_apply_could_not_prove_is_drift_until_a_proof_passes() {
    let p = peers();
    // A server that offers no STARTTLS: the login cannot be proven.
    let config = |port| lab_text(p, port, "erin@example.test", true);
    let dir = crate::support::project(&config(p.smtp.no_starttls_port));
    let apply = crate::support::lab(p, dir.path())
        .run(["apply", "--auto-approve"])
        .code(1);
    assert_says(&apply, "does not offer STARTTLS");
    // Not "No changes": the login was never proven.
    let plan = offline_plan(p, dir.path(), 2);
    assert_says(&plan, "~ support  update");
    assert_says(&plan, "SMTP login never proven at 127.0.0.1:");
    assert_says(&plan, "does not offer STARTTLS");
    // The endpoint fixed and applied: proven, and clean.
    std::fs::write(dir.path().join("assets.toml"), config(p.smtp.starttls_port)).unwrap();
    let apply = crate::support::lab(p, dir.path())
        .run(["apply", "--auto-approve"])
        .ok();
    assert_says(&apply, "support: SMTP login proven by");
    offline_plan(p, dir.path(), 0);
}

#[test]
fn import_adopts_a_grant_made_elsewhere_and_refuses_what_it_cannot_trust() {
    let p = peers();
    let user = "dan@example.test";
    let client = &p.clients.confidential;
    let text = lab_text(p, p.smtp.starttls_port, user, true);
    let dir = crate::support::project(&text);
    // A grant made by another tool: its refresh token, in a private file.
    let made = crate::support::peers::offline_tokens(p, client, user);
    let refresh = made["refresh_token"].as_str().unwrap();
    let file = dir.path().join("refresh.txt");
    private(&file, &format!("{refresh}\n"));
    let run = crate::support::lab(p, dir.path())
        .run(["import", "support", "--from", "refresh.txt"])
        .ok();
    assert_says(
        &run,
        "Imported a grant for support (scopes: mail offline_access)",
    );
    assert!(!run.all().contains(refresh), "the token was printed");
    // It is a grant like a consent's: plan is clean, token works, the login proves.
    crate::support::lab(p, dir.path())
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    let token = crate::support::lab(p, dir.path())
        .run(["token", "support"])
        .ok();
    assert_eq!(p.introspect(token.stdout.trim())["sub"], user);
    // Once is enough: a second import is refused, and so is a dead token.
    let again = crate::support::lab(p, dir.path())
        .run(["import", "support", "--from", "refresh.txt"])
        .code(1);
    assert_says(&again, "support holds a grant already");
    crate::support::lab(p, dir.path())
        .run(["state", "rm", "support"])
        .ok();
    std::fs::write(&file, "not-a-live-refresh-token\n").unwrap();
    let dead = crate::support::lab(p, dir.path())
        .run(["import", "support", "--from", "refresh.txt"])
        .code(1);
    assert_says(
        &dead,
        "the grant was not imported: the provider refused the refresh token",
    );
    assert!(
        crate::support::fixtures::stored_state(dir.path())
            .assets
            .get("support")
            .is_none_or(|r| r.token.is_none())
    );
}

#[test]
fn key_rotate_seals_every_token_again_and_the_old_key_opens_nothing() {
    let dir = applied_offline(TWO);
    let mf = || Mailform::new(dir.path());
    let key_file = dir.path().join(".mailform/key");
    let old = std::fs::read_to_string(&key_file).unwrap();
    let run = mf().run(["key", "rotate"]).ok();
    assert_says(&run, "Sealed the tokens of 2 assets with a new key");
    let new = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(new, old);
    assert!(!dir.path().join(".mailform/key.new").exists());
    // The same grants, opened with the new key; the old one opens nothing.
    assert_eq!(
        mf().run(["token", "support"]).ok().stdout,
        "access-support\n"
    );
    mf().run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
    let stale = mf()
        .env("MAILFORM_KEY", old.trim())
        .run(["token", "support"])
        .code(1);
    assert!(stale.stdout.is_empty());
    // A rotation that stopped after the state write (the new key still in
    // key.new, the old one in key) is finished by the next command.
    private(&dir.path().join(".mailform/key.new"), &new);
    private(&key_file, &old);
    assert_eq!(
        mf().run(["token", "support"]).ok().stdout,
        "access-support\n"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), new);
    assert!(!dir.path().join(".mailform/key.new").exists());
    // A key kept in MAILFORM_KEY: the new one goes to a file the operator names.
    let env = || mf().env("MAILFORM_KEY", new.trim());
    let run = env().run(["key", "rotate"]).code(1);
    assert_says(
        &run,
        "name a file for the new one (mailform key rotate --out FILE)",
    );
    let run = env().run(["key", "rotate", "--out", "next.key"]).ok();
    assert_says(&run, "written to next.key");
    let next = std::fs::read_to_string(dir.path().join("next.key")).unwrap();
    let token = mf()
        .env("MAILFORM_KEY", next.trim())
        .run(["token", "billing"])
        .ok();
    assert_eq!(token.stdout, "access-billing\n");
    assert!(!run.all().contains(next.trim()), "the key was printed");
}

#[test]
fn validate_names_a_loose_client_file_a_common_tenant_and_what_security_allows() {
    let p = peers();
    let dir = project(
        p,
        &client_file(p, "installed", &["http://localhost"]),
        "alice@example.test",
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("client_secret.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let run = Mailform::new(dir.path())
            .run(["validate", "--strict"])
            .code(1);
        assert_says(
            &run,
            "warning: provider `lab`: credentials_file: `client_secret.json` is readable by others (mode 644)",
        );
    }
    let text = "version = 1\n[providers.ms]\npreset = \"microsoft\"\ntenant = \"common\"\nclient_id = \"x\"\nclient_secret = { env = \"MS_SECRET\" }\n";
    let dir = crate::support::project(text);
    let run = Mailform::new(dir.path()).run(["validate"]).ok();
    assert_says(
        &run,
        "note: provider `ms`: tenant = \"common\" lets any Microsoft account sign in; an app registered for one tenant (Entra's default) refuses it (AADSTS50194)",
    );
}

#[test]
fn small_words_that_cost_trust_are_right() {
    let dir = crate::support::project(concat!(
        crate::support::offline_lab!(public),
        "\n[assets.support]\nemail = \"support@example.com\"\nprovider = \"lab\"\n"
    ));
    // A plan with changes says what to run next.
    let plan = Mailform::new(dir.path()).run(["plan", "--offline"]).ok();
    assert_says(&plan, "To make these changes, run: mailform apply\n");
    // One asset, and it failed: no "others" were applied.
    let apply = Mailform::new(dir.path())
        .run(["apply", "--auto-approve", "--consent", "never"])
        .code(1);
    assert_says(&apply, "1 asset failed to apply (above)\n");
    assert!(
        !apply.all().contains("the others were applied"),
        "{}",
        apply.all()
    );
}

#[test]
fn a_login_refused_as_another_accounts_is_planned_as_a_reconsent_that_apply_runs() {
    let p = peers();
    let config = |port| lab_text(p, port, "eli@example.test", true);
    // fay signs in instead of eli. No ID token says who (the scopes ask
    // for none) and the server offers no STARTTLS, so no login can tell
    // either: the grant is stored, its login unproven.
    let dir = crate::support::project(&config(p.smtp.no_starttls_port));
    let as_fay = |args: &[&str]| {
        crate::support::lab(p, dir.path())
            .env("CONSENT_USER", "fay@example.test")
            .run(args)
    };
    assert_says(
        &as_fay(&["apply", "--auto-approve"]).code(1),
        "does not offer STARTTLS",
    );
    // The endpoint fixed: the server refuses fay's token as eli's, even
    // fresh, and says so; a new consent is what fixes it.
    std::fs::write(dir.path().join("assets.toml"), config(p.smtp.starttls_port)).unwrap();
    let apply = as_fay(&["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "SMTP login refused by");
    assert_says(&apply, "mailform plan now asks for a new consent");
    let plan = offline_plan(p, dir.path(), 2);
    assert_says(&plan, "! support  re-consent");
    assert_says(&plan, "as not this mailbox's token");
    assert_says(&plan, "consent again signed in as that account");
    // A live check finds the same, and records when.
    let before = smtp_check(dir.path());
    let live = crate::support::lab(p, dir.path())
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(2);
    assert_says(&live, "! support  re-consent");
    let after = smtp_check(dir.path());
    assert!(after.reconsent && after.at > before.at, "{after:?}");
    // A plain apply runs that consent (eli signs in this time), and the
    // login is proven.
    let apply = crate::support::lab(p, dir.path())
        .run(["apply", "--auto-approve"])
        .ok();
    assert_says(&apply, "1 re-consented");
    assert_says(&apply, "support: SMTP login proven by");
    crate::support::lab(p, dir.path())
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    let token = crate::support::lab(p, dir.path())
        .run(["token", "support"])
        .ok();
    assert_eq!(p.introspect(token.stdout.trim())["sub"], "eli@example.test");
}

#[test]
fn a_passing_live_check_clears_a_recorded_refusal() {
    use mailform::store::StateStore as _;
    let p = peers();
    let dir = crate::support::project(&lab_text(p, p.smtp.starttls_port, "fay@example.test", true));
    crate::support::lab(p, dir.path())
        .run(["apply", "--auto-approve"])
        .ok();
    // An earlier check found the login refused as another account's (the
    // server has since been fixed): offline, that stands.
    let store = mailform::store::FileStore::new(dir.path().join(".mailform/state.json"));
    let mut state = store.load().unwrap().unwrap();
    let check = state
        .assets
        .get_mut("support")
        .unwrap()
        .smtp_check
        .as_mut()
        .unwrap();
    check.ok = false;
    check.detail = "535 5.7.8 Username and Password not accepted".into();
    check.reconsent = true;
    store.save(&mut state).unwrap();
    let plan = offline_plan(p, dir.path(), 2);
    assert_says(&plan, "! support  re-consent");
    // A live check that passes says otherwise, and state keeps its word.
    crate::support::lab(p, dir.path())
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    offline_plan(p, dir.path(), 0);
    let check = smtp_check(dir.path());
    assert!(check.ok && !check.reconsent, "{check:?}");
}

#[test]
fn validate_lints_the_tables_that_parsed_beside_another_tables_errors() {
    // One run, three findings: a typo'd key in one asset (a shape error),
    // and the lints of a provider and an asset that parsed.
    let text = r#"version = 1

[providers.google]
preset = "google"
client_id = "1234-abc.apps.googleusercontent.com"
client_secret = { env = "GOOGLE_SECRET" }
scopes = ["https://mail.google.com", "openid"]

[providers.ms]
preset = "microsoft"
tenant = "common"
client_id = "x"
client_secret = { env = "MS_SECRET" }

[assets.broken]
email = "broken@example.com"
provider = "google"
emial = "typo@example.com"

[assets.sales]
email = "sales@example.com"
provider = "ms"
smtp = { host = "smtp.office365.com", port = 25, security = "starttls" }
"#;
    let dir = crate::support::project(text);
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert_says(&run, "error: asset `broken`: unknown field `emial`");
    assert_says(
        &run,
        "provider `google`: scope `https://mail.google.com` lacks its trailing slash",
    );
    assert_says(&run, "note: provider `ms`: tenant = \"common\"");
    assert_says(
        &run,
        "warning: asset `sales`: smtp.port 25 is not an SMTP submission port",
    );
}
