//! Two ways the process could once wait forever, with no timer left to
//! fire: a log line written to a closed stderr panicked in the actor that
//! wrote it, and a Coordinator that died in a panic left the actor System
//! running with nobody to stop it. Now a closed stderr costs only the log
//! lines, and a dead Coordinator stops the run with exit 70.

use crate::binary;

use std::time::Duration;

use binary::{drainpipe, spawn, summary, wait};

#[test]
fn logging_to_a_closed_stderr_neither_hangs_nor_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = drainpipe();
    // `-v`: a log line at every phase of every pass, most of them written
    // after the reading end of stderr is gone (like `2>&1 | head -1`).
    cmd.args(["dedup", "--demo-docs", "3000", "--no-progress", "-v", "-o"])
        .arg(dir.path());
    let mut child = spawn(cmd);
    drop(child.stderr.take());
    let (out, _) = wait(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0));
    let s = summary(dir.path());
    assert_eq!(s["exit"], "complete", "{s}");
    assert_eq!(s["records"]["integrated"], 3000, "{s}");
    assert!(dir.path().join("kept.jsonl").exists());
}

/// `vocab` over the demo corpus into `dir`, its Coordinator panicking at
/// its third tick (in the middle of the run) when `panic` is true.
#[cfg(feature = "failpoints")]
fn vocab(dir: &std::path::Path, panic: bool) -> std::process::Output {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--demo-docs", "100000", "--no-progress", "-o"])
        .arg(dir);
    if panic {
        cmd.env("FAILPOINTS", "coordinator::tick=2*off->panic");
    }
    wait(spawn(cmd), Duration::from_secs(60)).0
}

#[test]
#[cfg(feature = "failpoints")]
fn a_panic_in_the_coordinator_stops_the_run_with_exit_70() {
    let dir = tempfile::tempdir().unwrap();
    let out = vocab(dir.path(), true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains("the coordinator stopped without a report"),
        "{stderr}"
    );
    assert!(!dir.path().join("vocab.tsv").exists(), "no job output");
    let s = summary(dir.path());
    assert_eq!(
        (&s["exit"], &s["exit_code"]),
        (&"failed".into(), &70.into()),
        "{s}"
    );
}

#[test]
#[cfg(feature = "failpoints")]
fn a_run_that_dies_without_a_report_does_not_leave_an_earlier_runs_summary_as_its_own() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(vocab(dir.path(), false).status.code(), Some(0));
    assert_eq!(summary(dir.path())["exit"], "complete");
    let out = vocab(dir.path(), true);
    assert_eq!(out.status.code(), Some(70));
    let s = summary(dir.path());
    assert_eq!(s["exit"], "failed", "{s}");
    assert!(s["cause"].as_str().unwrap().contains("coordinator"), "{s}");
    // The same command may run again in the folder (same fingerprint).
    assert_eq!(vocab(dir.path(), false).status.code(), Some(0));
    assert_eq!(summary(dir.path())["exit"], "complete");
}
