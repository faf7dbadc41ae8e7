//! `drainpipe worker` answers the signals a run answers, in the same way
//! (`src/signals/worker.rs`): SIGINT, SIGTERM and SIGHUP stop it gently,
//! the batches it holds answered (none is redelivered), and it exits 0;
//! SIGUSR1 says on stderr what it holds and it goes on; SIGPIPE is
//! ignored; SIGQUIT, or a second stopping signal, exits at once with 128 +
//! the signal's number, and the broker gives the abandoned batches to
//! another worker: the run still ends with the single-process outputs.

use std::path::Path;
use std::process::Output;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::binary::{drainpipe, signal, spawn, summary, wait};
use crate::nats::{same_files, NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

/// A demo input of `docs` documents.
fn input(dir: &Path, docs: u32) -> std::path::PathBuf {
    let path = dir.join("in.jsonl");
    let out = drainpipe()
        .args(["generate", "--docs", &docs.to_string(), "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    path
}

/// `vocab INPUT -o OUT` with `extra`, started.
fn vocab(input: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    let mut cmd = drainpipe();
    cmd.arg("vocab").arg(input).arg("-o").arg(out);
    cmd.args(["--no-progress", "--checkpoint-every", "0", "--batch", "64"])
        .args(extra);
    spawn(cmd)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The next line of `lines` that contains `what`; fails past the deadline.
fn line_with(lines: &Receiver<String>, what: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no line with {what:?} on the worker's stderr"));
        if line.contains(what) {
            return line;
        }
    }
}

fn same_vocab(single: &Path, distributed: &Path) {
    same_files(single, distributed, &["vocab.tsv"], "distributed");
}

#[test]
fn sigint_sigterm_and_sighup_stop_a_worker_gently_sigusr1_and_sigpipe_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 2000);
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = wait(vocab(&input, &single, &[]), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let server = NatsServer::start();
    // Were a held batch dropped, the broker would redeliver it after the
    // ack wait and the summary would count it.
    let run = vocab(
        &input,
        &distributed,
        &["--nats", &server.url(), "--nats-ack-wait", "30"],
    );
    for stop in ["HUP", "INT", "TERM"] {
        // Holds each batch a second before working on it: the signals come
        // while it holds one.
        let mut worker = Worker::start(&server.url(), 1, Some("worker::took_batch=sleep(1000)"));
        let lines = worker.lines();
        line_with(&lines, "took batch");
        let child = worker.child.as_ref().unwrap();
        signal(child, "PIPE");
        signal(child, "USR1");
        let status = line_with(&lines, "SIGUSR1: ");
        assert!(
            status.contains("SIGUSR1: taking batches; ") && status.contains(" batches held; "),
            "{status}"
        );
        signal(child, stop);
        line_with(&lines, &format!("SIG{stop}: answering the "));
        let (stopped, _) = wait(worker.child.take().unwrap(), DEADLINE);
        assert_eq!(stopped.status.code(), Some(0), "SIG{stop}");
    }
    let _others = Worker::start(&server.url(), 2, None);
    let out = wait(run, DEADLINE).0;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    same_vocab(&single, &distributed);
    let s = summary(&distributed);
    assert_eq!(s["remote"]["redelivered"], 0, "{}", s["remote"]);
    assert_eq!(s["conservation"], true);
}

#[test]
fn sigquit_or_a_second_signal_exits_a_worker_at_once_and_its_batches_go_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 1000);
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = wait(vocab(&input, &single, &[]), DEADLINE).0;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let server = NatsServer::start();
    let run = vocab(
        &input,
        &distributed,
        &["--nats", &server.url(), "--nats-ack-wait", "2"],
    );
    // Each holds the first batch it takes and would not answer it for ten
    // minutes.
    let hold = Some("worker::took_batch=sleep(600000)");
    let mut quit = Worker::start(&server.url(), 1, hold);
    let lines = quit.lines();
    line_with(&lines, "took batch");
    signal(quit.child.as_ref().unwrap(), "QUIT");
    let (out, _) = wait(quit.child.take().unwrap(), DEADLINE);
    assert_eq!(out.status.code(), Some(131));
    line_with(&lines, "SIGQUIT: exiting now, abandoning the ");

    let mut twice = Worker::start(&server.url(), 1, hold);
    let lines = twice.lines();
    line_with(&lines, "took batch");
    signal(twice.child.as_ref().unwrap(), "TERM");
    line_with(&lines, "SIGTERM: answering the ");
    signal(twice.child.as_ref().unwrap(), "INT");
    let (out, _) = wait(twice.child.take().unwrap(), DEADLINE);
    assert_eq!(out.status.code(), Some(130));
    line_with(&lines, "second SIGINT: exiting now, abandoning the ");

    let _rescuer = Worker::start(&server.url(), 2, None);
    let out = wait(run, DEADLINE).0;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    same_vocab(&single, &distributed);
    let s = summary(&distributed);
    assert!(
        s["remote"]["redelivered"].as_u64().unwrap() >= 2,
        "the abandoned batches were redelivered: {}",
        s["remote"]
    );
    assert_eq!(s["conservation"], true);
}
