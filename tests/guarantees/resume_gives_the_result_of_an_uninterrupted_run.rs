//! Checkpoints and `--resume`: a run stopped at any moment and resumed
//! (possibly several times, with other workers, window and batch) ends with
//! outputs byte-identical to an uninterrupted run's, and conservation holds
//! over the whole.

use std::time::Duration;

use drainpipe::jobs::{vocab, RunContext};
use drainpipe_actors::{OutputDir, RunHandle, Settings, CHECKPOINT_FILE};

const DOCS: u64 = 20_000;

fn context(dir: &std::path::Path, settings: Settings) -> RunContext {
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir).unwrap());
    ctx.demo_docs = DOCS;
    ctx.fingerprint = "vocab over the demo corpus".into();
    ctx.settings = settings;
    ctx
}

fn settings(workers: usize, window: usize, batch: Option<usize>) -> Settings {
    Settings {
        workers,
        window,
        batch,
        ..Settings::default()
    }
}

/// Runs until `stop_after` records are done, then stops (like SIGINT).
fn interrupted(ctx: &mut RunContext, stop_after: u64) -> u64 {
    let handle = RunHandle::new();
    ctx.handle = handle.clone();
    let stopper = std::thread::spawn(move || {
        while handle.records_done() < stop_after
            && handle.phase() == drainpipe_actors::Phase::Running
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        handle.request_stop();
    });
    let report = vocab::run(ctx).unwrap();
    stopper.join().unwrap();
    assert!(report.conservation, "{}", report.human());
    report.records.read
}

#[test]
fn interrupted_and_resumed_runs_match_an_uninterrupted_one() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = vocab::run(&context(reference_dir.path(), settings(2, 4, None))).unwrap();
    assert_eq!(reference.exit_code, 0);
    let expected = std::fs::read(reference_dir.path().join("vocab.tsv")).unwrap();

    for (stops, label) in [
        (vec![1_000], "one stop"),
        (vec![300, 7_000, 15_000], "three stops"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut resumed_at = 0;
        for (i, stop_after) in stops.iter().enumerate() {
            // Each leg with other tuning: the result must not care.
            let mut ctx = context(dir.path(), settings(1 + i % 3, 1 + 2 * i, Some(7 + 50 * i)));
            ctx.resume = i > 0;
            let read = interrupted(&mut ctx, *stop_after);
            if read < DOCS {
                assert!(
                    dir.path().join(CHECKPOINT_FILE).exists(),
                    "{label}: no checkpoint"
                );
                assert!(read >= resumed_at, "{label}");
                resumed_at = read;
            }
        }
        let mut ctx = context(dir.path(), settings(2, 3, None));
        ctx.resume = true;
        let last = vocab::run(&ctx).unwrap();
        assert_eq!(last.exit_code, 0, "{label}: {}", last.human());
        assert!(last.conservation);
        assert_eq!(last.records.read, DOCS);
        assert_eq!(last.records.integrated, DOCS);
        assert_eq!(last.checkpoints.resumed_at, resumed_at, "{label}");
        let got = std::fs::read(dir.path().join("vocab.tsv")).unwrap();
        assert!(
            got == expected,
            "{label}: vocab.tsv differs from the uninterrupted run's"
        );
        assert!(
            !dir.path().join(CHECKPOINT_FILE).exists(),
            "a complete run removes its checkpoint"
        );
    }
}

#[test]
fn periodic_checkpoints_are_taken_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path(), settings(2, 4, Some(10)));
    ctx.demo_docs = 30_000;
    ctx.checkpoint_every = Some(Duration::from_millis(50));
    let report = vocab::run(&ctx).unwrap();
    assert_eq!(report.exit_code, 0);
    assert!(report.checkpoints.count >= 2, "{:?}", report.checkpoints);
    assert!(report.checkpoints.bytes > 0);
    let reference_dir = tempfile::tempdir().unwrap();
    let mut reference = context(reference_dir.path(), settings(2, 4, None));
    reference.demo_docs = 30_000;
    vocab::run(&reference).unwrap();
    assert!(
        std::fs::read(dir.path().join("vocab.tsv")).unwrap()
            == std::fs::read(reference_dir.path().join("vocab.tsv")).unwrap(),
        "checkpoints changed the result"
    );
}
