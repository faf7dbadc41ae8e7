//! NATS's own mechanisms for logging in and encrypting (`--nats-creds
//! FILE`, `tls://` URLs) fail clearly: a credentials file that cannot be
//! used is named, with exit 69, and the secret it holds appears neither on
//! stderr nor in `summary.json`, even with the most verbose logs; a
//! `tls://` URL to a server that does not speak TLS exits 69 with a
//! message that says so. Each test starts its own `nats-server` on
//! 127.0.0.1.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::binary::{drainpipe, spawn, wait};
use crate::nats::NatsServer;

const DEADLINE: Duration = Duration::from_secs(60);
/// What a user's seed looks like; it must never be shown.
const SECRET: &str = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";

fn vocab(out: &Path, extra: &[&str]) -> Output {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--demo-docs", "100", "--no-progress", "-vvv", "-o"])
        .arg(out)
        .args(extra);
    wait(spawn(cmd), DEADLINE).0
}

/// Everything the run showed: stderr, stdout and every file it left.
fn everything_shown(out: &Output, dir: &Path) -> String {
    let mut all = String::from_utf8_lossy(&out.stderr).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stdout));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            all.push_str(&String::from_utf8_lossy(
                &std::fs::read(entry.path()).unwrap_or_default(),
            ));
        }
    }
    all
}

#[test]
fn a_credentials_file_that_cannot_be_used_is_named_with_exit_69_and_its_secret_never_shown() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A damaged credentials file: a JWT that is not one, and a seed.
    let creds = dir.path().join("user.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\nnot-a-jwt\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            &SECRET[..SECRET.len() - 3]
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let creds_arg = creds.to_str().unwrap();
    let out = vocab(
        &out_dir,
        &["--nats", &server.url(), "--nats-creds", creds_arg],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("credentials file") && stderr.contains(creds_arg),
        "the message names the file: {stderr}"
    );
    let shown = everything_shown(&out, &out_dir);
    assert!(
        !shown.contains(&SECRET[..20]),
        "the seed appears in what the run showed: {shown}"
    );

    // A worker with the same file: the same refusal, the same silence.
    let worker = drainpipe()
        .args([
            "worker",
            "-vvv",
            "--nats",
            &server.url(),
            "--nats-creds",
            creds_arg,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&worker.stderr);
    assert_eq!(worker.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains(creds_arg), "{stderr}");
    assert!(!stderr.contains(&SECRET[..20]), "{stderr}");

    // A file that is not there is named too.
    let missing = dir.path().join("missing.creds");
    let out = vocab(
        &out_dir,
        &[
            "--nats",
            &server.url(),
            "--nats-creds",
            missing.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("missing.creds"), "{stderr}");
}

#[test]
fn a_tls_url_to_a_server_without_tls_exits_69_saying_so() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url().replace("nats://", "tls://");
    let out = vocab(&dir.path().join("out"), &["--nats", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains(&url) && stderr.contains("TLS"),
        "the message names the URL and TLS: {stderr}"
    );
    assert!(
        !dir.path().join("out").join("vocab.tsv").exists(),
        "nothing is written"
    );
}
