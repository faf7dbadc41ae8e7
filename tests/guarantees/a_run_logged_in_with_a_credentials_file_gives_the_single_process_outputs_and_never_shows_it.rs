//! `--nats-creds FILE` works end to end: a server in operator mode (an
//! operator, an account with JetStream and a user, their JWTs signed at
//! test time) lets in only the holders of the user's credentials file; a
//! run and two workers given it write the outputs of a single-process
//! run, byte for byte, and neither the seed nor the JWT of the file shows
//! on stderr (`-vvv`) or in the output folder. A worker without it is
//! refused with exit 69.

use std::ffi::OsStr;
use std::time::Duration;

use crate::binary::{drainpipe, spawn, summary, wait};
use crate::nats::{Accounts, NatsServer, Worker};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn vocab_with_a_credentials_file_on_two_workers_writes_the_single_process_outputs_and_never_shows_it(
) {
    let dir = tempfile::tempdir().unwrap();
    let (single, distributed) = (dir.path().join("single"), dir.path().join("distributed"));
    let vocab = |out: &std::path::Path, extra: &[&OsStr]| {
        let mut cmd = drainpipe();
        cmd.args(["vocab", "--demo-docs", "2000", "--no-progress", "-o"])
            .arg(out)
            .args(["--checkpoint-every", "0"])
            .args(extra);
        wait(spawn(cmd), DEADLINE).0
    };
    let out = vocab(&single, &[]);
    assert_eq!(out.status.code(), Some(0));

    let accounts = Accounts::new();
    let server = NatsServer::start_with_accounts(&accounts);
    let url = server.url();
    let creds = accounts.creds();

    // Without the file: not let in.
    let refused = drainpipe()
        .args(["worker", "--nats", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(69), "{stderr}");

    let login = [OsStr::new("--nats-creds"), creds.as_os_str()];
    let _workers: Vec<Worker> = (0..2)
        .map(|_| Worker::start_with(&url, 1, None, &login))
        .collect();
    let mut extra = vec![
        OsStr::new("--nats"),
        OsStr::new(&url),
        OsStr::new("--batch"),
        OsStr::new("64"),
        OsStr::new("-vvv"),
    ];
    extra.extend(login);
    let out = vocab(&distributed, &extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        std::fs::read(single.join("vocab.tsv")).unwrap()
            == std::fs::read(distributed.join("vocab.tsv")).unwrap(),
        "vocab.tsv differs from the single-process run's"
    );
    let s = summary(&distributed);
    assert_eq!(s["conservation"], true);
    assert!(
        s["remote"]["parts"].as_u64().unwrap() >= 2000 / 64,
        "{}",
        s["remote"]
    );

    // Neither secret of the file anywhere the run showed.
    let file = std::fs::read_to_string(&creds).unwrap();
    let jwt = file.lines().nth(1).unwrap();
    let mut shown = stderr;
    shown.push_str(&String::from_utf8_lossy(&out.stdout));
    for entry in std::fs::read_dir(&distributed).unwrap().flatten() {
        shown.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.path()).unwrap_or_default(),
        ));
    }
    assert!(!shown.contains(&accounts.seed[..20]), "the seed was shown");
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(!shown.contains(signature), "the JWT was shown");
}
