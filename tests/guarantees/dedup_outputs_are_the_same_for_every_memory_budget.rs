//! Guarantee: `dedup` under a memory budget small enough that pass 1
//! spills its band lists and id keys to several sorted runs (and writes the
//! records' places to disk) writes `kept.jsonl`, `clusters.jsonl` and
//! `rejects.jsonl` byte-identical to a run without a limit, on a corpus
//! with near-duplicates, identical texts in buckets of more than 16
//! records (twins, told apart by the fingerprints that travel with the
//! spilled entries), repeated ids across chunks and rejected records; the
//! smaller budget also sends pass 2's held shingle sets to disk (the join
//! of `src/jobs/dedup/spill/held.rs`). A run stopped in pass 1 or in pass
//! 2 after it spilled, and resumed (with the budget or without one), ends
//! with the same outputs, and a complete run leaves no run on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::mixed::{
    assert_same_outputs, dedup_file, outputs, outputs_of_leg, pass_named, run_leg_to, runs_left,
    Leg, StopAt,
};
use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::MemoryRecord;
use drainpipe::jobs::dedup::{self, DedupParams};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, RunReport, CHECKPOINT_FILE, TEMP_FOLDER};

/// Documents, with their near-duplicates (the demo corpus's), exact
/// copies of two texts spread over the whole input (one under a repeated
/// id), and lines that are not JSON.
fn lines() -> Vec<String> {
    let corpus = Corpus::new(CorpusSpec {
        docs: 30_000,
        min_words: 30,
        max_words: 80,
        ..CorpusSpec::default()
    });
    let (copied, again) = (corpus.doc(7).text, corpus.doc(8).text);
    let line = |id: String, text: &str| serde_json::json!({ "id": id, "text": text }).to_string();
    let mut lines = Vec::new();
    for (i, doc) in corpus.docs().enumerate() {
        lines.push(line(format!("d{i}"), &doc.text));
        if i > 0 && i % 700 == 0 {
            lines.push(line(format!("copy{i}"), &copied));
        }
        if i > 0 && i % 1500 == 0 {
            lines.push(line("again".into(), &again));
        }
        if i % 4999 == 3 {
            lines.push("not json".into());
        }
    }
    lines
}

fn input(dir: &Path) -> PathBuf {
    let path = dir.join("input.jsonl");
    std::fs::write(&path, lines().join("\n") + "\n").unwrap();
    path
}

fn signatures_pass(report: &RunReport) -> serde_json::Value {
    pass_named(report, "signatures")
}

