//! A run's temporary folder (where state past `--max-memory` spills) is
//! removed however the run ends: complete, failed, interrupted without a
//! checkpoint, panicked. It is kept only while the output folder holds a
//! checkpoint that may name files in it, for `--resume`, which works in it
//! and removes it when it completes. A run killed with SIGKILL leaves it;
//! the next run into the same output folder that does not resume removes
//! it, wherever `--tmp-dir` put it, and says so.
//!
//! The spill is the failpoint `main::spill=return(NAME)`: a file written
//! through the run's `TempSpace` before the job runs, as a spilled run is.

#![cfg(feature = "failpoints")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::binary::{drainpipe, signal, spawn, summary, wait};

/// The record file naming the temporary folder (`TEMP_RECORD`).
const RECORD: &str = drainpipe_actors::TEMP_RECORD;

/// A spill of one file, and what else `extra` injects.
fn failpoints(extra: &str) -> String {
    if extra.is_empty() {
        "main::spill=return(run-0)".to_owned()
    } else {
        format!("main::spill=return(run-0);{extra}")
    }
}

/// `drainpipe vocab` into `out` with its temporaries in `tmp`.
fn vocab(out: &Path, tmp: &Path, docs: &str) -> Command {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--no-progress", "--demo-docs", docs, "-o"])
        .arg(out)
        .arg("--tmp-dir")
        .arg(tmp);
    cmd
}

