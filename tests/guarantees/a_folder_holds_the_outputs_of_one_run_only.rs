//! An output folder holds the outputs of one run only. A run of another
//! job with `--force` into a folder does not leave the earlier job's
//! outputs beside its own `summary.json`, as if one run had written them
//! all: its commit removes them with the earlier summary.

use std::path::Path;
use std::time::Duration;

use crate::binary::{drainpipe, spawn, summary, wait};

/// `drainpipe JOB --demo-docs 300 --force -o out`: its exit code.
fn run(job: &str, out: &Path) -> Option<i32> {
    let mut cmd = drainpipe();
    cmd.args([job, "--no-progress", "--demo-docs", "300", "--force", "-o"])
        .arg(out);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{job}: {stderr}");
    output.status.code()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn every_jobs_outputs_are_known_by_name() {
    use drainpipe::jobs::{dedup, outputs::OUTPUT_FILES, vocab};
    assert_eq!(
        OUTPUT_FILES,
        [
            vocab::VOCAB_FILE,
            dedup::chain::KEPT_FILE,
            dedup::chain::KEPT_PARQUET_FILE,
            dedup::clusters::CLUSTERS_FILE
        ]
    );
}

#[test]
fn a_run_of_another_job_removes_the_earlier_jobs_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run("dedup", &out);
    assert_eq!(
        names(&out),
        ["clusters.jsonl", "kept.jsonl", "summary.json"]
    );
    run("vocab", &out);
    assert_eq!(names(&out), ["summary.json", "vocab.tsv"]);
    assert_eq!(summary(&out)["job"], "vocab");
    run("dedup", &out);
    assert_eq!(
        names(&out),
        ["clusters.jsonl", "kept.jsonl", "summary.json"]
    );
    assert_eq!(summary(&out)["job"], "dedup");
}
