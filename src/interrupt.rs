//! Ctrl-C (SIGINT, and SIGTERM) during a command that writes state.
//!
//! While the command is *armed* (network steps under way), the first signal
//! asks it to stop: it starts nothing new, lets the steps in flight end
//! (each is bounded by a timeout), persists what they brought, releases the
//! lock and exits 130. A second signal, or any signal while not armed (at a
//! confirmation prompt, say), exits at once, also with 130: state writes are
//! atomic, journal lines are whole or cut, and the kernel drops the lock.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static ARMED: AtomicBool = AtomicBool::new(false);

/// The exit code of a command stopped by a signal (128 + SIGINT).
pub const EXIT_CODE: u8 = 130;

/// What is said on the first signal while armed.
pub const NOTICE: &str = "interrupted: finishing the steps in flight, then stopping (press Ctrl-C again to quit at once)";

/// Installs the handler (once per process; later calls do nothing);
/// `notice` tells the person that the stop is under way (the terminal is
/// render's, so it is handed in).
pub fn install(notice: fn(&str)) {
    let _ = ctrlc::set_handler(move || {
        if !ARMED.load(Ordering::SeqCst) || REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_CODE));
        }
        notice(NOTICE);
    });
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Arms (or disarms) the graceful stop; see the module doc.
pub fn arm(on: bool) {
    ARMED.store(on, Ordering::SeqCst);
}
