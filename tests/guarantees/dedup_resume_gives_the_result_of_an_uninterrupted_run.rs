//! Guarantee: a `dedup` run stopped anywhere (during pass 1, 2 or 3, or
//! between passes) and resumed, possibly several times and with other
//! workers, window, batch and checkpoint period in each leg, ends with
//! `kept.jsonl`, `clusters.jsonl` and `rejects.jsonl` byte-identical to an
//! uninterrupted run's. A resumed run loads the passes that completed
//! instead of running them again, and once it completes nothing to resume
//! from is left in the output folder.

use crate::binary;
use crate::mixed;

use std::sync::Arc;
use std::time::Duration;

use binary::names as file_names;
use drainpipe::jobs::dedup::memory::MemoryRecord;
use drainpipe::jobs::dedup::resume::{SIGNATURES_FILE, VERIFIED_FILE};
use drainpipe::jobs::dedup::{CLUSTERS_FILE, KEPT_FILE};
use drainpipe_actors::{RunReport, CHECKPOINT_FILE, REJECTS_FILE};
use mixed::{outputs, records, run, run_leg, Leg, StopAt};

/// An interrupted leg and what it must leave behind.
struct Stop {
    at: StopAt,
    /// `(workers, window, batch)`: fixed batches, so a stop asked for
    /// mid-pass always comes before the pass's end.
    tuning: (usize, usize, usize),
    /// The pass the report says the run stopped in.
    stopped_in: &'static str,
    /// Whether the pass left a checkpoint (passes 1 and 2 do, when the stop
    /// came while they ran).
    checkpoint: bool,
    /// Passes whose results are kept: 0, 1 or 2.
    completed: usize,
}

fn stop(
    at: StopAt,
    tuning: (usize, usize, usize),
    stopped_in: &'static str,
    checkpoint: bool,
    completed: usize,
) -> Stop {
    Stop {
        at,
        tuning,
        stopped_in,
        checkpoint,
        completed,
    }
}

fn during(pass: &'static str, after: u64) -> StopAt {
    StopAt::During { pass, after }
}

fn assert_stopped(report: &RunReport, dir: &std::path::Path, s: &Stop, label: &str) {
    assert_eq!(report.exit_code, 130, "{label}: {}", report.human());
    assert!(report.conservation, "{label}: {}", report.human());
    assert_eq!(
        report.result["stopped_in_pass"], s.stopped_in,
        "{label}: {}",
        report.result
    );
    assert_eq!(
        dir.join(CHECKPOINT_FILE).exists(),
        s.checkpoint,
        "{label}: checkpoint; {:?}",
        file_names(dir)
    );
    if s.checkpoint {
        assert!(report.checkpoints.count >= 1, "{label}");
    }
    for (i, name) in [SIGNATURES_FILE, VERIFIED_FILE].iter().enumerate() {
        assert_eq!(
            dir.join(name).exists(),
            i < s.completed,
            "{label}: {name}; {:?}",
            file_names(dir)
        );
    }
    for name in [KEPT_FILE, CLUSTERS_FILE] {
        assert!(!dir.join(name).exists(), "{label}: {name} written");
    }
}

