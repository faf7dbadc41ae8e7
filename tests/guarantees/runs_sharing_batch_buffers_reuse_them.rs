//! Runs given one `BatchBuffers` (a job's passes) share the Source's batch
//! buffers: a run that ends keeps its buffers for the next one instead of
//! freeing them, and the next run fills those rather than allocating its
//! own. The buffers kept stay bounded.

use crate::common;

use common::{output, MemorySource, Script};
use drainpipe_actors::{BatchBuffers, Pipeline, Settings};

fn run(buffers: &BatchBuffers, records: usize) {
    let records: Vec<String> = (0..records).map(|i| format!("record {i}")).collect();
    let (_dir, out) = output();
    let report = Pipeline::new(Script::default(), MemorySource::new(records), out)
        .settings(Settings {
            workers: 2,
            window: 4,
            batch: Some(100),
            ..Settings::default()
        })
        .sharing_buffers(buffers)
        .run()
        .unwrap();
    assert!(report.conservation);
}

#[test]
fn a_run_keeps_its_buffers_for_the_next_run_sharing_them() {
    let buffers = BatchBuffers::new();
    run(&buffers, 20_000);
    let made = buffers.made();
    assert!(made >= 1, "the first run allocates its buffers");
    assert_eq!(
        buffers.free(),
        made.min(BatchBuffers::KEPT),
        "the run's end freed buffers instead of keeping them"
    );
    // How many buffers one run holds at once depends on scheduling (a
    // loaded machine lets more batches pile up), so a later run may
    // allocate a few more than the first. What cannot happen when runs
    // keep their buffers is one allocation per run: after more runs than
    // the pool keeps, fewer buffers were made than there were runs.
    let runs = BatchBuffers::KEPT + 4;
    for _ in 1..runs {
        run(&buffers, 20_000);
        assert_eq!(
            buffers.free(),
            buffers.made().min(BatchBuffers::KEPT),
            "a run's end freed buffers instead of keeping them"
        );
    }
    assert!(
        buffers.made() < runs,
        "{runs} runs sharing buffers allocated {} of them: runs do not reuse the buffers kept",
        buffers.made()
    );
    assert!(buffers.free() <= BatchBuffers::KEPT);
    let made = buffers.made();
    buffers.release();
    assert_eq!(buffers.free(), 0, "released");
    run(&buffers, 1_000);
    assert!(
        buffers.made() > made,
        "a run after a release allocates again"
    );
}
