//! A run against a saved index that saves the grown index, under the least
//! budget with the pairs across' shares lowered so that both go to disk,
//! killed with SIGKILL at each stage (pass 1 at a checkpoint; pass 1
//! merging with the index's bands; pass 2 finishing; before the clusters,
//! its pairs across verified; pass 3; between the renames of the commit)
//! or stopped with SIGINT in pass 2, then run again with `--resume`: the
//! outputs and the saved index are byte-identical to an uninterrupted
//! run's, and nothing of the interrupted run stays (no temporary file,
//! checkpoint, pass or index state file, temporary folder, nor a draft of
//! the index). The kills are the crash points of `src/jobs/dedup/crash.rs`
//! but the first, sent by the test once a checkpoint of pass 1 is written.
//!
//! A resumed run against an index that changed since is refused (exit 2):
//! the run's fingerprint holds each index's; a run that starts over
//! (`--force`) removes the interrupted run's draft with its state, even
//! when it saves no index; a resumed run whose draft is gone is refused
//! (exit 2), writing nothing.

#![cfg(feature = "failpoints")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::binary::{
    drainpipe, killed_at_a_checkpoint_after, least_budget_dedup, names, nothing_of_the_run_left,
    signal, spawn, succeeded, summary, wait,
};

const DEADLINE: Duration = Duration::from_secs(300);

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

/// Lowered shares: the candidate and the verified pairs across go to disk.
const SHARES: &str = "dedup::across_share=return(4096)";

/// A: 20,000 documents of the demo corpus; B: 20,000 others, and every
/// tenth of A's under a new id (duplicates of indexed records).
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let all = dir.join("all.jsonl");
    succeeded(
        drainpipe()
            .args(["generate", "--docs", "40000", "-o"])
            .arg(&all),
    );
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a_lines, b_own) = lines.split_at(20_000);
    let renamed = a_lines.iter().step_by(10).map(|l| {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["id"] = format!("again {}", v["id"]).into();
        v.to_string()
    });
    let b_lines: Vec<String> = b_own.iter().map(|l| l.to_string()).chain(renamed).collect();
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    std::fs::write(&a, a_lines.join("\n") + "\n").unwrap();
    std::fs::write(&b, b_lines.join("\n") + "\n").unwrap();
    (a, b)
}

/// The index of `input` saved into `dir/old/OLD` (written again over an
/// earlier one's outputs in `dir/a`).
fn saved_index(dir: &Path, input: &Path) -> PathBuf {
    let old = dir.join("old").join("OLD");
    let mut index = drainpipe();
    index.arg("dedup").arg(input).arg("-o").arg(dir.join("a"));
    succeeded(index.args(["-q", "--force", "--save-index"]).arg(&old));
    old
}

/// `dedup B -o OUT --against OLD --save-index NEW` under the least budget,
/// the pairs across' shares lowered, with `failpoints` more.
fn against(b: &Path, out: &Path, old: &Path, new: &Path, failpoints: &str) -> Command {
    let mut cmd = least_budget_dedup(b, out);
    cmd.arg("--against").arg(old).arg("--save-index").arg(new);
    cmd.env("FAILPOINTS", format!("{SHARES}{failpoints}"));
    cmd
}

/// Each output's bytes, then each file of the saved index (`None` when
/// absent).
fn written(out: &Path, new: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut files: Vec<(String, Option<Vec<u8>>)> = OUTPUTS
        .iter()
        .map(|n| (n.to_string(), std::fs::read(out.join(n)).ok()))
        .collect();
    if new.exists() {
        for name in names(new) {
            files.push((name.clone(), std::fs::read(new.join(&name)).ok()));
        }
    }
    files
}

/// Runs `cmd` to its end; asserts its exit code; its stderr.
fn finish(cmd: Command, code: i32, what: &str) -> String {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
    stderr
}

/// Starts `cmd`, sends it SIGINT once a line of its stderr holds `after`,
/// and asserts that it stops with exit 130.
fn stopped_after(cmd: Command, after: &str) {
    let mut child = spawn(cmd);
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let past = line.contains(after);
        seen.push(line);
        if past {
            signal(&child, "INT");
            break;
        }
    }
    let (output, _) = wait(child, DEADLINE);
    assert_eq!(output.status.code(), Some(130), "{}", seen.join("\n"));
}

/// Asserts that the interrupted run left no saved index but its draft,
/// for `--resume`, and no output unless it was killed in the commit (which
/// the next run completes).
fn interrupted(out: &Path, new: &Path, what: &str) {
    if what != "the commit" {
        for name in OUTPUTS {
            assert!(!out.join(name).exists(), "{what}: {name} written");
        }
    }
    assert!(!new.exists(), "{what}: the index was saved");
    assert_eq!(drafts(new).len(), 1, "{what}: the draft is kept to resume");
}

