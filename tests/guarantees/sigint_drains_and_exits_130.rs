//! The real binary, interrupted: the first SIGINT (or SIGTERM) drains the
//! work in flight, writes outputs marked partial and exits 130 with
//! conservation holding; a second signal exits at once, saying what it
//! abandons, leaving no half-written file.

use crate::binary;

use std::time::Duration;

use binary::{drainpipe, leftovers, signal, spawn, summary, wait};

fn long_run(out: &std::path::Path) -> std::process::Command {
    let mut cmd = drainpipe();
    // Far more documents than can be done before the signal.
    cmd.args(["vocab", "--demo-docs", "50000000", "--no-progress", "-o"])
        .arg(out);
    cmd
}

#[test]
fn first_sigint_drains_and_exits_130() {
    for sig in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn(long_run(dir.path()));
        std::thread::sleep(Duration::from_millis(1500));
        signal(&child, sig);
        let (out, _) = wait(child, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "SIG{sig}: {stderr}");
        assert!(stderr.contains("draining"), "{stderr}");
        let s = summary(dir.path());
        assert_eq!(s["exit"], "interrupted");
        assert_eq!(s["partial"], true);
        assert_eq!(s["conservation"], true);
        let r = &s["records"];
        let read = r["read"].as_u64().unwrap();
        assert!(read > 0 && read < 50_000_000, "{s}");
        assert_eq!(
            read,
            r["integrated"].as_u64().unwrap() + r["rejected"].as_u64().unwrap()
        );
        assert!(
            dir.path().join("vocab.tsv").exists(),
            "partial outputs are written"
        );
        assert!(leftovers(dir.path()).is_empty());
    }
}

#[test]
#[cfg(feature = "failpoints")]
fn second_sigint_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = long_run(dir.path());
    // Every record takes 100 ms, so draining 4 batches of 50 takes 5 s+.
    cmd.args(["--batch", "50", "--workers", "2"])
        .env("FAILPOINTS", "processor::record=sleep(100)");
    let child = spawn(cmd);
    std::thread::sleep(Duration::from_millis(1000));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    let (out, took) = wait(child, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} after the first signal"
    );
    assert!(stderr.contains("second SIGINT: exiting now"), "{stderr}");
    assert!(stderr.contains("abandoning"), "{stderr}");
    assert!(!dir.path().join("vocab.tsv").exists());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn sigint_while_reading_an_idle_stdin_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--no-progress", "-o"])
        .arg(dir.path())
        .arg("-")
        .stdin(std::process::Stdio::piped());
    // stdin stays open and silent: the Source is blocked in a read.
    let mut child = spawn(cmd);
    let stdin = child.stdin.take();
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, "INT");
    let (out, took) = wait(child, Duration::from_secs(15));
    drop(stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let s = summary(dir.path());
    assert_eq!(s["exit"], "interrupted");
    assert_eq!(s["records"]["read"], 0);
    assert_eq!(s["conservation"], true);
}
