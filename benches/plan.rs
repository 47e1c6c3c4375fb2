//! Offline plan cost vs. merely reading and parsing the same files.
//!
//! For N generated assets (with a state that matches, tokens sealed), times
//! - baseline: read `assets.toml` and `state.json`, parse them (toml into the
//!   raw config types, `serde_json` into `State`);
//! - plan: what `mailform plan --offline` does: load, resolve and lint the
//!   config, load the state, plan, render the human plan.
//!
//! Reports medians and their ratio; the target in DESIGN.md is at most 2.0x.
//!
//! Run: `cargo bench --bench plan` (add `-- 1000` for one size).

#[path = "../tests/mailform/support/fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use mailform::config::{self, raw::RawConfig};
use mailform::observe;
use mailform::plan;
use mailform::secret::Secret;
use mailform::state::{State, Tokens};
use mailform::store::{FileStore, StateStore as _, key};

fn write_project(dir: &Path, n: usize) {
    let text = fixtures::generated_config(n);
    std::fs::write(dir.join("assets.toml"), &text).unwrap();
    fixtures::applied_state(dir, &text, |_| Tokens {
        access_token: Secret::new("a".repeat(180)),
        refresh_token: Some(Secret::new("r".repeat(100))),
    });
}

fn baseline(dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join("assets.toml")).unwrap();
    let raw: RawConfig = toml::from_str(&text).unwrap();
    let state_text = std::fs::read_to_string(dir.join(".mailform/state.json")).unwrap();
    let state: State = serde_json::from_str(&state_text).unwrap();
    raw.assets.len() + state.assets.len()
}

/// What `mailform plan --offline` does, timed by stage: load, resolve and
/// lint the config; load the state and open its sealed tokens; plan; render
/// the human plan.
fn offline_plan(dir: &Path) -> [Duration; 5] {
    let started = Instant::now();
    let config = config::load(&dir.join("assets.toml"))
        .unwrap()
        .config
        .unwrap();
    let config_time = started.elapsed();
    let started = Instant::now();
    let state = FileStore::new(&config.state.path).load().unwrap();
    let state_time = started.elapsed();
    let started = Instant::now();
    let key = key::for_state(&config.state_dir(), state.as_ref().unwrap()).unwrap();
    let observations = observe::sealed_tokens(state.as_ref().unwrap(), &key.unwrap(), &[]);
    assert!(observations.assets.is_empty(), "every token opens");
    let open_time = started.elapsed();
    let started = Instant::now();
    let plan = plan::plan(&config, state.as_ref(), &observations, Utc::now(), &[]);
    assert!(plan.is_empty());
    let plan_time = started.elapsed();
    let started = Instant::now();
    std::hint::black_box(mailform::render::plan::human(&plan));
    [
        config_time,
        state_time,
        open_time,
        plan_time,
        started.elapsed(),
    ]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect::<Vec<_>>();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    println!("offline plan vs read+parse (median of interleaved runs)");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), n);
        let runs = if n >= 10_000 { 9 } else { 31 };
        // Warm the page cache and allocator once.
        baseline(dir.path());
        offline_plan(dir.path());
        let (mut base, mut full) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            std::hint::black_box(baseline(dir.path()));
            base.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(offline_plan(dir.path()));
            full.push(t.elapsed());
        }
        let (b, f) = (median(base), median(full));
        println!(
            "{n:>6} assets: read+parse {:>9.2?}  offline plan {:>9.2?}  ratio {:.2}x (target <= 2.00x)",
            b,
            f,
            f.as_secs_f64() / b.as_secs_f64()
        );
        let s = offline_plan(dir.path());
        println!(
            "        stages: config {:.2?}, state {:.2?}, open tokens {:.2?}, plan {:.2?}, render {:.2?}",
            s[0], s[1], s[2], s[3], s[4]
        );
    }
}
