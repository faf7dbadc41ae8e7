//! A dedup run asked to stop (SIGINT) while it makes its clusters in
//! memory, between passes 2 and 3 (the union-find of
//! `src/jobs/dedup/clusters.rs`, whose loops look at the run's
//! `StopCheck` as the external paths' do), stops there rather than after
//! them: exit 130, a partial summary, no `kept.jsonl` nor
//! `clusters.jsonl`, pass 2's result kept; `--resume` then makes the
//! clusters again and gives the outputs of an uninterrupted run, byte for
//! byte. Under `--keep first` and under `--keep longest` (which ranks the
//! clusters' members in the same union-find).
//!
//! The run is held inside the in-memory union-find, its unions made
//! (failpoint `dedup::clusters_memory_hold`, which writes a file when it
//! holds and lets go at the stop): the test waits on that file, not on a
//! delay.

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::dedup_clusters_stay_within_their_share_on_a_corpus_of_many_duplicates::lines;
use crate::binary::{least_budget_dedup, names, signal, spawn, summary, wait};

const DEADLINE: Duration = Duration::from_secs(300);

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

/// `dedup INPUT -o OUT --keep KEEP` under the least budget, with the
/// failpoints `failpoints`.
fn dedup(input: &Path, out: &Path, keep: &str, failpoints: &str) -> Command {
    let mut cmd = least_budget_dedup(input, out);
    cmd.args(["--keep", keep]).env("FAILPOINTS", failpoints);
    cmd
}

/// Each output's bytes (`None` when absent).
fn outputs(out: &Path) -> Vec<Option<Vec<u8>>> {
    OUTPUTS
        .iter()
        .map(|n| std::fs::read(out.join(n)).ok())
        .collect()
}

/// Runs `cmd` to its end; asserts its exit code; its stderr.
fn finish(cmd: Command, code: i32, what: &str) -> String {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
    stderr
}

/// Runs `cmd` until it holds inside the union-find (it writes `held`),
/// then sends SIGINT: asserts how it ends.
fn stopped_while_held(cmd: Command, held: &Path, out: &Path) {
    let child = spawn(cmd);
    let started = Instant::now();
    while !held.exists() {
        assert!(
            started.elapsed() < DEADLINE,
            "the run never held while making its clusters in memory"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&child, "INT");
    let (output, _) = wait(child, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("verified pairs in memory")
            && stderr.contains("stopped while making the clusters"),
        "{stderr}"
    );
    let s = summary(out);
    assert_eq!(s["exit"], "interrupted", "{s}");
    assert_eq!(s["partial"], true);
    assert_eq!(s["result"]["stopped_in_pass"], "kept", "{s}");
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{name} written by a stopped run");
    }
    assert!(
        out.join("dedup-verified.bin").exists(),
        "pass 2's result is kept for --resume: {:?}",
        names(out)
    );
}

#[test]
fn a_dedup_stopped_while_making_its_clusters_in_memory_resumes_to_the_uninterrupted_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(1_000).join("\n") + "\n").unwrap();

    for keep in ["first", "longest"] {
        let whole = dir.path().join(format!("whole-{keep}"));
        let stderr = finish(dedup(&input, &whole, keep, ""), 0, "uninterrupted");
        assert!(
            stderr.contains("verified pairs in memory"),
            "the clusters must be made in memory for this test to mean anything: {stderr}"
        );
        let expected = outputs(&whole);
        assert!(expected[0].is_some() && expected[1].is_some(), "{stderr}");

        let out = dir.path().join(format!("stopped-{keep}"));
        let held = dir.path().join(format!("held-{keep}"));
        let hold = format!("dedup::clusters_memory_hold=return({})", held.display());
        stopped_while_held(dedup(&input, &out, keep, &hold), &held, &out);

        let mut resume = dedup(&input, &out, keep, "");
        resume.arg("--resume");
        finish(resume, 0, "resumed");
        assert!(
            outputs(&out) == expected,
            "--keep {keep}: the resumed run's outputs differ from the uninterrupted run's"
        );
        assert_eq!(summary(&out)["exit"], "complete");
    }
}
