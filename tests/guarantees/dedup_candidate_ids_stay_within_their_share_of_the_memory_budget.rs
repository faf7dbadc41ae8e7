//! Guarantee: under `--max-memory`, pass 2's candidates' ids and `--keep`
//! keys (kept for `clusters.jsonl` and the ranking of a cluster) stay
//! within their share of the budget (`src/jobs/dedup/budget.rs`,
//! `Shares::candidate_ids`: an eighth), however many candidates wait for a
//! later partner: those of candidates that can no longer be in a cluster
//! are dropped, and once that does not make room, they go to disk in
//! record order and are joined back for the clustered records when the
//! pass ends. Without a budget the same corpus holds several times the
//! share, and the outputs are byte-identical either way, under `--keep
//! first` and under a policy that ranks by a key (`longest`).
//!
//! The bound is on the run's own accounting of the bytes it holds
//! (`candidate_ids_peak_bytes` of pass 2 in `summary.json`), not on time;
//! that the ids went to disk is its `candidate_ids_spilled_bytes`.

use drainpipe::jobs::dedup::keep::KeepPolicy;
use drainpipe::jobs::dedup::DedupParams;
use drainpipe_actors::RunReport;

use crate::mixed::{dedup_file, dedup_file_with, pass_named, words, write_far_apart};

/// Pairs of adjacent records: the second is the first with two words
/// changed (Jaccard about 0.7 on 5-word shingles: mostly a candidate
/// pair, never a verified one), except every 50th pair, an exact copy.
/// Ids are long, so that the ids' bytes are most of what pass 2 holds.
fn lines(pairs: usize) -> Vec<String> {
    let mut word = words(0x5eed_u64);
    let line = |n: usize, words: &[String]| {
        serde_json::json!({
            "id": format!("a-rather-long-document-identifier-{n:08}"),
            "text": words.join(" "),
        })
        .to_string()
    };
    let mut lines = Vec::new();
    for p in 0..pairs {
        let first: Vec<String> = (0..60).map(|_| word()).collect();
        let mut second = first.clone();
        if p % 50 != 0 {
            second[20] = word();
            second[40] = word();
        }
        lines.push(line(2 * p, &first));
        lines.push(line(2 * p + 1, &second));
    }
    lines
}

fn verify_pass(report: &RunReport, field: &str) -> u64 {
    pass_named(report, "verify")[field].as_u64().unwrap()
}

fn ids_peak(report: &RunReport) -> u64 {
    verify_pass(report, "candidate_ids_peak_bytes")
}

#[test]
fn dedup_candidate_ids_stay_within_their_share_of_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines(10_000).join("\n") + "\n").unwrap();
    let budget = 1u64 << 20;
    let share = budget / 8;
    let (expected, unlimited) = dedup_file(&input, None);
    let candidates = unlimited.result["candidate_pairs"].as_u64().unwrap();
    assert!(candidates > 5_000, "{candidates} candidate pairs");
    assert!(
        ids_peak(&unlimited) > 4 * share,
        "without a budget the ids hold {} bytes: the corpus must pass the share",
        ids_peak(&unlimited)
    );
    let (got, limited) = dedup_file(&input, Some(budget));
    assert!(
        ids_peak(&limited) <= share,
        "under {budget} bytes the candidates' ids held {} bytes, over {share}",
        ids_peak(&limited)
    );
    // Pruning was enough: every candidate's partner is the next record.
    assert_eq!(verify_pass(&limited, "candidate_ids_spilled_bytes"), 0);
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(removed >= 150, "{removed} removed records");
    for ((name, want), (_, got)) in expected.iter().zip(&got) {
        assert!(want == got, "{name} differs from the run without a limit");
    }
}

#[test]
fn dedup_candidate_ids_waiting_for_far_partners_go_to_disk_within_their_share() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    write_far_apart(&input, 16_000);
    let budget = 1u64 << 20;
    let share = budget / 8;
    let mut kept_by_policy = Vec::new();
    for keep in ["first", "longest"] {
        let params = DedupParams {
            keep: keep.parse::<KeepPolicy>().unwrap(),
            ..DedupParams::default()
        };
        let (expected, unlimited) = dedup_file_with(&input, None, &params);
        assert!(
            ids_peak(&unlimited) > 3 * share,
            "--keep {keep}: without a budget the ids hold {} bytes: the corpus must pass \
             the share several times",
            ids_peak(&unlimited)
        );
        assert_eq!(verify_pass(&unlimited, "candidate_ids_spilled_bytes"), 0);
        let (got, limited) = dedup_file_with(&input, Some(budget), &params);
        assert!(
            ids_peak(&limited) <= share,
            "--keep {keep}: under {budget} bytes the candidates' ids held {} bytes, over {share}",
            ids_peak(&limited)
        );
        // Every held set waits for a far partner: written once, and merged
        // again a few times, never once a record (that wrote 48 GB).
        let input_bytes = std::fs::metadata(&input).unwrap().len();
        let held_spilled = verify_pass(&limited, "bytes_spilled");
        assert!(
            held_spilled > 0 && held_spilled < 64 * input_bytes,
            "--keep {keep}: {held_spilled} bytes of held sets on disk for {input_bytes} of input"
        );
        let spilled = verify_pass(&limited, "candidate_ids_spilled_bytes");
        assert!(
            spilled > 2 * share,
            "--keep {keep}: {spilled} bytes of ids on disk"
        );
        let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
        assert!(removed >= 250, "--keep {keep}: {removed} removed records");
        for ((name, want), (_, got)) in expected.iter().zip(&got) {
            assert!(
                want == got,
                "--keep {keep}: {name} differs from the run without a limit"
            );
        }
        kept_by_policy.push(expected[0].1.clone());
    }
    assert!(
        kept_by_policy[0] != kept_by_policy[1],
        "longest keeps the longer copies: its kept records differ from first's"
    );
}
