//! A distributed run (`--nats`) stopped as SIGINT stops it drains the
//! batches the workers hold, checkpoints and stops; resumed (distributed
//! again, as another run on the broker), it ends with the outputs of an
//! uninterrupted single-process run, and conservation holds over the
//! whole. A coordinator killed with SIGKILL leaves its stream on the
//! broker; resumed under the same `--run` name, it removes that stream
//! (none of the dead run's batches or answers is taken for the new run's)
//! and ends with the same outputs.

use std::time::Duration;

use drainpipe::jobs::{vocab, RunContext};
use drainpipe_actors::remote::{Broker, RemoteSettings};
use drainpipe_actors::{OutputDir, Phase, RunHandle, Settings, CHECKPOINT_FILE};

use crate::binary::{drainpipe, signal, spawn, summary, wait};
use crate::nats::{Cluster, NatsServer, Worker};

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

    let server = Cluster::start(2);
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

#[test]
fn a_coordinator_killed_and_resumed_under_its_run_name_gives_the_uninterrupted_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let vocab = |out: &std::path::Path, extra: &[&str]| {
        let mut cmd = drainpipe();
        cmd.args(["vocab", "--demo-docs", "3000", "--no-progress", "-o"])
            .arg(out);
        cmd.args(extra);
        cmd
    };
    let out = wait(spawn(vocab(&single, &[])), Duration::from_secs(120)).0;
    assert_eq!(out.status.code(), Some(0));

    let server = NatsServer::start();
    // The only worker of the first run. Once the run's first checkpoint
    // exists, it holds each batch it takes, unanswered, until the test
    // releases it: it then still holds batches of the killed run when the
    // resumed run has made its stream, and answers them late, with the
    // batch numbers the resumed run uses. Those answers must neither pass
    // for the resumed run's nor take their message ids (the broker would
    // drop the real answers as duplicates, and the run wait for them).
    // Each batch costs it 50 ms at least, so batches remain after the
    // first checkpoint (due after 1 s) for it to hold, however slow the
    // machine.
    let checkpoint = distributed.join(CHECKPOINT_FILE);
    let failpoints = format!(
        "worker::took_batch=sleep(50);worker::hold_once_file_exists=return({})",
        checkpoint.display()
    );
    let mut late = Worker::start(&server.url(), 1, Some(&failpoints));
    let late_lines = late.lines();
    let url = server.url();
    let remote = ["--nats", url.as_str(), "--run", "again", "--batch", "16"];
    let mut first = vocab(&distributed, &remote);
    // Held batches are never given to another worker in this run.
    first.args(["--checkpoint-every", "1", "--nats-ack-wait", "600"]);
    let run = spawn(first);
    while !late_lines
        .recv_timeout(Duration::from_secs(120))
        .expect("the worker holds a batch taken after the first checkpoint")
        .contains("held until")
    {}
    signal(&run, "KILL");
    let _ = wait(run, Duration::from_secs(10));
    // The resumed run's batches go to a worker that holds none.
    let _quick = Worker::start(&server.url(), 1, None);

    let mut again = vocab(&distributed, &remote);
    again.args(["--resume", "--checkpoint-every", "0", "-v"]);
    let mut again = spawn(again);
    let (made, again_log) = lines_of(again.stderr.take().unwrap());
    made.recv_timeout(Duration::from_secs(120))
        .expect("the resumed run makes its stream");
    // Only now does the held batch get its (late) answer.
    std::fs::write(format!("{}.release", checkpoint.display()), b"").unwrap();
    let late = late.child.take().unwrap();
    let out = wait(again, Duration::from_secs(120)).0;
    let stderr = again_log.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&distributed);
    assert!(s["checkpoints"]["resumed_at"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["conservation"], true);
    assert!(
        std::fs::read(distributed.join("vocab.tsv")).unwrap()
            == std::fs::read(single.join("vocab.tsv")).unwrap(),
        "vocab.tsv differs from the uninterrupted run's"
    );
    assert_eq!(s["remote"]["unreadable"], 0);
    signal(&late, "INT");
    let _ = wait(late, Duration::from_secs(60));
    // Every line: the channel ends with the worker's stderr.
    let worker_log: Vec<String> = late_lines.iter().collect();
    assert!(
        worker_log
            .iter()
            .any(|l| l.contains("its run has ended; answer dropped")),
        "the late answers of the killed run were not dropped: {worker_log:?}"
    );
}

/// Reads `stderr` on a thread: fires once a line says the run made its
/// stream; the thread returns everything read.
fn lines_of(
    stderr: std::process::ChildStderr,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("run again: stream ") && line.contains(" made") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, reader)
}
