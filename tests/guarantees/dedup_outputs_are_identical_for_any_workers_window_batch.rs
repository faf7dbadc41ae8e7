//! Guarantee: every output of `dedup` (kept.jsonl, clusters.jsonl,
//! rejects.jsonl and the summary's result, timings aside) is
//! byte-identical for any number of workers, window and batch size.

use crate::mixed;

use std::sync::Arc;

use mixed::{records, run};

#[test]
fn outputs_are_identical_for_any_workers_window_and_batch() {
    let records = Arc::new(records());
    let reference = run(&records, 1, 1, Some(1));
    assert!(reference.result["duplicates_removed"].as_u64().unwrap() > 10);
    for (workers, window, batch) in [(2, 3, Some(7)), (3, 8, None), (4, 2, Some(64))] {
        let other = run(&records, workers, window, batch);
        for ((name, a), (_, b)) in reference.files.iter().zip(&other.files) {
            assert!(
                a == b,
                "{name} differs with {workers} workers, window {window}, batch {batch:?}"
            );
        }
        assert_eq!(reference.result, other.result);
    }
}
