//! Organisation grants (issue 19), through the binary and against the
//! peers: Google Workspace service accounts (RFC 7523 JWT bearer, verified
//! by the OAuth peer) and Microsoft 365 client credentials (a secret, or a
//! certificate's key), with the SMTP peer granting mailboxes to apps as
//! Exchange does. No person is present: no `$BROWSER`, no terminal.

use std::path::Path;

use crate::support::peers::{Peers, peers};
use crate::support::{Mailform, Run, assert_says};

/// Writes `text` to `path`, readable by its owner only (a secret file).
fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `[assets.NAME]` tables for `mailboxes` of `provider`.
fn assets(provider: &str, mailboxes: &[&str]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for m in mailboxes {
        let name = m.split('@').next().unwrap();
        let _ = write!(
            text,
            "\n[assets.{name}]\nemail = \"{m}\"\nprovider = \"{provider}\"\n"
        );
    }
    text
}

/// A project whose provider is the service account `sa` (its key file as
/// downloaded, mode 0600), for `mailboxes`.
fn service_account_project(p: &Peers, sa: &str, mailboxes: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    private(
        &dir.path().join("sa.json"),
        &serde_json::to_string_pretty(&p.service_accounts[sa]).unwrap(),
    );
    let text = format!(
        "version = 1\n\n[providers.workspace]\ngrant = \"service_account\"\nservice_account_file = \"sa.json\"\ntoken_url = \"{}\"\nscopes = [\"https://mail.google.com/\"]\nca_file = \"{}\"\nsmtp = {{ host = \"{}\", port = {}, security = \"starttls\" }}\n{}",
        p.endpoints.token,
        p.ca_file.display(),
        p.smtp.host,
        p.smtp.starttls_port,
        assets("workspace", mailboxes)
    );
    // (The token endpoint is the key file's `token_uri`; it is named here
    // too, as the Google preset names Google's, so that a plan without
    // the key file still knows it.)
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    dir
}

/// How a client-credentials app authenticates.
#[derive(Clone, Copy)]
enum AppCredential {
    Secret,
    Certificate,
}

