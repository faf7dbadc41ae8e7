//! A spill of dedup's pass 2 that cannot be written (its disk fails with
//! EIO: failpoint `dedup::run_write`, on the writes of the held shingle
//! sets' runs, `src/jobs/dedup/spill/held.rs`, or of the candidates' ids',
//! `spill/ids.rs`) ends the run with exit 74 and a message starting
//! "dedup pass 2:" that names the run's file and the cause
//! (`Verifier::fail` in `src/jobs/dedup/passes/verify/job.rs`): no output
//! is written, and the run whose write failed is not left on disk (runs
//! written before it stay with the temporary folder, kept for `--resume`
//! since pass 1's result is: a checkpoint may name them, and the next run
//! removes those none names).

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::time::Duration;

use crate::binary::{drainpipe, names, spawn, summary, wait};
use crate::mixed::write_far_apart;

/// The outputs of a dedup run.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

/// Runs dedup over `documents` far-apart near-copies under the least
/// budget, the writes of the runs named `prefix...` failing, and checks
/// how it ends; `spilled` is the log line saying those runs are written.
fn failed_spill(dir: &Path, documents: usize, prefix: &str, spilled: &str) {
    let input = dir.join(format!("{documents}.jsonl"));
    write_far_apart(&input, documents);
    let out = dir.join(format!("out-{documents}"));
    let mut cmd = drainpipe();
    cmd.arg("dedup")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(["--no-progress", "-v", "--workers", "1", "--window", "1"])
        .args(["--max-memory", "28M"])
        .env("FAILPOINTS", format!("dedup::run_write=return({prefix})"));
    let (output, _) = wait(spawn(cmd), Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{prefix}: {stderr}");
    assert!(
        stderr.contains(spilled),
        "pass 2 must write {prefix} runs for this test to mean anything: {stderr}"
    );
    let told = |text: &str| {
        text.lines().any(|line| {
            line.contains("dedup pass 2: sorted run ")
                && line.contains(prefix)
                && line.contains("Input/output error")
        })
    };
    assert!(
        told(&stderr),
        "the message names the file and the cause: {stderr}"
    );
    let s = summary(&out);
    assert_eq!(
        (s["exit"].as_str(), s["exit_code"].as_i64()),
        (Some("failed"), Some(74)),
        "{s}"
    );
    let errors: Vec<&str> = s["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("dedup pass 2: ") && told(e)),
        "{errors:?}"
    );
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{name} written by a failed run");
    }
    let temp = out.join(drainpipe_actors::TEMP_FOLDER);
    let left: Vec<String> = if temp.exists() {
        names(&temp)
    } else {
        Vec::new()
    };
    assert!(
        left.iter().all(|n| !n.starts_with(prefix)),
        "the run whose write failed is left: {left:?}"
    );
}

#[test]
fn a_pass_two_spill_that_cannot_be_written_exits_74_naming_its_file_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    // Every candidate of the first half waits for its near-copy in the
    // second: more held sets than their share (a quarter of 28 MiB), and
    // with 80,000, more ids than half theirs (an eighth).
    failed_spill(
        dir.path(),
        20_000,
        "dedup-verify-held-",
        "the held shingle sets pass their share",
    );
    failed_spill(
        dir.path(),
        80_000,
        "dedup-verify-ids-",
        "the candidates' ids pass their share",
    );
}
