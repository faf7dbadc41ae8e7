//! Guarantee: under `--max-memory`, the candidate pairs pass 1 hands pass
//! 2, and each earlier record's last partner, stay within their share of
//! the budget in pass 2 (`src/jobs/dedup/budget.rs`,
//! `Shares::verify_pairs`: a sixteenth): past it pass 1 writes them to
//! two sorted runs and pass 2 reads them front to back
//! (`src/jobs/dedup/spill/pair_files.rs`,
//! `src/jobs/dedup/passes/verify/job/partners.rs`). The corpus has
//! several times the share in pairs; the outputs are byte-identical to
//! the run without a limit, and a run killed in pass 2 while it reads
//! them resumes to the same outputs.
//!
//! The bound is on the run's own accounting of the bytes pass 2 holds
//! for the pairs (`candidate_pairs_peak_bytes` of the verify pass in
//! `summary.json`: the pairs and the last-partner table in memory, the
//! files' read buffers and the held sets' last partners on disk), not on
//! time.

use std::path::Path;
#[cfg(feature = "failpoints")]
use std::time::Duration;

#[cfg(feature = "failpoints")]
use crate::binary::{
    killed_at_a_checkpoint_after, least_budget_dedup, names, spawn, summary, wait,
};
use crate::mixed::{dedup_file, pass_named, words};

/// Groups of ten records: a text, its exact copy (removed), and eight
/// variants each with one word changed at its own place (mostly
/// candidates of the text, of its copy and of each other, rarely
/// duplicates): many pairs for few records.
fn lines(groups: usize) -> Vec<String> {
    let mut word = words(0x9a1e_u64);
    let line = |n: usize, words: &[String]| {
        serde_json::json!({"id": format!("doc-{n}"), "text": words.join(" ")}).to_string()
    };
    let mut lines = Vec::new();
    for g in 0..groups {
        let first: Vec<String> = (0..40).map(|_| word()).collect();
        lines.push(line(10 * g, &first));
        lines.push(line(10 * g + 1, &first));
        for v in 0..8 {
            let mut variant = first.clone();
            variant[4 * v + 4] = word();
            lines.push(line(10 * g + 2 + v, &variant));
        }
    }
    lines
}

fn write_corpus(path: &Path, groups: usize) {
    std::fs::write(path, lines(groups).join("\n") + "\n").unwrap();
}

#[test]
fn dedup_pass_two_reads_the_candidate_pairs_from_disk_past_their_share() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    write_corpus(&input, 3_000);
    let budget = 4u64 << 20;
    let share = budget / 16;
    let (expected, unlimited) = dedup_file(&input, None);
    let pairs = unlimited.result["candidate_pairs"].as_u64().unwrap();
    assert!(
        pairs * 16 > 4 * share,
        "{pairs} candidate pairs: the corpus must pass the share several times"
    );
    let held_whole = pass_named(&unlimited, "verify")["candidate_pairs_peak_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        held_whole > 2 * share,
        "without a budget pass 2 holds the pairs whole ({held_whole} bytes)"
    );
    let (got, limited) = dedup_file(&input, Some(budget));
    assert_eq!(limited.result["candidate_pairs"].as_u64(), Some(pairs));
    assert_eq!(
        pass_named(&limited, "signatures")["candidate_pairs_on_disk"],
        true,
        "pass 1 handed the pairs on disk"
    );
    let verify = pass_named(&limited, "verify");
    assert_eq!(verify["candidate_pairs_on_disk"], true, "{verify}");
    let held = verify["candidate_pairs_peak_bytes"].as_u64().unwrap();
    assert!(
        held > 0 && held <= share,
        "under {budget} bytes pass 2 held {held} bytes for the pairs, over {share}"
    );
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(removed >= 3_000, "{removed} removed records");
    assert_eq!(expected.len(), got.len());
    for ((name, want), (_, got)) in expected.iter().zip(&got) {
        assert!(want == got, "{name} differs from the run without a limit");
    }
}

#[cfg(feature = "failpoints")]
const DEADLINE: Duration = Duration::from_secs(300);

/// `dedup INPUT -o OUT` under the least budget (one worker, a window of
/// one), with a checkpoint every second.
#[cfg(feature = "failpoints")]
fn dedup(input: &Path, out: &Path) -> std::process::Command {
    least_budget_dedup(input, out)
}

#[cfg(feature = "failpoints")]
fn finish(cmd: std::process::Command, what: &str) -> String {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{what}: {stderr}");
    stderr
}

#[cfg(feature = "failpoints")]
fn outputs(out: &Path) -> Vec<Vec<u8>> {
    ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"]
        .iter()
        .map(|name| std::fs::read(out.join(name)).unwrap_or_default())
        .collect()
}

#[cfg(feature = "failpoints")]
#[test]
fn a_dedup_killed_while_pass_two_reads_the_pairs_from_disk_resumes_to_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    write_corpus(&input, 6_000);
    let whole = dir.path().join("whole");
    let stderr = finish(dedup(&input, &whole), "uninterrupted");
    assert!(
        stderr.contains("candidate pairs from"),
        "pass 2 must read the pairs from disk for this test to mean anything: {stderr}"
    );
    let expected = outputs(&whole);

    // Killed (SIGKILL) at the first checkpoint after pass 2 began to read
    // the pairs from disk; its processors slowed so that checkpoints fall
    // inside it.
    let out = dir.path().join("killed");
    let mut cmd = dedup(&input, &out);
    cmd.env("FAILPOINTS", "processor::record=10%sleep(2)");
    killed_at_a_checkpoint_after(cmd, "candidate pairs from");

    let mut resume = dedup(&input, &out);
    resume.arg("--resume");
    let stderr = finish(resume, "resumed");
    let resumed_at = stderr
        .lines()
        .find_map(|l| l.split("(from pair ").nth(1))
        .and_then(|rest| rest.trim_end_matches(')').parse::<u64>().ok());
    assert!(
        resumed_at.is_some_and(|at| at > 0),
        "the resumed pass 2 took up the pairs where the checkpoint left them: {stderr}"
    );
    assert!(
        outputs(&out) == expected,
        "the resumed run's outputs differ from the uninterrupted run's"
    );
    assert_eq!(summary(&out)["exit"], "complete");
    let left: Vec<String> = names(&out)
        .into_iter()
        .filter(|n| n.ends_with(".bin") || n.starts_with(".drainpipe-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
