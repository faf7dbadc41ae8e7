//! Crash points: where tests kill the run as `kill -9` would, at a chosen
//! stage of a dedup run (pass 1 merging its spilled runs, pass 2 holding
//! its spilled sets, pass 3), to prove that `--resume` then gives the
//! uninterrupted outputs and that nothing of the killed run stays. A
//! failpoint (feature `failpoints`) set to `return` sends the process
//! SIGKILL there: no destructor, no cleanup, no summary. Nothing happens
//! without the feature.
//!
//! Holds ([`hold`]): where a test acts while the run is at a chosen stage
//! (sends a signal, fills the disk), waiting on events rather than delays.

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

/// How long a hold waits for its release at most: a test that never
/// releases it fails on the run's own deadline, not this one's.
#[cfg(feature = "failpoints")]
const HOLD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// With the failpoint `point` set to `return(FILE)`, once (when FILE does
/// not exist yet): writes FILE, then waits until `FILE.release` exists or
/// `stop()` is true (at most `HOLD_DEADLINE`), so that a test sees the
/// run at that stage and acts there.
#[cfg(feature = "failpoints")]
pub fn hold(point: &str, stop: &dyn Fn() -> bool) {
    let Some(Some(file)) = fail::eval(point, |file| file) else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    if file.exists() {
        return;
    }
    let release = std::path::PathBuf::from(format!("{}.release", file.display()));
    log::warn!("hold {point}: held until {} exists", release.display());
    if let Err(e) = std::fs::write(&file, point) {
        log::error!("hold {point}: writing {}: {e}; not held", file.display());
        return;
    }
    let started = std::time::Instant::now();
    while !release.exists() && !stop() {
        if started.elapsed() > HOLD_DEADLINE {
            log::error!(
                "hold {point}: {} never appeared; going on",
                release.display()
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Without the `failpoints` feature nothing is held.
#[cfg(not(feature = "failpoints"))]
pub fn hold(_point: &str, _stop: &dyn Fn() -> bool) {}
