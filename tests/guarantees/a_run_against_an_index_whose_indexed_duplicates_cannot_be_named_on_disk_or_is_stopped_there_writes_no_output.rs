//! A budgeted run against a saved index (`--against`) names the records
//! it removes as indexed records' duplicates on disk past their share
//! (`src/jobs/dedup/spill/indexed.rs`, `RemovedAsIndexed::name`: sorted
//! by root, joined with the roots' ids, sorted back by record into one
//! run). A run whose sort by root, or by record, cannot be written (a
//! failing disk: EIO) exits 74 naming the file and its cause; a run asked
//! to stop (SIGINT) there exits 130 saying so. Either way no output and
//! no saved index is written, and none of the runs is left; what passes 1
//! and 2 made stays, with the draft of the index, for `--resume`, which
//! gives the outputs and saved index of an uninterrupted run and leaves
//! nothing of either run.
//!
//! The clusters' share is lowered (failpoint `dedup::clusters_share`) so
//! a corpus of a few thousand records names them with runs; the run is
//! held once the runs by root are on disk (failpoint
//! `dedup::indexed_hold`, which writes a file when it holds and lets go at
//! the stop): the test waits on that file, not on a delay. The writes
//! fail through the failpoint `dedup::run_write` on the files whose name
//! holds the given text.

#![cfg(feature = "failpoints")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::dedup_clusters_stay_within_their_share_on_a_corpus_of_many_duplicates::lines;
use crate::binary::{drainpipe, least_budget_dedup, names, signal, spawn, succeeded, wait};

const DEADLINE: Duration = Duration::from_secs(300);

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

/// `dedup B -o OUT --against IDX --save-index SAVE` under the least
/// budget, the clusters' share lowered, with `failpoints` more.
fn against(b: &Path, out: &Path, idx: &Path, save: &Path, failpoints: &str) -> Command {
    let mut cmd = least_budget_dedup(b, out);
    cmd.arg("--against").arg(idx).arg("--save-index").arg(save);
    cmd.env(
        "FAILPOINTS",
        format!("dedup::clusters_share=return(65536){failpoints}"),
    );
    cmd
}

/// Runs `cmd` to its end; asserts its exit code; its stderr.
fn finish(cmd: Command, code: i32, what: &str) -> String {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
    stderr
}

/// Each output's bytes, then each file of the saved index (`None` when
/// absent).
fn written(out: &Path, save: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut files: Vec<(String, Option<Vec<u8>>)> = OUTPUTS
        .iter()
        .map(|n| (n.to_string(), std::fs::read(out.join(n)).ok()))
        .collect();
    if save.exists() {
        for name in names(save) {
            let bytes = std::fs::read(save.join(&name)).ok();
            files.push((name, bytes));
        }
    }
    files
}

/// Asserts that a failed or stopped run left no output, no saved index
/// (but its draft, for `--resume`) and none of the clusters' runs.
fn nothing_written(out: &Path, save: &Path, what: &str) {
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{what}: {name} written");
    }
    assert!(!save.exists(), "{what}: the index saved");
    assert_eq!(drafts(save).len(), 1, "{what}: the draft is kept to resume");
    let temp = out.join(drainpipe_actors::TEMP_FOLDER);
    if temp.exists() {
        let runs: Vec<String> = (names(&temp).into_iter())
            .filter(|n| n.starts_with("dedup-clusters-"))
            .collect();
        assert!(runs.is_empty(), "{what}: runs left {runs:?}");
    }
}

