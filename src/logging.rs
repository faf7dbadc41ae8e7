//! The binary's logger: `LEVEL [target] message` lines on stderr.
//!
//! Writing a log line never fails the run. When stderr is closed (say,
//! `drainpipe dedup … 2>&1 | head -1`), lines are dropped: nobody is
//! reading them, and the run's outcome is in its exit code and
//! `summary.json`. A logger that panicked on a failed write (as
//! `eprintln!` does) would take down whichever actor logged next, and a
//! dead Coordinator would leave the actor system waiting forever. That is
//! why this logger stands where `simple_logger` would: its `log` prints with
//! `println!`/`eprintln!` (see the test at the end of this file).
//!
//! Log lines are detail: a default run logs warnings and errors only, `-v`
//! adds each pass's phases and results (info), `-vv` debug, `-vvv` trace.
//! What every run shows, its progress and summary, is printed with
//! `say`, whatever the level.

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

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    /// Set in the child process this test starts: how it writes to its
    /// closed stderr.
    const PROBE: &str = "DRAINPIPE_LOGGING_PROBE";

    /// Runs this test again in a child process whose stderr is a pipe with
    /// no reader (`drainpipe … 2>&1 | head -1` once `head` has exited),
    /// the child writing through `probe`; its exit status.
    fn child_writing_through(probe: &str) -> std::process::Output {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let test = "logging::tests::eprintln_panics_on_a_closed_stderr_where_the_logger_goes_on";
        Command::new(std::env::current_exe().unwrap())
            // Uncaptured, so that `eprintln!` writes to the real stderr.
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(PROBE, probe)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(writer)
            .output()
            .unwrap()
    }

    /// Why the binary has its own logger rather than `simple_logger`, whose
    /// `log` prints each line with `println!` or `eprintln!`: those panic
    /// when the write fails, so a log line written after the reader of
    /// stderr has gone would panic in whatever actor logged it.
    #[test]
    fn eprintln_panics_on_a_closed_stderr_where_the_logger_goes_on() {
        match std::env::var(PROBE).as_deref() {
            Ok("eprintln") => {
                eprintln!("a line nobody reads");
                return;
            }
            Ok("logger") => {
                super::install(log::LevelFilter::Trace);
                for n in 0..3 {
                    log::error!("line {n} nobody reads");
                }
                super::say("a summary nobody reads");
                return;
            }
            _ => {}
        }
        let eprintln = child_writing_through("eprintln");
        let stdout = String::from_utf8_lossy(&eprintln.stdout);
        assert_eq!(eprintln.status.code(), Some(101), "{stdout}");
        assert!(stdout.contains("1 failed"), "{stdout}");

        let logger = child_writing_through("logger");
        let stdout = String::from_utf8_lossy(&logger.stdout);
        assert!(logger.status.success(), "{stdout}");
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
}