/// The drafts beside the index `new`.
fn drafts(new: &Path) -> Vec<String> {
    let parent = new.parent().unwrap();
    (names(parent).into_iter())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_run_against_an_index_killed_or_stopped_at_any_stage_resumes_to_the_uninterrupted_outputs_and_index(
) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = corpus(dir.path());
    let old = saved_index(dir.path(), &a);

    let (whole, whole_index) = (dir.path().join("whole"), dir.path().join("w").join("NEW"));
    let stderr = finish(against(&b, &whole, &old, &whole_index, ""), 0, "whole");
    assert!(
        stderr.contains("candidate pairs across pass their share")
            && stderr.contains("verified pairs across pass their share"),
        "both spills must be written for this test to mean anything: {stderr}"
    );
    let removed = summary(&whole)["result"]["index"]["removed_as_indexed"].clone();
    assert!(removed.as_u64().unwrap() >= 1_000, "{removed}");
    nothing_of_the_run_left(&whole, "whole");
    assert!(drafts(&whole_index).is_empty());
    let expected = written(&whole, &whole_index);

    let stages = [
        ("pass 1 at a checkpoint", None),
        ("pass 1 merging", Some(";dedup::pass1_merging=return")),
        ("pass 2 finishing", Some(";dedup::pass2_finishing=return")),
        (
            "before the clusters",
            Some(";dedup::before_clusters=return"),
        ),
        ("pass 3", Some(";dedup::pass3=return")),
        ("the commit", Some(";output::rename=return(clusters.jsonl)")),
        ("pass 2 stopped", Some("")),
    ];
    for (nth, (stage, crash)) in stages.into_iter().enumerate() {
        let out = dir.path().join(format!("out-{nth}"));
        let new = dir.path().join(format!("i-{nth}")).join("NEW");
        match crash {
            // Pass 1 slowed, so that it takes a checkpoint.
            None => killed_at_a_checkpoint_after(
                against(&b, &out, &old, &new, ";processor::record=10%sleep(5)"),
                "",
            ),
            Some("") => stopped_after(
                against(&b, &out, &old, &new, ";processor::record=10%sleep(5)"),
                "dedup pass 2: the verified pairs across pass their share",
            ),
            Some(point) => {
                let (output, _) = wait(spawn(against(&b, &out, &old, &new, point)), DEADLINE);
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert_eq!(output.status.code(), None, "{stage}: not killed: {stderr}");
            }
        }
        interrupted(&out, &new, stage);
        let mut resume = against(&b, &out, &old, &new, "");
        resume.arg("--resume");
        let stderr = finish(resume, 0, stage);
        assert!(
            written(&out, &new) == expected,
            "{stage}: the outputs or the saved index differ from the uninterrupted run's: {stderr}"
        );
        nothing_of_the_run_left(&out, stage);
        assert!(drafts(&new).is_empty(), "{stage}: a draft is left");
    }
}

#[test]
fn a_resumed_run_against_an_index_that_changed_since_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = corpus(dir.path());
    let old = saved_index(dir.path(), &a);
    let (out, new) = (dir.path().join("out"), dir.path().join("i").join("NEW"));
    let point = ";dedup::before_clusters=return";
    let (output, _) = wait(spawn(against(&b, &out, &old, &new, point)), DEADLINE);
    assert_eq!(output.status.code(), None, "not killed");
    // Another index in its place: of B, not A.
    std::fs::remove_dir_all(&old).unwrap();
    assert_eq!(saved_index(dir.path(), &b), old);
    let mut resume = against(&b, &out, &old, &new, "");
    resume.arg("--resume");
    let stderr = finish(resume, 2, "resumed against another index");
    assert!(
        stderr.contains("the interrupted run had other indexes")
            && stderr.contains("run it again with --force")
            && stderr.contains("is for another run"),
        "{stderr}"
    );
    assert!(!new.exists(), "an index was saved");
    assert_eq!(drafts(&new).len(), 1, "the draft is kept to resume");
    // Started over without saving an index: the interrupted run's draft
    // goes with its state.
    let mut again = least_budget_dedup(&b, &out);
    again.arg("--against").arg(&old).arg("--force");
    finish(again, 0, "started over");
    assert!(
        drafts(&new).is_empty(),
        "the interrupted run's draft is left"
    );
    nothing_of_the_run_left(&out, "started over");
}

#[test]
fn a_resumed_run_whose_index_draft_is_gone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = corpus(dir.path());
    let old = saved_index(dir.path(), &a);
    let (out, new) = (dir.path().join("out"), dir.path().join("i").join("NEW"));
    let point = ";dedup::before_clusters=return";
    let (output, _) = wait(spawn(against(&b, &out, &old, &new, point)), DEADLINE);
    assert_eq!(output.status.code(), None, "not killed");
    let left = drafts(&new);
    assert_eq!(left.len(), 1, "the draft is kept to resume");
    std::fs::remove_dir_all(new.parent().unwrap().join(&left[0])).unwrap();
    let mut resume = against(&b, &out, &old, &new, "");
    resume.arg("--resume");
    let stderr = finish(resume, 2, "resumed without its draft");
    assert!(
        stderr.contains("is gone") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!new.exists(), "an index was saved");
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{name} written");
    }
}
