//! TLS works end to end: with `nats-server --tls` and a certificate signed
//! by an authority of the user's own (made here, at test time),
//! coordinator and workers given that authority (`--nats-ca FILE`) run a
//! distributed dedup over a `tls://` URL to the outputs of a
//! single-process run, byte for byte. Without it, the server's certificate
//! is not trusted: the run exits 69 saying why, and writes nothing.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::binary::{drainpipe, spawn, summary, wait};
use crate::nats::{same_files, Certificates, NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

fn dedup(input: &Path, out: &Path, extra: &[&OsStr]) -> Output {
    let mut cmd = drainpipe();
    cmd.arg("dedup").arg(input).arg("-o").arg(out);
    cmd.args(["--no-progress", "--checkpoint-every", "0"])
        .args(extra);
    wait(spawn(cmd), DEADLINE).0
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dedup_over_tls_with_two_workers_trusting_the_given_authority_writes_the_single_process_outputs()
{
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let made = drainpipe()
        .args(["generate", "--docs", "2000", "-o"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(made.status.success());
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let out = dedup(&input, &single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let certificates = Certificates::new();
    let server = NatsServer::start_tls(&certificates);
    let url = server.url();
    assert!(url.starts_with("tls://"), "{url}");
    let ca = certificates.ca();
    let trust = [OsStr::new("--nats-ca"), ca.as_os_str()];

    // Not trusting the authority: refused, saying why, nothing written.
    let untrusted = dir.path().join("untrusted");
    let out = dedup(
        &input,
        &untrusted,
        &[OsStr::new("--nats"), OsStr::new(&url)],
    );
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the NATS server"),
        "{}",
        stderr(&out)
    );
    assert!(!untrusted.join("kept.jsonl").exists(), "nothing is written");

    let _workers: Vec<Worker> = (0..2)
        .map(|_| Worker::start_with(&url, 1, None, &trust))
        .collect();
    let mut extra = vec![
        OsStr::new("--nats"),
        OsStr::new(&url),
        OsStr::new("--batch"),
        OsStr::new("64"),
    ];
    extra.extend(trust);
    let out = dedup(&input, &distributed, &extra);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    same_files(
        &single,
        &distributed,
        &["kept.jsonl", "clusters.jsonl"],
        "TLS",
    );
    let clusters = std::fs::read_to_string(single.join("clusters.jsonl")).unwrap();
    assert!(
        clusters.lines().count() > 0,
        "the input has near-duplicates"
    );
    let s = summary(&distributed);
    assert_eq!(s["conservation"], true);
    assert_eq!(s["records"]["read"], 2000, "{s}");
    assert!(
        s["remote"]["parts"].as_u64().unwrap() >= 2000 / 64,
        "the batches went through the broker: {}",
        s["remote"]
    );
}
