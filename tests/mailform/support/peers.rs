//! The real OAuth 2.0 and SMTP servers of `tests/peers` (oidc-provider and
//! smtp-server under Node), started once per test binary on free loopback
//! ports with a test CA made here by rcgen, and stopped when the binary exits
//! (the Node process exits when its stdin, held here, closes — also when a
//! test panics or the binary is killed).
//!
//! Everything a test needs is on [`Peers`]: URLs, ports, clients, users, the
//! CA file, the consent driver, the mailbox, and admin actions that play "the
//! user removed access" and "the access token expired".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom as _;
use serde::Deserialize;
use serde_json::Value;

/// How long the peers may take to say they are ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub revocation: String,
    pub introspection: String,
    pub device_authorization: String,
}

#[derive(Debug, Deserialize)]
pub struct Admin {
    pub token: String,
    pub revoke_grants: String,
    pub expire_access_tokens: String,
    /// "The admin removed the domain-wide delegation" of a service account.
    pub revoke_delegation: String,
    /// The header of the last client assertion a client sent.
    pub assertion_header: String,
    /// Sets a user's Gmail settings (the emulated Gmail API's).
    pub gmail_settings: String,
}

#[derive(Debug, Deserialize)]
pub struct Smtp {
    pub host: String,
    pub starttls_port: u16,
    pub tls_port: u16,
    /// STARTTLS, worded as Microsoft 365 with SMTP AUTH disabled for the tenant.
    pub microsoft_port: u16,
    /// Plain SMTP that offers no STARTTLS.
    pub no_starttls_port: u16,
    /// Implicit TLS that offers AUTH PLAIN and LOGIN, not XOAUTH2.
    pub plain_auth_port: u16,
    /// STARTTLS that never answers AUTH (nor anything after it).
    pub stall_port: u16,
    /// Accepts, and never greets.
    pub mute_port: u16,
    /// A server nobody applied: it writes down each AUTH it gets, and refuses it.
    pub capture_port: u16,
    pub capture_log: PathBuf,
    /// Hostile servers: a greeting, or an answer to AUTH (after STARTTLS),
    /// of 16 MB without a line end.
    pub flood_greeting_port: u16,
    pub flood_auth_port: u16,
    /// Answers every other AUTH of a user with 454 4.7.0 (a passing failure).
    pub flaky_port: u16,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(clippy::struct_field_names)] // reason: the peers' JSON names them so
pub struct Client {
    pub client_id: String,
    pub client_secret: Option<String>,
    /// The private key of a client that signs its assertions (PEM).
    #[serde(default)]
    pub private_key: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Clients {
    /// A native client with a secret (HTTP Basic at the token endpoint).
    pub confidential: Client,
    /// A native public client: PKCE only.
    pub public: Client,
    /// What the SMTP server introspects with.
    pub introspector: Client,
    /// Microsoft 365 app-only: client credentials with a secret.
    pub app: Client,
    /// The same with a certificate's key (`private_key`); the server knows
    /// the public half.
    pub app_cert: Client,
}

/// What the peers said when ready, plus what the harness made for them.
#[derive(Debug, Deserialize)]
pub struct Ready {
    pub issuer: String,
    pub endpoints: Endpoints,
    pub admin: Admin,
    pub smtp: Smtp,
    pub clients: Clients,
    /// email → password
    pub users: BTreeMap<String, String>,
    /// Google Workspace service accounts, each its key file as downloaded:
    /// `main` (delegated for good), `revocable` (a test takes its
    /// delegation away).
    pub service_accounts: BTreeMap<String, Value>,
    pub mailbox: PathBuf,
    pub latency_ms: u64,
}

/// Running peers.
pub struct Peers {
    pub ready: Ready,
    /// The test CA certificate (PEM file): trust it to talk to the peers.
    pub ca_file: PathBuf,
    /// The `$BROWSER` stand-in: a headless person at the consent screen.
    pub consent_browser: PathBuf,
    /// From spawning Node to the ready line.
    pub startup: Duration,
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

impl std::ops::Deref for Peers {
    type Target = Ready;
    fn deref(&self) -> &Ready {
        &self.ready
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        drop(self.stdin.lock().unwrap().take());
        let mut child = self.child.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
}

/// The shared peers of this test binary, started on first use.
pub fn peers() -> &'static Peers {
    static PEERS: OnceLock<Peers> = OnceLock::new();
    PEERS.get_or_init(|| Peers::start(0).unwrap_or_else(|e| panic!("{e}")))
}

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Refuses early, naming the fix, when Node or the packages are missing.
pub fn check_node(peers_dir: &Path) -> Result<(), String> {
    let out = Command::new("node").arg("--version").output().map_err(|e| {
        format!("the test servers need Node.js 20 or newer on PATH, and `node` could not run ({e}); install it (e.g. apt-get install nodejs npm), then: npm ci --prefix tests/peers")
    })?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!(
            "the test servers need Node.js 20 or newer; `node --version` says {}",
            version.trim()
        ));
    }
    for package in ["oidc-provider", "smtp-server"] {
        if !peers_dir
            .join("node_modules")
            .join(package)
            .join("package.json")
            .is_file()
        {
            return Err(format!(
                "the test servers' node package `{package}` is not installed; run: npm ci --prefix tests/peers"
            ));
        }
    }
    Ok(())
}

