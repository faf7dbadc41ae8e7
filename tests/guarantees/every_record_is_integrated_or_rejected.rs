//! Conservation: every record read is integrated or rejected, exactly once,
//! whatever the number of workers, the window, the batch size and the input
//! size, with step-1 panics, errors, parse failures and reader rejects mixed
//! in.

use crate::common;

use std::sync::Arc;

use common::{assert_conserved, mixed_records, output, MemorySource, Script};
use drainpipe_actors::{Pipeline, Settings};

fn run(n: usize, workers: usize, window: usize, batch: Option<usize>) {
    let (_dir, out) = output();
    let records = mixed_records(n);
    let report = Pipeline::with_shared_job(
        Arc::new(Script::default()),
        MemorySource::new(records.clone()),
        out.clone(),
    )
    .settings(Settings {
        workers,
        window,
        batch,
        ..Settings::default()
    })
    .run()
    .unwrap();
    let label = format!("n={n} workers={workers} window={window} batch={batch:?}");
    assert_eq!(report.exit_code, 0, "{label}: {}", report.human());
    assert_conserved(&report);
    assert_eq!(report.records.read, n as u64, "{label}");
    let bad =
        |r: &String| ["panic", "error", "bad"].contains(&r.as_str()) || r.starts_with("reject:");
    let expected_rejects = records.iter().filter(|r| bad(r)).count() as u64;
    assert_eq!(report.records.rejected, expected_rejects, "{label}");
    // Exactly the good records, each once, in input order.
    let seen = std::fs::read_to_string(out.file("indices.txt")).unwrap();
    let expected: String = records
        .iter()
        .enumerate()
        .filter(|(_, r)| !bad(r))
        .map(|(i, _)| format!("{i}\n"))
        .collect();
    assert!(seen == expected, "{label}: integrated records differ");
    let rejects = std::fs::read_to_string(out.file("rejects.jsonl")).unwrap_or_default();
    assert_eq!(rejects.lines().count() as u64, expected_rejects, "{label}");
}

#[test]
fn across_workers_windows_and_batches() {
    for workers in 1..=4 {
        for window in [1, 2, 3, 8] {
            for batch in [Some(1), Some(7), Some(64), None] {
                run(1_000, workers, window, batch);
            }
        }
    }
}

#[test]
fn across_input_sizes() {
    for n in [0, 1, 2, 63, 64, 65, 5_000, 30_000] {
        run(n, 2, 4, None);
        run(n, 3, 1, Some(17));
    }
}
