//! What the live benches share: a project of N assets of the test
//! provider, all applied with one grant of alice's (the confidential
//! client's refresh tokens do not rotate, so one consent serves them all),
//! and the median of runs. Included by path (`mod lab;`) by benches that
//! include the peers harness as `peers` and the fixtures as `fixtures`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use mailform::secret::Secret;
use mailform::state::Tokens;

/// Writes `dir/assets.toml`: `[providers.lab]` trusting `ca_file`, SMTP on
/// the peers' STARTTLS port, `extra` provider lines (e.g. `imap = …`), and
/// N assets logging in as alice; then the state as apply leaves it.
pub fn project(dir: &Path, p: &super::peers::Peers, n: usize, ca_file: &Path, extra: &str) {
    let client = &p.clients.confidential;
    let mut text = format!(
        "version = 1\n[providers.lab]\nauthorization_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = {{ env = \"LAB_CLIENT_SECRET\" }}\nscopes = [\"mail\", \"offline_access\"]\nca_file = \"{}\"\nsmtp = {{ host = \"127.0.0.1\", port = {}, security = \"starttls\" }}\n{extra}",
        p.endpoints.authorization,
        p.endpoints.token,
        client.client_id,
        ca_file.display(),
        p.smtp.starttls_port
    );
    for i in 0..n {
        let _ = write!(
            text,
            "\n[assets.box-{i:03}]\nemail = \"box-{i:03}@example.test\"\nusername = \"alice@example.test\"\nprovider = \"lab\"\n"
        );
    }
    std::fs::write(dir.join("assets.toml"), &text).unwrap();
    let granted = super::peers::offline_tokens(p, client, "alice@example.test");
    super::fixtures::applied_state(dir, &text, |_| Tokens {
        access_token: Secret::new(granted["access_token"].as_str().unwrap()),
        refresh_token: Some(Secret::new(granted["refresh_token"].as_str().unwrap())),
    });
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
