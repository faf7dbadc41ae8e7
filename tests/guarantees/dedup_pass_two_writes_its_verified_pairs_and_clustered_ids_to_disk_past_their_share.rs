//! Guarantee: under `--max-memory`, what pass 2 hands on stays within its
//! shares of the budget on a corpus with many duplicates: past their
//! share (`src/jobs/dedup/budget.rs`, `Shares::verified_pairs`: a
//! sixteenth) the verified pairs go to sorted runs
//! (`src/jobs/dedup/spill/verified.rs`), and when the candidates' ids
//! went to disk the clustered records' ids are joined into a run of their
//! own (`src/jobs/dedup/spill/ids.rs`), not into memory. The corpus is N
//! short documents followed by the same N under other ids: N verified
//! pairs, several times their share. The outputs are byte-identical to
//! the run without a limit; a run killed once the verified pairs went to
//! disk, or in pass 3 with pass 2's result on disk, resumes to the
//! uninterrupted outputs, and leaves nothing behind.
//!
//! The bound is on the run's own accounting (`verified_pairs_peak_bytes`
//! and `candidate_ids_peak_bytes` of the verify pass in `summary.json`),
//! not on time.

use std::io::Write;
use std::path::Path;
#[cfg(feature = "failpoints")]
use std::process::Command;
#[cfg(feature = "failpoints")]
use std::time::Duration;

#[cfg(feature = "failpoints")]
use crate::binary::{
    killed_at_a_checkpoint_after, least_budget_dedup, nothing_of_the_run_left, spawn, summary, wait,
};
use crate::mixed::{dedup_file, pass_named, words};

/// `documents` short texts with ids `doc-N`, then the same texts in the
/// same order with ids `copy-N`: every copy is removed, every pair of a
/// text and its copy verified.
fn write_twice(path: &Path, documents: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (prefix, seed) in [("doc", 0x7e1c_u64), ("copy", 0x7e1c_u64)] {
        let mut word = words(seed);
        for n in 0..documents {
            let text: Vec<String> = (0..24).map(|_| word()).collect();
            let record = serde_json::json!({"id": format!("{prefix}-{n}"), "text": text.join(" ")});
            writeln!(out, "{record}").unwrap();
        }
    }
}

#[test]
fn dedup_pass_two_writes_its_verified_pairs_and_clustered_ids_to_disk_past_their_share() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("twice.jsonl");
    let documents = 60_000;
    write_twice(&input, documents);
    // The least budget the run's own shares are tested at (as the other
    // budgeted guarantees): pairs of 16 bytes, several times their share.
    let budget = 4u64 << 20;
    let (pairs_share, ids_share) = (budget / 16, budget / 8);
    let (expected, unlimited) = dedup_file(&input, None);
    let verified = unlimited.result["verified_pairs"].as_u64().unwrap();
    assert_eq!(verified, documents as u64);
    assert!(verified * 16 > 3 * pairs_share, "{verified} verified pairs");
    let whole = pass_named(&unlimited, "verify");
    let held_whole = whole["verified_pairs_peak_bytes"].as_u64().unwrap();
    assert!(
        held_whole > 2 * pairs_share,
        "without a budget pass 2 holds the verified pairs whole: {whole}"
    );
    assert_eq!(whole["verified_pairs_spilled_bytes"], 0, "{whole}");

    let (got, limited) = dedup_file(&input, Some(budget));
    assert_eq!(limited.result["verified_pairs"].as_u64(), Some(verified));
    let verify = pass_named(&limited, "verify");
    let held = verify["verified_pairs_peak_bytes"].as_u64().unwrap();
    assert!(
        held > 0 && held <= pairs_share,
        "under {budget} bytes pass 2 held {held} bytes of verified pairs, over {pairs_share}"
    );
    assert!(
        verify["verified_pairs_spilled_bytes"].as_u64().unwrap() > 0,
        "{verify}"
    );
    let ids = verify["candidate_ids_peak_bytes"].as_u64().unwrap();
    assert!(ids <= ids_share, "ids held {ids} bytes, over {ids_share}");
    assert_eq!(verify["clustered_ids_on_disk"], true, "{verify}");
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert_eq!(removed, documents);
    assert_eq!(expected.len(), got.len());
    for ((name, want), (_, got)) in expected.iter().zip(&got) {
        assert!(want == got, "{name} differs from the run without a limit");
    }
}

