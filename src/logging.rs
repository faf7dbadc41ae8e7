//! The binary's logger: `LEVEL [target] message` lines on stderr.
//!
//! Writing a log line never fails the run. When stderr is closed (say,
//! `drainpipe dedup … 2>&1 | head -1`), lines are dropped: nobody is
//! reading them, and the run's outcome is in its exit code and
//! `summary.json`. A logger that panicked on a failed write (as
//! `eprintln!` does) would take down whichever actor logged next, and a
//! dead Coordinator would leave the actor system waiting forever.

use std::io::Write as _;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // One write per line, so lines from different threads do not
            // interleave; a failed write is dropped (see the module's doc).
            let line = format!(
                "{:<5} [{}] {}\n",
                record.level(),
                record.target(),
                record.args()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger at `level`, or at the level `RUST_LOG` names when it
/// is set to one (`error`, `warn`, `info`, `debug`, `trace`, `off`).
pub fn install(level: LevelFilter) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|name| name.trim().parse().ok())
        .unwrap_or(level);
    log::set_logger(&StderrLogger).expect("the logger is installed once");
    log::set_max_level(level);
}

/// Prints `text` and a newline on stderr, ignoring a closed stderr like the
/// logger does: the exit code still tells the outcome.
pub fn say(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
