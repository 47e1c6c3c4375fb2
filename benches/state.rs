//! A no-op `mailform plan --offline` of N assets (default 1,000), with the
//! state in a file and in PostgreSQL: the same config, the same state (every
//! asset applied, tokens sealed), the binary run end to end. PostgreSQL is
//! the tests' real server (see tests/mailform/support/postgres.rs), on
//! loopback without TLS, so the figure is the backend's own cost: connect,
//! check the schema, read one row.
//!
//! Reports medians of interleaved runs and their ratio.
//!
//! Run: `cargo bench --bench state` (add `-- N` for another size).

#[path = "../tests/mailform/support/fixtures.rs"]
mod fixtures;
#[allow(dead_code)] // reason: the bench uses the server, not the tests' helpers
#[path = "../tests/mailform/support/postgres.rs"]
mod postgres;
#[path = "../tests/mailform/support/tls.rs"]
mod tls;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mailform::secret::Secret;
use mailform::state::Tokens;
use mailform::store::StateStore as _;

fn plan(dir: &Path, url: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mailform"))
        .args(["plan", "--offline", "--detailed-exitcode"])
        .current_dir(dir)
        .env("MAILFORM_STATE_URL", url)
        .env_remove("MAILFORM_KEY")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "not a no-op plan:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000);
    let pg = postgres::pg();
    let url = pg.admin_url("postgres", "disable");
    let text = fixtures::generated_config(n);

    let file = tempfile::tempdir().unwrap();
    std::fs::write(file.path().join("assets.toml"), &text).unwrap();
    let tokens = |_: &_| Tokens {
        access_token: Secret::new("a".repeat(180)),
        refresh_token: Some(Secret::new("r".repeat(100))),
    };
    let (_, mut state) = fixtures::applied_state(file.path(), &text, tokens);

    let db = tempfile::tempdir().unwrap();
    let schema = pg.schema();
    let pg_text = format!(
        "{text}\n[state]\nbackend = \"postgres\"\nurl = {{ env = \"MAILFORM_STATE_URL\" }}\nschema = \"{schema}\"\n"
    );
    std::fs::write(db.path().join("assets.toml"), pg_text).unwrap();
    // The same key, and the same state, pushed into the database.
    std::fs::create_dir(db.path().join(".mailform")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            db.path().join(".mailform"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    }
    std::fs::copy(
        file.path().join(".mailform/key"),
        db.path().join(".mailform/key"),
    )
    .unwrap();
    let store = postgres::store(&url, &schema);
    store.write(&mut state, None).unwrap();
    drop(store);

    let runs = 21;
    plan(file.path(), &url);
    plan(db.path(), &url);
    let (mut on_file, mut on_pg) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        on_file.push(plan(file.path(), &url));
        on_pg.push(plan(db.path(), &url));
    }
    // In process: where the PostgreSQL time goes (connect and check the
    // tables, then read the row and parse it) next to reading the file.
    let (mut connect, mut read, mut file_read) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let store = postgres::store(&url, &schema);
        store.prepare().unwrap();
        connect.push(t.elapsed());
        let t = Instant::now();
        assert!(store.load().unwrap().is_some());
        read.push(t.elapsed());
        let t = Instant::now();
        let on_disk = mailform::store::FileStore::new(file.path().join(".mailform/state.json"));
        assert!(on_disk.load().unwrap().is_some());
        file_read.push(t.elapsed());
    }
    let (f, p) = (median(on_file), median(on_pg));
    println!("no-op plan --offline, {n} assets, median of {runs} interleaved runs of the binary");
    println!(
        "  file backend {f:>9.2?}   postgres backend {p:>9.2?}   ratio {:.2}x",
        p.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "  in process: connect + schema check {:.2?}, read + parse the row {:.2?}; the file read + parsed {:.2?}",
        median(connect),
        median(read),
        median(file_read)
    );
}
