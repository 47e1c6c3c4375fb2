//! Live `plan` of N assets against the real test servers, at several
//! parallelisms, as a ratio to the ideal `ceil(N/P) × (cost of one asset)`:
//! the token checks alone, then with `--check-smtp` (each asset's refresh,
//! then its SMTP login: connect, STARTTLS, EHLO, AUTH XOAUTH2, QUIT).
//!
//! The servers run with `PEERS_LATENCY_MS` = 0 and 20 (every round trip,
//! TLS handshakes included, costs that much more), so the network-bound
//! shape shows. Every asset holds a grant of the same confidential client
//! (whose refresh tokens do not rotate), so one consent serves them all;
//! each logs in to SMTP as that one account.
//! The cost of one asset is measured at P = 1: (time at P = 1) / N.
//!
//! Run: `cargo bench --bench live` (add `-- 50` for another N).

#[path = "../tests/mailform/support/peers.rs"]
#[allow(dead_code)] // reason: the harness serves the tests too; the bench uses a part
mod peers;

#[path = "../tests/mailform/support/fixtures.rs"]
mod fixtures;
#[path = "../tests/mailform/support/tls.rs"]
mod tls;

#[path = "support/lab.rs"]
mod lab;

use std::path::Path;
use std::time::{Duration, Instant};

/// The peak resident memory seen so far of a running process, in KiB
/// (`VmHWM` of /proc; Linux only, else 0).
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One plan: how long it took, and its peak memory (KiB, sampled).
fn plan_once(dir: &Path, secret: &str, parallelism: usize, smtp: bool) -> (Duration, u64) {
    let started = Instant::now();
    let mut args = vec!["plan", "--detailed-exitcode"];
    if smtp {
        args.push("--check-smtp");
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailform"))
        .args(args)
        .current_dir(dir)
        .env("LAB_CLIENT_SECRET", secret)
        .env("MAILFORM_PARALLELISM", parallelism.to_string())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_kib(child.id()));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    (took, peak)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    println!("live plan of {n} assets vs the ideal ceil(N/P) x (one asset's cost at P = 1)");
    for latency in [0, 20] {
        let p = peers::Peers::start(latency).unwrap();
        let dir = tempfile::tempdir().unwrap();
        lab::project(dir.path(), &p, n, &p.ca_file, "");
        let secret = p.clients.confidential.client_secret.clone().unwrap();
        for smtp in [false, true] {
            let what = if smtp { "tokens + SMTP" } else { "tokens" };
            plan_once(dir.path(), &secret, 10, smtp); // warm up
            let mut at = Vec::new();
            let mut peak = 0;
            for parallelism in [1, 10, 50] {
                let runs = (0..if smtp { 3 } else { 5 })
                    .map(|_| {
                        let (took, kib) = plan_once(dir.path(), &secret, parallelism, smtp);
                        peak = peak.max(kib);
                        took
                    })
                    .collect();
                at.push((parallelism, lab::median(runs)));
            }
            println!(
                "  {what:<13} latency {latency:>2} ms: peak memory {:.1} MiB",
                f64::from(u32::try_from(peak).unwrap_or(u32::MAX)) / 1024.0
            );
            let one = at[0].1 / u32::try_from(n).unwrap();
            for (parallelism, took) in &at {
                let ideal = one * u32::try_from(n.div_ceil(*parallelism)).unwrap();
                println!(
                    "  {what:<13} latency {latency:>2} ms, P = {parallelism:>2}: {took:>9.1?}  ideal {ideal:>9.1?}  ratio {:.2}x  (P = 1 / this: {:.2}x)",
                    took.as_secs_f64() / ideal.as_secs_f64(),
                    at[0].1.as_secs_f64() / took.as_secs_f64()
                );
            }
        }
    }
}
