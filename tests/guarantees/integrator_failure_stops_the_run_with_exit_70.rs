//! An error or a panic in step 2 is fatal: intake stops, what was dispatched
//! drains, the run reports the cause and exits 70, well within the deadline,
//! and no job output is written.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_conserved, output, MemorySource, Script, Step2};
use drainpipe_actors::{Pipeline, Settings};

fn run_failing(step2: Step2, expected: &str) {
    let records: Vec<String> = (0..50_000).map(|i| format!("record {i}")).collect();
    let (_dir, out) = output();
    let started = Instant::now();
    let report = Pipeline::new(
        Script {
            step2,
            ..Script::default()
        },
        MemorySource::new(records),
        out.clone(),
    )
    .settings(Settings {
        workers: 2,
        window: 4,
        batch: Some(10),
        drain_timeout: Duration::from_secs(10),
        ..Settings::default()
    })
    .run()
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(report.exit_code, 70, "{}", report.human());
    assert_eq!(report.exit, "failed");
    assert!(
        report.errors.iter().any(|e| e.contains(expected)),
        "{:?}",
        report.errors
    );
    // Intake stopped early: far from all 50,000 records were read.
    assert!(report.records.read < 50_000, "{}", report.human());
    assert!(report.records.integrated >= 1_234 - 1);
    assert_conserved(&report);
    assert!(!report.outputs_written);
    assert!(!out.file("indices.txt").exists());
}

#[test]
fn an_error_in_step_2_exits_70() {
    run_failing(
        Step2 {
            error_at: Some(1_234),
            ..Step2::default()
        },
        "scripted integrator error at 1234",
    );
}

#[test]
fn a_panic_in_step_2_exits_70() {
    run_failing(
        Step2 {
            panic_at: Some(1_234),
            ..Step2::default()
        },
        "panic in step 2: scripted integrator panic at 1234",
    );
}
