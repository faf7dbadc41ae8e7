//! `--nats URL` is checked before any work: a URL the NATS client cannot
//! take (a port past 65535, another scheme, a broken address) is the
//! command line's error, exit 2 naming `--nats` and never the URL's
//! password, for a run and for a worker; a well-formed URL of a server
//! that does not answer stays exit 69. A comma-separated list of servers,
//! as documented, is taken (the client read a single string as one URL
//! and refused a list as an invalid port). The list test starts its own
//! `nats-server` on 127.0.0.1.

use std::time::Duration;

use crate::binary::{drainpipe, spawn, wait};
use crate::nats::{NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn a_malformed_broker_url_exits_2_naming_the_option_and_no_password() {
    for url in [
        "nats://127.0.0.1:99999",
        "http://127.0.0.1:4222",
        "nats://[::1",
        "nats://user:secret@127.0.0.1:99999",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut run = drainpipe();
        run.args(["vocab", "--demo-docs", "10", "--no-progress", "--nats", url])
            .arg("-o")
            .arg(&out);
        let mut worker = drainpipe();
        worker.args(["worker", "--nats", url]);
        for (what, cmd) in [("run", run), ("worker", worker)] {
            let (output, _) = wait(spawn(cmd), DEADLINE);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{what} {url}: {stderr}");
            assert!(stderr.contains("--nats"), "{what} {url}: {stderr}");
            assert!(!stderr.contains("secret"), "{what} {url}: {stderr}");
        }
        assert!(!out.exists(), "{url}");
    }
    // Well-formed, but nothing listens there: unavailable.
    let dir = tempfile::tempdir().unwrap();
    let mut run = drainpipe();
    run.args(["vocab", "--demo-docs", "10", "--no-progress"])
        .args(["--nats", "nats://127.0.0.1:1", "-o"])
        .arg(dir.path().join("out"));
    let (output, _) = wait(spawn(run), DEADLINE);
    assert_eq!(output.status.code(), Some(69));
}

#[test]
fn a_list_of_servers_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--demo-docs", "500", "--no-progress", "-o"])
        .arg(&single);
    assert_eq!(wait(spawn(cmd), DEADLINE).0.status.code(), Some(0));

    let server = NatsServer::start();
    // The first server of the list answers; the second does not exist.
    let list = format!("{},nats://127.0.0.1:1", server.url());
    let _worker = Worker::start(&list, 1, None);
    let out = dir.path().join("out");
    let mut cmd = drainpipe();
    cmd.args([
        "vocab",
        "--demo-docs",
        "500",
        "--no-progress",
        "--nats",
        &list,
    ])
    .arg("-o")
    .arg(&out);
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read(out.join("vocab.tsv")).unwrap(),
        std::fs::read(single.join("vocab.tsv")).unwrap()
    );
}
