//! SIGINT and SIGTERM, on a thread of their own so a signal is answered even
//! when the actor system is wedged. The first asks the pipeline to drain and
//! stop; the second exits at once, saying what it abandons.

use std::path::PathBuf;

use drainpipe_actors::{ExitCode, RunHandle};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts the signal thread.
pub fn install(handle: RunHandle, output: PathBuf) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("drainpipe-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                if seen == 1 {
                    crate::logging::say(format_args!(
                        "drainpipe: {name}: draining in-flight work, then stopping with partial outputs (send again to exit at once)"
                    ));
                    handle.request_stop();
                } else {
                    crate::logging::say(format_args!(
                        "drainpipe: second {name}: exiting now in phase {}; abandoning {} batches in flight, {} of {} records read not yet integrated or rejected; no outputs of this run are written",
                        handle.phase().name(),
                        handle.batches_in_flight(),
                        handle.records_read().saturating_sub(handle.records_done()),
                        handle.records_read(),
                    ));
                    // Held to the exit: no commit starts in between.
                    let _no_commit = remove_temporary_files(&output);
                    std::process::exit(ExitCode::Interrupted.code());
                }
            }
        })?;
    Ok(())
}

/// Outputs are written to `.NAME.*.tmp` and renamed when complete; a hard
/// exit removes the ones in progress so nothing half-written stays behind.
/// A commit of the outputs under way is let finish first (its renames take
/// milliseconds); one still going after two seconds keeps its files, which
/// its journal lets the next run complete (`drainpipe_actors::commit`).
fn remove_temporary_files(output: &std::path::Path) -> Option<std::sync::MutexGuard<'static, ()>> {
    let no_commit = drainpipe_actors::commit::pause_commits(std::time::Duration::from_secs(2));
    if let (Some(_), Ok(entries)) = (&no_commit, std::fs::read_dir(output)) {
        for entry in entries.flatten() {
            if drainpipe_actors::output::is_temporary(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    // Still locked until the process is gone; see `drainpipe_actors::lock`.
    let _ = std::fs::remove_file(output.join(drainpipe_actors::LOCK_FILE));
    no_commit
}
