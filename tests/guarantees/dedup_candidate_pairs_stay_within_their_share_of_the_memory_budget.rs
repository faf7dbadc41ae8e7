//! Guarantee: under `--max-memory`, pass 1's candidate pairs, as the
//! merge of the bands' runs makes them (every band's pairs, the repeats
//! across bands included), stay within their share of the budget
//! (`src/jobs/dedup/budget.rs`, `Shares::pairs`: a quarter): past it they
//! go to sorted runs, merged into the same pairs without the repeats
//! (`src/jobs/dedup/spill/pairs.rs`). The corpus makes several times the
//! bound in pairs, and the outputs are byte-identical to the run without
//! a limit.
//!
//! The bound is on the run's own accounting of the bytes its lists hold
//! (`candidate_pairs_peak_bytes` of pass 1 in `summary.json`), not on
//! time.

use drainpipe_actors::RunReport;

use crate::mixed::{dedup_file, pass_named, words};

/// Groups of three records: a text, its exact copy, and the text with
/// one word changed (Jaccard about 0.76 on 5-word shingles: a candidate,
/// not a duplicate); each group's three pairs share most bands, so the
/// merge makes each pair many times, and each copy is removed.
fn lines(groups: usize) -> Vec<String> {
    let mut word = words(0xfa11_u64);
    let line = |n: usize, words: &[String]| {
        serde_json::json!({"id": format!("doc-{n}"), "text": words.join(" ")}).to_string()
    };
    let mut lines = Vec::new();
    for g in 0..groups {
        let first: Vec<String> = (0..40).map(|_| word()).collect();
        let mut third = first.clone();
        third[20] = word();
        lines.push(line(3 * g, &first));
        lines.push(line(3 * g + 1, &first));
        lines.push(line(3 * g + 2, &third));
    }
    lines
}

fn signatures(report: &RunReport) -> serde_json::Value {
    pass_named(report, "signatures")
}

#[test]
fn dedup_candidate_pairs_stay_within_their_share_of_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(6_000).join("\n") + "\n").unwrap();
    let budget = 1u64 << 20;
    let bound = budget / 4;
    let (expected, unlimited) = dedup_file(&input, None);
    let (got, limited) = dedup_file(&input, Some(budget));
    let pass1 = signatures(&limited);
    let made = pass1["candidate_pairs_made"].as_u64().unwrap();
    assert!(
        made * 8 > 4 * bound,
        "the merge made {made} pairs: the corpus must pass the bound several times"
    );
    let peak = pass1["candidate_pairs_peak_bytes"].as_u64().unwrap();
    assert!(peak > 0, "the pairs' lists are counted");
    assert!(
        peak <= bound,
        "under {budget} bytes the pairs as made held {peak} bytes, over {bound}"
    );
    assert!(
        pass1["candidate_pairs_bytes_spilled"].as_u64().unwrap() > 0,
        "past their share the pairs went to sorted runs"
    );
    // The same pairs, without their repeats, as without a limit.
    let pairs = limited.result["candidate_pairs"].as_u64().unwrap();
    assert_eq!(pairs, unlimited.result["candidate_pairs"].as_u64().unwrap());
    assert!(
        pairs >= 3 * 5_000 && pairs < made,
        "{pairs} pairs of {made} made"
    );
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(removed >= 6_000, "{removed} removed records");
    assert_eq!(expected.len(), got.len());
    for ((name, want), (_, got)) in expected.iter().zip(&got) {
        assert!(want == got, "{name} differs from the run without a limit");
    }
}
