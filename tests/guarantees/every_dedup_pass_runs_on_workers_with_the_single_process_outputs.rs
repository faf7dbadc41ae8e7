//! dedup with `--nats` runs step 1 of each of its pipeline passes on the
//! worker processes: pass 1 (signatures), pass 2 (verify, whose per-run
//! state — which records are candidates — travels inside each batch) and,
//! when it is a pipeline pass, pass 3 (kept, whose batches carry which
//! records were removed). The outputs are byte for byte those of a
//! single-process run, and `summary.json` shows each pass's traffic
//! through the broker (`remote.by_pass`). Each test starts its own
//! `nats-server` on 127.0.0.1 and two worker processes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::binary::{drainpipe, spawn, summary, wait};
use crate::nats::{same_files, Cluster};

const DEADLINE: Duration = Duration::from_secs(180);

/// The demo corpus of `docs` documents (near-duplicates included) and two
/// malformed lines, as `name` (gzip-compressed when it ends in `.gz`).
fn input(dir: &Path, docs: u32, name: &str) -> PathBuf {
    let plain = dir.join("generated.jsonl");
    let out = drainpipe()
        .args(["generate", "--docs", &docs.to_string(), "-o"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut text = std::fs::read(&plain).unwrap();
    text.extend_from_slice(b"{\"id\": 1, \"text\": \n{not json}\n");
    let path = dir.join(name);
    if name.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
    } else {
        std::fs::write(&path, text).unwrap();
    }
    path
}

fn dedup(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = drainpipe();
    cmd.arg("dedup").arg(input).arg("-o").arg(out);
    cmd.args(["--no-progress", "--checkpoint-every", "0"])
        .args(extra);
    wait(spawn(cmd), DEADLINE).0
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs dedup on `input` in one process and with two workers; asserts the
/// same outputs and returns the distributed run's summary.
fn single_and_distributed(input: &Path, dir: &Path) -> serde_json::Value {
    let (single, distributed) = (dir.join("single"), dir.join("distributed"));
    let out = dedup(input, &single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let server = Cluster::start(2);
    let out = dedup(
        input,
        &distributed,
        &["--nats", &server.url(), "--batch", "64"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];
    same_files(&single, &distributed, &names, "distributed");
    let clusters = std::fs::read_to_string(single.join("clusters.jsonl")).unwrap();
    assert!(
        clusters.lines().count() > 0,
        "the input has near-duplicates"
    );
    let s = summary(&distributed);
    assert_eq!(s["conservation"], true);
    s
}

/// The parts pass `pass` published through the broker.
fn parts(s: &serde_json::Value, pass: &str) -> u64 {
    s["remote"]["by_pass"][pass]["parts"].as_u64().unwrap_or(0)
}

#[test]
fn dedup_runs_its_verify_pass_on_workers_with_the_single_process_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 3000, "in.jsonl");
    let s = single_and_distributed(&input, dir.path());
    assert_eq!(s["result"]["reads"]["verify"], "candidate records");
    assert!(parts(&s, "signatures") >= 3000 / 64, "{}", s["remote"]);
    assert!(
        parts(&s, "verify") > 0,
        "pass 2 went through the broker: {}",
        s["remote"]
    );
    assert_eq!(
        s["remote"]["parts"].as_u64(),
        Some(parts(&s, "signatures") + parts(&s, "verify") + parts(&s, "kept")),
        "the totals are the passes' sums: {}",
        s["remote"]
    );
}

#[test]
fn dedup_of_a_compressed_input_runs_its_three_passes_on_workers_with_the_single_process_outputs() {
    let dir = tempfile::tempdir().unwrap();
    // Compressed: passes 2 and 3 read the whole input again, pass 3 as a
    // pipeline pass.
    let input = input(dir.path(), 3000, "in.jsonl.gz");
    let s = single_and_distributed(&input, dir.path());
    assert_eq!(s["result"]["reads"]["verify"], "whole input");
    assert_eq!(s["result"]["reads"]["kept"], "whole input");
    for pass in ["signatures", "verify", "kept"] {
        assert!(
            parts(&s, pass) >= 3000 / 64,
            "pass {pass} went through the broker: {}",
            s["remote"]
        );
    }
}
