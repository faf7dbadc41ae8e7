//! When no batch completes for `--stall-timeout` seconds, a stall report
//! names the phase, the batches in flight with their ages, the Integrator's
//! backlog and what each processor is doing; the run then completes.
#![cfg(feature = "failpoints")]

use crate::binary;

use std::time::Duration;

use binary::{drainpipe, spawn, summary, wait};

#[test]
fn a_stuck_record_gets_a_stall_report_and_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = drainpipe();
    cmd.args([
        "vocab",
        "--demo-docs",
        "200",
        "--workers",
        "2",
        "--batch",
        "10",
    ])
    .args(["--stall-timeout", "1", "--no-progress", "-o"])
    .arg(dir.path())
    // The first record processed sleeps 2.5 s; nothing else is slow.
    .env("FAILPOINTS", "processor::record=1*sleep(2500)");
    let (out, _) = wait(spawn(cmd), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report = stderr
        .lines()
        .find(|l| l.contains("STALL"))
        .unwrap_or_else(|| panic!("no stall report in:\n{stderr}"));
    for part in [
        "phase running",
        "in flight: [#0",
        "integrator backlog",
        "processors: 0:",
        "batch #0 at record",
    ] {
        assert!(report.contains(part), "{part:?} missing from: {report}");
    }
    assert_eq!(summary(dir.path())["records"]["integrated"], 200);
}
