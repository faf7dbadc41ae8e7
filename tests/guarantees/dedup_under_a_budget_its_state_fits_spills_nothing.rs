//! Guarantee: `dedup` under a memory budget that pass 1's state fits in
//! (comfortably: eight times the state the run with no budget reports)
//! spills nothing, and writes the outputs of the run with no budget; under
//! budgets a few times smaller than that state it spills, with the same
//! outputs, and the larger of two budgets spills less than the smaller
//! (it keeps more of the latest records in memory,
//! `src/jobs/dedup/spill/bands.rs`).

use std::path::{Path, PathBuf};

use crate::mixed::{assert_same_outputs, dedup_file, pass_named};
use drainpipe::corpus::{Corpus, CorpusSpec};

/// The demo corpus's documents, with their near-duplicates, and copies
/// of one text spread over the whole input.
fn input(dir: &Path) -> PathBuf {
    let corpus = Corpus::new(CorpusSpec {
        docs: 30_000,
        min_words: 20,
        max_words: 40,
        ..CorpusSpec::default()
    });
    let copied = corpus.doc(3).text;
    let line = |id: String, text: &str| serde_json::json!({ "id": id, "text": text }).to_string();
    let mut lines = Vec::new();
    for (i, doc) in corpus.docs().enumerate() {
        lines.push(line(format!("d{i}"), &doc.text));
        if i > 0 && i % 900 == 0 {
            lines.push(line(format!("copy{i}"), &copied));
        }
    }
    let path = dir.join("input.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Bytes the run spilled (every pass's, the places' included), and pass
/// 1's band lists' and pairs' share of them.
fn spilled(report: &drainpipe_actors::RunReport) -> (u64, u64) {
    let passes = report.result["passes"].as_array().unwrap();
    let of = |field: &str| -> u64 { passes.iter().filter_map(|p| p[field].as_u64()).sum() };
    let pass1 = pass_named(report, "signatures")["bytes_spilled"]
        .as_u64()
        .unwrap();
    (of("bytes_spilled") + of("places_spilled_bytes"), pass1)
}

#[test]
fn dedup_under_a_budget_its_state_fits_spills_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (expected, report) = dedup_file(&input, None);
    let clusters = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(clusters > 100, "{clusters} removed records");
    let records = report.records.integrated;
    let per_record = report.result["integrator_bytes_per_record_by_pass"]["signatures"]
        .as_f64()
        .unwrap();
    assert!(per_record > 100.0, "{per_record} bytes a record");
    let state = (records as f64 * per_record) as u64;
    // Eight times the state: nothing spills.
    let (got, report) = dedup_file(&input, Some(8 * state));
    assert_eq!(spilled(&report), (0, 0), "budget {}", 8 * state);
    assert_eq!(
        pass_named(&report, "signatures")["spill_runs"].as_u64(),
        Some(0)
    );
    assert_same_outputs(&expected, &got, "a budget the state fits in");
    // The state, and half of it: both spill pass 1's lists, the smaller
    // budget more.
    let mut before: Option<(u64, u64)> = None;
    for budget in [state / 2, state] {
        let (got, report) = dedup_file(&input, Some(budget));
        let (total, pass1) = spilled(&report);
        assert!(
            pass1 > 0 && total >= pass1,
            "budget {budget}: {total} {pass1}"
        );
        if let Some((smaller_total, smaller_pass1)) = before {
            assert!(
                pass1 < smaller_pass1 && total < smaller_total,
                "budget {budget} spilled {total} ({pass1} in pass 1), \
                 half of it {smaller_total} ({smaller_pass1})"
            );
        }
        before = Some((total, pass1));
        assert_same_outputs(&expected, &got, &format!("budget {budget}"));
    }
}
