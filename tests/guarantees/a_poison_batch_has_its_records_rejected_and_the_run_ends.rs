//! A batch that kills every worker that takes it (a poison batch) is
//! delivered `--nats-max-deliver` times, then its records are rejected
//! with the reason, listed in `rejects.jsonl`, and the run ends: no record
//! lost, no hang. Every other record is integrated as in a single-process
//! run.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::binary::{drainpipe, spawn, summary};
use crate::nats::{NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn a_batch_that_kills_every_worker_is_rejected_and_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let server = NatsServer::start();
    // Every worker dies (abort) when it takes batch 2.
    let poison = Some("worker::dies_on_batch_2=return");
    let mut workers = vec![
        Worker::start(&server.url(), 1, poison),
        Worker::start(&server.url(), 1, poison),
    ];
    let mut cmd = drainpipe();
    cmd.args([
        "vocab",
        "--demo-docs",
        "1000",
        "--batch",
        "64",
        "--no-progress",
    ]);
    cmd.args(["--checkpoint-every", "0", "-o"]).arg(&out_dir);
    cmd.args([
        "--nats",
        &server.url(),
        "--nats-ack-wait",
        "1",
        "--nats-max-deliver",
        "2",
    ]);
    let mut run = spawn(cmd);
    // Workers that die are replaced, as a host's supervisor would.
    let started = Instant::now();
    let mut deaths = 0;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < DEADLINE, "the run did not end");
        for w in &mut workers {
            if exited(w.child.as_mut().unwrap()) {
                deaths += 1;
                *w = Worker::start(&server.url(), 1, poison);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        deaths >= 2,
        "each delivery killed a worker: {deaths} deaths"
    );
    let s = summary(&out_dir);
    assert_eq!(s["conservation"], true);
    assert_eq!(s["records"]["read"], 1000);
    // A batch another slot of a dying worker held dies with it: with two
    // deliveries allowed, it may be poisoned too. Each poisoned batch has
    // its 64 records rejected, batch 2's always.
    let poisoned = s["remote"]["poisoned"].as_u64().unwrap();
    assert!(poisoned >= 1, "{}", s["remote"]);
    let rejected = s["records"]["rejected"].as_u64().unwrap();
    assert_eq!(rejected, 64 * poisoned, "whole batches rejected");
    assert_eq!(
        s["records"]["integrated"].as_u64().unwrap(),
        1000 - rejected
    );
    let rejects = std::fs::read_to_string(out_dir.join("rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count() as u64, rejected);
    let mut indexes = Vec::new();
    for line in rejects.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        indexes.push(r["index"].as_u64().unwrap());
        assert!(
            r["reason"].as_str().unwrap().contains("poison batch"),
            "{line}"
        );
    }
    assert!(
        (128..192).all(|i| indexes.contains(&i)),
        "batch 2's records are all rejected"
    );
}

fn exited(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_some()
}
