//! `plan --check` of N assets (each asset's refresh, its SMTP login and its
//! IMAP login) against `plan --check-smtp` (refresh and SMTP login), both
//! against the real test servers (the peers, and Dovecot introspecting the
//! OAuth peer), at the same parallelism: the time per proof of the run with
//! both proofs, as a ratio to the SMTP-only run's. Every asset holds a
//! grant of the same account, so one consent serves them all.
//!
//! Run: `cargo bench --bench imap` (add `-- 200` for another N).

#[path = "../tests/mailform/support/dovecot.rs"]
#[allow(dead_code)] // reason: the harness serves the tests too; the bench uses a part
mod dovecot;
#[path = "../tests/mailform/support/fixtures.rs"]
mod fixtures;
#[path = "../tests/mailform/support/peers.rs"]
#[allow(dead_code)] // reason: the harness serves the tests too; the bench uses a part
mod peers;
#[path = "../tests/mailform/support/tls.rs"]
mod tls;

#[path = "support/lab.rs"]
mod lab;

use std::path::Path;
use std::time::{Duration, Instant};

fn plan_once(dir: &Path, secret: &str, flag: &str) -> Duration {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailform"))
        .args(["plan", "--detailed-exitcode", flag])
        .current_dir(dir)
        .env("LAB_CLIENT_SECRET", secret)
        .env("MAILFORM_PARALLELISM", "10")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let p = peers::Peers::start(0).unwrap();
    let d = dovecot::dovecot(&p);
    let dir = tempfile::tempdir().unwrap();
    let imap = format!(
        "imap = {{ host = \"127.0.0.1\", port = {}, security = \"tls\" }}\n",
        d.imaps_port
    );
    lab::project(dir.path(), &p, n, &d.ca_file, &imap);
    let secret = p.clients.confidential.client_secret.clone().unwrap();
    // The first plan records the applied IMAP endpoint's proofs; warm both.
    plan_once(dir.path(), &secret, "--check-smtp");
    plan_once(dir.path(), &secret, "--check");
    let (mut smtp, mut both) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        smtp.push(plan_once(dir.path(), &secret, "--check-smtp"));
        both.push(plan_once(dir.path(), &secret, "--check"));
    }
    let (smtp, both) = (lab::median(smtp), lab::median(both));
    let per =
        |t: Duration, proofs: usize| t.as_secs_f64() / f64::from(u32::try_from(proofs).unwrap());
    println!(
        "plan of {n} assets at P = 10: --check-smtp {smtp:.1?} ({n} proofs), --check {both:.1?} ({} proofs)",
        2 * n
    );
    println!(
        "time per proof, SMTP + IMAP / SMTP only: {:.2}x",
        per(both, 2 * n) / per(smtp, n)
    );
}
