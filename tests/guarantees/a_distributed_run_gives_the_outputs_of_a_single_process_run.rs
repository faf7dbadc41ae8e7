//! A run whose step 1 runs on worker processes through a NATS JetStream
//! broker (`--nats`) writes the outputs of a single-process run, byte for
//! byte, rejected records included; a worker killed with SIGKILL while it
//! holds a batch changes nothing but the redelivery count in
//! `summary.json`; a broker that cannot be reached is refused with exit
//! 69. Each test starts its own `nats-server` on 127.0.0.1.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::binary::{drainpipe, signal, spawn, summary, wait};
use crate::nats::{same_files, Cluster, NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

/// A JSON Lines input of `docs` demo documents and two malformed lines.
fn input(dir: &Path, docs: u32) -> std::path::PathBuf {
    let path = dir.join("in.jsonl");
    let out = drainpipe()
        .args(["generate", "--docs", &docs.to_string(), "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"id\": 1, \"text\": \n{not json}\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `vocab INPUT -o OUT` with `extra` arguments and waits for it.
fn vocab(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = drainpipe();
    cmd.arg("vocab").arg(input).arg("-o").arg(out);
    cmd.args(["--no-progress", "--checkpoint-every", "0"])
        .args(extra);
    wait(spawn(cmd), DEADLINE).0
}

fn same_outputs(single: &Path, distributed: &Path) {
    same_files(
        single,
        distributed,
        &["vocab.tsv", "rejects.jsonl"],
        "distributed",
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn vocab_on_two_worker_processes_writes_the_single_process_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 3000);
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = vocab(&input, &single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let server = Cluster::start(2);
    // Small batches: many messages, several in flight at once.
    let out = vocab(
        &input,
        &distributed,
        &["--nats", &server.url(), "--batch", "64"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    same_outputs(&single, &distributed);

    let s = summary(&distributed);
    assert_eq!(s["records"]["read"], 3002);
    assert_eq!(s["records"]["rejected"], 2);
    assert_eq!(s["conservation"], true);
    let parts = s["remote"]["parts"].as_u64().unwrap();
    assert!(
        parts >= 3002 / 64,
        "every batch went through the broker: {parts} parts"
    );
    assert_eq!(s["remote"]["unreadable"], 0);
    assert!(
        summary(&single).get("remote").is_none(),
        "a local run has no remote section"
    );
}

#[test]
fn dedup_with_pass_1_on_two_worker_processes_writes_the_single_process_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 3000);
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let dedup = |out: &Path, extra: &[&str]| {
        let mut cmd = drainpipe();
        cmd.arg("dedup").arg(&input).arg("-o").arg(out);
        cmd.args(["--no-progress", "--checkpoint-every", "0"])
            .args(extra);
        wait(spawn(cmd), DEADLINE).0
    };
    let out = dedup(&single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let server = Cluster::start(2);
    let out = dedup(&distributed, &["--nats", &server.url(), "--batch", "64"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];
    same_files(&single, &distributed, &names, "distributed");
    let clusters = std::fs::read_to_string(single.join("clusters.jsonl")).unwrap();
    assert!(
        clusters.lines().count() > 0,
        "the input has near-duplicates to find"
    );
    let s = summary(&distributed);
    assert_eq!(s["conservation"], true);
    assert!(
        s["remote"]["parts"].as_u64().unwrap() >= 3000 / 64,
        "pass 1 went through the broker: {}",
        s["remote"]
    );
}

#[test]
fn a_worker_killed_holding_a_batch_changes_nothing_but_the_redelivery_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 2000);
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = vocab(&input, &single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let server = NatsServer::start();
    // This worker holds the first batch it takes and never answers it.
    let mut doomed = Worker::start(&server.url(), 1, Some("worker::took_batch=sleep(600000)"));
    let took = doomed.took_a_batch();
    let mut cmd = drainpipe();
    cmd.arg("vocab").arg(&input).arg("-o").arg(&distributed);
    cmd.args(["--no-progress", "--checkpoint-every", "0", "--batch", "64"]);
    cmd.args(["--nats", &server.url(), "--nats-ack-wait", "2"]);
    let run = spawn(cmd);
    took.recv_timeout(DEADLINE)
        .expect("the doomed worker took a batch");
    signal(doomed.child.as_ref().unwrap(), "KILL");
    let _rescuer = Worker::start(&server.url(), 2, None);
    let out = wait(run, DEADLINE).0;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    same_outputs(&single, &distributed);
    let s = summary(&distributed);
    assert_eq!(s["conservation"], true);
    assert!(
        s["remote"]["redelivered"].as_u64().unwrap() >= 1,
        "the batch the killed worker held was redelivered: {}",
        s["remote"]
    );
}

#[test]
fn a_worker_stopped_by_sigterm_answers_the_batch_it_holds_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 1000);
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = vocab(&input, &single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let server = NatsServer::start();
    // Holds each batch a second before working on it: the signal comes
    // while it holds one.
    let mut stopping = Worker::start(&server.url(), 1, Some("worker::took_batch=sleep(1000)"));
    let took = stopping.took_a_batch();
    let mut cmd = drainpipe();
    cmd.arg("vocab").arg(&input).arg("-o").arg(&distributed);
    cmd.args(["--no-progress", "--checkpoint-every", "0", "--batch", "64"]);
    // Were the held batch dropped, the broker would redeliver it after 30 s
    // and the summary would count it.
    cmd.args(["--nats", &server.url(), "--nats-ack-wait", "30"]);
    let run = spawn(cmd);
    took.recv_timeout(DEADLINE)
        .expect("the worker took a batch");
    signal(stopping.child.as_ref().unwrap(), "TERM");
    let (stopped, _) = wait(stopping.child.take().unwrap(), DEADLINE);
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
    let _others = Worker::start(&server.url(), 2, None);
    let out = wait(run, DEADLINE).0;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    same_outputs(&single, &distributed);
    let s = summary(&distributed);
    assert_eq!(s["remote"]["redelivered"], 0, "{}", s["remote"]);
    assert_eq!(s["conservation"], true);
}

#[test]
fn a_broker_restarted_mid_run_changes_nothing_but_the_time_taken() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 2000);
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = vocab(&input, &single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let mut server = NatsServer::start();
    // Slow workers (50 ms a batch): the run is still going when the
    // broker goes away.
    let slow = Some("worker::took_batch=sleep(50)");
    let mut first = Worker::start(&server.url(), 1, slow);
    let took = first.took_a_batch();
    let _second = Worker::start(&server.url(), 1, slow);
    let mut cmd = drainpipe();
    cmd.arg("vocab").arg(&input).arg("-o").arg(&distributed);
    cmd.args(["--no-progress", "--checkpoint-every", "0", "--batch", "32"]);
    cmd.args(["--nats", &server.url(), "--nats-ack-wait", "2"]);
    let mut run = spawn(cmd);
    took.recv_timeout(DEADLINE).expect("a worker took a batch");
    server.restart(Duration::from_secs(1));
    assert!(run.try_wait().unwrap().is_none(), "the run was still going");
    let out = wait(run, DEADLINE).0;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    same_outputs(&single, &distributed);
    assert_eq!(summary(&distributed)["conservation"], true);
}

/// A URL where nothing listens: a port the system handed out and took back.
fn nobody() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("nats://127.0.0.1:{port}")
}

#[test]
fn a_broker_that_cannot_be_reached_is_refused_with_exit_69() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 10);
    let out_dir = dir.path().join("out");
    let url = nobody();
    let out = vocab(&input, &out_dir, &["--nats", &url]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the NATS server") && err.contains(&url),
        "{err}"
    );
    assert!(!out_dir.join("vocab.tsv").exists(), "nothing is written");

    let worker = drainpipe()
        .args(["worker", "--nats", &url])
        .output()
        .unwrap();
    assert_eq!(worker.status.code(), Some(69), "{}", stderr(&worker));
}
