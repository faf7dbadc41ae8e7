//! SIGINT, SIGTERM and SIGHUP, on a thread of their own so a signal is
//! answered even when the actor system is wedged. The first asks the
//! pipeline to drain and stop (a checkpoint is taken, outputs are marked
//! partial); the run then exits 130, or 129 after SIGHUP (128 + the
//! signal's number, as a shell reports a process killed by it; SIGTERM
//! keeps 130, as it always has here). The second exits at once, saying
//! what it abandons, and still leaves a short `summary.json` saying so: a
//! folder never keeps an earlier run's summary as if it were this one's.
//!
//! The others a user sends: SIGQUIT (`Ctrl-\`, "quit now") exits at once
//! as a second signal does, with 131, whose default action (a core dump)
//! would leave the earlier run's summary standing and the temporary files
//! to the next run. SIGUSR1 says where the run is (phase, records read
//! and done, batches in flight) on stderr and the run goes on, as `dd`
//! does; its default action would kill the run. SIGPIPE is ignored (Rust
//! programs do): a closed stdout or stderr is a failed write, handled
//! where it happens. `drainpipe worker` answers the same signals in the
//! same way (`worker`).

pub mod worker;

use std::sync::atomic::{AtomicI32, Ordering};

use drainpipe_actors::{ExitCode, OutputDir, RunHandle};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

/// The first signal received, 0 before any.
static FIRST: AtomicI32 = AtomicI32::new(0);

/// What a hard stop's `summary.json` says the run was.
pub struct RunAbout {
    /// The job's name.
    pub job: &'static str,
    /// The run's fingerprint.
    pub fingerprint: String,
    /// The run's temporary space, removed on the way out unless a
    /// checkpoint may need it (`crate::space::finish`).
    pub temp: std::sync::Arc<drainpipe_actors::TempSpace>,
}

/// The signal's name (the run's and the worker's).
fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGQUIT => "SIGQUIT",
        _ => "SIGTERM",
    }
}

/// The exit code of a run stopped by `signal`.
fn exit_code(signal: i32) -> i32 {
    if signal == SIGHUP || signal == SIGQUIT {
        128 + signal
    } else {
        ExitCode::Interrupted.code()
    }
}

/// The exit code and name of the signal a run stopped on (`code`, 130) was
/// asked to stop by: `(129, "SIGHUP")` after SIGHUP, `None` when `code` is
/// not an interruption or the signal keeps 130.
pub fn stopped_by(code: i32) -> Option<(i32, &'static str)> {
    let first = FIRST.load(Ordering::SeqCst);
    (code == ExitCode::Interrupted.code() && first == SIGHUP)
        .then(|| (exit_code(first), name(first)))
}

/// Starts the signal thread.
pub fn install(handle: RunHandle, output: OutputDir, about: RunAbout) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1])?;
    std::thread::Builder::new()
        .name("drainpipe-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    say_where(&handle);
                    continue;
                }
                if signal == SIGQUIT {
                    // "Quit now": no drain, whatever came before.
                    let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                    hard_stop(signal, &handle, &output, &about);
                }
                if FIRST
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    crate::logging::say(format_args!(
                        "drainpipe: {}: draining in-flight work, then stopping with partial outputs (send again to exit at once)",
                        name(signal)
                    ));
                    handle.request_stop();
                } else {
                    hard_stop(signal, &handle, &output, &about);
                }
            }
        })?;
    Ok(())
}

/// SIGUSR1: where the run is, on stderr; the run goes on.
fn say_where(handle: &RunHandle) {
    crate::logging::say(format_args!(
        "drainpipe: SIGUSR1: phase {}; {} records read, {} integrated or rejected; {} batches in flight",
        handle.phase().name(),
        handle.records_read(),
        handle.records_done(),
        handle.batches_in_flight(),
    ));
}

/// The second signal (or SIGQUIT): says what is abandoned, removes the
/// temporary files, writes the short summary and exits.
fn hard_stop(signal: i32, handle: &RunHandle, output: &OutputDir, about: &RunAbout) -> ! {
    let pending = handle.records_read().saturating_sub(handle.records_done());
    let which = if signal == SIGQUIT { "" } else { "second " };
    let cause = format!(
        "{which}{}: exiting now in phase {}; abandoning {} batches in flight, {pending} of {} records read not yet integrated or rejected",
        name(signal),
        handle.phase().name(),
        handle.batches_in_flight(),
        handle.records_read(),
    );
    crate::logging::say(format_args!(
        "drainpipe: {cause}; no outputs of this run are written"
    ));
    // Held to the exit: no commit starts in between.
    let no_commit = remove_temporary_files(output.path());
    let code = exit_code(FIRST.load(Ordering::SeqCst));
    let committed = drainpipe_actors::commit::sets_committed() > 0;
    let note = match (&no_commit, committed) {
        (None, _) => "exited while committing its outputs: the next run into this folder completes the commit",
        (Some(_), true) => "exited after its outputs were committed, before its report was written",
        (Some(_), false) => "exited at once: none of its outputs was committed; any other file in this folder is an earlier run's",
    };
    let summary = serde_json::json!({
        "job": about.job,
        "fingerprint": about.fingerprint,
        "exit": "failed",
        "exit_code": code,
        "hard_stop": true,
        "cause": cause,
        "partial": true,
        "outputs_written": committed,
        "records": { "read": handle.records_read(), "done": handle.records_done() },
        "note": note,
    });
    let mut json = serde_json::to_vec_pretty(&summary).expect("a JSON value serializes");
    json.push(b'\n');
    if let Err(e) = output.write_all("summary.json", &json) {
        crate::logging::say(format_args!("drainpipe: could not write summary.json: {e}"));
    }
    crate::space::finish(&about.temp, output);
    // Still locked until the process is gone; see `drainpipe_actors::lock`.
    // A removal that fails is harmless: the lock ends with the process.
    let _ = std::fs::remove_file(output.file(drainpipe_actors::LOCK_FILE));
    std::process::exit(code);
}

/// Outputs are written to `.NAME.*.tmp` and renamed when complete; a hard
/// exit removes the ones in progress so nothing half-written stays behind.
/// A commit of the outputs under way is let finish first (its renames take
/// milliseconds); one still going after two seconds keeps its files, which
/// its journal lets the next run complete (`drainpipe_actors::commit`).
/// Returns the guard under which no commit starts, if it got it.
fn remove_temporary_files(output: &std::path::Path) -> Option<std::sync::MutexGuard<'static, ()>> {
    let no_commit = drainpipe_actors::commit::pause_commits(std::time::Duration::from_secs(2));
    if let (Some(_), Ok(entries)) = (&no_commit, std::fs::read_dir(output)) {
        for entry in entries.flatten() {
            if drainpipe_actors::output::is_temporary(&entry.file_name().to_string_lossy()) {
                // One left behind is removed by the next run, under the lock
                // (`OutputDir::remove_temporaries`): no output depends on it.
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    no_commit
}