/// A project whose provider is the app (client credentials), for `mailboxes`.
fn app_project(p: &Peers, credential: AppCredential, mailboxes: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (client_id, credential) = match credential {
        AppCredential::Secret => (
            &p.clients.app.client_id,
            "client_secret = { env = \"APP_SECRET\" }".to_string(),
        ),
        AppCredential::Certificate => {
            // The certificate uploaded to the app registration, around the
            // key the server knows, exported with that key (PEM).
            let key_pem = p.clients.app_cert.private_key.as_deref().unwrap();
            let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["mailform-app-cert".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            private(
                &dir.path().join("app.pem"),
                &format!("{}{key_pem}", cert.pem()),
            );
            (
                &p.clients.app_cert.client_id,
                "client_certificate = { file = \"app.pem\" }".to_string(),
            )
        }
    };
    let text = format!(
        "version = 1\n\n[providers.tenant]\ngrant = \"client_credentials\"\nclient_id = \"{client_id}\"\n{credential}\ntoken_url = \"{}\"\nscopes = [\"mail\"]\nca_file = \"{}\"\nsmtp = {{ host = \"{}\", port = {}, security = \"starttls\" }}\n{}",
        p.endpoints.token,
        p.ca_file.display(),
        p.smtp.host,
        p.smtp.starttls_port,
        assets("tenant", mailboxes)
    );
    std::fs::write(dir.path().join("assets.toml"), text).unwrap();
    dir
}

/// mailform in `dir` with the app's secret, and no person anywhere.
fn mf(p: &Peers, dir: &Path) -> Mailform {
    Mailform::new(dir).env(
        "APP_SECRET",
        p.clients.app.client_secret.as_deref().unwrap(),
    )
}

/// Nothing secret in `run`'s output: no private key, no client secret.
fn assert_no_secrets(p: &Peers, run: &Run) {
    let all = run.all();
    assert!(
        !all.contains("PRIVATE KEY"),
        "a private key was shown:\n{all}"
    );
    for sa in p.service_accounts.values() {
        let key = sa["private_key"].as_str().unwrap();
        let body = key.lines().nth(1).unwrap();
        assert!(!all.contains(body), "a private key was shown:\n{all}");
    }
    let secret = p.clients.app.client_secret.as_deref().unwrap();
    assert!(!all.contains(secret), "the client secret was shown:\n{all}");
    assert!(!all.contains("eyJ"), "a JWT was shown:\n{all}");
    // No person consents for an app grant: nothing may tell one to.
    assert!(
        !all.contains("consent again"),
        "consent advice for an app grant:\n{all}"
    );
}

/// plan → apply (no person) → live plan → token → send-test, for one mailbox.
fn whole_life(p: &Peers, dir: &Path, asset: &str, mailbox: &str) {
    let plan = mf(p, dir).run(["plan", "--detailed-exitcode"]).code(2);
    assert_says(&plan, &format!("+ {asset}"));
    assert_says(&plan, "app grant: no consent");
    assert_no_secrets(p, &plan);
    let token = mf(p, dir).run(["token", asset]).code(1);
    assert_says(
        &token,
        &format!(
            "{asset} has no app token: it was never applied — run `mailform apply` (an app grant: no person needs to be present)"
        ),
    );
    let import = mf(p, dir).run(["import", asset]).code(1);
    assert_says(&import, "there is no grant to import");
    let export = mf(p, dir).run(["export", asset, "--format", "webex"]).ok();
    assert_says(&export, "Webex Connect's form always runs its own consent");
    assert_no_secrets(p, &export);
    let apply = mf(p, dir).run(["apply", "--auto-approve"]).ok();
    assert_says(&apply, "app grant: token obtained and stored (no consent)");
    assert_says(&apply, &format!("{asset}: SMTP login proven by"));
    assert_says(&apply, "1 created");
    assert_no_secrets(p, &apply);
    let live = mf(p, dir)
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
    assert_no_secrets(p, &live);
    let token = mf(p, dir).run(["token", asset]).ok();
    let introspected = p.introspect(token.stdout.trim());
    assert_eq!(introspected["active"], true, "{introspected}");
    let sent = mf(p, dir)
        .run(["send-test", asset, "--to", "bob@example.test"])
        .ok();
    assert_says(&sent, &format!("Sent a test message from {mailbox}"));
    assert_no_secrets(p, &sent);
    let show = mf(p, dir).run(["show"]).ok();
    assert_no_secrets(p, &show);
    assert_says(&show, "(an app grant: no person consents)");
    assert_says(&show, "refresh none (asked for again when due)");
    assert!(
        !show.all().contains(token.stdout.trim()),
        "show printed the token"
    );
    // The peers' app tokens live 4 minutes: always within the 5 minutes
    // in which mailform asks for a new one, with no refresh token.
    let again = mf(p, dir).run(["token", asset]).ok();
    assert_ne!(again.stdout.trim(), token.stdout.trim());
    assert_eq!(p.introspect(again.stdout.trim())["active"], true);
}

#[test]
fn a_service_account_grants_workspace_mailboxes_with_no_person() {
    let p = peers();
    let dir = service_account_project(p, "main", &["app-sa-one@example.test"]);
    whole_life(p, dir.path(), "app-sa-one", "app-sa-one@example.test");
    // The token acts as the mailbox (the assertion's `sub`).
    let token = mf(p, dir.path()).run(["token", "app-sa-one"]).ok();
    assert_eq!(
        p.introspect(token.stdout.trim())["sub"],
        "app-sa-one@example.test"
    );
    // Pull-request CI has no key file: an offline plan judges from state,
    // and whatever would talk to Google says what is missing.
    let key = std::fs::read_to_string(dir.path().join("sa.json")).unwrap();
    std::fs::remove_file(dir.path().join("sa.json")).unwrap();
    mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
    let live = mf(p, dir.path()).run(["plan"]).code(1);
    assert_says(&live, "its service_account_file is not here");
    private(&dir.path().join("sa.json"), &key);
    // Delete forgets: there is nothing to revoke.
    std::fs::write(
        dir.path().join("assets.toml"),
        std::fs::read_to_string(dir.path().join("assets.toml"))
            .unwrap()
            .split("\n[assets.")
            .next()
            .unwrap(),
    )
    .unwrap();
    let delete = mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    assert_says(
        &delete,
        "forgotten (an app grant: there is nothing to revoke)",
    );
}

#[test]
fn client_credentials_grant_mailboxes_with_a_secret_or_a_certificate() {
    let p = peers();
    let dir = app_project(p, AppCredential::Secret, &["app-cc-one@example.test"]);
    whole_life(p, dir.path(), "app-cc-one", "app-cc-one@example.test");
    let dir = app_project(
        p,
        AppCredential::Certificate,
        &["app-cert-one@example.test"],
    );
    whole_life(p, dir.path(), "app-cert-one", "app-cert-one@example.test");
    // The assertion names the certificate as Entra asks: PS256, and the
    // SHA-256 thumbprint of its DER.
    let pem_text = std::fs::read_to_string(dir.path().join("app.pem")).unwrap();
    let der = pem_text
        .split("-----")
        .nth(2)
        .map(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.split_whitespace().collect::<String>())
                .unwrap()
        })
        .unwrap();
    let thumbprint = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref())
    };
    let header = p.assertion_header(&p.clients.app_cert.client_id);
    assert_eq!(header["alg"], "PS256", "{header}");
    assert_eq!(header["x5t#S256"], thumbprint, "{header}");
}

