//! The operator's first week (issue 18), through the binary and against
//! the peers: Google's downloaded client file used as it is downloaded.

use std::path::Path;

use crate::support::peers::{Peers, peers};
use crate::support::{Mailform, Run};

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

/// A project whose provider reads `file` (written mode 0600, as a secret
/// file must be), with one asset for `user`.
fn project(p: &Peers, file: &str, user: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client_secret.json");
    std::fs::write(&path, file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
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

/// mailform in `dir` with the headless person as `$BROWSER`.
fn mf(p: &Peers, dir: &Path) -> Mailform {
    Mailform::new(dir)
        .env("BROWSER", p.consent_browser.to_str().unwrap())
        .env("PEERS_CA", p.ca_file.to_str().unwrap())
}

#[track_caller]
fn assert_says(run: &Run, text: &str) {
    assert!(
        run.all().contains(text),
        "expected {text:?} in:\n{}",
        run.all()
    );
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
