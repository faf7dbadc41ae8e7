//! The signals of `drainpipe worker`, answered as a run answers them
//! (`super`), on a thread of their own: SIGINT, SIGTERM and SIGHUP stop
//! the worker gently (no new batch is taken; each held batch is answered,
//! or handed back to the broker when its answer cannot be published), and
//! it then exits 0: a worker that stopped so has lost nothing and left
//! nothing undone. A second one exits at once with 128 + its number,
//! abandoning the batches held, as SIGQUIT does (131); the broker gives
//! them to another worker after the run's ack wait. SIGUSR1 says on
//! stderr what the worker holds and has done, and it goes on. SIGPIPE is
//! ignored, as in every Rust program.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use drainpipe_actors::remote::worker::WorkerReport;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use super::name;

/// Starts the worker's signal thread: the first SIGINT, SIGTERM or SIGHUP
/// sets `stop`.
pub fn install(stop: Arc<AtomicBool>, report: Arc<WorkerReport>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1])?;
    std::thread::Builder::new()
        .name("drainpipe-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    say_where(&report, stop.load(Ordering::SeqCst));
                } else if signal != SIGQUIT && !stop.swap(true, Ordering::SeqCst) {
                    crate::logging::say(format_args!(
                        "drainpipe worker: {}: answering the {} batches held, taking no more, then stopping (send again to exit at once)",
                        name(signal),
                        count(&report.held)
                    ));
                } else {
                    let which = if signal == SIGQUIT { "" } else { "second " };
                    crate::logging::say(format_args!(
                        "drainpipe worker: {which}{}: exiting now, abandoning the {} batches held (the broker gives them to another worker after the run's ack wait)",
                        name(signal),
                        count(&report.held)
                    ));
                    std::process::exit(128 + signal);
                }
            }
        })?;
    Ok(())
}

fn count(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

/// SIGUSR1: what the worker holds and has done, on stderr.
fn say_where(report: &WorkerReport, stopping: bool) {
    crate::logging::say(format_args!(
        "drainpipe worker: SIGUSR1: {}; {} batches held; {} answered ({} records), {} handed back, {} unreadable, {} of ended runs dropped",
        if stopping { "stopping" } else { "taking batches" },
        count(&report.held),
        count(&report.answered),
        count(&report.records),
        count(&report.handed_back),
        count(&report.unreadable),
        count(&report.abandoned),
    ));
}
