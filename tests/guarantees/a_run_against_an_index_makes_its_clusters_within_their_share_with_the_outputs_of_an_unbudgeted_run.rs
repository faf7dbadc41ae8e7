//! Guarantee: a run against a saved index (`--against OLD --save-index
//! NEW`) makes its clusters within their share of `--max-memory`
//! (`src/jobs/dedup/budget.rs`, `Shares::clusters`: a quarter) however
//! many of its records duplicate indexed ones or each other: past it, the
//! components of the joined pairs (those across, each indexed record
//! standing for its cluster's root, then the run's own) are made with
//! sorted runs (`src/jobs/dedup/spill/joined.rs`), and the saved index's
//! roots are written from the removed records read in record order. So
//! are the indexed records' shingle sets pass 2 verifies the pairs across
//! with (`Shares::indexed_sets`, a sixteenth): past it, they go to sorted
//! runs read back as pass 2 reads the records
//! (`src/jobs/dedup/spill/held.rs`), and the most they held in memory,
//! counted, stays within it but for the set that passed it. So are the
//! records removed as indexed records' duplicates, held through pass 3
//! (`Shares::indexed_duplicates`): past it, they are sorted by root,
//! named with the roots' ids read in order and sorted back by record into
//! one run (`src/jobs/dedup/spill/indexed.rs`, `RemovedAsIndexed::name`),
//! the summary's `index.removed_as_indexed_spilled_bytes` above 0. Its
//! `kept.jsonl`, `clusters.jsonl`, `rejects.jsonl` and the saved index's
//! files are byte-identical to those of the same run without a budget,
//! and no temporary file is left.
//!
//! A is mostly duplicates (chains of near-copies); B holds every text of
//! A under a new id, beside chains of its own.

use std::path::{Path, PathBuf};

use drainpipe::jobs::dedup::budget::Shares;
use drainpipe::jobs::dedup::clusters::IN_MEMORY_PAIR_BYTES;
use drainpipe_actors::{RunReport, TEMP_FOLDER};

use crate::mixed::{assert_same_outputs, dedup_indexed, folder_files, outputs, words, Files};

/// The budget: a share of 256 KiB for the clusters.
const BUDGET: u64 = 1 << 20;

/// `clusters` chains of near-copies of 80 words (each copy one word off
/// the one before it) and as many texts alone, from `seed`.
fn texts(seed: u64, clusters: usize) -> Vec<String> {
    let mut word = words(seed);
    let mut texts = Vec::new();
    for c in 0..clusters {
        let mut text: Vec<String> = (0..80).map(|_| word()).collect();
        texts.push(text.join(" "));
        for step in 0..1 + c % 6 {
            text[(7 + 11 * step) % 80] = word();
            texts.push(text.join(" "));
        }
        texts.push((0..80).map(|_| word()).collect::<Vec<_>>().join(" "));
    }
    texts
}