#[test]
fn dedup_outputs_are_the_same_for_every_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (expected, report) = dedup_file(&input, None);
    let pass = signatures_pass(&report);
    assert_eq!(
        (pass["spill_runs"].as_u64(), pass["bytes_spilled"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(report.records.rejected >= 6, "{}", report.human());
    assert!(
        report.result["repeated_ids"].as_u64() > Some(10),
        "{}",
        report.result
    );
    let clusters = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(clusters > 500, "{clusters} removed records");
    assert_eq!(
        pass_named(&report, "verify")["bytes_spilled"].as_u64(),
        Some(0)
    );
    // 4 MiB: chunks of 4,096 records (two held at once), the places
    // kept; 1 MiB: the same chunks, the places on disk from about 11,000,
    // room for the readers of 2 runs a merge (the runs merge in levels),
    // and pass 2's held sets past their 256 KiB.
    for (budget, spills_at_least) in [(4u64 << 20, 5), (1 << 20, 7)] {
        let (got, report) = dedup_file(&input, Some(budget));
        let pass = signatures_pass(&report);
        assert!(
            pass["spill_runs"].as_u64() >= Some(spills_at_least)
                && pass["bytes_spilled"].as_u64() > Some(1 << 20),
            "budget {budget}: {pass}"
        );
        if budget == 1 << 20 {
            let verify = pass_named(&report, "verify");
            assert!(
                verify["spill_runs"].as_u64() >= Some(2)
                    && verify["bytes_spilled"].as_u64() > Some(0),
                "budget {budget}: {verify}"
            );
        }
        assert_same_outputs(
            &expected,
            &got,
            &format!("budget {budget}, against the run without a limit"),
        );
    }
}

/// Stops a run under a 1 MiB budget in `pass` once its input served
/// `after` records; `kept` checks the folder it left (the runs its
/// checkpoint names) and counts them. Then a run file `stray` is written,
/// as by a run killed after the checkpoint, and the run is resumed with
/// the budget and without one: each must remove `stray`, leave no run,
/// and write the uninterrupted run's outputs; `resumed` checks each
/// resumed run's report, given the count of kept runs.
fn stopped_and_resumed(
    pass: &'static str,
    after: u64,
    stray: &str,
    kept: impl Fn(&Path) -> usize,
    resumed: impl Fn(&RunReport, usize),
) {
    let records: Vec<MemoryRecord> = lines().into_iter().map(MemoryRecord::jsonl).collect();
    let records = Arc::new(records);
    let expected = outputs_of_leg(&records, &Leg::default());
    for resumed_budget in [Some(1 << 20), None] {
        let dir = tempfile::tempdir().unwrap();
        let stopped = Leg {
            max_memory: Some(1 << 20),
            stop: Some(StopAt::During { pass, after }),
            batch: Some(100),
            ..Leg::default()
        };
        run_leg_to(&records, dir.path(), &stopped, 130);
        assert!(dir.path().join(CHECKPOINT_FILE).exists());
        let kept = kept(dir.path());
        std::fs::write(
            dir.path().join(TEMP_FOLDER).join(stray),
            b"written after the checkpoint",
        )
        .unwrap();
        let leg = Leg {
            max_memory: resumed_budget,
            resume: true,
            ..Leg::default()
        };
        let report = run_leg_to(&records, dir.path(), &leg, 0);
        resumed(&report, kept);
        assert_same_outputs(
            &expected,
            &outputs(dir.path()),
            &format!("resumed with budget {resumed_budget:?}, against the uninterrupted run"),
        );
        assert!(
            runs_left(dir.path()).is_empty(),
            "{:?}",
            runs_left(dir.path())
        );
    }
}

#[test]
fn a_run_stopped_after_it_spilled_resumes_to_the_same_outputs() {
    stopped_and_resumed(
        "signatures",
        20_000,
        "dedup-band-000-run-999999.sorted",
        |out| {
            let left = runs_left(out);
            assert!(
                left.len() >= 2 * 19,
                "runs kept for the checkpoint: {left:?}"
            );
            left.len()
        },
        |report, _| assert!(signatures_pass(report)["spill_runs"].as_u64() > Some(2)),
    );
}

/// Runs of pass 2's held sets left in the run's temporary folder.
fn held_runs_left(out: &Path) -> usize {
    runs_left(out)
        .iter()
        .filter(|name| name.starts_with("dedup-verify-held-"))
        .count()
}

#[test]
fn a_run_stopped_after_pass_2_spilled_resumes_to_the_same_outputs() {
    stopped_and_resumed(
        "verify",
        24_000,
        "dedup-verify-held-999999.sorted",
        |out| {
            let kept = held_runs_left(out);
            assert!(kept >= 1, "pass 2's runs kept for the checkpoint");
            kept
        },
        |report, _| {
            // The runs on disk at the stop include runs merged into later
            // ones (`held::fan_in`), which the checkpoint no longer names:
            // the resumed pass takes up the named ones (at least one).
            let verify = pass_named(report, "verify");
            assert!(
                verify["spill_runs"].as_u64() >= Some(1),
                "the checkpoint's runs taken up: {verify}"
            );
        },
    );
}

#[test]
fn a_spill_that_cannot_be_written_fails_the_run_with_exit_74_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let out = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(vec![input], OutputDir::create(out.path()).unwrap());
    // The temporary folder's place is taken by a file: no run can be
    // created there.
    let blocked = out.path().join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    ctx.temp = Arc::new(drainpipe_actors::TempSpace::new(&blocked));
    ctx.max_memory = Some(1 << 20);
    let report = dedup::run(&ctx, &DedupParams::default()).unwrap();
    assert_eq!(report.exit_code, 74, "{}", report.human());
    // The report gives the failure as the cause, not an interruption.
    assert!(
        report.exit != "interrupted" && !report.human().contains("interrupted"),
        "{}",
        report.human()
    );
    assert!(!out.path().join(drainpipe_actors::CHECKPOINT_FILE).exists());
    assert!(
        report.human().contains("sorted run") && report.human().contains("Not a directory"),
        "{}",
        report.human()
    );
    for name in ["kept.jsonl", "clusters.jsonl"] {
        assert!(!out.path().join(name).exists(), "{name} written");
    }
}
