//! Guarantee: saving an index, deduplicating against one, and growing one
//! (`--against OLD --save-index NEW`) under a memory budget small enough
//! that pass 1 spills several times (the index's band runs then join the
//! run's spilled runs in one merge, read a block at a time) give
//! `kept.jsonl`, `clusters.jsonl` and `rejects.jsonl` byte-identical to
//! the same runs without a limit, and write the same index, file for file
//! and byte for byte. The corpus has near-duplicates within each part and
//! across, identical texts in buckets of more than 16 records on both
//! sides (twins, told apart by the fingerprints the index's band runs
//! carry), repeated ids and rejected records.

use std::path::{Path, PathBuf};

use crate::mixed::{assert_same_outputs, dedup_indexed, folder_files, outputs, pass_named, Files};
use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe_actors::RunReport;

/// The budget that makes every leg spill: chunks of 4,096 records.
const SMALL: u64 = 1 << 20;

/// Two parts: documents with their near-duplicates (the demo corpus's,
/// split at document `split`, so near-duplicates fall on both sides),
/// copies of one text spread over both, and lines that are not JSON.
fn parts(split: usize) -> (Vec<String>, Vec<String>) {
    let corpus = Corpus::new(CorpusSpec {
        docs: 24_000,
        min_words: 30,
        max_words: 80,
        ..CorpusSpec::default()
    });
    let copied = corpus.doc(7).text;
    let line = |id: String, text: &str| serde_json::json!({ "id": id, "text": text }).to_string();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, doc) in corpus.docs().enumerate() {
        let part = if i < split { &mut a } else { &mut b };
        part.push(line(format!("d{i}"), &doc.text));
        if i > 0 && i % 600 == 0 {
            part.push(line(format!("copy{i}"), &copied));
        }
        if i % 4999 == 3 {
            part.push("not json".into());
        }
    }
    (a, b)
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Runs dedup over `input` into `out` with `budget`, against `against`,
/// saving into `save`.
fn dedup_into(
    out: &Path,
    input: &Path,
    budget: Option<u64>,
    against: &[&Path],
    save: Option<&Path>,
) -> RunReport {
    dedup_indexed(out, input, (budget, "first"), against, save)
}

#[test]
fn dedup_against_an_index_gives_the_same_outputs_for_every_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = parts(12_000);
    let (a, b) = (
        write(dir.path(), "a.jsonl", &a),
        write(dir.path(), "b.jsonl", &b),
    );
    let legs = [("unlimited", None), ("small", Some(SMALL))];
    let mut saved: Vec<Files> = Vec::new();
    let mut against: Vec<Files> = Vec::new();
    let mut grown: Vec<(Files, Files)> = Vec::new();
    for (name, budget) in legs {
        let leg = dir.path().join(name);
        // The index of A (same folder name in each leg: the name is in it).
        let idx = leg.join("i").join("IDX");
        let report = dedup_into(&leg.join("save"), &a, budget, &[], Some(&idx));
        let spills = pass_named(&report, "signatures")["spill_runs"]
            .as_u64()
            .unwrap();
        // Spills written (the last chunk is merged from memory beside
        // them, not written): two, and the index's runs, in one merge.
        if budget.is_some() {
            assert!(spills >= 2, "saving under {name}: {spills} spills");
        }
        saved.push(folder_files(&idx));
        // B against the index written without a limit, under each budget.
        let first = dir.path().join("unlimited").join("i").join("IDX");
        let out = leg.join("against");
        let report = dedup_into(&out, &b, budget, &[&first], None);
        let signatures = pass_named(&report, "signatures");
        if budget.is_some() {
            assert!(
                signatures["spill_runs"].as_u64() >= Some(2)
                    && signatures["bytes_spilled"].as_u64() > Some(1 << 20),
                "against under {name}: {signatures}"
            );
        }
        let index = &report.result["index"];
        assert!(index["removed_as_indexed"].as_u64() > Some(20), "{index}");
        against.push(outputs(&out));
        // Grown: B against it, saved as a new index of both.
        let new = leg.join("n").join("NEW");
        let out = leg.join("grow");
        dedup_into(&out, &b, budget, &[&first], Some(&new));
        grown.push((outputs(&out), folder_files(&new)));
    }
    assert_same_outputs(&saved[0], &saved[1], "the saved index");
    assert_same_outputs(&against[0], &against[1], "against the index");
    assert_same_outputs(&grown[0].0, &grown[1].0, "growing the index");
    assert_same_outputs(&grown[0].1, &grown[1].1, "the grown index");
    // The outputs against the index are the grown run's: saving changes
    // nothing of them.
    assert_same_outputs(&against[0], &grown[0].0, "saving while against");
    // Something was removed, both as duplicates of the index and within B.
    let clusters = String::from_utf8_lossy(&against[0][1].1).into_owned();
    assert!(
        clusters.contains("\"index\":\"IDX\""),
        "no record of B removed as the index's"
    );
    assert!(
        clusters.lines().any(|l| !l.contains("\"index\"")),
        "none removed within B"
    );
}
