//! Guarantee: under `--max-memory`, the sets of records pass 2 makes (its
//! candidates, the clustered records its candidates' ids are joined by,
//! and against an index the records in pairs across and those it
//! shingles) stay within their share of the budget
//! (`src/jobs/dedup/budget.rs`, `Shares::record_set`: a
//! hundred-and-twenty-eighth, 8 KiB under 1 MiB, 65,536 records): past it
//! they are written in record order and read back through a window
//! (`src/jobs/dedup/spill/record_sets.rs`,
//! `src/jobs/dedup/passes/verify/job/sets.rs`). The corpora have
//! candidates over 70,000 records or more; the outputs, and the index
//! saved, are byte-identical to those of the run without a limit.
//!
//! What is checked is the run's own report of the sets' bytes on disk
//! (the verify pass's `candidate_records_spilled_bytes`,
//! `clustered_records_spilled_bytes`, `shingled_records_spilled_bytes`,
//! the index's `across_records_spilled_bytes` in `summary.json`).

use std::path::Path;

use crate::mixed::{
    assert_same_outputs, dedup_file, dedup_indexed, folder_files, outputs, pass_named,
    write_far_apart,
};

/// Originals, then a near-copy of each (`write_far_apart`): 70,000
/// records, every one a candidate. Against an index, the originals are
/// indexed and twice as many copies are deduplicated against them.
const DOCUMENTS: usize = 35_000;
const INDEXED: usize = 2 * DOCUMENTS;

/// Under this budget a set's share is 8 KiB: 65,536 records.
const SMALL: u64 = 1 << 20;

/// The verify pass's bytes on disk of the set `name`.
fn spilled(report: &drainpipe_actors::RunReport, name: &str) -> u64 {
    pass_named(report, "verify")[name].as_u64().unwrap_or(0)
}

#[test]
fn dedup_pass_two_record_sets_go_to_disk_past_their_share_with_the_outputs_of_an_unbudgeted_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    write_far_apart(&input, DOCUMENTS);
    let (expected, unlimited) = dedup_file(&input, None);
    assert_eq!(spilled(&unlimited, "candidate_records_spilled_bytes"), 0);
    let (got, limited) = dedup_file(&input, Some(SMALL));
    let verify = pass_named(&limited, "verify");
    assert!(
        spilled(&limited, "candidate_records_spilled_bytes") > 0,
        "the candidates' set stayed in memory: {verify}"
    );
    assert!(
        spilled(&limited, "clustered_records_spilled_bytes") > 0,
        "the clustered records' set stayed in memory: {verify}"
    );
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(removed >= DOCUMENTS / 40, "{removed} removed records");
    assert_same_outputs(&expected, &got, "under a budget");
}

/// Writes the first `INDEXED` lines of `input` to `a`, the rest to `b`.
fn split(input: &Path, a: &Path, b: &Path) {
    let text = std::fs::read_to_string(input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(a, lines[..INDEXED].join("\n") + "\n").unwrap();
    std::fs::write(b, lines[INDEXED..].join("\n") + "\n").unwrap();
}

#[test]
fn against_an_index_the_records_in_pairs_across_go_to_disk_past_their_share_with_the_same_outputs()
{
    let dir = tempfile::tempdir().unwrap();
    let (input, a, b) = (
        dir.path().join("input.jsonl"),
        dir.path().join("a.jsonl"),
        dir.path().join("b.jsonl"),
    );
    write_far_apart(&input, INDEXED);
    split(&input, &a, &b);
    let idx = dir.path().join("i").join("IDX");
    dedup_indexed(
        &dir.path().join("save"),
        &a,
        (None, "first"),
        &[],
        Some(&idx),
    );
    let mut legs = Vec::new();
    for (name, budget) in [("unlimited", None), ("small", Some(SMALL))] {
        let out = dir.path().join(name);
        let saved = dir.path().join(name).join("n").join("NEW");
        let report = dedup_indexed(&out, &b, (budget, "first"), &[&idx], Some(&saved));
        let across = report.result["index"]["across_records_spilled_bytes"]
            .as_u64()
            .unwrap();
        let shingled = spilled(&report, "shingled_records_spilled_bytes");
        match budget {
            None => assert_eq!((across, shingled), (0, 0)),
            Some(_) => assert!(
                across > 0 && shingled > 0,
                "the sets stayed in memory: {across} and {shingled} bytes on disk"
            ),
        }
        legs.push((outputs(&out), folder_files(&saved)));
    }
    assert_same_outputs(&legs[0].0, &legs[1].0, "against the index under a budget");
    assert_same_outputs(&legs[0].1, &legs[1].1, "the index saved under a budget");
}
