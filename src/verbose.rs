//! `-v`: where the network edges send their one-line accounts (each HTTP
//! exchange, each SMTP login). A leaf, so the edges need not know the
//! terminal; the command line sets the sink once.

use std::sync::OnceLock;

/// Where `-v` lines go.
pub type Sink = fn(&str);

static SINK: OnceLock<Sink> = OnceLock::new();

/// Turns `-v` on, sending every line to `sink` (once per process).
pub fn enable(sink: Sink) {
    let _ = SINK.set(sink);
}

/// Says `line` when `-v` is on; the line is not even made otherwise.
pub fn line(line: impl FnOnce() -> String) {
    if let Some(sink) = SINK.get() {
        sink(&line());
    }
}
