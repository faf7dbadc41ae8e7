//! Guarantee: a stop request (SIGINT) during any pass of `dedup` ends the
//! run promptly with exit code 130 and a partial report; no later pass
//! runs or hangs, and no `kept.jsonl`/`clusters.jsonl` is left behind
//! (not even a stale one from an earlier run). An input that changes
//! between passes fails the run the same way.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, RecordSource};

/// Runs dedup, asking for a stop when the input is opened for the
/// `stop_at`-th time (1: before pass 1 reads anything, 2: pass 2, 3: the
/// kept pass).
fn interrupted_at(stop_at: u32) -> (drainpipe_actors::RunReport, tempfile::TempDir) {
    let corpus = Corpus::new(CorpusSpec {
        docs: 400,
        ..CorpusSpec::default()
    });
    let records = Arc::new(
        corpus
            .docs()
            .map(|d| MemoryRecord::text(d.text))
            .collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let output = OutputDir::create(dir.path()).unwrap();
    output.write_all(KEPT_FILE, b"stale\n").unwrap();
    output.write_all(CLUSTERS_FILE, b"stale\n").unwrap();
    let ctx = RunContext::quiet(vec![], output);
    let opened = Cell::new(0);
    let handle = ctx.handle.clone();
    let open = || -> anyhow::Result<Box<dyn RecordSource>> {
        opened.set(opened.get() + 1);
        if opened.get() == stop_at {
            handle.request_stop();
        }
        Ok(Box::new(MemorySource::new(Arc::clone(&records))))
    };
    let started = Instant::now();
    let report = dedup::run_on(&ctx, &DedupParams::default(), &open, false).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the stop took too long"
    );
    assert!(opened.get() <= stop_at, "a pass ran after the stop");
    (report, dir)
}

#[test]
fn a_stop_in_any_pass_ends_the_run_without_output() {
    for stop_at in 1..=3 {
        let (report, dir) = interrupted_at(stop_at);
        assert_eq!(
            report.exit_code,
            130,
            "stop at {stop_at}: {}",
            report.human()
        );
        assert!(report.partial, "stop at {stop_at}");
        assert!(!report.outputs_written);
        assert_eq!(report.result["incomplete"], true);
        assert!(report.conservation, "stop at {stop_at}: {}", report.human());
        for name in [KEPT_FILE, CLUSTERS_FILE] {
            assert!(
                !dir.path().join(name).exists(),
                "stop at {stop_at}: {name} exists"
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// Guarantee: an input that does not yield the same records to every pass
/// (a file rewritten during the run) fails the run with exit code 74 and
/// no output, rather than writing clusters of records that changed.
#[test]
fn an_input_that_changes_between_passes_fails_without_output() {
    let corpus = Corpus::new(CorpusSpec {
        docs: 400,
        ..CorpusSpec::default()
    });
    let records: Vec<MemoryRecord> = corpus.docs().map(|d| MemoryRecord::text(d.text)).collect();
    let shorter = Arc::new(records[..350].to_vec());
    // As many records, one of them now unreadable: only the reject counts
    // of the passes tell.
    let mut one_unreadable = records.clone();
    one_unreadable[5] = MemoryRecord::rejected("unreadable now");
    let one_unreadable = Arc::new(one_unreadable);
    let records = Arc::new(records);
    for (changes_at, changed) in [
        (2, &shorter),
        (3, &shorter),
        (2, &one_unreadable),
        (3, &one_unreadable),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
        let opened = Cell::new(0);
        let open = || -> anyhow::Result<Box<dyn RecordSource>> {
            opened.set(opened.get() + 1);
            let records = if opened.get() == changes_at {
                changed
            } else {
                &records
            };
            Ok(Box::new(MemorySource::new(Arc::clone(records))))
        };
        let report = dedup::run_on(&ctx, &DedupParams::default(), &open, false).unwrap();
        assert_eq!(report.exit_code, 74, "{}", report.human());
        assert!(report.cause.contains("changed"), "{}", report.cause);
        assert!(!dir.path().join(KEPT_FILE).exists());
        assert!(!dir.path().join(CLUSTERS_FILE).exists());
    }
}