/// A CA and a server certificate for `127.0.0.1`, `::1` and `localhost`.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (issuer, ca_pem) = super::tls::ca("mailform test CA");
    let (cert, key) = super::tls::server(&issuer, &["localhost", "127.0.0.1", "::1"]);
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca_pem).unwrap();
    std::fs::write(&files.1, cert).unwrap();
    std::fs::write(&files.2, key).unwrap();
    (files.0, files.1, files.2)
}

impl Peers {
    /// Starts a fresh set of peers; `latency_ms` is added to every
    /// client→server chunk (every round trip) for benchmarks.
    pub fn start(latency_ms: u64) -> Result<Peers, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        check_node(&peers_dir())?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "peers-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let (ca_file, cert, key) = make_certificates(&dir);
        // Beside the folder, not in it: the folder goes when the peers exit,
        // and their last words should not.
        let stderr_path = dir.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();

        let started = Instant::now();
        let mut child = Command::new("node")
            .arg(peers_dir().join("peers.mjs"))
            .current_dir(peers_dir())
            .env("PEERS_CERT", &cert)
            .env("PEERS_KEY", &key)
            .env("PEERS_CA", &ca_file)
            .env("PEERS_MAILBOX", dir.join("mailbox"))
            .env("PEERS_LATENCY_MS", latency_ms.to_string())
            .env("PEERS_CLEANUP_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start node tests/peers/peers.mjs: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the pipe drained so a stray write never kills the peers.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx.recv_timeout(STARTUP_TIMEOUT).unwrap_or_default();
        let startup = started.elapsed();
        let Ok(ready) = serde_json::from_str::<Ready>(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            let words = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "the test servers did not start within {STARTUP_TIMEOUT:?}:\n{line}{words}"
            ));
        };
        let stdin = child.stdin.take();
        Ok(Peers {
            ready,
            ca_file,
            consent_browser: peers_dir().join("consent-browser"),
            startup,
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    /// A blocking HTTP client that trusts the test CA and follows no redirects.
    pub fn http(&self) -> reqwest::blocking::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca_file).unwrap()).unwrap();
        reqwest::blocking::Client::builder()
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    /// RFC 7662 introspection, as the SMTP server does it: what the server
    /// knows of `token` (`active`, `sub`, `scope`).
    pub fn introspect(&self, token: &str) -> Value {
        let who = &self.clients.introspector;
        self.http()
            .post(&self.endpoints.introspection)
            .basic_auth(&who.client_id, who.client_secret.as_ref())
            .form(&[("token", token)])
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The password of a test user.
    pub fn password(&self, user: &str) -> &str {
        &self.users[user]
    }

    /// Runs the consent driver on `url` as `user`, with extra driver flags;
    /// returns what it printed (the redirect URL) or its complaint.
    pub fn consent(&self, url: &str, user: &str, flags: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(&self.consent_browser);
        cmd.args(["--user", user]);
        if !flags.contains(&"--password") {
            cmd.args(["--password", self.password(user)]);
        }
        let out = cmd
            .args(flags)
            .arg(url)
            .env("PEERS_CA", &self.ca_file)
            .output()
            .expect("the consent driver runs");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn admin(&self, url: &str, user: &str) -> serde_json::Value {
        self.admin_form(url, &[("user", user)])
    }

    /// An admin route's answer to `form`, which must be a success.
    fn admin_form(&self, url: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let res = self
            .http()
            .post(url)
            .bearer_auth(&self.admin.token)
            .form(form)
            .send()
            .unwrap();
        assert!(
            res.status().is_success(),
            "admin call failed: {}",
            res.status()
        );
        res.json().unwrap()
    }

    /// "The admin removed the domain-wide delegation" of the service
    /// account whose client id is `client`.
    pub fn revoke_delegation(&self, client: &str) {
        self.admin_form(&self.admin.revoke_delegation, &[("client", client)]);
    }

    /// Sets `user`'s Gmail forwarding settings, as they would be set in
    /// Gmail's settings page: `fields` among `enabled`, `email`,
    /// `disposition`, `address` (with `status`), `api` (`disabled`).
    pub fn gmail_settings(&self, user: &str, fields: &[(&str, &str)]) {
        let mut form = vec![("user", user)];
        form.extend_from_slice(fields);
        self.admin_form(&self.admin.gmail_settings, &form);
    }

    /// The header of the last client assertion `client` authenticated with.
    pub fn assertion_header(&self, client: &str) -> serde_json::Value {
        self.admin_form(&self.admin.assertion_header, &[("client", client)])
    }

    /// "The user removed access": revokes every grant of `user`, with its tokens.
    pub fn revoke_grants(&self, user: &str) -> u64 {
        self.admin(&self.admin.revoke_grants, user)["grants_revoked"]
            .as_u64()
            .unwrap()
    }

    /// Removes `user`'s access tokens only; refresh tokens keep working.
    pub fn expire_access_tokens(&self, user: &str) -> u64 {
        self.admin(&self.admin.expire_access_tokens, user)["access_tokens_removed"]
            .as_u64()
            .unwrap()
    }

    /// The users whose AUTH the capture server received, oldest first.
    pub fn captured_logins(&self) -> Vec<String> {
        std::fs::read_to_string(&self.smtp.capture_log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["user"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    /// Accepted messages: (envelope, raw message), oldest first.
    pub fn messages(&self) -> Vec<(serde_json::Value, String)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.mailbox)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "json"));
        names.sort();
        names
            .iter()
            .map(|p| {
                let envelope = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                (
                    envelope,
                    std::fs::read_to_string(p.with_extension("eml")).unwrap(),
                )
            })
            .collect()
    }
}

