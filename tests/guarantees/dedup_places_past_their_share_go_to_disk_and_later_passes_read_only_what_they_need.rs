//! Guarantee: under `--max-memory`, the records' places that pass their
//! share of the budget (`src/jobs/dedup/budget.rs`, `Shares::places`) go
//! to disk in record order (`src/jobs/dedup/spill/places.rs`) instead of
//! being dropped, so pass 2 still reads the candidate records only and
//! pass 3 still copies the kept records' byte ranges beside pass 2: no
//! later pass reads the whole input again. The outputs are byte-identical
//! to a run without a limit, and a complete run leaves no run of places.
//!
//! Observable in `summary.json`: `result.reads` (how passes 2 and 3 read),
//! the kept pass `beside` the verify pass, and the signatures pass's
//! `places_spilled_bytes`.

use std::path::Path;

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe_actors::RunReport;

use crate::mixed::{assert_same_outputs, dedup_file, pass_named};

/// 30,000 documents with the demo corpus's near-duplicates, in one JSON
/// Lines file (uncompressed: every record has a place).
fn input(dir: &Path) -> std::path::PathBuf {
    let corpus = Corpus::new(CorpusSpec {
        docs: 30_000,
        min_words: 30,
        max_words: 80,
        ..CorpusSpec::default()
    });
    let lines: Vec<String> = corpus
        .docs()
        .enumerate()
        .map(|(i, doc)| serde_json::json!({ "id": format!("d{i}"), "text": doc.text }).to_string())
        .collect();
    let path = dir.join("input.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// How passes 2 and 3 read, and the pass the kept pass ran beside.
fn reads(report: &RunReport) -> (serde_json::Value, serde_json::Value) {
    (
        report.result["reads"].clone(),
        pass_named(report, "kept")["beside"].clone(),
    )
}

#[test]
fn dedup_places_past_their_share_go_to_disk_and_later_passes_read_only_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (expected, unlimited) = dedup_file(&input, None);
    let only_needed = (
        serde_json::json!({ "verify": "candidate records", "kept": "copied byte ranges" }),
        serde_json::json!("verify"),
    );
    assert_eq!(reads(&unlimited), only_needed, "{}", unlimited.result);
    assert_eq!(
        pass_named(&unlimited, "signatures")["places_spilled_bytes"].as_u64(),
        Some(0)
    );
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(removed > 500, "{removed} removed records");
    // 1 MiB: the places' share is 128 KiB, about 11,000 records' places;
    // the other 19,000 go to disk.
    let (got, limited) = dedup_file(&input, Some(1 << 20));
    let spilled = pass_named(&limited, "signatures")["places_spilled_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        spilled > 3 * 30_000,
        "{spilled} bytes of places on disk: {}",
        limited.result
    );
    assert_eq!(reads(&limited), only_needed, "{}", limited.result);
    assert_same_outputs(
        &expected,
        &got,
        "budget 1 MiB, against the run without a limit",
    );
}

/// Under a budget whose share cannot hold the candidates' places
/// (`Shares::candidate_places`, counted as two records a candidate pair),
/// pass 2 reads the whole input instead of building their list; the kept
/// records are still copied at their places, read from disk in order, and
/// the outputs are the same.
#[test]
fn dedup_candidates_past_their_places_share_are_found_by_reading_the_whole_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (expected, unlimited) = dedup_file(&input, None);
    let pairs = unlimited.result["candidate_pairs"].as_u64().unwrap();
    // 28 bytes a candidate record, two a pair, a quarter of the budget:
    // a budget of a quarter of that cannot hold them.
    let budget = 2 * pairs * 28;
    let (got, limited) = dedup_file(&input, Some(budget));
    let whole = (
        serde_json::json!({ "verify": "whole input", "kept": "copied byte ranges" }),
        serde_json::Value::Null,
    );
    assert_eq!(reads(&limited), whole, "{}", limited.result);
    let spilled = pass_named(&limited, "signatures")["places_spilled_bytes"]
        .as_u64()
        .unwrap();
    assert!(spilled > 0, "{}", limited.result);
    assert_same_outputs(
        &expected,
        &got,
        "a budget too small for the candidates' places, against the run without a limit",
    );
}
