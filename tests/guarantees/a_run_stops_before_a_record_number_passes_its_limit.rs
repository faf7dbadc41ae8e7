//! A run that may read only so many records (`Settings::max_records`:
//! dedup numbers records with 32 bits, 4,294,967,295 a run, the records of
//! its `--against` indexes included) stops when its input holds more: no
//! record past the limit reaches step 1 or 2, the run exits 65 naming the
//! limit, the records past it are counted abandoned (conservation holds)
//! and no output is written. An input of exactly the limit is complete.
//! dedup's limit is lowered for the test through a failpoint
//! (`dedup::max_records`), the rest is the real run.

use crate::common;

#[cfg(feature = "failpoints")]
use std::path::Path;
#[cfg(feature = "failpoints")]
use std::process::Command;

use common::{assert_conserved, output, MemorySource, Script};
use drainpipe_actors::{Pipeline, Settings};

#[test]
fn no_record_past_the_limit_is_processed_and_the_run_exits_65() {
    for batch in [1, 7, 50] {
        let records: Vec<String> = (0..120).map(|i| format!("r{i}")).collect();
        let job = Script::default();
        let threads = job.threads.clone();
        let (_dir, out) = output();
        let report = Pipeline::new(job, MemorySource::new(records), out.clone())
            .settings(Settings {
                workers: 2,
                window: 4,
                batch: Some(batch),
                max_records: Some(50),
                ..Settings::default()
            })
            .run()
            .unwrap();
        assert_eq!(report.exit_code, 65, "{}", report.human());
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.contains("more than 50 records")),
            "{:?}",
            report.errors
        );
        let seen = threads.lock().unwrap();
        assert_eq!(seen.len(), 50, "batch {batch}: step 1 ran on {seen:?}");
        assert!(seen.iter().all(|&(index, _)| index < 50), "{seen:?}");
        assert_eq!(report.records.integrated, 50);
        assert!(report.records.abandoned >= 1, "{}", report.human());
        assert_conserved(&report);
        assert!(!report.outputs_written);
        assert!(!out.file("indices.txt").exists());
    }
}

#[test]
fn an_input_of_exactly_the_limit_is_complete() {
    let records: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let (_dir, out) = output();
    let report = Pipeline::new(Script::default(), MemorySource::new(records), out)
        .settings(Settings {
            batch: Some(7),
            max_records: Some(50),
            ..Settings::default()
        })
        .run()
        .unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_eq!(report.records.integrated, 50);
}

/// `dedup --demo-docs DOCS -o OUT` with its record limit lowered to 100.
#[cfg(feature = "failpoints")]
fn dedup(docs: u32, out: &Path) -> Command {
    let mut cmd = crate::binary::drainpipe();
    cmd.args(["dedup", "--no-progress", "--demo-docs"])
        .arg(docs.to_string())
        .arg("-o")
        .arg(out)
        .env("FAILPOINTS", "dedup::max_records=return(100)");
    cmd
}

#[test]
#[cfg(feature = "failpoints")]
fn dedup_past_its_record_limit_exits_65_with_no_output() {
    use crate::binary::{succeeded, summary};
    let dir = tempfile::tempdir().unwrap();
    let at_limit = dir.path().join("100");
    succeeded(&mut dedup(100, &at_limit));
    assert!(at_limit.join("kept.jsonl").exists());

    let past = dir.path().join("101");
    let run = dedup(101, &past).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("the input holds more than 100 records"),
        "{stderr}"
    );
    assert!(!past.join("kept.jsonl").exists());
    assert!(!past.join("clusters.jsonl").exists());
    let s = summary(&past);
    assert_eq!(s["exit_code"], 65);
    assert_eq!(s["conservation"], true);
    assert_eq!(s["records"]["read"], 101);
    assert_eq!(s["records"]["abandoned"], 1);

    // The records of an index count: 60 indexed leave 40 to the run.
    let index = dir.path().join("IDX");
    succeeded(
        dedup(60, &dir.path().join("60"))
            .arg("--save-index")
            .arg(&index),
    );
    let against = dir.path().join("against");
    succeeded(dedup(40, &against).arg("--against").arg(&index));
    let run = dedup(41, &dir.path().join("41"))
        .arg("--against")
        .arg(&index)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("more than 40 records"), "{stderr}");
}