// ---- Tokens the way a person and a client get them --------------------

pub fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The authorization request of a native app: PKCE S256, state, loopback redirect.
pub struct Request {
    pub url: String,
    pub verifier: String,
    pub state: String,
    pub redirect_uri: String,
}

pub fn authorization(p: &Peers, client: &Client, scope: &str, extra: &[(&str, &str)]) -> Request {
    let verifier = random(32);
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let state = random(12);
    // Any loopback port is accepted for a native client; nothing listens here.
    let redirect_uri = "http://127.0.0.1:49152/callback".to_string();
    let mut url = url::Url::parse(&p.endpoints.authorization).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    Request {
        url: url.into(),
        verifier,
        state,
        redirect_uri,
    }
}

/// The query of the redirect the consent driver stopped at.
pub fn callback_query(redirect: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(redirect)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn token_request(p: &Peers, client: &Client, form: &[(&str, &str)]) -> (u16, Value) {
    let mut req = p.http().post(&p.endpoints.token);
    let mut form: Vec<(&str, &str)> = form.to_vec();
    match &client.client_secret {
        Some(secret) => req = req.basic_auth(&client.client_id, Some(secret)),
        None => form.push(("client_id", &client.client_id)),
    }
    let res = req.form(&form).send().unwrap();
    (res.status().as_u16(), res.json().unwrap())
}

/// Redeems the code in `redirect` (the end of `req`'s consent).
pub fn exchange(p: &Peers, client: &Client, req: &Request, redirect: &str) -> (u16, Value) {
    let q = callback_query(redirect);
    assert_eq!(q.get("state"), Some(&req.state), "{redirect}");
    assert_eq!(
        q.get("iss"),
        Some(&p.issuer),
        "RFC 9207 issuer in the response: {redirect}"
    );
    token_request(
        p,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", &req.redirect_uri),
            ("code_verifier", &req.verifier),
        ],
    )
}

