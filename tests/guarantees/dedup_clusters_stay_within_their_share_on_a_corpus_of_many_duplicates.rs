//! Guarantee: under `--max-memory`, the clusters made from the verified
//! pairs stay within their share of the budget (`src/jobs/dedup/budget.rs`,
//! `Shares::clusters`: a quarter) however many records are duplicates:
//! past it (about 112 bytes a verified pair, known before they are made)
//! the connected components are made with sorted runs read front to back
//! (`src/jobs/dedup/spill/components.rs`), and the removed records, past a
//! quarter of the share, are read back from a run by pass 3. The outputs
//! are byte-identical to those of a run without a budget.
//!
//! The corpus is mostly duplicates: clusters of 2 to 9 records, each a
//! chain of near-copies (each copy one word off the one before it, so
//! records two steps apart are not a verified pair and a cluster holds
//! together through its chain only), shuffled within blocks of records.

use drainpipe::jobs::dedup::budget::Shares;
use drainpipe::jobs::dedup::clusters::IN_MEMORY_PAIR_BYTES;

use crate::mixed::{dedup_file, words};

/// `clusters` chains of near-copies of 80 words and as many singletons,
/// shuffled within blocks.
pub(crate) fn lines(clusters: usize) -> Vec<String> {
    let mut word = words(0xc1_u64);
    let mut texts = Vec::new();
    for c in 0..clusters {
        let mut text: Vec<String> = (0..80).map(|_| word()).collect();
        texts.push(text.join(" "));
        for step in 0..1 + c % 8 {
            text[(7 + 11 * step) % 80] = word();
            texts.push(text.join(" "));
        }
        texts.push((0..80).map(|_| word()).collect::<Vec<_>>().join(" "));
    }
    // A fixed permutation within blocks of 100 records: the members of a
    // cluster apart, not so far that pass 2 holds many records' shingle
    // sets at once (what it holds past its share is another guarantee).
    let n = texts.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| {
        (
            i / 100,
            (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20,
        )
    });
    order
        .iter()
        .enumerate()
        .map(|(at, &i)| {
            serde_json::json!({ "id": format!("doc-{at}"), "text": texts[i] }).to_string()
        })
        .collect()
}

#[test]
fn dedup_clusters_stay_within_their_share_on_a_corpus_of_many_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(2_000).join("\n") + "\n").unwrap();
    let budget = 1u64 << 20;
    let share = Shares { max_memory: budget }.clusters();
    let (expected, unlimited) = dedup_file(&input, None);
    let verified = unlimited.result["verified_pairs"].as_u64().unwrap();
    let removed = unlimited.result["duplicates_removed"].as_u64().unwrap();
    // Past the share by far: the components are made with runs, and the
    // removed records (16 bytes each in memory) pass a quarter of it.
    assert!(
        verified * IN_MEMORY_PAIR_BYTES > 2 * share,
        "{verified} verified pairs fit the share of {share} bytes"
    );
    assert!(removed * 16 > share / 4, "{removed} removed records");
    // Chains: fewer verified pairs than pairs of a cluster's members.
    assert!(unlimited.result["clusters"].as_u64().unwrap() > 1_500);
    assert_eq!(unlimited.result["clusters_spilled_bytes"], 0);
    let (got, limited) = dedup_file(&input, Some(budget));
    // Made with runs: at least the removed records' run (10 bytes or more
    // each: a record, its kept record, the similarity's 8 bytes).
    let spilled = limited.result["clusters_spilled_bytes"].as_u64().unwrap();
    assert!(spilled > 10 * removed, "{spilled} bytes spilled");
    assert_eq!(limited.result["duplicates_removed"], removed);
    assert_eq!(
        limited.result["cluster_sizes"],
        unlimited.result["cluster_sizes"]
    );
    assert_eq!(got.len(), expected.len());
    for ((name, bytes), (_, want)) in got.iter().zip(&expected) {
        assert!(
            bytes == want,
            "{name} differs under a budget of {budget} bytes"
        );
    }
}
