//! Every way a run is stopped by a signal leaves a `summary.json` that
//! describes it, and a known exit code. The first SIGINT or SIGTERM drains
//! and exits 130; SIGHUP (the terminal closed) does the same and exits 129
//! (before, it killed the run with no message and no summary). A second
//! signal exits at once, yet still writes a short summary, marked failed
//! and `hard_stop`, saying what it abandoned, and leaves no temporary or
//! lock file. SIGQUIT exits at once too (131), SIGUSR1 says where the
//! run is and the run goes on, SIGPIPE is ignored.

use crate::binary;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use binary::{drainpipe, leftovers, names, signal, summary, wait};

/// A vocab run far longer than the test.
fn long_run(out: &Path) -> Command {
    let mut cmd = drainpipe();
    // `-v`: the log says when the pipeline runs.
    cmd.args([
        "vocab",
        "-v",
        "--demo-docs",
        "50000000",
        "--no-progress",
        "-o",
    ])
    .arg(out);
    cmd
}

/// Starts `cmd` with its stderr going to `log`, and returns once it
/// catches signal `number` (its bit in `SigCgt`) and its pipeline runs
/// (the log says so), so the signal reaches a run under way.
fn start(mut cmd: Command, log: &Path, number: u32) -> Child {
    let stderr = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the binary starts");
    let started = Instant::now();
    loop {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (number - 1)) != 0);
        let log = std::fs::read_to_string(log).unwrap_or_default();
        if caught && log.contains("phase running") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "drainpipe never got running with a handler of signal {number}: {log}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Some records read.
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// Waits for the run to end: its exit code and its stderr (from `log`).
fn ended(child: Child, log: &Path) -> (Option<i32>, String) {
    let (out, _) = wait(child, Duration::from_secs(60));
    (out.status.code(), std::fs::read_to_string(log).unwrap())
}

/// A folder `out` in `tmp` holding an earlier run's summary, which must
/// not stand for the run stopped there.
fn folder_with_an_earlier_summary(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("out");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("summary.json"), "{\"exit\": \"complete\"}").unwrap();
    dir
}

/// What a run stopped at once leaves in `dir`: a short summary, failed,
/// `hard_stop`, with `code`; no output, no temporary file, no lock. The
/// summary, for more checks.
fn assert_stopped_at_once(dir: &Path, code: i32) -> serde_json::Value {
    let s = summary(dir);
    assert_eq!(s["exit"], "failed", "{s}");
    assert_eq!(s["hard_stop"], true, "{s}");
    assert_eq!(s["exit_code"], code, "{s}");
    assert_eq!(s["outputs_written"], false, "{s}");
    assert!(leftovers(dir).is_empty(), "{:?}", names(dir));
    assert!(!dir.join("vocab.tsv").exists());
    assert!(!dir.join(".drainpipe.lock").exists());
    s
}

#[test]
fn the_first_signal_drains_and_exits_with_its_code() {
    for (sig, number, code) in [("INT", 2, 130), ("TERM", 15, 130), ("HUP", 1, 129)] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let out_dir = dir.path().join("out");
        let child = start(long_run(&out_dir), &log, number);
        signal(&child, sig);
        let (exit, stderr) = ended(child, &log);
        assert_eq!(exit, Some(code), "SIG{sig}: {stderr}");
        assert!(
            stderr.contains(&format!("SIG{sig}: draining in-flight work")),
            "{stderr}"
        );
        let s = summary(&out_dir);
        assert_eq!(s["exit"], "interrupted", "SIG{sig}: {s}");
        assert_eq!(s["exit_code"], code, "SIG{sig}: {s}");
        assert_eq!(s["partial"], true);
        assert_eq!(s["conservation"], true);
        if sig == "HUP" {
            assert!(s["cause"].as_str().unwrap().ends_with("(SIGHUP)"), "{s}");
        }
        assert!(leftovers(&out_dir).is_empty());
        assert!(!names(&out_dir).contains(&".drainpipe.lock".to_owned()));
    }
}

#[test]
#[cfg(feature = "failpoints")]
fn a_second_signal_exits_at_once_and_still_leaves_a_failed_summary() {
    for (first, number, second, code) in [
        ("INT", 2, "INT", 130),
        ("TERM", 15, "INT", 130),
        ("HUP", 1, "TERM", 129),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("stderr.log");
        let dir = folder_with_an_earlier_summary(tmp.path());
        let mut cmd = long_run(&dir);
        // Every record takes 100 ms: draining takes seconds, and the second
        // signal comes while it does.
        cmd.args(["--batch", "50", "--workers", "2", "--force"])
            .env("FAILPOINTS", "processor::record=sleep(100)");
        let child = start(cmd, &log, number);
        signal(&child, first);
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, second);
        let (exit, stderr) = ended(child, &log);
        assert_eq!(exit, Some(code), "{first}+{second}: {stderr}");
        let said = format!("second SIG{second}: exiting now in phase ");
        assert!(stderr.contains(&said), "{stderr}");
        let s = assert_stopped_at_once(&dir, code);
        assert_eq!(s["job"], "vocab", "{s}");
        assert!(s["cause"].as_str().unwrap().starts_with(&said), "{s}");
        assert!(
            s["fingerprint"].as_str().unwrap().contains("50000000"),
            "{s}"
        );
    }
}

#[test]
fn sigquit_exits_at_once_with_131_and_a_failed_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("stderr.log");
    // The default action, a core dump, would leave the earlier summary.
    let dir = folder_with_an_earlier_summary(tmp.path());
    let mut cmd = long_run(&dir);
    cmd.arg("--force");
    let child = start(cmd, &log, 3);
    signal(&child, "QUIT");
    let (exit, stderr) = ended(child, &log);
    assert_eq!(exit, Some(131), "{stderr}");
    assert!(
        stderr.contains("SIGQUIT: exiting now in phase ") && !stderr.contains("second SIGQUIT"),
        "{stderr}"
    );
    assert_stopped_at_once(&dir, 131);
}

#[test]
fn sigusr1_says_where_the_run_is_and_sigpipe_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("stderr.log");
    let dir = tmp.path().join("out");
    let child = start(long_run(&dir), &log, 10);
    signal(&child, "USR1");
    signal(&child, "PIPE");
    let started = Instant::now();
    loop {
        let stderr = std::fs::read_to_string(&log).unwrap();
        if stderr.contains("SIGUSR1: phase running; ") {
            assert!(stderr.contains(" records read, "), "{stderr}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no answer to SIGUSR1: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Neither stopped the run: it still drains on SIGINT, as usual.
    signal(&child, "INT");
    let (exit, stderr) = ended(child, &log);
    assert_eq!(exit, Some(130), "{stderr}");
    let s = summary(&dir);
    assert_eq!(s["exit"], "interrupted", "{s}");
    assert_eq!(s["conservation"], true, "{s}");
}
