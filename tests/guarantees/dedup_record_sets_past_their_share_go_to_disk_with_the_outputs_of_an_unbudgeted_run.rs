//! Guarantee: under `--max-memory`, the sets with a bit a record (those
//! pass 1 integrated, pass 2's candidates, the removed records) that pass
//! their share of the budget (`src/jobs/dedup/budget.rs`,
//! `Shares::record_set`) go to disk in record order
//! (`src/jobs/dedup/spill/record_sets.rs`) and are read back through a
//! window, so they no longer grow with the input beside the budget. The
//! outputs are byte-identical to a run without a limit; a run stopped
//! after its integrated records went to disk resumes from the runs its
//! checkpoint names (a run written after it is removed) to the same
//! outputs, with or without the budget; a complete run leaves no run. A
//! run of them damaged before the resume is found as the run takes them
//! up: the resumed run fails naming the file, and writes no output.
//!
//! Observable in `summary.json`: the signatures pass's
//! `integrated_records_spilled_bytes`.

use std::path::Path;
use std::sync::Arc;

use crate::mixed::{
    assert_same_outputs, dedup_file, outputs, outputs_of_leg, pass_named, run_leg, run_leg_to,
    runs_left, Leg, StopAt,
};
use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::MemoryRecord;
use drainpipe_actors::{RunReport, CHECKPOINT_FILE, TEMP_FOLDER};

/// The budget: its share for each set is 8 KiB, 65,536 records.
const BUDGET: u64 = 1 << 20;

/// 100,000 short documents with their near-duplicates, and a line that
/// is not JSON every 4,999 (the integrated records have gaps).
fn lines() -> Vec<String> {
    let corpus = Corpus::new(CorpusSpec {
        docs: 100_000,
        min_words: 8,
        max_words: 16,
        ..CorpusSpec::default()
    });
    let line = |id: String, text: &str| serde_json::json!({ "id": id, "text": text }).to_string();
    let mut lines = Vec::new();
    for (i, doc) in corpus.docs().enumerate() {
        lines.push(line(format!("d{i}"), &doc.text));
        if i % 4999 == 3 {
            lines.push("not json".into());
        }
    }
    lines
}

fn integrated_on_disk(report: &RunReport) -> u64 {
    pass_named(report, "signatures")["integrated_records_spilled_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn dedup_record_sets_past_their_share_go_to_disk_with_the_outputs_of_an_unbudgeted_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines().join("\n") + "\n").unwrap();
    let (expected, unlimited) = dedup_file(&input, None);
    assert_eq!(integrated_on_disk(&unlimited), 0);
    let removed = String::from_utf8_lossy(&expected[1].1).lines().count();
    assert!(removed > 500, "{removed} removed records");
    let (got, limited) = dedup_file(&input, Some(BUDGET));
    // The 34,000 records past the share: 9 bytes for 64 records at least.
    let spilled = integrated_on_disk(&limited);
    assert!(spilled > 34_000 / 64 * 9, "{spilled}: {}", limited.result);
    assert_same_outputs(&expected, &got, "budget 1 MiB, against no limit");
}

#[test]
fn a_run_stopped_after_its_integrated_records_went_to_disk_resumes_to_the_same_outputs() {
    let records: Vec<MemoryRecord> = lines().into_iter().map(MemoryRecord::jsonl).collect();
    let records = Arc::new(records);
    let expected = outputs_of_leg(&records, &Leg::default());
    let bits = |out: &Path| -> Vec<String> {
        let list = std::fs::read_dir(out.join(TEMP_FOLDER)).unwrap();
        let names = list.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.ends_with(".bits")).collect()
    };
    for resumed_budget in [Some(BUDGET), None] {
        let dir = tempfile::tempdir().unwrap();
        let stopped = Leg {
            max_memory: Some(BUDGET),
            stop: Some(StopAt::During {
                pass: "signatures",
                after: 90_000,
            }),
            batch: Some(100),
            ..Leg::default()
        };
        run_leg_to(&records, dir.path(), &stopped, 130);
        assert!(dir.path().join(CHECKPOINT_FILE).exists());
        let kept = bits(dir.path());
        assert!(!kept.is_empty(), "no run of the integrated records");
        let stray = "dedup-set-integrated-999999.bits";
        let temp = dir.path().join(TEMP_FOLDER);
        std::fs::write(temp.join(stray), b"written after the checkpoint").unwrap();
        let leg = Leg {
            max_memory: resumed_budget,
            resume: true,
            ..Leg::default()
        };
        let report = run_leg_to(&records, dir.path(), &leg, 0);
        assert!(integrated_on_disk(&report) > 0, "{}", report.result);
        assert_same_outputs(
            &expected,
            &outputs(dir.path()),
            &format!("resumed with budget {resumed_budget:?}, against the uninterrupted run"),
        );
        let left = runs_left(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn a_resumed_run_whose_integrated_records_run_was_damaged_fails_naming_it() {
    let records: Vec<MemoryRecord> = lines().into_iter().map(MemoryRecord::jsonl).collect();
    let records = Arc::new(records);
    let dir = tempfile::tempdir().unwrap();
    let stopped = Leg {
        max_memory: Some(BUDGET),
        stop: Some(StopAt::During {
            pass: "verify",
            after: 1_000,
        }),
        batch: Some(100),
        ..Leg::default()
    };
    run_leg_to(&records, dir.path(), &stopped, 130);
    let run = dir
        .path()
        .join(TEMP_FOLDER)
        .join("dedup-set-integrated-000000.bits");
    let mut bytes = std::fs::read(&run).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&run, bytes).unwrap();
    let leg = Leg {
        max_memory: Some(BUDGET),
        resume: true,
        ..Leg::default()
    };
    let failed = run_leg(&records, dir.path(), &leg);
    let message = match failed {
        Ok(report) => report.human(),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        message.contains("dedup-set-integrated-000000.bits") && message.contains("damaged"),
        "{message}"
    );
    assert!(!dir.path().join("kept.jsonl").exists());
}
