//! What long-running steps report as they go, for a progress display.
//!
//! The network edges (`observe`, the apply engine) call a [`Tracker`];
//! `render::progress` draws it on a terminal, and [`Silent`] draws nothing
//! (not a terminal, a handful of assets, `--json`).

/// Hears of each asset's step as it starts and ends.
pub trait Tracker: Send + Sync {
    fn started(&self, asset: &str);
    fn finished(&self, asset: &str, ok: bool);
}

/// A tracker that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Tracker for Silent {
    fn started(&self, _: &str) {}
    fn finished(&self, _: &str, _: bool) {}
}
