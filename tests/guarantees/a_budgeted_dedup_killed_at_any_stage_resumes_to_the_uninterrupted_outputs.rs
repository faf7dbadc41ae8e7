//! A dedup run under a memory budget small enough to spill, killed with
//! SIGKILL at each stage (pass 1 spilling, after a checkpoint; pass 1
//! merging its runs; pass 2 finishing with its spilled sets; pass 3 with
//! `clusters.jsonl` half-committed; between the renames of the commit),
//! then run again with `--resume`: the outputs are byte-identical to an
//! uninterrupted run's, and nothing of the killed run stays (no temporary
//! file in the output folder, no temporary folder, no checkpoint, no
//! pass file). The kills are the crash points of
//! `src/jobs/dedup/crash.rs` (SIGKILL sent by the process to itself at
//! that stage), except the first, sent by the test once a checkpoint of
//! the spilling pass is written.

#![cfg(feature = "failpoints")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::binary::{
    drainpipe, killed_at_a_checkpoint_after, least_budget_dedup, nothing_of_the_run_left, spawn,
    summary, wait,
};

const DEADLINE: Duration = Duration::from_secs(300);

/// 100,000 documents of the demo corpus (200 MB): enough for pass 1 to
/// spill several times and pass 2 at least once under the budget below.
fn corpus(dir: &Path) -> PathBuf {
    let path = dir.join("in.jsonl");
    let status = drainpipe()
        .args(["generate", "--docs", "100000", "-o"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// `dedup INPUT -o OUT` under the least budget (one worker, a window of
/// one), with a checkpoint every second.
fn dedup(input: &Path, out: &Path) -> Command {
    least_budget_dedup(input, out)
}

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

/// Each output's length and digest (`None` when absent), read a block at
/// a time: `kept.jsonl` is about 180 MB, and only one run's outputs are
/// kept on disk at once.
fn digests(out: &Path) -> Vec<Option<(u64, u64)>> {
    use std::hash::Hasher;
    use std::io::Read;
    OUTPUTS
        .iter()
        .map(|name| {
            let mut file = std::io::BufReader::new(std::fs::File::open(out.join(name)).ok()?);
            let (mut hasher, mut block, mut len) =
                (std::hash::DefaultHasher::new(), vec![0u8; 1 << 16], 0u64);
            loop {
                let n = file.read(&mut block).unwrap();
                if n == 0 {
                    return Some((len, hasher.finish()));
                }
                hasher.write(&block[..n]);
                len += n as u64;
            }
        })
        .collect()
}

/// Runs `cmd` to its end; asserts its exit code.
fn finish(cmd: Command, code: i32, what: &str) -> String {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
    stderr
}

#[test]
fn a_budgeted_dedup_killed_at_any_stage_resumes_to_the_uninterrupted_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let whole = dir.path().join("whole");
    finish(dedup(&input, &whole), 0, "uninterrupted");
    assert!(whole.join("kept.jsonl").exists() && whole.join("clusters.jsonl").exists());
    let passes = summary(&whole)["result"]["passes"].clone();
    assert!(
        passes[0]["spill_runs"].as_u64().unwrap_or(0) >= 2
            && passes[1]["spill_runs"].as_u64().unwrap_or(0) >= 1,
        "passes 1 and 2 must spill for this test to mean anything: {passes}"
    );
    nothing_of_the_run_left(&whole, "uninterrupted");
    let expected = digests(&whole);
    std::fs::remove_dir_all(&whole).unwrap();

    let stages = [
        ("pass 1 spilling", None),
        ("pass 1 merging", Some("dedup::pass1_merging=return")),
        ("pass 2 finishing", Some("dedup::pass2_finishing=return")),
        ("pass 3", Some("dedup::pass3=return")),
        ("the commit", Some("output::rename=return(clusters.jsonl)")),
    ];
    for (stage, crash) in stages {
        let out = dir.path().join(stage.replace(' ', "-"));
        match crash {
            None => {
                // Pass 1 slowed (2 ms on 2% of the records), so that a
                // checkpoint falls between two of its spills.
                let mut cmd = dedup(&input, &out);
                cmd.env("FAILPOINTS", "processor::record=2%sleep(2)");
                killed_at_a_checkpoint_after(cmd, "spilling them to sorted runs");
            }
            Some(point) => {
                let mut cmd = dedup(&input, &out);
                cmd.env("FAILPOINTS", point);
                let (output, _) = wait(spawn(cmd), DEADLINE);
                assert_eq!(
                    output.status.code(),
                    None,
                    "{stage}: not killed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        let mut resume = dedup(&input, &out);
        resume.arg("--resume");
        let stderr = finish(resume, 0, stage);
        assert_eq!(
            digests(&out),
            expected,
            "{stage}: the outputs ({OUTPUTS:?}) differ from the uninterrupted run's"
        );
        assert_eq!(summary(&out)["exit"], "complete", "{stage}: {stderr}");
        nothing_of_the_run_left(&out, stage);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
