//! A distributed run whose broker goes away and stays away: while it waits
//! the stall report names the broker; past `--nats-deadline` the run runs
//! step 1 of the batches it held itself, drains, takes a checkpoint and
//! fails with exit 70 and a message that says the broker at its URL has
//! been unreachable for so many seconds. Resumed once a broker is back
//! (here, another one), it ends with the outputs of an uninterrupted run;
//! so does dedup, its broker gone during its first pass.
//! The test starts a real `nats-server` on 127.0.0.1 and kills it.

use std::path::Path;
use std::time::Duration;

use drainpipe_actors::CHECKPOINT_FILE;

use crate::binary::{drainpipe, spawn, summary, wait};
use crate::nats::{NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

fn vocab(out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--demo-docs", "3000", "--no-progress", "-o"])
        .arg(out)
        .args(extra);
    cmd
}

#[test]
fn a_broker_that_stays_away_past_the_deadline_fails_the_run_with_exit_70_and_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = wait(spawn(vocab(&single, &[])), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0));

    let mut server = NatsServer::start();
    let url = server.url();
    // A slow worker: the run is still going when the broker goes.
    let mut worker = Worker::start(&url, 1, Some("worker::took_batch=sleep(50)"));
    let took = worker.took_a_batch();
    let run = spawn(vocab(
        &distributed,
        &[
            "--nats",
            &url,
            "--nats-deadline",
            "3",
            "--stall-timeout",
            "1",
            "--batch",
            "32",
            "--checkpoint-every",
            "0",
        ],
    ));
    took.recv_timeout(DEADLINE)
        .expect("the worker took a batch");
    server.stop();
    let out = wait(run, DEADLINE).0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    let port = url.rsplit(':').next().unwrap();
    let named = format!("the broker at nats://127.0.0.1:{port} has been unreachable for");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("STALL") && l.contains(&named)),
        "a stall report names the broker while the run waits: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&named) && l.contains("s (--nats-deadline 3s): the run stops")),
        "the failure says for how long, and why the run stops: {stderr}"
    );
    assert!(distributed.join(CHECKPOINT_FILE).exists(), "a checkpoint");
    let s = summary(&distributed);
    assert_eq!(s["exit_code"], 70);
    assert_eq!(s["conservation"], true, "{s}");
    assert!(
        s["cause"].as_str().unwrap().contains(&named),
        "the summary's cause names the broker: {}",
        s["cause"]
    );
    assert!(!distributed.join("vocab.tsv").exists(), "no output");
    drop(worker);

    // Another broker, another worker: --resume goes on from the checkpoint.
    let server = NatsServer::start();
    let _worker = Worker::start(&server.url(), 2, None);
    let mut again = vocab(&distributed, &["--nats", &server.url(), "--resume"]);
    again.args(["--checkpoint-every", "0"]);
    let out = wait(spawn(again), DEADLINE).0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&distributed);
    assert!(s["checkpoints"]["resumed_at"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["conservation"], true);
    assert!(
        std::fs::read(distributed.join("vocab.tsv")).unwrap()
            == std::fs::read(single.join("vocab.tsv")).unwrap(),
        "vocab.tsv differs from the uninterrupted run's"
    );
}

#[test]
fn dedup_whose_broker_stays_away_fails_with_exit_70_and_resumes_to_the_uninterrupted_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let dedup = |out: &Path, extra: &[&str]| {
        let mut cmd = drainpipe();
        cmd.args(["dedup", "--demo-docs", "3000", "--no-progress", "-o"])
            .arg(out)
            .args(extra);
        cmd
    };
    let out = wait(spawn(dedup(&single, &[])), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0));

    let mut server = NatsServer::start();
    let url = server.url();
    let mut worker = Worker::start(&url, 1, Some("worker::took_batch=sleep(50)"));
    let took = worker.took_a_batch();
    let remote = [
        "--nats",
        url.as_str(),
        "--nats-deadline",
        "2",
        "--batch",
        "32",
    ];
    let run = spawn(dedup(&distributed, &remote));
    took.recv_timeout(DEADLINE)
        .expect("the worker took a batch");
    server.stop();
    let out = wait(run, DEADLINE).0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(stderr.contains("has been unreachable for"), "{stderr}");
    assert!(distributed.join(CHECKPOINT_FILE).exists(), "a checkpoint");
    assert!(!distributed.join("kept.jsonl").exists(), "no output");
    drop(worker);

    let server = NatsServer::start();
    let _worker = Worker::start(&server.url(), 2, None);
    let again = dedup(&distributed, &["--nats", &server.url(), "--resume"]);
    let out = wait(spawn(again), DEADLINE).0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(summary(&distributed)["conservation"], true);
    for name in ["kept.jsonl", "clusters.jsonl"] {
        assert!(
            std::fs::read(distributed.join(name)).unwrap()
                == std::fs::read(single.join(name)).unwrap(),
            "{name} differs from the uninterrupted run's"
        );
    }
}
