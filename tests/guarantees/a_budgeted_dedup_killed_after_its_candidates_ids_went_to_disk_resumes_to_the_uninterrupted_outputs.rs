//! A dedup run under a memory budget whose pass 2 writes its candidates'
//! ids to disk (every candidate of the first half of the corpus waits for
//! a near-copy in the second half: more ids than their share), killed
//! with SIGKILL in pass 2 once a checkpoint was written after the ids
//! went to disk, and again as pass 2 finishes, then run again with
//! `--resume`: the outputs are byte-identical to an uninterrupted run's,
//! under `--keep longest` (whose keys go to disk beside the ids), the
//! run resumed from the first kill takes up the runs of ids its
//! checkpoint and nothing
//! of the killed run stays (no temporary folder, no checkpoint, no pass
//! file).

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binary::{
    killed_at_a_checkpoint_after, least_budget_dedup, nothing_of_the_run_left, spawn, summary, wait,
};
use crate::mixed::write_far_apart;

const DEADLINE: Duration = Duration::from_secs(300);

/// `dedup INPUT -o OUT` under the least budget (one worker, a window of
/// one), with a checkpoint every second.
fn dedup(input: &Path, out: &Path) -> Command {
    let mut cmd = least_budget_dedup(input, out);
    cmd.args(["--keep", "longest"]);
    cmd
}

const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

fn outputs(out: &Path) -> Vec<Option<Vec<u8>>> {
    OUTPUTS
        .iter()
        .map(|name| std::fs::read(out.join(name)).ok())
        .collect()
}

/// Runs `cmd` to its end; asserts its exit code; gives its stderr.
fn finish(cmd: Command, code: i32, what: &str) -> String {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
    stderr
}

#[test]
fn a_budgeted_dedup_killed_after_its_candidates_ids_went_to_disk_resumes_to_the_uninterrupted_outputs(
) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_far_apart(&input, 80_000);
    let whole = dir.path().join("whole");
    finish(dedup(&input, &whole), 0, "uninterrupted");
    let passes = summary(&whole)["result"]["passes"].clone();
    let verify = passes
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pass"] == "verify")
        .unwrap();
    assert!(
        verify["candidate_ids_spilled_bytes"].as_u64().unwrap_or(0) > 0,
        "pass 2 must write its ids to disk for this test to mean anything: {passes}"
    );
    nothing_of_the_run_left(&whole, "uninterrupted");
    let expected = outputs(&whole);
    assert!(expected[0].is_some() && expected[1].is_some());
    std::fs::remove_dir_all(&whole).unwrap();

    for stage in ["pass 2 with its ids on disk", "pass 2 finishing"] {
        let out = dir.path().join(stage.replace(' ', "-"));
        let mut cmd = dedup(&input, &out);
        if stage == "pass 2 finishing" {
            // Records slowed as below, so that checkpoints are likely to
            // fall after the ids went to disk.
            cmd.env(
                "FAILPOINTS",
                "processor::record=2%sleep(2);dedup::pass2_finishing=return",
            );
            let (output, _) = wait(spawn(cmd), DEADLINE);
            assert_eq!(
                output.status.code(),
                None,
                "{stage}: not killed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        } else {
            // Records slowed (2 ms on 2% of them), so that checkpoints fall
            // between two runs of ids.
            cmd.env("FAILPOINTS", "processor::record=2%sleep(2)");
            killed_at_a_checkpoint_after(cmd, "the candidates' ids pass their share");
        }
        let mut resume = dedup(&input, &out);
        resume.arg("--resume");
        let stderr = finish(resume, 0, stage);
        // Killed after a checkpoint written once the ids were on disk:
        // that checkpoint names their runs. (Which checkpoint comes last
        // before pass 2 finishes depends on timing.)
        if stage == "pass 2 with its ids on disk" {
            assert!(
                stderr.contains("runs of candidates' ids on disk"),
                "{stage}: the checkpoint named no run of ids: {stderr}"
            );
        }
        assert!(
            outputs(&out) == expected,
            "{stage}: the outputs ({OUTPUTS:?}) differ from the uninterrupted run's"
        );
        assert_eq!(summary(&out)["exit"], "complete", "{stage}: {stderr}");
        nothing_of_the_run_left(&out, stage);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
