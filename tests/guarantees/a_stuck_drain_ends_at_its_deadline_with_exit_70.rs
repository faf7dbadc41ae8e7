//! No hang: when a batch never completes, Draining ends at its deadline with
//! a stall report, the batch's records are counted as abandoned (never
//! silently lost), no output is written, and the run exits 70.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_conserved, output, MemorySource, Script};
use drainpipe_actors::{Pipeline, RunHandle, Settings};

#[test]
fn a_stuck_batch_is_abandoned_at_the_drain_deadline() {
    let mut records: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    records[150] = "sleep:4000".into();
    let handle = RunHandle::new();
    let stopper = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            while handle.records_done() < 100 {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(100));
            handle.request_stop();
        })
    };
    let (_dir, out) = output();
    let started = Instant::now();
    let report = Pipeline::new(Script::default(), MemorySource::new(records), out.clone())
        .settings(Settings {
            workers: 2,
            window: 4,
            batch: Some(10),
            drain_timeout: Duration::from_secs(1),
            ..Settings::default()
        })
        .handle(handle)
        .run()
        .unwrap();
    stopper.join().unwrap();
    let took = started.elapsed();
    assert_eq!(report.exit_code, 70, "{}", report.human());
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("drain timed out") && e.contains("in flight: [#15")),
        "{:?}",
        report.errors
    );
    assert!(report.records.abandoned >= 10, "{}", report.human());
    assert_conserved(&report);
    assert!(!report.outputs_written);
    assert!(!out.file("indices.txt").exists());
}
