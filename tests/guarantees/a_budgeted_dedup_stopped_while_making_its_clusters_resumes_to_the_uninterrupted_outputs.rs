//! A budgeted dedup run asked to stop (SIGINT) while it makes its
//! clusters on disk, between passes 2 and 3
//! (`src/jobs/dedup/spill/components.rs`, `StopCheck`), stops there: exit
//! 130, a partial summary, no `kept.jsonl` nor `clusters.jsonl`, none of
//! the clusters' sorted runs left, pass 2's result kept; `--resume` then
//! makes the clusters again and gives the outputs of an uninterrupted run,
//! byte for byte, leaving nothing of either run. A resumed run, which
//! loaded passes 1 and 2, stopped there ends the same way.
//!
//! The clusters' share is lowered (failpoint `dedup::clusters_share`) so
//! a corpus of a few thousand records makes them with sorted runs; the
//! run is held where the clusters' first runs are on disk (failpoint
//! `dedup::clusters_hold`, which writes a file when it holds and lets go
//! at the stop): the test waits on that file, not on a delay.

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::dedup_clusters_stay_within_their_share_on_a_corpus_of_many_duplicates::lines;
use crate::binary::{
    least_budget_dedup, names, nothing_of_the_run_left, signal, spawn, summary, wait,
};

const DEADLINE: Duration = Duration::from_secs(300);

/// The clusters' share, lowered: far below the corpus's verified pairs
/// (about 112 bytes each in memory).
const SHARE: &str = "dedup::clusters_share=return(65536)";

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

/// `dedup INPUT -o OUT` under the least budget, the clusters' share
/// lowered, with `failpoints` more.
fn dedup(input: &Path, out: &Path, failpoints: &str) -> Command {
    let mut cmd = least_budget_dedup(input, out);
    cmd.env("FAILPOINTS", format!("{SHARE}{failpoints}"));
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

/// The clusters' sorted runs in the temporary folder of `out`.
fn clusters_runs(out: &Path) -> Vec<String> {
    let temp = out.join(drainpipe_actors::TEMP_FOLDER);
    if !temp.exists() {
        return Vec::new();
    }
    names(&temp)
        .into_iter()
        .filter(|n| n.starts_with("dedup-clusters-"))
        .collect()
}

/// Runs `cmd` until it holds (it writes `held`), with the clusters'
/// runs on disk, then sends SIGINT: asserts how it ends.
fn stopped_while_held(cmd: Command, held: &Path, out: &Path) {
    let child = spawn(cmd);
    let started = Instant::now();
    while !held.exists() {
        assert!(
            started.elapsed() < DEADLINE,
            "the run never held while making its clusters"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !clusters_runs(out).is_empty(),
        "held with the clusters' runs on disk"
    );
    signal(&child, "INT");
    let (output, _) = wait(child, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped while making the clusters"),
        "{stderr}"
    );
    let s = summary(out);
    assert_eq!(s["exit"], "interrupted", "{s}");
    assert_eq!(s["partial"], true);
    assert_eq!(s["result"]["stopped_in_pass"], "kept", "{s}");
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{name} written by a stopped run");
    }
    assert_eq!(clusters_runs(out), Vec::<String>::new(), "runs left");
    assert!(
        out.join("dedup-verified.bin").exists(),
        "pass 2's result is kept for --resume: {:?}",
        names(out)
    );
}

#[test]
fn a_budgeted_dedup_stopped_while_making_its_clusters_resumes_to_the_uninterrupted_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(1_000).join("\n") + "\n").unwrap();

    let whole = dir.path().join("whole");
    let stderr = finish(dedup(&input, &whole, ""), 0, "uninterrupted");
    assert!(
        stderr.contains("making them with sorted runs"),
        "the clusters must be made on disk for this test to mean anything: {stderr}"
    );
    let expected = outputs(&whole);
    assert!(expected[0].is_some() && expected[1].is_some(), "{stderr}");

    // Stopped once in a run from the start, once in a resumed run that
    // loaded passes 1 and 2 (no pass of its own ran).
    let out = dir.path().join("stopped");
    for (nth, resumed) in [(1, false), (2, true)] {
        let held = dir.path().join(format!("held-{nth}"));
        let hold = format!(";dedup::clusters_hold=return({})", held.display());
        let mut cmd = dedup(&input, &out, &hold);
        if resumed {
            cmd.arg("--resume");
        }
        stopped_while_held(cmd, &held, &out);
    }

    let mut resume = dedup(&input, &out, "");
    resume.arg("--resume");
    let stderr = finish(resume, 0, "resumed");
    assert!(stderr.contains("making them with sorted runs"), "{stderr}");
    assert!(
        outputs(&out) == expected,
        "the resumed run's outputs differ from the uninterrupted run's"
    );
    assert_eq!(summary(&out)["exit"], "complete");
    nothing_of_the_run_left(&out, "resumed");
}
