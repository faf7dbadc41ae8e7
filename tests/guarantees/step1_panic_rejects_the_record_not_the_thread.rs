//! A panic in step 1 rejects that record, with the panic's message, and the
//! processor thread survives it: every one of the N threads keeps working
//! after the panics.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{assert_conserved, output, MemorySource, Script};
use drainpipe_actors::{Pipeline, Settings};

#[test]
fn panics_become_rejects_and_every_thread_keeps_working() {
    let workers = 3;
    // Every one of the first 60 records panics, so each thread meets
    // several panics; 3,000 ordinary records follow.
    let mut records: Vec<String> = (0..60).map(|_| "panic".to_owned()).collect();
    records.extend((0..3_000).map(|i| format!("sleep:{}", i % 2)));
    let job = Arc::new(Script::default());
    let (_dir, out) = output();
    let report =
        Pipeline::with_shared_job(Arc::clone(&job), MemorySource::new(records), out.clone())
            .settings(Settings {
                workers,
                window: 6,
                batch: Some(5),
                ..Settings::default()
            })
            .run()
            .unwrap();

    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_conserved(&report);
    assert_eq!(report.records.rejected, 60);
    assert_eq!(report.records.integrated, 3_000);

    let rejects = std::fs::read_to_string(out.file("rejects.jsonl")).unwrap();
    for (i, line) in rejects.lines().enumerate() {
        let reject: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(reject["line"], i as u64 + 1);
        assert_eq!(reject["file"], "memory");
        let reason = reject["reason"].as_str().unwrap();
        assert!(
            reason.contains("panic in step 1") && reason.contains("scripted panic"),
            "{reason}"
        );
    }

    // Which threads processed records after the last panic: all of them.
    let threads = job.threads.lock().unwrap();
    let after: BTreeSet<&str> = threads
        .iter()
        .filter(|(index, _)| *index >= 1_000)
        .map(|(_, name)| name.as_str())
        .collect();
    assert_eq!(
        after.len(),
        workers,
        "threads alive after the panics: {after:?}"
    );
}