/// Runs the legs in `stops`, then a last leg without a stop, and checks
/// the outputs against `expected`; `loaded` is which passes the last leg
/// must have loaded rather than run.
fn stopped_and_resumed(
    label: &str,
    records: &Arc<Vec<MemoryRecord>>,
    expected: &[(String, Vec<u8>)],
    stops: &[Stop],
    loaded: [bool; 3],
) {
    let dir = tempfile::tempdir().unwrap();
    for (i, s) in stops.iter().enumerate() {
        let (workers, window, batch) = s.tuning;
        let leg = Leg {
            workers,
            window,
            batch: Some(batch),
            resume: i > 0,
            stop: Some(s.at),
            // Every other leg also takes periodic checkpoints.
            checkpoint_every: (i % 2 == 1).then(|| Duration::from_millis(1)),
            ..Leg::default()
        };
        let report = run_leg(records, dir.path(), &leg).unwrap();
        assert_stopped(&report, dir.path(), s, &format!("{label}, leg {}", i + 1));
    }
    let last = Leg {
        resume: true,
        ..Leg::default()
    };
    let report = run_leg(records, dir.path(), &last).unwrap();
    assert_eq!(report.exit_code, 0, "{label}: {}", report.human());
    assert!(report.conservation, "{label}");
    assert_eq!(report.records.read, records.len() as u64, "{label}");
    assert_eq!(report.records.rejected, 3, "{label}");
    let passes = report.result["passes"].as_array().unwrap();
    let was_loaded: Vec<bool> = passes.iter().map(|p| p["loaded"] == true).collect();
    assert_eq!(was_loaded, loaded, "{label}: {passes:?}");
    for ((name, want), (_, got)) in expected.iter().zip(outputs(dir.path())) {
        assert!(
            *want == got,
            "{label}: {name} differs from the uninterrupted run's"
        );
    }
    assert_eq!(
        file_names(dir.path()),
        [CLUSTERS_FILE, KEPT_FILE, REJECTS_FILE],
        "{label}: a complete run leaves only its outputs"
    );
}

#[test]
fn a_stop_in_each_pass_then_resumes_match_an_uninterrupted_run() {
    let records = Arc::new(records());
    let expected = run(&records, 2, 4, None).files;
    stopped_and_resumed(
        "one stop in each pass",
        &records,
        &expected,
        &[
            stop(during("signatures", 300), (1, 1, 7), "signatures", true, 0),
            stop(during("verify", 500), (3, 5, 13), "verify", true, 1),
            stop(during("kept", 400), (2, 2, 29), "kept", false, 2),
        ],
        [true, true, false],
    );
}

#[test]
fn stops_twice_in_a_pass_and_between_passes_then_resumes_match() {
    let records = Arc::new(records());
    let expected = run(&records, 2, 4, None).files;
    stopped_and_resumed(
        "twice in pass 1, between passes 1 and 2, in a fresh pass 2",
        &records,
        &expected,
        &[
            stop(during("signatures", 200), (2, 3, 11), "signatures", true, 0),
            stop(during("signatures", 900), (3, 2, 5), "signatures", true, 0),
            // Pass 1 completes in this leg; the stop comes before pass 2.
            stop(StopAt::Opening(2), (1, 4, 17), "verify", false, 1),
            stop(during("verify", 100), (2, 6, 9), "verify", true, 1),
        ],
        [true, false, false],
    );
    stopped_and_resumed(
        "between passes 2 and 3, then at once in the resumed pass 3",
        &records,
        &expected,
        &[
            stop(StopAt::Opening(3), (2, 2, 23), "kept", false, 2),
            stop(StopAt::Opening(1), (1, 1, 3), "kept", false, 2),
        ],
        [true, true, false],
    );
    stopped_and_resumed(
        "at once in a fresh pass 1, then in pass 2 twice",
        &records,
        &expected,
        &[
            stop(StopAt::Opening(1), (2, 4, 31), "signatures", true, 0),
            stop(during("verify", 250), (1, 2, 8), "verify", true, 1),
            stop(during("verify", 1000), (3, 3, 19), "verify", true, 1),
        ],
        [true, false, false],
    );
}

/// Guarantee: checkpoints taken while running do not change the result,
/// and a complete run removes everything it kept to resume from.
#[test]
fn periodic_checkpoints_leave_the_result_unchanged_and_nothing_behind() {
    let records = Arc::new(records());
    let expected = run(&records, 2, 4, None).files;
    let dir = tempfile::tempdir().unwrap();
    let leg = Leg {
        batch: Some(3),
        checkpoint_every: Some(Duration::from_millis(1)),
        ..Leg::default()
    };
    let report = run_leg(&records, dir.path(), &leg).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_eq!(outputs(dir.path()), expected);
    assert_eq!(
        file_names(dir.path()),
        [CLUSTERS_FILE, KEPT_FILE, REJECTS_FILE]
    );
}
