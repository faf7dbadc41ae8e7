//! Guarantee: in a run against a saved index (`--against OLD
//! --save-index NEW`), a `--keep` policy other than `first` (`longest`,
//! `shortest`, `field:NAME`) makes its clusters within their share of
//! `--max-memory` (`src/jobs/dedup/budget.rs`, `Shares::clusters`): past
//! it, the components of the joined pairs are ranked with sorted runs
//! (`src/jobs/dedup/spill/joined.rs`, `joined_ranked`, over
//! `src/jobs/dedup/spill/ranked.rs`), a cluster with an indexed record
//! keeping its first indexed root, the others keeping by the policy, the
//! clustered records' keys read in record order. `kept.jsonl`,
//! `clusters.jsonl`, `rejects.jsonl`, the saved index's files and the
//! summary's clusters and `keep` are byte-identical to those of the same
//! run without a budget, and no temporary file is left.
//!
//! A is chains of near-copies; B holds every text of A under a new id,
//! beside chains of its own. Copies differ in length and carry a `score`
//! with ties, some without one.

use std::path::{Path, PathBuf};

use drainpipe::jobs::dedup::budget::Shares;
use drainpipe::jobs::dedup::clusters::IN_MEMORY_PAIR_BYTES;
use drainpipe_actors::{RunReport, TEMP_FOLDER};
use serde_json::json;

use crate::mixed::{assert_same_outputs, dedup_indexed, folder_files, outputs, words, Files};

/// The budget: a share of 256 KiB for the clusters.
const BUDGET: u64 = 1 << 20;

/// `clusters` chains of near-copies of about 80 words (each one word off
/// the one before it, some a word longer or shorter) and as many texts
/// alone, from `seed`.
fn texts(seed: u64, clusters: usize) -> Vec<String> {
    let mut word = words(seed);
    let mut texts = Vec::new();
    for c in 0..clusters {
        let mut text: Vec<String> = (0..80).map(|_| word()).collect();
        texts.push(text.join(" "));
        for step in 0..1 + c % 6 {
            text[(7 + 11 * step) % 70] = word();
            match (c + step) % 3 {
                0 => text.push(word()),
                1 => drop(text.pop()),
                _ => {}
            }
            texts.push(text.join(" "));
        }
        texts.push((0..80).map(|_| word()).collect::<Vec<_>>().join(" "));
    }
    texts
}

fn write(dir: &Path, name: &str, prefix: &str, texts: &[&String]) -> PathBuf {
    let lines: Vec<String> = (texts.iter().enumerate())
        .map(|(i, text)| {
            let mut record = json!({ "id": format!("{prefix}{i}"), "text": text });
            if i % 5 != 2 {
                record["score"] = json!(i * 7 % 4);
            }
            record.to_string()
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `dedup` over `input` into `out` under `budget` and `--keep keep`,
/// against `against`, saving into `save`.
fn dedup_into(
    out: &Path,
    input: &Path,
    (budget, keep): (Option<u64>, &str),
    against: Option<&Path>,
    save: &Path,
) -> RunReport {
    dedup_indexed(
        out,
        input,
        (budget, keep),
        &Vec::from_iter(against),
        Some(save),
    )
}

#[test]
fn every_keep_policy_against_an_index_makes_its_clusters_within_their_share_with_the_outputs_of_an_unbudgeted_run(
) {
    let dir = tempfile::tempdir().unwrap();
    let old = texts(0xa7, 700);
    let new = texts(0xb8, 500);
    let a = write(dir.path(), "a.jsonl", "a", &old.iter().collect::<Vec<_>>());
    let mut b_texts = Vec::new();
    let mut own = new.iter();
    for (i, text) in old.iter().enumerate() {
        b_texts.push(text);
        if i % 3 == 2 {
            b_texts.extend(own.next());
        }
    }
    b_texts.extend(own);
    let b = write(dir.path(), "b.jsonl", "b", &b_texts);
    let old_index = dir.path().join("old").join("OLD");
    dedup_into(
        &dir.path().join("save"),
        &a,
        (None, "first"),
        None,
        &old_index,
    );
    let share = Shares { max_memory: BUDGET }.clusters();
    for keep in ["longest", "shortest", "field:score", "field:score:asc"] {
        let mut legs: Vec<(Files, Files, RunReport)> = Vec::new();
        for (name, budget) in [("unbudgeted", None), ("budgeted", Some(BUDGET))] {
            let leg = dir.path().join(format!("{name}-{keep}"));
            let (out, index) = (leg.join("out"), leg.join("i").join("NEW"));
            let report = dedup_into(&out, &b, (budget, keep), Some(&old_index), &index);
            let spilled = report.result["clusters_spilled_bytes"].as_u64().unwrap();
            let temp: Vec<_> = std::fs::read_dir(out.join(TEMP_FOLDER))
                .map(|list| list.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(temp.is_empty(), "{keep} {name}: left {temp:?}");
            if budget.is_none() {
                assert_eq!(spilled, 0, "{keep}: made in memory without a budget");
            } else {
                assert!(spilled > 0, "{keep}: the clusters were made in memory");
            }
            legs.push((outputs(&out), folder_files(&index), report));
        }
        let (want, got) = (&legs[0], &legs[1]);
        let unbudgeted = &want.2.result;
        let across = unbudgeted["index"]["pairs_across_checked"]
            .as_u64()
            .unwrap();
        let verified = unbudgeted["verified_pairs"].as_u64().unwrap();
        assert!(
            (verified + across) * IN_MEMORY_PAIR_BYTES > 2 * share,
            "{keep}: {verified} verified pairs, {across} across, for a share of {share} bytes"
        );
        // Clusters joining indexed records, and clusters of B's own kept
        // by the policy: some not on their first record.
        let clusters = String::from_utf8_lossy(&want.0[1].1).into_owned();
        assert!(clusters.lines().any(|l| l.contains("\"index\":\"OLD\"")));
        assert!(clusters.lines().any(|l| !l.contains("\"index\"")));
        for field in ["cluster_sizes", "removed_records", "keep"] {
            assert_eq!(got.2.result[field], unbudgeted[field], "{keep}: {field}");
        }
        assert_same_outputs(&want.0, &got.0, &format!("{keep}: the outputs"));
        assert_same_outputs(&want.1, &got.1, &format!("{keep}: the saved index"));
    }
}