/// Consent as `user`, then the code exchange: the token response.
pub fn consent_and_exchange(
    p: &Peers,
    client: &Client,
    user: &str,
    scope: &str,
    extra: &[(&str, &str)],
) -> Value {
    let req = authorization(p, client, scope, extra);
    let redirect = p.consent(&req.url, user, &["--no-callback"]).unwrap();
    let (status, body) = exchange(p, client, &req, &redirect);
    assert_eq!(status, 200, "{body}");
    body
}

/// Tokens for `mail offline_access`, consented by `user`: the usual start.
pub fn offline_tokens(p: &Peers, client: &Client, user: &str) -> Value {
    consent_and_exchange(
        p,
        client,
        user,
        "mail offline_access",
        &[("prompt", "consent")],
    )
}

pub fn refresh(p: &Peers, client: &Client, refresh_token: &str) -> (u16, Value) {
    token_request(
        p,
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
}

/// How a test's `[providers.lab]` reaches the SMTP server.
#[derive(Clone, Copy)]
pub struct LabSmtp<'a> {
    pub port: u16,
    pub security: &'a str,
    /// Whether `ca_file` names the test CA.
    pub trust_ca: bool,
}

/// A `[providers.lab]` for the test servers, as an operator writes it:
/// the one place the tests' provider text is written.
pub struct LabProvider<'a> {
    pub client: &'a Client,
    /// The token endpoint (default: the server's).
    pub token_url: Option<&'a str>,
    /// Loopback consent on this port (`redirect_uri`), when consent runs.
    pub callback_port: Option<u16>,
    /// A TOML array.
    pub scopes: &'a str,
    pub smtp: LabSmtp<'a>,
}

impl<'a> LabProvider<'a> {
    /// `client` at `token_url`, the mail scopes, no consent listener, SMTP
    /// on the STARTTLS port trusting the test CA: for tests that refresh
    /// tokens made by hand.
    pub fn without_consent(p: &Peers, client: &'a Client, token_url: &'a str) -> Self {
        LabProvider {
            client,
            token_url: Some(token_url),
            callback_port: None,
            scopes: "[\"mail\", \"offline_access\"]",
            smtp: LabSmtp {
                port: p.smtp.starttls_port,
                security: "starttls",
                trust_ca: true,
            },
        }
    }

    /// `version = 1` and the provider table.
    pub fn text(&self, p: &Peers) -> String {
        let mut text = format!(
            "version = 1\n\n[providers.lab]\nauthorization_url = \"{}\"\ntoken_url = \"{}\"\nrevocation_url = \"{}\"\nclient_id = \"{}\"\n",
            p.endpoints.authorization,
            self.token_url.unwrap_or(&p.endpoints.token),
            p.endpoints.revocation,
            self.client.client_id,
        );
        if self.client.client_secret.is_some() {
            text.push_str("client_secret = { env = \"LAB_CLIENT_SECRET\" }\n");
        }
        if let Some(port) = self.callback_port {
            let _ = writeln!(text, "redirect_uri = \"http://127.0.0.1:{port}/callback\"");
        }
        let _ = writeln!(text, "scopes = {}", self.scopes);
        text.push_str("auth_params = { prompt = \"consent\" }\n");
        if self.smtp.trust_ca {
            let _ = writeln!(text, "ca_file = \"{}\"", p.ca_file.display());
        }
        let _ = writeln!(
            text,
            "smtp = {{ host = \"{}\", port = {}, security = \"{}\" }}",
            p.smtp.host, self.smtp.port, self.smtp.security
        );
        text
    }
}

/// `version = 1` and a `[providers.lab]` for the test servers: the
/// confidential client (secret from `LAB_CLIENT_SECRET`), loopback consent
/// on `callback_port`, `scopes` (a TOML array), and the SMTP server as
/// `smtp` says.
pub fn lab_provider(p: &Peers, callback_port: u16, scopes: &str, smtp: &LabSmtp<'_>) -> String {
    LabProvider {
        client: &p.clients.confidential,
        token_url: None,
        callback_port: Some(callback_port),
        scopes,
        smtp: *smtp,
    }
    .text(p)
}
