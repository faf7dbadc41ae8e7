//! A coordinator killed with `kill -9` cannot remove its run's stream.
//! What happens to it: resumed under the same `--run` name, the run removes
//! it before it starts (tested in
//! `a_distributed_run_interrupted_and_resumed_gives_the_uninterrupted_outputs`);
//! any other run has a stream of its own, so none of the dead run's
//! batches or answers reaches it; and the workers remove the dead run's
//! stream once it has given no sign of life (no heartbeat, no batch, no
//! answer) for longer than the run said its broker could be away
//! (`--nats-deadline`, at least 10 s), so it does not stay on the broker
//! forever. A live run that waits on a slow worker beats, and keeps its
//! stream. Each test starts its own `nats-server` on 127.0.0.1.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::binary::{drainpipe, signal, spawn, summary, wait};
use crate::nats::{same_files, NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

fn vocab(docs: u32, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--demo-docs", &docs.to_string(), "--no-progress"])
        .args(["--checkpoint-every", "0", "-o"])
        .arg(out)
        .args(extra);
    cmd
}

fn same_vocab(a: &Path, b: &Path) {
    same_files(a, b, &["vocab.tsv"], "distributed");
}

#[test]
fn a_killed_coordinators_stream_is_removed_by_the_workers_and_never_feeds_a_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let out = wait(spawn(vocab(3000, &single, &[])), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0));

    let server = NatsServer::start();
    let url = server.url();
    let mut slow = Worker::start(&url, 1, Some("worker::took_batch=sleep(40)"));
    let took = slow.took_a_batch();
    let dead = dir.path().join("dead");
    let remote = ["--nats", url.as_str(), "--batch", "32"];
    let mut first = vocab(3000, &dead, &remote);
    first.args(["--run", "dead", "--nats-deadline", "1"]);
    let run = spawn(first);
    took.recv_timeout(DEADLINE)
        .expect("the worker took a batch");
    signal(&run, "KILL");
    let _ = wait(run, Duration::from_secs(10));
    let stream = "DRAINPIPE-dead-vocab".to_owned();
    assert!(
        server.streams().contains(&stream),
        "the killed run left its stream: {:?}",
        server.streams()
    );

    // A new run (its own default name) beside the dead run's leftovers.
    let _fresh = Worker::start(&url, 1, None);
    let new = dir.path().join("new");
    let out = wait(spawn(vocab(3000, &new, &remote)), DEADLINE).0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    same_vocab(&single, &new);
    let s = summary(&new);
    assert_eq!(s["conservation"], true);
    assert_eq!(s["remote"]["duplicates"], 0, "{}", s["remote"]);
    assert_eq!(s["remote"]["unreadable"], 0, "{}", s["remote"]);

    // The workers remove the dead run's stream once it stays silent.
    let started = Instant::now();
    while server.streams().contains(&stream) {
        assert!(
            started.elapsed() < DEADLINE,
            "the dead run's stream is still there: {:?}",
            server.streams()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_live_run_waiting_on_a_slow_worker_keeps_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let out = wait(spawn(vocab(20, &single, &[])), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0));

    let server = NatsServer::start();
    // Holds its one batch 12 s: longer than a dead run's stream is kept
    // (10 s at --nats-deadline 1), with no batch or answer meanwhile.
    let _worker = Worker::start(&server.url(), 1, Some("worker::took_batch=sleep(12000)"));
    let live = dir.path().join("live");
    let url = server.url();
    let remote = ["--nats", url.as_str(), "--nats-deadline", "1"];
    let remote = [remote.as_slice(), &["--batch", "100"]].concat();
    let out = wait(spawn(vocab(20, &live, &remote)), DEADLINE).0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    same_vocab(&single, &live);
    assert!(server.streams().is_empty(), "{:?}", server.streams());
}
