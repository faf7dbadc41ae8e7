//! Guarantee: in a run against a saved index (`--against OLD
//! --save-index NEW`) under `--max-memory`, pass 2's candidates' ids and
//! `--keep` keys stay within their share of the budget
//! (`src/jobs/dedup/budget.rs`, `Shares::candidate_ids`: an eighth) under
//! every policy (`first`, `longest`, `shortest`, `field:NAME`): none can
//! be dropped (a record whose only partner is indexed may be in a
//! cluster), so past the share they all go to disk in record order, and
//! the clustered records' and those in a pair across are joined back when
//! the pass ends (`src/jobs/dedup/passes/verify/job/ids.rs`). Without a
//! budget the same corpus holds them at several times the share;
//! `kept.jsonl`, `clusters.jsonl`, `rejects.jsonl`, the saved index's
//! files and the summary's clusters and `keep` are byte-identical either
//! way, and no temporary file is left.
//!
//! The bound is on the run's own accounting of the bytes they hold
//! (`candidate_ids_peak_bytes` of pass 2 in `summary.json`), not on time;
//! that they went to disk is its `candidate_ids_spilled_bytes`. Before
//! they did, a million short documents against an index of as many held
//! 80 MB of ids and `--keep longest` keys under `--max-memory 128M`
//! (peak RSS 191 MB, against 106 MB under `first`).
//!
//! A is chains of near-copies with long ids; B holds every text of A
//! under a new id, beside chains of its own. Copies differ in length and
//! carry a `score` with ties, some without one.

use std::path::{Path, PathBuf};

use drainpipe::jobs::dedup::budget::Shares;
use drainpipe_actors::{RunReport, TEMP_FOLDER};
use serde_json::json;

use crate::mixed::{
    assert_same_outputs, dedup_indexed, folder_files, outputs, pass_named, words, Files,
};

/// The budget: a share of 128 KiB for the candidates' ids.
const BUDGET: u64 = 1 << 20;

/// `clusters` chains of near-copies of about 60 words (each one word off
/// the one before it, some a word longer or shorter) and as many texts
/// alone, from `seed`.
fn texts(seed: u64, clusters: usize) -> Vec<String> {
    let mut word = words(seed);
    let mut texts = Vec::new();
    for c in 0..clusters {
        let mut text: Vec<String> = (0..60).map(|_| word()).collect();
        texts.push(text.join(" "));
        for step in 0..1 + c % 4 {
            text[(5 + 13 * step) % 50] = word();
            match (c + step) % 3 {
                0 => text.push(word()),
                1 => drop(text.pop()),
                _ => {}
            }
            texts.push(text.join(" "));
        }
        texts.push((0..60).map(|_| word()).collect::<Vec<_>>().join(" "));
    }
    texts
}

/// Writes `texts` to `dir/name`, each with an id of about 60 bytes
/// starting with `prefix`, so that the ids are most of what pass 2 holds.
fn write(dir: &Path, name: &str, prefix: &str, texts: &[&String]) -> PathBuf {
    let lines: Vec<String> = (texts.iter().enumerate())
        .map(|(i, text)| {
            let id = format!("{prefix}-a-rather-long-document-identifier-of-this-corpus-{i:08}");
            let mut record = json!({ "id": id, "text": text });
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

/// What pass 2 says of the candidates' ids: the most bytes they held,
/// and the bytes they went to disk with.
fn ids_of(report: &RunReport) -> (u64, u64) {
    let verify = pass_named(report, "verify");
    let field = |name: &str| verify[name].as_u64().unwrap();
    (
        field("candidate_ids_peak_bytes"),
        field("candidate_ids_spilled_bytes"),
    )
}

/// B: every text of `old` under a new id, a text of `new` after every
/// third.
fn both<'a>(old: &'a [String], new: &'a [String]) -> Vec<&'a String> {
    let mut texts = Vec::new();
    let mut own = new.iter();
    for (i, text) in old.iter().enumerate() {
        texts.push(text);
        if i % 3 == 2 {
            texts.extend(own.next());
        }
    }
    texts.extend(own);
    texts
}

#[test]
fn every_keep_policy_against_an_index_holds_its_candidates_ids_and_keys_within_their_share_with_the_outputs_of_an_unbudgeted_run(
) {
    let dir = tempfile::tempdir().unwrap();
    let old = texts(0xc9, 900);
    let new = texts(0xda, 400);
    let a = write(dir.path(), "a.jsonl", "a", &old.iter().collect::<Vec<_>>());
    let b = write(dir.path(), "b.jsonl", "b", &both(&old, &new));
    let old_index = dir.path().join("old").join("OLD");
    dedup_into(
        &dir.path().join("save"),
        &a,
        (None, "first"),
        None,
        &old_index,
    );
    let share = Shares { max_memory: BUDGET }.candidate_ids();
    let mut kept_by_policy = Vec::new();
    for keep in ["first", "longest", "shortest", "field:score"] {
        let mut legs: Vec<(Files, Files, RunReport)> = Vec::new();
        for (name, budget) in [("unbudgeted", None), ("budgeted", Some(BUDGET))] {
            let leg = dir.path().join(format!("{name}-{keep}"));
            let (out, index) = (leg.join("out"), leg.join("i").join("NEW"));
            let report = dedup_into(&out, &b, (budget, keep), Some(&old_index), &index);
            let temp: Vec<_> = std::fs::read_dir(out.join(TEMP_FOLDER))
                .map(|list| list.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(temp.is_empty(), "{keep} {name}: left {temp:?}");
            legs.push((outputs(&out), folder_files(&index), report));
        }
        let (want, got) = (&legs[0], &legs[1]);
        let (unbudgeted, _) = ids_of(&want.2);
        assert!(
            unbudgeted > 2 * share,
            "--keep {keep}: without a budget the ids hold {unbudgeted} bytes: the corpus must \
             pass the share of {share} bytes"
        );
        let (peak, spilled) = ids_of(&got.2);
        assert!(
            peak <= share,
            "--keep {keep}: under {BUDGET} bytes the candidates' ids held {peak} bytes, over \
             {share}"
        );
        assert!(
            spilled > share,
            "--keep {keep}: {spilled} bytes of ids on disk"
        );
        // Clusters joining indexed records, and clusters of B's own.
        let clusters = String::from_utf8_lossy(&want.0[1].1).into_owned();
        assert!(clusters.lines().any(|l| l.contains("\"index\":\"OLD\"")));
        assert!(clusters.lines().any(|l| !l.contains("\"index\"")));
        for field in ["cluster_sizes", "removed_records", "keep"] {
            assert_eq!(got.2.result[field], want.2.result[field], "{keep}: {field}");
        }
        assert_same_outputs(&want.0, &got.0, &format!("{keep}: the outputs"));
        assert_same_outputs(&want.1, &got.1, &format!("{keep}: the saved index"));
        kept_by_policy.push(want.0[0].1.clone());
    }
    assert!(
        kept_by_policy[0] != kept_by_policy[1] && kept_by_policy[1] != kept_by_policy[2],
        "longest and shortest keep other records of B's own clusters than first"
    );
}
