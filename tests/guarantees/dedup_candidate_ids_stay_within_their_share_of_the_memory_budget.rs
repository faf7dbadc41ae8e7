//! Guarantee: under `--max-memory`, pass 2's candidates' ids (kept for
//! `clusters.jsonl`) stay within their share of the budget
//! (`src/jobs/dedup/budget.rs`, `Shares::candidate_ids`: an eighth, and
//! at most twice that while a vector doubles), however many candidates
//! the input has: those of candidates that can no longer be in a cluster
//! are dropped. Without a budget the same corpus holds several times the
//! bound, and the outputs are byte-identical either way.
//!
//! The bound is on the run's own accounting of the bytes it holds
//! (`candidate_ids_peak_bytes` of pass 2 in `summary.json`), not on time.

use drainpipe_actors::RunReport;

use crate::mixed::{dedup_file, pass_named, words};

/// Pairs of adjacent records: the second is the first with two words
/// changed (Jaccard about 0.7 on 5-word shingles: mostly a candidate
/// pair, never a verified one), except every 50th pair, an exact copy.
/// Ids are long, so that the ids' bytes are most of what pass 2 holds.
fn lines(pairs: usize) -> Vec<String> {
    let mut word = words(0x5eed_u64);
    let line = |n: usize, words: &[String]| {
        serde_json::json!({
            "id": format!("a-rather-long-document-identifier-{n:08}"),
            "text": words.join(" "),
        })
        .to_string()
    };
    let mut lines = Vec::new();
    for p in 0..pairs {
        let first: Vec<String> = (0..60).map(|_| word()).collect();
        let mut second = first.clone();
        if p % 50 != 0 {
            second[20] = word();
            second[40] = word();
        }
        lines.push(line(2 * p, &first));
        lines.push(line(2 * p + 1, &second));
    }
    lines
}

fn ids_peak(report: &RunReport) -> u64 {
    pass_named(report, "verify")["candidate_ids_peak_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn dedup_candidate_ids_stay_within_their_share_of_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(10_000).join("\n") + "\n").unwrap();
    let budget = 1u64 << 20;
    let bound = budget / 4;
    let (expected, unlimited) = dedup_file(&input, None);
    let candidates = unlimited.result["candidate_pairs"].as_u64().unwrap();
    assert!(candidates > 5_000, "{candidates} candidate pairs");
    assert!(
        ids_peak(&unlimited) > 2 * bound,
        "without a budget the ids hold {} bytes: the corpus must pass the bound",
        ids_peak(&unlimited)
    );
    let (got, limited) = dedup_file(&input, Some(budget));
    assert!(
        ids_peak(&limited) <= bound,
        "under {budget} bytes the candidates' ids held {} bytes, over {bound}",
        ids_peak(&limited)
    );
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(removed >= 150, "{removed} removed records");
    for ((name, want), (_, got)) in expected.iter().zip(&got) {
        assert!(want == got, "{name} differs from the run without a limit");
    }
}
