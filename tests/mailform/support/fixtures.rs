//! A project as `apply` leaves it, without a provider: every asset of a
//! config applied, with tokens sealed in state. Shared by the tests and the
//! benches (which include this file by path).

use std::path::Path;

use chrono::Utc;
use mailform::config::{self, Asset};
use mailform::state::crypto::Key;
use mailform::state::{State, Tokens};
use mailform::store::{FileStore, StateStore as _, key};

/// Creates the key in `dir/.mailform` and a state in which every asset of
/// `text` (the config, read as `dir/assets.toml`) is applied with the tokens
/// `tokens` gives it, good for an hour; saves and returns both.
pub fn applied_state(dir: &Path, text: &str, tokens: impl Fn(&Asset) -> Tokens) -> (Key, State) {
    let config = config::parse(&dir.join("assets.toml"), text.to_string())
        .config
        .expect("a valid fixture config");
    let (key, _) = key::create(&dir.join(".mailform")).unwrap();
    let mut state = State::new();
    let now = Utc::now();
    for asset in config.assets.values() {
        let record = state.insert_applied(
            &asset.name,
            mailform::plan::applied(&config, asset),
            Some((&key, &tokens(asset), asset.scopes.clone())),
            now,
        );
        record.token.as_mut().expect("sealed").access_expires_at =
            Some(now + chrono::Duration::hours(1));
    }
    FileStore::new(dir.join(".mailform/state.json"))
        .save(&mut state)
        .unwrap();
    (key, state)
}

/// A config of `n` assets of one provider (no client secret, so nothing
/// needs the environment), for the benches.
#[allow(dead_code)] // reason: the benches use it, the tests do not
pub fn generated_config(n: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "version = 1\n\n[providers.lab]\nauthorization_url = \"https://idp.example.com/authorize\"\ntoken_url = \"https://idp.example.com/token\"\nrevocation_url = \"https://idp.example.com/revoke\"\nclient_id = \"mailform\"\nscopes = [\"mail\", \"offline_access\"]\nsmtp = { host = \"smtp.example.com\", port = 587, security = \"starttls\" }\n",
    );
    for i in 0..n {
        let _ = write!(
            s,
            "\n[assets.mailbox-{i:05}]\nemail = \"mailbox-{i:05}@example.com\"\nprovider = \"lab\"\nforwarding_address = \"fwd-{i:05}@mail.example.com\"\nlabels = {{ team = \"team-{}\", queue = \"tier{}\" }}\n",
            i % 17,
            i % 3
        );
    }
    s
}

/// The state the project in `dir` holds now (file backend, journal replayed).
#[allow(dead_code)] // reason: the tests use it, the benches do not
pub fn stored_state(dir: &Path) -> State {
    FileStore::new(dir.join(".mailform/state.json"))
        .load()
        .unwrap()
        .expect("a state")
}

/// `asset`'s tokens as stored now in the project in `dir`, opened with its key.
#[allow(dead_code)] // reason: the tests use it, the benches do not
pub fn stored_tokens(dir: &Path, asset: &str) -> Tokens {
    let (key, _) = key::load(&dir.join(".mailform")).unwrap().expect("a key");
    stored_state(dir)
        .open_tokens(&key, asset)
        .expect("the asset holds tokens")
        .expect("they open with the project's key")
}
