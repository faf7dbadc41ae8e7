//! A stop request (what SIGINT does) in the middle of a run drains every
//! mailbox: every record read is integrated or rejected, none is lost, the
//! outputs are written and marked partial, and the exit code is 130.

use crate::common;

use std::time::Duration;

use common::{assert_conserved, output, MemorySource, Script};
use drainpipe_actors::{Pipeline, RunHandle, Settings};

#[test]
fn a_stop_mid_run_drains_and_loses_nothing() {
    for (workers, window, batch) in [(1, 1, 1), (2, 4, 7), (4, 8, 3), (3, 2, 64)] {
        // Slow records keep batches in flight when the stop arrives.
        let records: Vec<String> = (0..100_000).map(|i| format!("sleep:{}", i % 2)).collect();
        let handle = RunHandle::new();
        let stopper = {
            let handle = handle.clone();
            std::thread::spawn(move || {
                while handle.records_done() < 50 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                handle.request_stop();
            })
        };
        let (_dir, out) = output();
        let report = Pipeline::new(Script::default(), MemorySource::new(records), out.clone())
            .settings(Settings {
                workers,
                window,
                batch: Some(batch),
                ..Settings::default()
            })
            .handle(handle)
            .run()
            .unwrap();
        stopper.join().unwrap();
        let label = format!("workers={workers} window={window} batch={batch}");
        assert_eq!(report.exit_code, 130, "{label}: {}", report.human());
        assert_eq!(report.exit, "interrupted");
        assert!(report.partial);
        assert_conserved(&report);
        assert_eq!(report.records.abandoned, 0, "{label}");
        assert!(
            report.records.read < 100_000,
            "{label}: the stop came too late"
        );
        assert_eq!(report.records.integrated, report.records.read, "{label}");
        let seen = std::fs::read_to_string(out.file("indices.txt")).unwrap();
        assert_eq!(seen.lines().count() as u64, report.records.read, "{label}");
        assert_eq!(report.result["partial"], true);
    }
}

#[test]
fn a_stop_before_anything_is_read_still_finishes_cleanly() {
    let handle = RunHandle::new();
    handle.request_stop();
    let (_dir, out) = output();
    let report = Pipeline::new(
        Script::default(),
        MemorySource::new(vec!["a".into(); 10]),
        out,
    )
    .handle(handle)
    .run()
    .unwrap();
    assert_eq!(report.exit_code, 130, "{}", report.human());
    assert_conserved(&report);
}
