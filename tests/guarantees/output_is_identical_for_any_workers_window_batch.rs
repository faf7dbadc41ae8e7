//! The result does not depend on N, W, the batch size or timing: every
//! output file is byte-identical across them.

use drainpipe::jobs::{vocab, RunContext};
use drainpipe_actors::{OutputDir, Settings};

fn run(workers: usize, window: usize, batch: Option<usize>) -> (Vec<u8>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    ctx.demo_docs = 1_000;
    ctx.settings = Settings {
        workers,
        window,
        batch,
        ..Settings::default()
    };
    let report = vocab::run(&ctx).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert!(report.conservation);
    (
        std::fs::read(dir.path().join("vocab.tsv")).unwrap(),
        report.result,
    )
}

#[test]
fn vocab_output_is_byte_identical() {
    let (reference, result) = run(1, 1, Some(1));
    assert!(reference.len() > 5_000);
    for workers in 1..=4 {
        for window in [1, 5] {
            for batch in [Some(1), Some(13), None] {
                let (bytes, r) = run(workers, window, batch);
                assert!(
                    bytes == reference,
                    "vocab.tsv differs: workers={workers} window={window} batch={batch:?}"
                );
                assert_eq!(r, result);
            }
        }
    }
}