#[test]
fn a_provider_that_does_not_answer_is_a_failed_check_not_drift() {
    let p = peers();
    let dir = app_project(p, AppCredential::Secret, &["app-cc-down@example.test"]);
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    // The token endpoint moves to a port where nothing listens.
    let text = std::fs::read_to_string(dir.path().join("assets.toml")).unwrap();
    let port = crate::apply::free_port();
    let moved = text.replace(
        &p.endpoints.token,
        &format!("https://127.0.0.1:{port}/token"),
    );
    std::fs::write(dir.path().join("assets.toml"), moved).unwrap();
    // (A moved token endpoint binds the token: the plan asks for a new one,
    // and that request cannot be made now: exit 1, not a verdict.)
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "this is transient, not drift");
    assert!(!apply.all().contains("administrator"), "{}", apply.all());
    let show = mf(p, dir.path()).run(["show"]).ok();
    assert!(!show.all().contains("REFUSED"), "{}", show.all());
}

#[test]
fn a_mailbox_not_granted_to_the_app_is_refused_with_the_exchange_step() {
    let p = peers();
    let dir = app_project(p, AppCredential::Secret, &["support@example.test"]);
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "5.7.3 Authentication unsuccessful");
    assert_says(
        &apply,
        "the mailbox support@example.test is not granted to the app (client mailform-app)",
    );
    assert_says(
        &apply,
        "Add-MailboxPermission -Identity support@example.test",
    );
    // Drift, not a passing failure; and no consent would fix it.
    let plan = mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert_says(&plan, "~ support  update");
}

