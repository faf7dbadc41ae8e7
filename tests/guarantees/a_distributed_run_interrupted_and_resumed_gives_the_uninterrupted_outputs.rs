//! A distributed run (`--nats`) stopped as SIGINT stops it drains the
//! batches the workers hold, checkpoints and stops; resumed (distributed
//! again, as another run on the broker), it ends with the outputs of an
//! uninterrupted single-process run, and conservation holds over the
//! whole.

use std::time::Duration;

use drainpipe::jobs::{vocab, RunContext};
use drainpipe_actors::remote::{Broker, RemoteSettings};
use drainpipe_actors::{OutputDir, Phase, RunHandle, Settings, CHECKPOINT_FILE};

use crate::nats::{NatsServer, Worker};

const DOCS: u64 = 20_000;

fn context(dir: &std::path::Path, remote: Option<(&str, &str)>) -> RunContext {
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir).unwrap());
    ctx.demo_docs = DOCS;
    ctx.fingerprint = "vocab over the demo corpus".into();
    ctx.settings = Settings {
        workers: 2,
        window: 4,
        batch: Some(100),
        ..Settings::default()
    };
    ctx.remote = remote.map(|(url, run)| RemoteSettings::new(Broker::new(url), run));
    ctx
}

#[test]
fn an_interrupted_distributed_run_resumes_to_the_uninterrupted_outputs() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = vocab::run(&context(reference_dir.path(), None)).unwrap();
    assert_eq!(reference.exit_code, 0, "{}", reference.human());

    let server = NatsServer::start();
    let _workers = [
        Worker::start(&server.url(), 1, None),
        Worker::start(&server.url(), 1, None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path(), Some((&server.url(), "first")));
    let handle = RunHandle::new();
    ctx.handle = handle.clone();
    let stopper = std::thread::spawn(move || {
        while handle.records_done() < 3_000 && handle.phase() == Phase::Running {
            std::thread::sleep(Duration::from_millis(1));
        }
        handle.request_stop();
    });
    let first = vocab::run(&ctx).unwrap();
    stopper.join().unwrap();
    assert_eq!(first.exit_code, 130, "{}", first.human());
    assert!(first.conservation, "{}", first.human());
    assert!(first.records.read < DOCS, "stopped before the end");
    assert!(dir.path().join(CHECKPOINT_FILE).exists(), "a checkpoint");

    let mut ctx = context(dir.path(), Some((&server.url(), "second")));
    ctx.resume = true;
    let last = vocab::run(&ctx).unwrap();
    assert_eq!(last.exit_code, 0, "{}", last.human());
    assert!(last.conservation);
    assert_eq!(last.records.read, DOCS);
    assert_eq!(last.checkpoints.resumed_at, first.records.read);
    assert!(
        std::fs::read(dir.path().join("vocab.tsv")).unwrap()
            == std::fs::read(reference_dir.path().join("vocab.tsv")).unwrap(),
        "vocab.tsv differs from the uninterrupted run's"
    );
    assert!(!dir.path().join(CHECKPOINT_FILE).exists());
}
