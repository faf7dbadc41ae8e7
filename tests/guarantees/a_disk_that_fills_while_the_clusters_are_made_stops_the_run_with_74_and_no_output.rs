//! A budgeted dedup run whose temporary disk fills while it makes its
//! clusters on disk (between passes 2 and 3,
//! `src/jobs/dedup/spill/components.rs`) stops with exit 74 and a message
//! naming the folder and the bytes free and needed: the clusters' next
//! run checks its room first (`TempSpace::ensure_room`), so no write fails
//! half-way; no `kept.jsonl` nor `clusters.jsonl` is written and none of
//! the clusters' runs is left. Pass 2's result stays: once the disk has
//! room again, `--resume` gives the outputs of an uninterrupted run.
//!
//! The disk is a real tmpfs (the tests run as root), filled by the test
//! while the run is held where the clusters' first runs are on disk
//! (failpoint `dedup::clusters_hold`, which writes a file when it holds
//! and lets go once the test writes `FILE.release`); the clusters' share
//! is lowered (failpoint `dedup::clusters_share`) so a small corpus makes
//! them with sorted runs.

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::dedup_clusters_stay_within_their_share_on_a_corpus_of_many_duplicates::lines;
use super::io_faults_exit_74_with_a_message_and_no_half_written_output::Tmpfs;
use crate::binary::{least_budget_dedup, names, nothing_of_the_run_left, spawn, summary, wait};

const DEADLINE: Duration = Duration::from_secs(300);

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

/// `dedup INPUT -o OUT` under the least budget, its temporary folder in
/// `tmp`, the clusters' share lowered, with `failpoints` more.
fn dedup(input: &Path, out: &Path, tmp: &Path, failpoints: &str) -> Command {
    let mut cmd = least_budget_dedup(input, out);
    cmd.arg("--tmp-dir").arg(tmp).env(
        "FAILPOINTS",
        format!("dedup::clusters_share=return(65536){failpoints}"),
    );
    cmd
}

fn outputs(out: &Path) -> Vec<Option<Vec<u8>>> {
    OUTPUTS
        .iter()
        .map(|n| std::fs::read(out.join(n)).ok())
        .collect()
}

/// Every file below `dir` whose name starts with `prefix`.
fn files_below(dir: &Path, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in names(dir) {
        let path = dir.join(&name);
        if path.is_dir() {
            found.extend(files_below(&path, prefix));
        } else if name.starts_with(prefix) {
            found.push(name);
        }
    }
    found
}

#[test]
fn a_disk_that_fills_while_the_clusters_are_made_stops_the_run_with_74_and_no_output() {
    let disk = Tmpfs::mount("size=64m");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(1_000).join("\n") + "\n").unwrap();

    let whole = dir.path().join("whole");
    let (output, _) = wait(spawn(dedup(&input, &whole, disk.path(), "")), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("making them with sorted runs"), "{stderr}");
    let expected = outputs(&whole);

    let out = dir.path().join("full");
    let held = dir.path().join("held");
    let hold = format!(";dedup::clusters_hold=return({})", held.display());
    let child = spawn(dedup(&input, &out, disk.path(), &hold));
    let started = Instant::now();
    while !held.exists() {
        assert!(started.elapsed() < DEADLINE, "never held");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!files_below(disk.path(), "dedup-clusters-").is_empty());
    // The disk filled by another writer: 4 MiB left, less than the
    // reserve a run's room keeps (16 MiB).
    let free = drainpipe_actors::temp_space::free_bytes_at(disk.path()).unwrap();
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; (free - (4 << 20)) as usize]).unwrap();
    std::fs::write(format!("{}.release", held.display()), b"").unwrap();
    let (output, _) = wait(child, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("dedup: making the clusters of the verified pairs")
            && stderr.contains("not enough disk space for temporary files in")
            && stderr.contains("bytes needed"),
        "{stderr}"
    );
    let s = summary(&out);
    assert_eq!(
        (s["exit"].as_str(), s["exit_code"].as_i64()),
        (Some("failed"), Some(74)),
        "{s}"
    );
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{name} written by a failed run");
    }
    assert_eq!(
        files_below(disk.path(), "dedup-clusters-"),
        Vec::<String>::new(),
        "the clusters' runs left"
    );
    assert!(out.join("dedup-verified.bin").exists(), "{:?}", names(&out));

    std::fs::remove_file(&filler).unwrap();
    let mut resume = dedup(&input, &out, disk.path(), "");
    resume.arg("--resume");
    let (output, _) = wait(spawn(resume), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        outputs(&out) == expected,
        "the resumed run's outputs differ from the uninterrupted run's"
    );
    nothing_of_the_run_left(&out, "resumed");
}
