//! Live `plan` and `mailform token` through the real binary, against the
//! real OAuth and SMTP servers: state holds tokens a person consented to
//! (through the harness's consent driver), as `apply` will store them.

use std::path::Path;

use chrono::Utc;
use mailform::config;
use mailform::secret::Secret;
use mailform::state::{State, Tokens};
use mailform::store::{FileStore, StateStore as _, key};
use serde_json::Value;

use crate::peers::transport;
use crate::support::peers::{Client, Peers, offline_tokens, peers, refresh};
use crate::support::{Mailform, Run};

/// assets.toml for one asset of the test provider, logged in as `user`.
fn config_text(p: &Peers, client: &Client, user: &str, token_url: &str) -> String {
    let provider = crate::support::peers::LabProvider::without_consent(p, client, token_url);
    format!(
        "{}\n[assets.support]\nemail = \"{user}\"\nprovider = \"lab\"\n",
        provider.text(p)
    )
}

/// A project whose state holds `user`'s freshly consented tokens.
struct Project {
    dir: tempfile::TempDir,
    secret: Option<String>,
    tokens: Value,
}

impl Project {
    fn new(p: &Peers, client: &Client, user: &str) -> Self {
        Self::with_token_url(p, client, user, &p.endpoints.token)
    }

    fn with_token_url(p: &Peers, client: &Client, user: &str, token_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(p, client, user, token_url);
        std::fs::write(dir.path().join("assets.toml"), &text).unwrap();
        let tokens = offline_tokens(p, client, user);
        let config = config::parse(&dir.path().join("assets.toml"), text)
            .config
            .unwrap();
        let (key, _) = key::create(&dir.path().join(".mailform")).unwrap();
        let mut state = State::new();
        let sealed = Tokens {
            access_token: Secret::new(tokens["access_token"].as_str().unwrap()),
            refresh_token: Some(Secret::new(tokens["refresh_token"].as_str().unwrap())),
        };
        let record = state.insert_applied(
            "support",
            mailform::plan::applied(&config, &config.assets["support"]),
            Some((&key, &sealed, vec!["mail".into(), "offline_access".into()])),
            Utc::now(),
        );
        let expires = tokens["expires_in"].as_i64().unwrap();
        record.token.as_mut().unwrap().access_expires_at =
            Some(Utc::now() + chrono::Duration::seconds(expires));
        FileStore::new(dir.path().join(".mailform/state.json"))
            .save(&mut state)
            .unwrap();
        Project {
            dir,
            secret: client.client_secret.clone(),
            tokens,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mf(&self) -> Mailform {
        let m = Mailform::new(self.path());
        match &self.secret {
            Some(s) => m.env("LAB_CLIENT_SECRET", s),
            None => m,
        }
    }

    fn state(&self) -> State {
        crate::support::fixtures::stored_state(self.path())
    }

    /// The tokens as stored now, opened with the project's key.
    fn stored(&self) -> Tokens {
        crate::support::fixtures::stored_tokens(self.path(), "support")
    }

    /// Moves the stored access token's expiry into the past.
    fn expire_locally(&self) {
        let path = self.path().join(".mailform/state.json");
        let mut doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        doc["assets"]["support"]["token"]["access_expires_at"] = "2000-01-01T00:00:00Z".into();
        std::fs::write(&path, doc.to_string()).unwrap();
    }

    /// Nothing printed holds a token or the client secret: the tokens the
    /// project started with, and those stored now (a refresh or rotation
    /// replaced them); the state file holds none of them in clear.
    #[track_caller]
    fn assert_clean(&self, run: &Run, except_stdout: bool) {
        let now = self.stored();
        let mut tokens: Vec<String> = vec![
            self.tokens["refresh_token"].as_str().unwrap().to_string(),
            self.tokens["access_token"].as_str().unwrap().to_string(),
            now.access_token.expose().to_string(),
        ];
        tokens.extend(now.refresh_token.map(|r| r.expose().to_string()));
        let text = if except_stdout {
            &run.stderr
        } else {
            &run.all()
        };
        for s in tokens.iter().chain(&self.secret) {
            assert!(!text.contains(s.as_str()), "a secret leaked:\n{text}");
        }
        let state = std::fs::read_to_string(self.path().join(".mailform/state.json")).unwrap();
        for s in &tokens {
            assert!(
                !state.contains(s.as_str()),
                "a token is in the state file in clear"
            );
        }
    }
}

#[test]
fn a_live_plan_refreshes_every_grant_and_finds_no_drift() {
    let p = peers();
    let project = Project::new(p, &p.clients.confidential, "alice@example.test");
    let run = project.mf().run(["plan", "--detailed-exitcode"]).code(0);
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
    project.assert_clean(&run, false);
    // A confidential client's refresh token does not rotate, but the fresh
    // access token is stored (the old one may be dead): one state write.
    assert_eq!(project.state().serial, 2);
    let verbose = project.mf().run(["plan", "--verbose"]).ok();
    assert!(
        verbose
            .stderr
            .contains(&format!("mailform: POST {} → 200", p.endpoints.token)),
        "{}",
        verbose.stderr
    );
    project.assert_clean(&verbose, false);
    // Without -v, no exchange is shown.
    assert!(!run.stderr.contains("mailform: POST"));
}

#[test]
fn a_removed_grant_is_drift_that_needs_consent() {
    let p = peers();
    let user = "frank@example.test";
    let project = Project::new(p, &p.clients.confidential, user);
    assert!(p.revoke_grants(user) >= 1);
    let run = project.mf().run(["plan", "--detailed-exitcode"]).code(2);
    assert!(
        run.stdout.contains(&format!(
            "! support  re-consent  {user} (lab): refresh token revoked or expired (invalid_grant"
        )),
        "{}",
        run.stdout
    );
    project.assert_clean(&run, false);
    // -v shows the exchange in the provider's words, and nothing secret.
    let verbose = project.mf().run(["plan", "-v"]).ok();
    assert!(
        verbose.stderr.contains(&format!(
            "mailform: POST {} → 400 invalid_grant",
            p.endpoints.token
        )),
        "{}",
        verbose.stderr
    );
    project.assert_clean(&verbose, false);
    let json = project.mf().run(["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["live"], true);
    assert_eq!(plan["changes"][0]["reasons"][0]["kind"], "token_revoked");
    assert_eq!(plan["changes"][0]["reasons"][0]["error"], "invalid_grant");
    // And `token` says consent is needed, in words.
    project.expire_locally();
    let run = project.mf().run(["token", "support"]).code(1);
    assert!(
        run.stderr.contains(
            "consent required for support: the provider refused its refresh token at the check of"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn dead_access_tokens_under_a_live_grant_are_not_drift() {
    let p = peers();
    let user = "grace@example.test";
    let project = Project::new(p, &p.clients.confidential, user);
    assert!(p.expire_access_tokens(user) >= 1);
    project.expire_locally();
    project.mf().run(["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_rotated_refresh_token_is_stored_at_once_and_the_old_one_is_dead() {
    let p = peers();
    let user = "heidi@example.test";
    let client = &p.clients.public;
    let project = Project::new(p, client, user);
    let old = project.tokens["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let run = project.mf().run(["plan", "--out", "saved.json"]).ok();
    project.assert_clean(&run, false);
    let state = project.state();
    assert_eq!(state.serial, 2, "the rotated token was written");
    let stored = project.stored();
    let new = stored.refresh_token.unwrap();
    assert_ne!(
        new.expose(),
        old,
        "the new refresh token is what state holds"
    );
    // The saved plan records the serial after that write.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(project.path().join("saved.json")).unwrap())
            .unwrap();
    assert_eq!(saved["serial"], 2);
    let saved_text = std::fs::read_to_string(project.path().join("saved.json")).unwrap();
    assert!(!saved_text.contains(&old) && !saved_text.contains(new.expose()));
    // The stored token keeps working, plan after plan.
    project.mf().run(["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(project.state().serial, 3);
    // The original refresh token is dead at the provider.
    assert_eq!(refresh(p, client, &old).1["error"], "invalid_grant");
}

#[test]
fn a_provider_that_is_down_is_a_failed_check_not_drift() {
    let p = peers();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/token",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let project = Project::with_token_url(p, &p.clients.confidential, "alice@example.test", &url);
    let run = project.mf().run(["plan", "--detailed-exitcode"]).code(1);
    assert!(
        !run.stdout.contains("re-consent"),
        "not drift: {}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("token check failed for a passing reason"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("error: support: provider `lab` did not answer usefully (cannot connect")
            && run.stderr.contains("1 live check could not decide"),
        "{}",
        run.stderr
    );
    project.assert_clean(&run, false);
    // --offline does not ask.
    project
        .mf()
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
}

#[test]
fn token_prints_a_working_access_token_and_refreshes_it_when_due() {
    let p = peers();
    let user = "ivan@example.test";
    let project = Project::new(p, &p.clients.confidential, user);
    let first = project.mf().run(["token", "support"]).ok();
    assert_eq!(
        first.stdout.trim_end(),
        project.tokens["access_token"].as_str().unwrap(),
        "a fresh stored token is printed as it is"
    );
    assert!(first.stderr.is_empty(), "{}", first.stderr);
    // Expired at the provider and in state: refreshed, stored, printed.
    assert!(p.expire_access_tokens(user) >= 1);
    project.expire_locally();
    let run = project.mf().run(["token", "support"]).ok();
    let token = run.stdout.trim_end();
    assert_ne!(token, project.tokens["access_token"].as_str().unwrap());
    assert!(run.stdout.ends_with('\n') && run.stdout.lines().count() == 1);
    project.assert_clean(&run, true);
    assert_eq!(project.stored().access_token.expose(), token);
    // It logs in to the SMTP server (XOAUTH2), as msmtp would with it.
    assert!(transport(p, false, user, token).test_connection().unwrap());
    // A second call uses the stored token, without a refresh.
    let again = project.mf().run(["token", "support"]).ok();
    assert_eq!(again.stdout.trim_end(), token);
}

#[test]
fn token_for_an_asset_never_applied_says_consent_is_needed() {
    let p = peers();
    let project = Project::new(p, &p.clients.confidential, "alice@example.test");
    let text = std::fs::read_to_string(project.path().join("assets.toml")).unwrap()
        + "\n[assets.sales]\nemail = \"bob@example.test\"\nprovider = \"lab\"\n";
    std::fs::write(project.path().join("assets.toml"), text).unwrap();
    let run = project.mf().run(["token", "sales"]).code(1);
    assert!(
        run.stderr
            .contains("consent required for sales: it was never applied — run `mailform apply`"),
        "{}",
        run.stderr
    );
    let run = project.mf().run(["token", "slaes"]).code(1);
    assert!(
        run.stderr.contains("did you mean `sales`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_grant_whose_client_changed_is_not_sent_to_the_new_one() {
    let p = peers();
    let project = Project::new(p, &p.clients.confidential, "alice@example.test");
    let text = std::fs::read_to_string(project.path().join("assets.toml"))
        .unwrap()
        .replace(
            &p.clients.confidential.client_id,
            &p.clients.public.client_id,
        )
        .replace("client_secret = { env = \"LAB_CLIENT_SECRET\" }", "");
    std::fs::write(project.path().join("assets.toml"), text).unwrap();
    let run = project
        .mf()
        .run(["plan", "-v", "--detailed-exitcode"])
        .code(2);
    assert!(
        run.stdout.contains("! support  re-consent"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("mailform: POST"),
        "the old refresh token went to the token endpoint: {}",
        run.stderr
    );
    // Tokens granted under the old client are not handed out, fresh or not.
    let run = project.mf().run(["token", "support"]).code(1);
    assert!(
        run.stderr.contains(
            "token-binding fields (client, endpoints, scopes, username) changed since consent"
        ),
        "{}",
        run.stderr
    );
}