#[cfg(feature = "failpoints")]
const DEADLINE: Duration = Duration::from_secs(300);

#[cfg(feature = "failpoints")]
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

#[cfg(feature = "failpoints")]
fn outputs(out: &Path) -> Vec<Option<Vec<u8>>> {
    OUTPUTS
        .iter()
        .map(|name| std::fs::read(out.join(name)).ok())
        .collect()
}

/// Runs `cmd` to its end; asserts it exits 0; gives its stderr.
#[cfg(feature = "failpoints")]
fn finish(cmd: Command, what: &str) -> String {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{what}: {stderr}");
    stderr
}

#[cfg(feature = "failpoints")]
#[test]
fn a_budgeted_dedup_killed_after_its_verified_pairs_went_to_disk_resumes_to_the_uninterrupted_outputs(
) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("twice.jsonl");
    // Under the least budget (28M: a share of 1.75 MiB, 114,688 pairs),
    // the pairs go to disk a little past half of the copies.
    write_twice(&input, 200_000);
    let whole = dir.path().join("whole");
    finish(least_budget_dedup(&input, &whole), "uninterrupted");
    let passes = summary(&whole)["result"]["passes"].clone();
    let verify = passes
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pass"] == "verify")
        .unwrap();
    assert!(
        verify["verified_pairs_spilled_bytes"].as_u64().unwrap_or(0) > 0,
        "pass 2 must write its verified pairs to disk for this test to mean anything: {passes}"
    );
    nothing_of_the_run_left(&whole, "uninterrupted");
    let expected = outputs(&whole);
    assert!(expected[0].is_some() && expected[1].is_some());
    std::fs::remove_dir_all(&whole).unwrap();

    for stage in ["pass 2 with its pairs on disk", "pass 3"] {
        let out = dir.path().join(stage.replace(' ', "-"));
        let mut cmd = least_budget_dedup(&input, &out);
        if stage == "pass 3" {
            // Pass 2's result, naming its runs, is kept: the resumed run
            // loads it and reads the pairs and ids from those runs.
            cmd.env("FAILPOINTS", "dedup::pass3=return");
            let (output, _) = wait(spawn(cmd), DEADLINE);
            assert_eq!(
                output.status.code(),
                None,
                "{stage}: not killed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        } else {
            // Records slowed (2 ms on 2% of them), so that checkpoints
            // fall after the pairs went to disk.
            cmd.env("FAILPOINTS", "processor::record=2%sleep(2)");
            killed_at_a_checkpoint_after(cmd, "the verified pairs pass their share");
        }
        let mut resume = least_budget_dedup(&input, &out);
        resume.arg("--resume");
        let stderr = finish(resume, stage);
        if stage == "pass 3" {
            let passes = summary(&out)["result"]["passes"].clone();
            let loaded = passes
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["pass"] == "verify" && p["loaded"] == true);
            assert!(loaded, "{stage}: pass 2's result was not loaded: {passes}");
        } else {
            // Killed after a checkpoint written once the pairs were on
            // disk: that checkpoint names their runs.
            assert!(
                stderr.contains("runs of verified pairs on disk"),
                "{stage}: the checkpoint named no run of verified pairs: {stderr}"
            );
        }
        assert!(
            outputs(&out) == expected,
            "{stage}: the outputs ({OUTPUTS:?}) differ from the uninterrupted run's: {stderr}"
        );
        assert_eq!(summary(&out)["exit"], "complete", "{stage}: {stderr}");
        nothing_of_the_run_left(&out, stage);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
