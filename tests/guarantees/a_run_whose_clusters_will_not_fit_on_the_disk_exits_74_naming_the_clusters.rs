//! A budgeted dedup run whose clusters' sorted runs (made between passes
//! 2 and 3, `src/jobs/dedup/spill/components.rs`) will not fit on the
//! disk of its temporary folder exits 74 with a message naming the
//! clusters, the folder and the bytes needed and free, and writes no
//! output:
//!
//! - up front, when the estimate says so before anything is read
//!   (`src/spill_estimate.rs`: one verified pair a document assumed, the
//!   clusters' runs `DISK_BYTES_PER_PAIR` a pair once the pairs pass
//!   their share), even when pass 1 spills nothing;
//! - once pass 2 has counted the verified pairs, when the estimate could
//!   not know (here: the clusters' share lowered by the failpoint
//!   `dedup::clusters_share`, so a small corpus the estimate keeps in
//!   memory makes them with sorted runs), before any of their runs is
//!   written.
//!
//! The disks are real tmpfs (the tests run as root, as the IO fault tests
//! do).

use std::path::Path;
use std::time::Duration;

#[cfg(feature = "failpoints")]
use super::dedup_clusters_stay_within_their_share_on_a_corpus_of_many_duplicates::lines;
use super::io_faults_exit_74_with_a_message_and_no_half_written_output::Tmpfs;
use crate::binary::{drainpipe, names, spawn, summary, wait};

const DEADLINE: Duration = Duration::from_secs(300);

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

fn assert_failed_with_no_output(out: &Path) {
    let s = summary(out);
    assert_eq!(
        (s["exit"].as_str(), s["exit_code"].as_i64()),
        (Some("failed"), Some(74)),
        "{s}"
    );
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{name} written by a failed run");
    }
}

#[test]
fn clusters_estimated_past_the_free_space_are_refused_before_the_run_reads() {
    // 100,000 documents: a state of about 19 MiB within the least budget
    // (28 MiB, so pass 1 spills nothing), but 100,000 verified pairs
    // assumed, past the clusters' quarter of it: about 9 MiB of their
    // runs, with the 16 MiB reserve more than a 20 MiB disk has free.
    let small = Tmpfs::mount("size=20m");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = drainpipe();
    cmd.args(["dedup", "--no-progress", "--demo-docs", "100000"])
        .args(["-w", "1", "--window", "1", "--max-memory", "28M"])
        .arg("--tmp-dir")
        .arg(small.path())
        .arg("-o")
        .arg(&out);
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("refused before reading anything: this run may spill about 9.2 MiB")
            && stderr.contains("at its peak, in the clusters' runs (between passes 2 and 3)")
            && stderr.contains("pass 1's band runs about 0 B")
            && stderr.contains("for 100000 verified pairs, 1 a document assumed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "not enough disk space for temporary files in {}",
            small.path().display()
        )) && stderr.contains("bytes needed")
            && stderr.contains(" free; "),
        "{stderr}"
    );
    assert_failed_with_no_output(&out);
    assert_eq!(names(&out), ["summary.json"], "nothing else was written");
    assert_eq!(names(small.path()), Vec::<String>::new());
}

#[cfg(feature = "failpoints")]
#[test]
fn clusters_counted_past_the_free_space_stop_the_run_before_their_first_run() {
    // Within the 16 MiB reserve, so no run fits; 1,000 clusters of a
    // small corpus, kept in memory by the estimate, passing the lowered
    // share once counted.
    let small = Tmpfs::mount("size=16m");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(1_000).join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let mut cmd = crate::binary::least_budget_dedup(&input, &out);
    cmd.arg("--tmp-dir")
        .arg(small.path())
        .env("FAILPOINTS", "dedup::clusters_share=return(65536)");
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{stderr}");
    assert!(
        !stderr.contains("refused before reading anything"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dedup: making the clusters of the verified pairs")
            && stderr.contains("the clusters' runs for ")
            && stderr.contains(" verified pairs take about ")
            && stderr.contains(&format!(
                "not enough disk space for temporary files in {}",
                small.path().display()
            ))
            && stderr.contains("bytes needed")
            && stderr.contains(" free; "),
        "{stderr}"
    );
    assert_failed_with_no_output(&out);
}
