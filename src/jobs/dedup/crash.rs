//! Crash points: where tests kill the run as `kill -9` would, at a chosen
//! stage of a dedup run (pass 1 merging its spilled runs, pass 2 holding
//! its spilled sets, pass 3), to prove that `--resume` then gives the
//! uninterrupted outputs and that nothing of the killed run stays. A
//! failpoint (feature `failpoints`) set to `return` sends the process
//! SIGKILL there: no destructor, no cleanup, no summary. Nothing happens
//! without the feature.

/// Kills the process with SIGKILL when the failpoint `point` is set.
#[cfg(feature = "failpoints")]
pub fn here(point: &str) {
    if fail::eval(point, |_| ()).is_some() {
        log::warn!("crash point {point}: SIGKILL");
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
        std::process::abort();
    }
}

/// Without the `failpoints` feature nothing is injected.
#[cfg(not(feature = "failpoints"))]
pub fn here(_point: &str) {}
