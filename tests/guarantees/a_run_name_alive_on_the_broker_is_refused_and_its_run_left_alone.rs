//! Two runs given the same `--run NAME` on one broker: the second used to
//! delete the first's stream as a killed run's, so the first waited for
//! answers that never came. Now a run that finds streams of its name
//! watches them for a heartbeat (three heartbeats at most): one that beats
//! is a live run's, and the second run is refused with exit 2 naming the
//! run, without touching it; the first ends with the single-process
//! outputs. A killed run's silent stream is still removed by a run resumed
//! under its name
//! (`a_distributed_run_interrupted_and_resumed_gives_the_uninterrupted_outputs`).
//! Two runs of one name started at the same moment, before either has a
//! stream to watch, do not share one: the name is claimed on the broker
//! with a compare-and-set, so exactly one goes on and the other exits 2
//! naming the name. Each test starts its own `nats-server` on 127.0.0.1.

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::time::Duration;

use crate::binary::{drainpipe, spawn, summary, wait};
use crate::nats::{NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

fn vocab(out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--demo-docs", "2000", "--no-progress", "-o"])
        .arg(out)
        .args(extra);
    cmd
}

#[test]
fn a_second_run_of_a_live_runs_name_is_refused_and_the_first_ends_intact() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let out = wait(spawn(vocab(&single, &[])), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0));

    let server = NatsServer::start();
    let url = server.url();
    // Its first batch takes 8 s: the first run is alive and beating while
    // the second starts.
    let mut worker = Worker::start(&url, 1, Some("worker::took_batch=1*sleep(8000)"));
    let took = worker.took_a_batch();
    let remote = ["--nats", url.as_str(), "--run", "same", "--batch", "100"];
    let first_out = dir.path().join("first");
    let first = spawn(vocab(&first_out, &remote));
    took.recv_timeout(DEADLINE)
        .expect("the worker took a batch");

    let second_out = dir.path().join("second");
    let (out, _) = wait(spawn(vocab(&second_out, &remote)), DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--run same: a run of that name is alive")
            && stderr.contains("DRAINPIPE-same-vocab"),
        "{stderr}"
    );
    assert!(!second_out.join("vocab.tsv").exists());

    let (out, _) = wait(first, DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read(first_out.join("vocab.tsv")).unwrap(),
        std::fs::read(single.join("vocab.tsv")).unwrap(),
        "vocab.tsv differs from the single-process run's"
    );
    assert_eq!(summary(&first_out)["conservation"], true);
    assert!(server.streams().is_empty(), "{:?}", server.streams());
}

#[test]
fn two_runs_of_one_name_started_at_once_one_goes_on_and_the_other_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let out = wait(spawn(vocab(&single, &[])), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0));

    let server = NatsServer::start();
    let url = server.url();
    // Every batch is held until the test releases it, so neither run can
    // end before the other has started and been judged.
    let gate = dir.path().join("gate");
    std::fs::write(&gate, b"").unwrap();
    let hold = format!("worker::hold_once_file_exists=return({})", gate.display());
    let _worker = Worker::start(&url, 1, Some(&hold));
    let remote = ["--nats", url.as_str(), "--run", "twin", "--batch", "100"];
    let outs = [dir.path().join("a"), dir.path().join("b")];
    let mut runs: Vec<_> = outs
        .iter()
        .map(|o| Some(spawn(vocab(o, &remote))))
        .collect();
    // The first to end is the refused one; the other waits for its batches.
    let started = std::time::Instant::now();
    let loser = loop {
        if let Some(i) = (0..2).find(|&i| {
            runs[i]
                .as_mut()
                .is_some_and(|run| run.try_wait().unwrap().is_some())
        }) {
            break i;
        }
        assert!(started.elapsed() < DEADLINE, "neither run was refused");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, _) = wait(runs[loser].take().unwrap(), DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--run twin: a run of that name is alive"),
        "{stderr}"
    );
    assert!(!outs[loser].join("vocab.tsv").exists());

    std::fs::write(format!("{}.release", gate.display()), b"").unwrap();
    let winner = 1 - loser;
    let (out, _) = wait(runs[winner].take().unwrap(), DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read(outs[winner].join("vocab.tsv")).unwrap(),
        std::fs::read(single.join("vocab.tsv")).unwrap(),
        "vocab.tsv differs from the single-process run's"
    );
    assert_eq!(summary(&outs[winner])["conservation"], true);
    assert!(server.streams().is_empty(), "{:?}", server.streams());
}