#[test]
fn a_revoked_delegation_is_drift_in_googles_words_with_the_admin_step() {
    let p = peers();
    let dir = service_account_project(p, "revocable", &["app-sa-revoked@example.test"]);
    mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    let client = p.service_accounts["revocable"]["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    p.revoke_delegation(&client);
    let plan = mf(p, dir.path())
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(2);
    assert_says(
        &plan,
        "the provider refused the app's token request (unauthorized_client: Client is unauthorized to retrieve access tokens using this method",
    );
    assert_says(
        &plan,
        &format!(
            "hint: domain-wide delegation is not granted for client {client} with scope https://mail.google.com/"
        ),
    );
    // It stays found offline, and apply says it cannot fix it.
    let offline = mf(p, dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert_says(&offline, "the provider refused the app's token request");
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "apply cannot fix this: an administrator can");
    assert_says(&apply, "Security → API controls → Domain-wide delegation");
    let show = mf(p, dir.path()).run(["show"]).ok();
    assert_says(
        &show,
        "REFUSED      the provider refused the app's token request",
    );
    let token = mf(p, dir.path()).run(["token", "app-sa-revoked"]).code(1);
    assert_says(&token, "unauthorized_client");
    assert_no_secrets(p, &token);
}

#[test]
fn a_key_that_is_not_the_service_accounts_is_refused_by_the_peer() {
    let p = peers();
    // The main account's address with the revocable one's key: a forged
    // assertion, whose signature the server checks.
    let mut forged = p.service_accounts["main"].clone();
    forged["private_key"] = p.service_accounts["revocable"]["private_key"].clone();
    let dir = service_account_project(p, "main", &["app-sa-forged@example.test"]);
    private(
        &dir.path().join("sa.json"),
        &serde_json::to_string(&forged).unwrap(),
    );
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).code(1);
    assert_says(&apply, "invalid_grant: Invalid JWT Signature.");
    assert_no_secrets(p, &apply);
}

/// The JWT-bearer request as Google's token endpoint takes it: nothing but
/// the grant type and the assertion.
fn jwt_bearer(p: &Peers, claims: &serde_json::Value) -> (u16, serde_json::Value) {
    let sa = &p.service_accounts["main"];
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = sa["private_key_id"].as_str().map(ToString::to_string);
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(sa["private_key"].as_str().unwrap().as_bytes())
            .unwrap();
    let assertion = jsonwebtoken::encode(&header, claims, &key).unwrap();
    let res = p
        .http()
        .post(&p.endpoints.token)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .unwrap();
    (res.status().as_u16(), res.json().unwrap())
}

#[test]
fn the_peer_checks_every_claim_of_an_assertion() {
    let p = peers();
    let sa = &p.service_accounts["main"];
    let now = chrono::Utc::now().timestamp();
    let claims = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = serde_json::json!({
            "iss": sa["client_email"],
            "sub": "app-sa-claims@example.test",
            "scope": "https://mail.google.com/",
            "aud": p.endpoints.token,
            "iat": now,
            "exp": now + 3600,
        });
        edit(&mut c);
        c
    };
    let (status, body) = jwt_bearer(p, &claims(&|_| {}));
    assert_eq!(status, 200, "{body}");
    for (edit, words) in [
        (
            &(|c: &mut serde_json::Value| c["exp"] = (now + 7200).into())
                as &dyn Fn(&mut serde_json::Value),
            "short-lived token",
        ),
        (
            &|c| {
                c["iat"] = (now - 7200).into();
                c["exp"] = (now - 3600).into();
            },
            "short-lived token",
        ),
        (
            &|c| c["aud"] = "https://oauth2.googleapis.com/token".into(),
            "iss or aud",
        ),
        (
            &|c| c["sub"] = "stranger@elsewhere.test".into(),
            "Invalid email or User ID",
        ),
        (
            &|c| c["scope"] = "https://www.googleapis.com/auth/gmail.readonly".into(),
            "unauthorized",
        ),
    ] {
        let (status, body) = jwt_bearer(p, &claims(edit));
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains(words),
            "{body}"
        );
    }
}

