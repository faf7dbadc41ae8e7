//! Guarantee: under `--max-memory`, the repeated record ids (records
//! whose id an earlier record has) that pass their share of the budget
//! (`src/jobs/dedup/budget.rs`, `Shares::repeated_ids`) go to disk as one
//! sorted run named by pass 1's result, and are confirmed against the
//! records' ids with sorts and joins within the share
//! (`src/jobs/dedup/spill/repeats.rs`), never a table of every first
//! record's id: a corpus whose records share a handful of ids no longer
//! grows the memory with its repeats. The outputs and `repeated_ids` are
//! those of a run without a limit (escaped ids, `"\u0061"` as `"a"`, and
//! ids that only share a key are told apart as there); a run stopped
//! after pass 1 resumes from the run its result names to the same report,
//! with or without the budget; a complete run leaves no run.
//!
//! Observable in `summary.json`: `result.repeated_ids`, and the signatures
//! pass's `repeated_ids_spilled_bytes`.

use std::sync::Arc;

use crate::mixed::{
    assert_same_outputs, dedup_file, outputs, pass_named, run_leg_to, runs_left, Leg, StopAt,
};
use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::MemoryRecord;
use drainpipe_actors::RunReport;

/// The budget: the repeats' share while pass 1 makes them is 64 KiB,
/// about 1,800 pairs.
const BUDGET: u64 = 1 << 20;

/// 50,000 short documents with their near-duplicates, nine in ten of them
/// with one of a handful of ids (some escaped), the others their own.
fn lines() -> Vec<String> {
    let corpus = Corpus::new(CorpusSpec {
        docs: 50_000,
        min_words: 8,
        max_words: 16,
        ..CorpusSpec::default()
    });
    let shared = [r#""a""#, r#""\u0061""#, r#""b""#, "7", "7.0", r#""c\/d""#];
    let mut lines = Vec::new();
    for (i, doc) in corpus.docs().enumerate() {
        let id = match i % 10 {
            0 => format!(r#""d{i}""#),
            _ => shared[i % 7 % shared.len()].to_owned(),
        };
        let text = serde_json::to_string(&doc.text).unwrap();
        lines.push(format!(r#"{{"id":{id},"text":{text}}}"#));
    }
    lines
}

fn repeats_on_disk(report: &RunReport) -> u64 {
    pass_named(report, "signatures")["repeated_ids_spilled_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn dedup_repeated_ids_past_their_share_go_to_disk_with_the_report_of_an_unbudgeted_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines().join("\n") + "\n").unwrap();
    let (expected, unlimited) = dedup_file(&input, None);
    assert_eq!(repeats_on_disk(&unlimited), 0);
    let repeated = unlimited.result["repeated_ids"].as_u64().unwrap();
    // Every record with a shared id but the first of each value.
    assert!(repeated > 40_000, "{repeated} repeated ids");
    let (got, limited) = dedup_file(&input, Some(BUDGET));
    // 8 bytes a pair at the least, on disk past the share.
    let spilled = repeats_on_disk(&limited);
    assert!(spilled > 40_000, "{spilled}: {}", limited.result);
    assert_eq!(limited.result["repeated_ids"].as_u64(), Some(repeated));
    assert_same_outputs(&expected, &got, "budget 1 MiB, against no limit");
}

#[test]
fn a_run_stopped_after_its_repeated_ids_went_to_disk_resumes_to_the_same_report() {
    let records: Vec<MemoryRecord> = lines().into_iter().map(MemoryRecord::jsonl).collect();
    let records = Arc::new(records);
    let whole = tempfile::tempdir().unwrap();
    let report = run_leg_to(&records, whole.path(), &Leg::default(), 0);
    let repeated = report.result["repeated_ids"].as_u64().unwrap();
    let expected = outputs(whole.path());
    for resumed_budget in [Some(BUDGET), None] {
        let dir = tempfile::tempdir().unwrap();
        let stopped = Leg {
            max_memory: Some(BUDGET),
            stop: Some(StopAt::During {
                pass: "verify",
                after: 10_000,
            }),
            batch: Some(100),
            ..Leg::default()
        };
        let report = run_leg_to(&records, dir.path(), &stopped, 130);
        assert!(repeats_on_disk(&report) > 0, "{}", report.result);
        let leg = Leg {
            max_memory: resumed_budget,
            resume: true,
            ..Leg::default()
        };
        let report = run_leg_to(&records, dir.path(), &leg, 0);
        assert_eq!(report.result["repeated_ids"].as_u64(), Some(repeated));
        assert_same_outputs(
            &expected,
            &outputs(dir.path()),
            &format!("resumed with budget {resumed_budget:?}, against the uninterrupted run"),
        );
        let left = runs_left(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }
}