fn write(dir: &Path, name: &str, prefix: &str, texts: &[&String]) -> PathBuf {
    let lines: Vec<String> = (texts.iter().enumerate())
        .map(|(i, text)| {
            serde_json::json!({ "id": format!("{prefix}{i}"), "text": text }).to_string()
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `dedup` over `input` into `out` under `budget`, against `against`,
/// saving into `save`.
fn dedup_into(
    out: &Path,
    input: &Path,
    budget: Option<u64>,
    against: Option<&Path>,
    save: &Path,
) -> RunReport {
    dedup_indexed(
        out,
        input,
        (budget, "first"),
        &Vec::from_iter(against),
        Some(save),
    )
}

/// What is left in `out`'s temporary folder, and drafts of indexes
/// beside `index`.
fn left(out: &Path, index: &Path) -> Vec<String> {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir).map_or_else(
            |_| Vec::new(),
            |list| {
                list.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            },
        )
    };
    let mut left = names(&out.join(TEMP_FOLDER));
    left.extend(
        names(index.parent().unwrap())
            .into_iter()
            .filter(|n| n.ends_with(".tmp")),
    );
    left
}

#[test]
fn a_run_against_an_index_makes_its_clusters_within_their_share_with_the_outputs_of_an_unbudgeted_run(
) {
    let dir = tempfile::tempdir().unwrap();
    let old = texts(0xa1, 1_200);
    let new = texts(0xb2, 600);
    let a = write(dir.path(), "a.jsonl", "a", &old.iter().collect::<Vec<_>>());
    // B: A's texts under new ids, every fourth of them beside one of B's
    // own.
    let mut b_texts = Vec::new();
    let mut own = new.iter();
    for (i, text) in old.iter().enumerate() {
        b_texts.push(text);
        if i % 4 == 3 {
            b_texts.extend(own.next());
        }
    }
    b_texts.extend(own);
    let b = write(dir.path(), "b.jsonl", "b", &b_texts);
    let old_index = dir.path().join("old").join("OLD");
    dedup_into(&dir.path().join("save"), &a, None, None, &old_index);
    let share = Shares { max_memory: BUDGET }.clusters();
    let sets_share = Shares { max_memory: BUDGET }.indexed_sets();
    let mut legs: Vec<(Files, Files, RunReport)> = Vec::new();
    for (name, budget) in [("unbudgeted", None), ("budgeted", Some(BUDGET))] {
        let leg = dir.path().join(name);
        let (out, index) = (leg.join("out"), leg.join("i").join("NEW"));
        let report = dedup_into(&out, &b, budget, Some(&old_index), &index);
        let spilled = report.result["clusters_spilled_bytes"].as_u64().unwrap();
        let sets = &report.result["index"];
        let sets_spilled = sets["indexed_sets_spilled_bytes"].as_u64().unwrap();
        let sets_peak = sets["indexed_sets_peak_bytes"].as_u64().unwrap();
        let named_spilled = sets["removed_as_indexed_spilled_bytes"].as_u64().unwrap();
        let left = left(&out, &index);
        assert!(left.is_empty(), "{name}: left {left:?}");
        if budget.is_none() {
            assert_eq!(spilled, 0, "made in memory without a budget");
            assert_eq!(sets_spilled, 0, "the indexed sets held without a budget");
            assert_eq!(named_spilled, 0, "named in memory without a budget");
            // Every indexed set at once: past their share by far.
            assert!(
                sets_peak > 8 * sets_share,
                "{sets_peak} bytes of indexed sets"
            );
        } else {
            assert!(spilled > 0, "the clusters were made in memory");
            assert!(sets_spilled > 0, "the indexed sets were held in memory");
            assert!(
                named_spilled > 0,
                "those removed as indexed records' duplicates were named in memory"
            );
            // A set of 80 words has at most 80 shingles: 680 bytes counted.
            assert!(
                sets_peak <= sets_share + 680,
                "{sets_peak} bytes of indexed sets held, for a share of {sets_share}"
            );
        }
        legs.push((outputs(&out), folder_files(&index), report));
    }
    let (want, got) = (&legs[0], &legs[1]);
    // Past the share by far: the run's pairs and those across.
    let unbudgeted = &want.2.result;
    let across = unbudgeted["index"]["pairs_across_checked"]
        .as_u64()
        .unwrap();
    let verified = unbudgeted["verified_pairs"].as_u64().unwrap();
    assert!(
        verified * IN_MEMORY_PAIR_BYTES > 2 * share && across > verified,
        "{verified} verified pairs, {across} across, for a share of {share} bytes"
    );
    // Many records removed as the index's, others within B.
    let indexed = unbudgeted["index"]["removed_as_indexed"].as_u64().unwrap();
    assert!(indexed > 4_000, "{indexed} removed as the index's");
    assert_eq!(got.2.result["index"]["removed_as_indexed"], indexed);
    let clusters = String::from_utf8_lossy(&want.0[1].1).into_owned();
    assert!(clusters.lines().any(|l| l.contains("\"index\":\"OLD\"")));
    assert!(clusters.lines().any(|l| !l.contains("\"index\"")));
    assert_eq!(
        got.2.result["cluster_sizes"], unbudgeted["cluster_sizes"],
        "cluster sizes"
    );
    assert_same_outputs(&want.0, &got.0, "the outputs");
    assert_same_outputs(&want.1, &got.1, "the saved index");
}