#[test]
fn validate_names_what_an_organisation_grant_gets_wrong() {
    let p = peers();
    let dir = service_account_project(p, "main", &["someone@gmail.com"]);
    let mut text = std::fs::read_to_string(dir.path().join("assets.toml")).unwrap();
    text.push_str("consent_as = \"boss@example.test\"\n");
    text.push_str(
        "\n[providers.ms]\npreset = \"microsoft\"\ngrant = \"client_credentials\"\ntenant = \"organizations\"\nclient_id = \"x\"\nclient_secret = { env = \"MS_SECRET\" }\nscopes = [\"https://outlook.office.com/SMTP.Send\"]\nredirect_uri = \"http://127.0.0.1:8765/callback\"\n",
    );
    text.push_str(
        "\n[providers.half]\ngrant = \"client_credentials\"\nclient_id = \"y\"\ntoken_url = \"https://login.example.com/token\"\nscopes = [\"mail\"]\nsmtp = { host = \"smtp.example.com\", port = 587, security = \"starttls\" }\n",
    );
    std::fs::write(dir.path().join("assets.toml"), &text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("sa.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert_no_secrets(p, &run);
    #[cfg(unix)]
    assert_says(
        &run,
        "warning: provider `workspace`: service_account_file: `sa.json` is readable by others (mode 644)",
    );
    assert_says(
        &run,
        "error: asset `someone`: a service account cannot act for a consumer Gmail address",
    );
    assert_says(&run, "warning: asset `someone`: consent_as is not used");
    assert_says(
        &run,
        "error: provider `ms`: client credentials need the app's own tenant, not \"organizations\"",
    );
    assert_says(
        &run,
        "error: provider `ms`: client credentials are granted only the scope https://outlook.office365.com/.default",
    );
    assert_says(
        &run,
        "warning: provider `ms`: redirect_uri is not used by grant = \"client_credentials\"",
    );
    assert_says(
        &run,
        "error: provider `half`: grant = \"client_credentials\" needs client_secret or client_certificate",
    );
    // Hostile and broken key files: what is wrong is said, never what is in them.
    for (text, says) in [
        (
            "{\"type\": \"service_account\", \"client_email\": \"a@b\", \"client_id\": \"1\", \"token_uri\": \"https://t.example/t\", \"private_key\": \"SENTINEL-SECRET\"}",
            "its private_key is not a PEM private key",
        ),
        (
            "{\"type\": \"service_account\", \"private_key\": 7, \"client_email\": \"SENTINEL-SECRET\"",
            "not a service-account key file",
        ),
        (
            "{\"type\": \"service_account\", \"private_key\": [\"SENTINEL-SECRET\"]}",
            "unexpected content",
        ),
    ] {
        private(&dir.path().join("sa.json"), text);
        let run = Mailform::new(dir.path()).run(["validate"]).code(1);
        assert_says(&run, says);
        assert!(!run.all().contains("SENTINEL"), "{}", run.all());
    }
    // A key file that is not a service account's, and one that is missing.
    private(
        &dir.path().join("sa.json"),
        "{\"installed\": {\"client_id\": \"x\"}}",
    );
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert_says(&run, "its \"type\" is not \"service_account\"");
    std::fs::remove_file(dir.path().join("sa.json")).unwrap();
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert_says(
        &run,
        "note: provider `workspace`: service_account_file: `sa.json` does not exist here",
    );
}

#[test]
fn fifty_app_grant_mailboxes_are_applied_and_proven_with_no_person() {
    let p = peers();
    let mailboxes: Vec<String> = (0..50)
        .map(|i| format!("app-fleet-{i:02}@example.test"))
        .collect();
    let names: Vec<&str> = mailboxes.iter().map(String::as_str).collect();
    let dir = app_project(p, AppCredential::Secret, &names);
    let started = std::time::Instant::now();
    let apply = mf(p, dir.path()).run(["apply", "--auto-approve"]).ok();
    eprintln!("apply of 50 app-grant assets: {:?}", started.elapsed());
    assert_says(&apply, "50 created");
    assert_eq!(
        apply.all().matches("SMTP login proven by").count(),
        50,
        "{}",
        apply.all()
    );
    mf(p, dir.path())
        .run(["plan", "--check-smtp", "--detailed-exitcode"])
        .code(0);
}
