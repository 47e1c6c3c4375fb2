//! A small builder around the `mailform` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, for "never printed" checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        self
    }
}

/// `mailform ARGS` in `dir`, with a clean environment for mailform.
pub struct Mailform {
    cmd: Command,
}

impl Mailform {
    pub fn new(dir: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailform"));
        cmd.current_dir(dir)
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE");
        // Nothing of the developer's environment decides a test: no
        // MAILFORM_* setting, no $BROWSER (it means "a person is here"), no
        // consent driver instructions.
        for (k, _) in std::env::vars_os() {
            let k_text = k.to_string_lossy();
            if k_text.starts_with("MAILFORM_")
                || k_text.starts_with("CONSENT_")
                || k_text == "BROWSER"
            {
                cmd.env_remove(k);
            }
        }
        Mailform { cmd }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    /// Runs with stdout and/or stderr already closed, as `| head -n 0`
    /// leaves them; returns the exit code.
    pub fn run_closed<I, S>(mut self, args: I, close_out: bool, close_err: bool) -> i32
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use std::process::Stdio;
        let pipe = |close| if close { Stdio::piped() } else { Stdio::null() };
        let mut child = self
            .cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(pipe(close_out))
            .stderr(pipe(close_err))
            .spawn()
            .expect("mailform starts");
        drop(child.stdout.take());
        drop(child.stderr.take());
        child.wait().expect("mailform ends").code().unwrap_or(-1)
    }

    /// Starts mailform in the background (stdin closed, output to files in
    /// `out`), for tests that signal or kill it.
    pub fn spawn<I, S>(mut self, args: I, out: &Path) -> std::process::Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use std::process::Stdio;
        self.cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out.join("stdout")).unwrap())
            .stderr(std::fs::File::create(out.join("stderr")).unwrap())
            .spawn()
            .expect("mailform starts")
    }

    pub fn run<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.cmd.args(args).output().expect("mailform runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Waits for a background mailform to end (at most `limit`, then kills it
/// and fails); its exit code.
pub fn wait(child: &mut std::process::Child, limit: std::time::Duration) -> i32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mailform did not stop within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `done` until it holds (at most `limit`, then fails naming `what`).
pub fn wait_for(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// mailform in `dir` with the test provider's client secret, the headless
/// person as `$BROWSER`, and the test CA for the peers.
pub fn lab(p: &peers::Peers, dir: &Path) -> Mailform {
    Mailform::new(dir)
        .env(
            "LAB_CLIENT_SECRET",
            p.clients.confidential.client_secret.as_deref().unwrap(),
        )
        .env("BROWSER", p.consent_browser.to_str().unwrap())
        .env("PEERS_CA", p.ca_file.to_str().unwrap())
}

/// The fixture files under tests/bad/fixtures hold (fake) secrets: made
/// private, as an operator keeps theirs, whatever mode the checkout gave
/// them (git keeps no read bits), so what validate says of them is the same
/// on every machine.
pub fn private_fixtures() {
    #[cfg(unix)]
    for entry in std::fs::read_dir(root().join("tests/bad/fixtures")).unwrap() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// Fails unless `run` printed `text` (on stdout or stderr), showing both.
#[track_caller]
pub fn assert_says(run: &Run, text: &str) {
    assert!(
        run.all().contains(text),
        "expected {text:?} in:\n{}",
        run.all()
    );
}

/// A temporary project folder.
pub fn project(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("assets.toml"), config).unwrap();
    dir
}
pub mod dovecot;
pub mod fixtures;
pub mod peers;
pub mod postgres;
pub mod tls;

/// `version = 1` and a `[providers.lab]` nobody answers at: for tests that
/// never call the provider. A macro, so it can start a `const` with `concat!`.
/// `offline_lab!(revocation)` adds a revocation endpoint; `offline_lab!(public)`
/// is a client without a secret (nothing needs the environment).
macro_rules! offline_lab {
    () => {
        $crate::support::offline_lab!(@ "", "client_secret = { env = \"LAB_CLIENT_SECRET\" }\n")
    };
    (revocation) => {
        $crate::support::offline_lab!(@
            "revocation_url = \"https://127.0.0.1:9/revoke\"\n",
            "client_secret = { env = \"LAB_CLIENT_SECRET\" }\n"
        )
    };
    (public) => {
        $crate::support::offline_lab!(@ "", "")
    };
    (@ $revocation:expr, $secret:expr) => {
        concat!(
            "version = 1\n\n[providers.lab]\n",
            "authorization_url = \"https://127.0.0.1:9/authorize\"\n",
            "token_url = \"https://127.0.0.1:9/token\"\n",
            $revocation,
            "client_id = \"mailform-test\"\n",
            $secret,
            "scopes = [\"mail\", \"offline_access\"]\n",
            "smtp = { host = \"127.0.0.1\", port = 2587, security = \"starttls\" }\n",
        )
    };
}
pub(crate) use offline_lab;
