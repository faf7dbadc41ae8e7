//! Guarantee: `--drain-timeout` bounds the time a job's finish goes
//! without progress, not the whole finish. A dedup run under a budget
//! small enough to spill, whose pass 1 merge is slowed band by band
//! (failpoint `dedup::merge_band`, 0.3 s before each band is merged) until
//! its finish lasts several times a 1 s `--drain-timeout`, completes
//! (exit 0) with the outputs of the same run not slowed: the merge
//! reports progress as it goes, and the deadline counts from the last
//! report (docs/PROTOCOL.md, "What the deadlines measure").

#![cfg(feature = "failpoints")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::binary::{drainpipe, spawn, summary, wait};

/// Far past what both runs take: only a hang reaches it.
const DEADLINE: Duration = Duration::from_secs(300);
/// The finishing deadline of both runs, in seconds.
const DRAIN_TIMEOUT: u64 = 1;
/// How long the failpoint holds each band of the merge, in milliseconds.
const BAND_SLEEP_MS: u64 = 300;

/// 60,000 short documents of the demo corpus: enough for pass 1 to spill
/// under the budget below.
fn corpus(dir: &Path) -> PathBuf {
    let path = dir.join("in.jsonl");
    let status = drainpipe()
        .args(["generate", "--docs", "60000", "--min-words", "20"])
        .args(["--max-words", "40", "-o"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// `dedup INPUT -o OUT` under the least budget with a 1 s drain timeout,
/// each band of pass 1's merge slowed when `slowed`; its stderr, once it
/// exited 0.
fn dedup(input: &Path, out: &Path, slowed: bool) -> String {
    let mut cmd = drainpipe();
    cmd.arg("dedup")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(["--no-progress", "-v", "--workers", "1", "--window", "1"])
        .args(["--max-memory", "28M", "--drain-timeout"])
        .arg(DRAIN_TIMEOUT.to_string());
    if slowed {
        cmd.env(
            "FAILPOINTS",
            format!("dedup::merge_band=sleep({BAND_SLEEP_MS})"),
        );
    }
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "slowed {slowed}: {stderr}");
    stderr
}

/// The outputs of a dedup run.
fn outputs(out: &Path) -> Vec<(&'static str, Option<Vec<u8>>)> {
    ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"]
        .into_iter()
        .map(|name| (name, std::fs::read(out.join(name)).ok()))
        .collect()
}

/// Pass 1's entry of the run's summary.
fn signatures_pass(out: &Path) -> serde_json::Value {
    let summary = summary(out);
    let passes = summary["result"]["passes"].as_array().cloned();
    passes
        .unwrap_or_default()
        .into_iter()
        .find(|p| p["pass"] == "signatures")
        .unwrap_or_else(|| panic!("no pass 1 in {summary}"))
}

#[test]
fn a_dedup_merge_longer_than_the_drain_timeout_completes_while_it_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let (plain, slowed) = (dir.path().join("plain"), dir.path().join("slowed"));
    dedup(&input, &plain, false);
    let stderr = dedup(&input, &slowed, true);
    // The premise: pass 1 spilled, so its finish merged band by band, each
    // band after the failpoint's 0.3 s; with more bands than the timeout
    // has room for, the finish outlasted the timeout several times.
    let pass = signatures_pass(&slowed);
    assert!(pass["spill_runs"].as_u64() > Some(0), "{pass}");
    let bands = summary(&slowed)["result"]["parameters"]["bands"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        bands * BAND_SLEEP_MS >= 3 * DRAIN_TIMEOUT * 1000,
        "{bands} bands: {stderr}"
    );
    assert!(
        !stderr.contains("did not finish"),
        "the finish was cut: {stderr}"
    );
    assert!(outputs(&slowed) == outputs(&plain), "other outputs");
    assert!(outputs(&plain)[0].1.is_some(), "no kept.jsonl");
}
