//! The progress display: done/total, the assets in flight, failures so far,
//! redrawn on stderr — only when stderr is a terminal and the run has more
//! than a handful of assets, so logs, pipes and `--json` see none of it.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{Silent, Tracker};

/// The display on screen now, if any: other stderr output is written
/// while it is hidden (see [`suspended`]).
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` (which writes to stderr) with the progress display, if one is
/// on screen, hidden and redrawn after.
pub fn suspended<T>(f: impl FnOnce() -> T) -> T {
    let shown = SHOWN.lock().ok().and_then(|g| g.clone());
    match shown {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Runs of this many assets or fewer show no progress display.
pub const HANDFUL: usize = 5;

struct Bar {
    bar: ProgressBar,
    in_flight: Mutex<(BTreeSet<String>, u64)>,
}

impl Bar {
    fn redraw(&self, (names, failed): &(BTreeSet<String>, u64)) {
        let mut shown: Vec<&str> = names.iter().map(String::as_str).take(4).collect();
        if names.len() > shown.len() {
            shown.push("…");
        }
        let failed = if *failed == 0 {
            String::new()
        } else {
            format!(" · {failed} failed")
        };
        self.bar
            .set_message(format!("{}{failed}", shown.join(", ")));
    }
}

impl Tracker for Bar {
    fn started(&self, asset: &str) {
        let mut g = self.in_flight.lock().expect("progress lock");
        g.0.insert(asset.to_string());
        self.redraw(&g);
    }

    fn finished(&self, asset: &str, ok: bool) {
        let mut g = self.in_flight.lock().expect("progress lock");
        g.0.remove(asset);
        if !ok {
            g.1 += 1;
        }
        self.bar.inc(1);
        self.redraw(&g);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Ok(mut g) = SHOWN.lock() {
            *g = None;
        }
        self.bar.finish_and_clear();
    }
}

/// A tracker for `total` steps described by `what` ("checking", "proving").
pub fn tracker(what: &str, total: usize, quiet: bool) -> Arc<dyn Tracker> {
    if quiet || total <= HANDFUL || !std::io::stderr().is_terminal() {
        return Arc::new(Silent);
    }
    let bar = ProgressBar::with_draw_target(
        Some(u64::try_from(total).unwrap_or(u64::MAX)),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    if let Ok(mut g) = SHOWN.lock() {
        *g = Some(bar.clone());
    }
    Arc::new(Bar {
        bar,
        in_flight: Mutex::new((BTreeSet::new(), 0)),
    })
}