/// The drafts beside the index `save`.
fn drafts(save: &Path) -> Vec<String> {
    (names(save.parent().unwrap()).into_iter())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// Resumes the run into `out`, which must give the `expected` outputs
/// and saved index and leave nothing of either run.
fn resumed(b: &Path, out: &Path, idx: &Path, save: &Path, expected: &Written, what: &str) {
    let mut resume = against(b, out, idx, save, "");
    resume.arg("--resume");
    finish(resume, 0, what);
    assert!(
        &written(out, save) == expected,
        "{what}: the resumed run gives other outputs than the uninterrupted run"
    );
    crate::binary::nothing_of_the_run_left(out, what);
    assert!(drafts(save).is_empty(), "{what}: a draft is left");
}

/// Outputs and saved index files, as [`written`] reads them.
type Written = Vec<(String, Option<Vec<u8>>)>;

/// A: the corpus; B: each of A's records under a new id (with escaped
/// quotes and unicode), all duplicates of indexed records.
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let a_lines = lines(1_000);
    let b_lines: Vec<String> = (a_lines.iter())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"] = format!("n \"é\" {}", v["id"].as_str().unwrap()).into();
            v.to_string()
        })
        .collect();
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    std::fs::write(&a, a_lines.join("\n") + "\n").unwrap();
    std::fs::write(&b, b_lines.join("\n") + "\n").unwrap();
    (a, b)
}

#[test]
fn a_run_against_an_index_whose_indexed_duplicates_cannot_be_named_on_disk_or_is_stopped_there_writes_no_output(
) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = corpus(dir.path());
    let idx = dir.path().join("idx").join("A");
    let mut index = drainpipe();
    index
        .arg("dedup")
        .arg(&a)
        .arg("-o")
        .arg(dir.path().join("a-out"));
    succeeded(index.arg("-q").arg("--save-index").arg(&idx));

    let (whole, whole_index) = (dir.path().join("whole"), dir.path().join("w").join("NEW"));
    finish(
        against(&b, &whole, &idx, &whole_index, ""),
        0,
        "uninterrupted",
    );
    let text = std::fs::read_to_string(whole.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let index = &summary["result"]["index"];
    assert!(
        index["removed_as_indexed"].as_u64().unwrap() > 4_000,
        "{index}"
    );
    assert!(
        index["removed_as_indexed_spilled_bytes"].as_u64().unwrap() > 0,
        "named on disk: {index}"
    );
    let expected = written(&whole, &whole_index);

    // A failing disk under the sort by root, then under the sort by
    // record (`dedup-clusters-indexed-NNNNNN.named`).
    for (nth, name) in ["indexed-roots", "indexed-0"].iter().enumerate() {
        let (out, save) = (
            dir.path().join(format!("eio-{nth}")),
            dir.path().join(format!("e{nth}")).join("NEW"),
        );
        let fail = format!(";dedup::run_write=return({name})");
        let stderr = finish(against(&b, &out, &idx, &save, &fail), 74, name);
        let line = stderr
            .lines()
            .find(|l| l.contains("Input/output error"))
            .unwrap_or_else(|| panic!("{name}: no cause said: {stderr}"));
        assert!(
            line.contains("dedup-clusters-") && line.contains(name),
            "{line}"
        );
        nothing_written(&out, &save, name);
        resumed(&b, &out, &idx, &save, &expected, name);
    }

    // Stopped while held with the runs by root on disk.
    let (out, save) = (dir.path().join("stopped"), dir.path().join("s").join("NEW"));
    let held = dir.path().join("held");
    let hold = format!(";dedup::indexed_hold=return({})", held.display());
    let child = spawn(against(&b, &out, &idx, &save, &hold));
    let started = Instant::now();
    while !held.exists() {
        assert!(started.elapsed() < DEADLINE, "never held while naming");
        std::thread::sleep(Duration::from_millis(10));
    }
    let temp = out.join(drainpipe_actors::TEMP_FOLDER);
    let by_root = (names(&temp).into_iter()).filter(|n| n.contains("indexed-roots"));
    assert!(by_root.count() > 1, "held with the runs by root on disk");
    signal(&child, "INT");
    let (output, _) = wait(child, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped while making the clusters"),
        "{stderr}"
    );
    nothing_written(&out, &save, "stopped");

    resumed(&b, &out, &idx, &save, &expected, "stopped");
}