fn finish(cmd: Command) -> (Option<i32>, String) {
    let (output, _): (Output, _) = wait(spawn(cmd), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// The folders in `tmp`.
fn folders(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Asserts that nothing of a temporary space is left: no folder in `tmp`
/// or in `out`, no record.
fn nothing_left(out: &Path, tmp: &Path, what: &str) {
    assert!(folders(tmp).is_empty(), "{what}: {:?}", folders(tmp));
    assert!(!out.join(drainpipe_actors::TEMP_FOLDER).exists(), "{what}");
    assert!(!out.join(RECORD).exists(), "{what}");
}

/// Waits (up to a minute) until the run has spilled into `tmp`.
fn wait_for_spill(tmp: &Path) -> PathBuf {
    let started = Instant::now();
    loop {
        if let Some(folder) = folders(tmp).pop() {
            if folder.join("run-0").exists() {
                return folder;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no spill");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_complete_run_removes_its_temporaries_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    let mut cmd = vocab(&out, &tmp, "200");
    cmd.env("FAILPOINTS", failpoints(""));
    let (code, stderr) = finish(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    nothing_left(&out, &tmp, "complete");
    let memory = &summary(&out)["memory"];
    assert_eq!(memory["bytes_spilled"], 4096, "{memory}");
    assert_eq!(memory["peak_temp_bytes"], 4096, "{memory}");
    let folder = memory["temp_folder"].as_str().unwrap();
    assert!(Path::new(folder).starts_with(&tmp), "{memory}");
}

#[test]
fn a_failed_or_panicked_run_removes_its_temporaries() {
    for (extra, expected) in [
        // The output cannot be synced: exit 74.
        ("output::sync=return(vocab.tsv)", Some(74)),
        // A panic on the main thread, before the job: Rust's 101.
        ("main::job=panic", Some(101)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
        let mut cmd = vocab(&out, &tmp, "200");
        cmd.env("FAILPOINTS", failpoints(extra));
        let (code, stderr) = finish(cmd);
        assert_eq!(code, expected, "{extra}: {stderr}");
        nothing_left(&out, &tmp, extra);
    }
}

#[test]
fn an_interrupted_run_keeps_them_only_for_its_checkpoint() {
    // The checkpoint of the interruption cannot be written: nothing could
    // resume, so nothing is kept.
    let dir = tempfile::tempdir().unwrap();
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    let mut cmd = vocab(&out, &tmp, "50000000");
    cmd.env(
        "FAILPOINTS",
        failpoints("output::sync=return(checkpoint.bin)"),
    );
    let child = spawn(cmd);
    wait_for_spill(&tmp);
    signal(&child, "INT");
    let (output, _) = wait(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{stderr}");
    assert!(!out.join("checkpoint.bin").exists());
    nothing_left(&out, &tmp, "interrupted without a checkpoint");

    // With its checkpoint, the folder stays for --resume, which works in
    // it (without being told where) and removes it when it completes.
    let dir = tempfile::tempdir().unwrap();
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    let mut cmd = vocab(&out, &tmp, "20000");
    // Slow enough to be interrupted; the resumed run goes at full speed.
    cmd.env("FAILPOINTS", failpoints("processor::record=sleep(1)"));
    let child = spawn(cmd);
    let folder = wait_for_spill(&tmp);
    signal(&child, "INT");
    let (output, _) = wait(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(out.join("checkpoint.bin").exists());
    assert!(folder.join("run-0").exists(), "kept for --resume");
    let mut resume = drainpipe();
    resume
        .args(["vocab", "--no-progress", "--demo-docs", "20000", "--resume"])
        .arg("-o")
        .arg(&out);
    let (code, stderr) = finish(resume);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        summary(&out)["memory"]["temp_folder"],
        folder.display().to_string(),
        "the resumed run works in the recorded folder"
    );
    nothing_left(&out, &tmp, "resumed to completion");
}

#[test]
fn a_second_signal_removes_them_when_no_checkpoint_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    let mut cmd = vocab(&out, &tmp, "50000000");
    // Every record takes 100 ms, so the drain outlasts the second signal.
    cmd.args(["--batch", "50", "--workers", "2", "--checkpoint-every", "0"])
        .env("FAILPOINTS", failpoints("processor::record=sleep(100)"));
    let child = spawn(cmd);
    wait_for_spill(&tmp);
    // Batches in flight by then: the drain has work to wait for.
    std::thread::sleep(Duration::from_millis(1000));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    let (output, _) = wait(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("second SIGINT: exiting now"), "{stderr}");
    nothing_left(&out, &tmp, "second signal");
}

#[test]
fn the_next_run_removes_what_a_killed_run_left_wherever_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    let mut cmd = vocab(&out, &tmp, "50000000");
    cmd.env("FAILPOINTS", failpoints(""));
    let mut child = spawn(cmd);
    let folder = wait_for_spill(&tmp);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(folder.join("run-0").exists(), "a killed run cleans nothing");
    assert!(out.join(RECORD).exists());
    // A plain run, without --tmp-dir: the record says where the folder is.
    let mut plain = drainpipe();
    plain
        .args(["vocab", "--no-progress", "--demo-docs", "200", "-o"])
        .arg(&out);
    let (code, stderr) = finish(plain);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "removed the temporary folder {} an earlier run into {} left",
            folder.display(),
            out.display()
        )),
        "{stderr}"
    );
    nothing_left(&out, &tmp, "after the killed run");
}

/// A `--tmp-dir` that cannot hold a folder (here a link to nowhere; a
/// plain file is refused before any work, exit 2): the first spill fails,
/// the run exits 74 with no output, and the message names the run's own
/// temporary folder, where the run's files would have gone, not the folder
/// given.
#[test]
fn a_tmp_dir_that_cannot_hold_the_spill_fails_the_run_naming_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("short.jsonl");
    let generated = drainpipe()
        .args(["generate", "--docs", "120000", "--min-words", "20"])
        .args(["--max-words", "40", "-o"])
        .arg(&corpus)
        .status()
        .unwrap();
    assert!(generated.success());
    let not_a_folder = dir.path().join("a-link");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &not_a_folder).unwrap();
    let out = dir.path().join("out");
    let run = drainpipe()
        .arg("dedup")
        .arg(&corpus)
        .arg("-o")
        .arg(&out)
        .args([
            "-w",
            "1",
            "--window",
            "1",
            "--max-memory",
            "28M",
            "--no-progress",
        ])
        .arg("--tmp-dir")
        .arg(&not_a_folder)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(74), "{stderr}");
    let spill_errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sorted run"))
        .collect();
    assert!(!spill_errors.is_empty(), "{stderr}");
    for line in spill_errors {
        assert!(line.contains(".drainpipe-tmp-"), "{line}");
    }
    assert!(!out.join("kept.jsonl").exists());
    assert!(!out.join("clusters.jsonl").exists());
}
