//! Guarantee: under `--max-memory`, a `--keep` policy other than `first`
//! (`longest`, `field:NAME`) makes its clusters within their share of the
//! budget (`src/jobs/dedup/budget.rs`, `Shares::clusters`): past it, the
//! kept record of each cluster is chosen with sorted runs read front to
//! back (`src/jobs/dedup/spill/ranked.rs`), the clustered records' keys
//! read in record order, never looked up by record nor held whole. The
//! outputs (`kept.jsonl`, `clusters.jsonl`) are byte-identical to those
//! of a run without a budget, and so are the summary's clusters, cluster
//! sizes, removed records and `keep` (with the clustered records that
//! have no usable field); nothing is left in the temporary folder.
//!
//! The corpus is mostly duplicates, far apart: every cluster's first
//! record, then its near-copies (one word changed, some a word longer or
//! shorter), so the candidates' ids wait for their partners and go to
//! disk too. Each record has a `score`: integers, floats (2^53 as an
//! integer, a float and the integer above it, which compare by kind),
//! strings, null, or none, with ties.

use std::path::Path;

use drainpipe::jobs::dedup::budget::Shares;
use drainpipe::jobs::dedup::clusters::IN_MEMORY_PAIR_BYTES;
use drainpipe::jobs::dedup::{self, DedupParams};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, RunReport, TEMP_FOLDER};
use serde_json::{json, Value};

use crate::mixed::{outputs, pass_named, words};

/// Clusters in the corpus.
const CLUSTERS: usize = 3_000;

/// A record's `score` (`None`: absent).
fn score(cluster: usize, member: usize) -> Option<Value> {
    Some(match (cluster + 2 * member) % 10 {
        0 => json!(3),
        1 => json!(3.0),
        2 => json!("b"),
        3 => return None,
        4 => Value::Null,
        5 => json!(9_007_199_254_740_993_u64),
        6 => json!(9_007_199_254_740_992.0),
        7 => json!("a"),
        8 => json!(9_007_199_254_740_992_u64),
        _ => json!(-1.5),
    })
}

/// Every cluster's first record (`doc-N`), then each one's near-copies
/// (`copy-N-K`).
fn write_corpus(path: &Path) {
    let mut word = words(0x6b_u64);
    let firsts: Vec<Vec<String>> = (0..CLUSTERS)
        .map(|c| (0..60 + c % 5).map(|_| word()).collect())
        .collect();
    let mut lines = Vec::new();
    let mut line = |id: String, text: &[String], score: Option<Value>| {
        let mut record = json!({ "id": id, "text": text.join(" ") });
        if let Some(score) = score {
            record["score"] = score;
        }
        lines.push(record.to_string());
    };
    for (c, text) in firsts.iter().enumerate() {
        line(format!("doc-{c}"), text, score(c, 0));
    }
    for (c, first) in firsts.iter().enumerate() {
        for k in 0..1 + c % 3 {
            let mut text = first.clone();
            text[(5 + 13 * k) % 40] = word();
            match (c + k) % 4 {
                1 => text.push(format!("longer{k}")),
                2 => {
                    text.pop();
                }
                _ => {}
            }
            line(format!("copy-{c}-{k}"), &text, score(c, k + 1));
        }
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `dedup` of `input` under `--keep keep` and `--max-memory max_memory`
/// (none: no budget): its outputs and report, once it is seen to have
/// completed and to have left nothing in its temporary folder.
fn run(input: &Path, keep: &str, max_memory: Option<u64>) -> (Vec<(String, Vec<u8>)>, RunReport) {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(
        vec![input.to_owned()],
        OutputDir::create(dir.path()).unwrap(),
    );
    ctx.max_memory = max_memory;
    let params = DedupParams {
        keep: keep.parse().unwrap(),
        ..DedupParams::default()
    };
    let report = dedup::run(&ctx, &params).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    let temp = dir.path().join(TEMP_FOLDER);
    let left: Vec<_> = std::fs::read_dir(&temp)
        .map(|list| list.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "--keep {keep}: {left:?} left in {temp:?}");
    (outputs(dir.path()), report)
}

#[test]
fn every_keep_policy_makes_its_clusters_within_their_share_with_the_outputs_of_an_unbudgeted_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    write_corpus(&input);
    let budget = 1u64 << 20;
    let share = Shares { max_memory: budget }.clusters();
    for keep in ["longest", "field:score", "field:score:asc"] {
        let (expected, unlimited) = run(&input, keep, None);
        let verified = unlimited.result["verified_pairs"].as_u64().unwrap();
        assert!(
            verified * IN_MEMORY_PAIR_BYTES > 2 * share,
            "{keep}: {verified} verified pairs fit the share of {share} bytes"
        );
        assert!(unlimited.result["clusters"].as_u64().unwrap() > CLUSTERS as u64 / 2);
        assert_eq!(unlimited.result["clusters_spilled_bytes"], 0);
        // The policy keeps later records: a copy is some removed record's
        // kept one.
        let clusters = String::from_utf8(expected[1].1.clone()).unwrap();
        assert!(
            clusters.contains("\"duplicate_of\":\"copy-"),
            "{keep}: every cluster keeps its first record"
        );
        if keep.starts_with("field:") {
            let missing = unlimited.result["keep"]["missing_field"].as_u64().unwrap();
            assert!(missing > 0, "{keep}: no clustered record without a score");
        }
        let (got, limited) = run(&input, keep, Some(budget));
        let spilled = limited.result["clusters_spilled_bytes"].as_u64().unwrap();
        assert!(spilled > 0, "{keep}: the clusters were made in memory");
        // The keys were read back from the candidates' ids' run.
        let ids = pass_named(&limited, "verify")["candidate_ids_spilled_bytes"].as_u64();
        assert!(ids.unwrap_or(0) > 0, "{keep}: the ids stayed in memory");
        for field in ["clusters", "cluster_sizes", "duplicates_removed", "keep"] {
            assert_eq!(
                limited.result[field], unlimited.result[field],
                "{keep}: the summary's {field}"
            );
        }
        assert_eq!(got.len(), expected.len());
        for ((name, bytes), (_, want)) in got.iter().zip(&expected) {
            assert!(
                bytes == want,
                "{keep}: {name} differs under a budget of {budget} bytes"
            );
        }
    }
}
