//! Exit codes people know: 2 for a bad command line, 74 for an output folder
//! that cannot be written (naming it), 70 when the Integrator fails (with
//! failpoints), 65 past `--max-rejects` and when every record read was
//! rejected (0 when some were integrated, or the input was empty).

use crate::binary;

#[cfg(feature = "failpoints")]
use std::time::Duration;

use binary::{drainpipe, summary};
#[cfg(feature = "failpoints")]
use binary::{spawn, wait};

#[test]
fn a_bad_command_line_exits_2() {
    for args in [
        &["vocab", "--workers", "0"][..],
        &["nojob"],
        &["vocab", "--batch", "x"],
    ] {
        let out = drainpipe().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn an_unwritable_output_folder_exits_74_naming_it() {
    // A folder below a regular file can never be created, even by root.
    let file = tempfile::NamedTempFile::new().unwrap();
    let target = file.path().join("out");
    let out = drainpipe()
        .args(["vocab", "--demo-docs", "10", "-o"])
        .arg(&target)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains(&target.display().to_string()), "{stderr}");
}

#[test]
#[cfg(feature = "failpoints")]
fn an_integrator_failure_exits_70_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = drainpipe();
    cmd.args([
        "vocab",
        "--demo-docs",
        "100000",
        "--no-progress",
        "--drain-timeout",
        "20",
        "-o",
    ])
    .arg(dir.path())
    .env(
        "FAILPOINTS",
        "integrator::integrate=5000*off->return(disk on fire)",
    );
    let (out, took) = wait(spawn(cmd), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(took < Duration::from_secs(20));
    assert!(stderr.contains("disk on fire"), "{stderr}");
    let s = summary(dir.path());
    assert_eq!(s["exit"], "failed");
    assert_eq!(s["conservation"], true);
    assert!(!dir.path().join("vocab.tsv").exists());
}

#[test]
#[cfg(feature = "failpoints")]
fn too_many_rejects_exits_65() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = drainpipe();
    cmd.args([
        "vocab",
        "--demo-docs",
        "100000",
        "--no-progress",
        "--max-rejects",
        "10",
        "-o",
    ])
    .arg(dir.path())
    .env("FAILPOINTS", "processor::record=5%return(injected)");
    let (out, _) = wait(spawn(cmd), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    let s = summary(dir.path());
    assert_eq!(s["conservation"], true);
    assert!(s["records"]["rejected"].as_u64().unwrap() > 10);
    assert!(s["records"]["read"].as_u64().unwrap() < 100_000);
}

/// Runs `job` over a JSON Lines file of `lines` into a new folder: the
/// exit code, stderr, the summary and the lines of `rejects.jsonl`.
fn run_over(job: &str, lines: &[&str]) -> (Option<i32>, String, serde_json::Value, usize) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = drainpipe()
        .args([job, "--no-progress"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let rejects = std::fs::read_to_string(out.join("rejects.jsonl")).unwrap_or_default();
    (
        run.status.code(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
        summary(&out),
        rejects.lines().count(),
    )
}

#[test]
fn a_run_whose_every_record_was_rejected_exits_65_naming_why() {
    let malformed = [
        r#"{"id": 1, "body": "no text field"}"#,
        "not json",
        "[1, 2]",
    ];
    for job in ["vocab", "dedup"] {
        let (code, stderr, s, rejects) = run_over(job, &malformed);
        assert_eq!(code, Some(65), "{job}: {stderr}");
        assert!(
            stderr.contains("every record read was rejected (3 of 3), none integrated"),
            "{job}: {stderr}"
        );
        assert_eq!(s["exit"], "failed", "{job}");
        assert_eq!(s["exit_code"], 65, "{job}");
        assert_eq!(s["conservation"], true, "{job}");
        assert_eq!(s["records"]["integrated"], 0, "{job}");
        // The reasons are where the message says.
        assert_eq!(rejects, 3, "{job}");
    }
}

#[test]
fn a_run_with_some_records_rejected_or_an_empty_input_exits_0() {
    let mixed = [r#"{"id": 1, "text": "one good record"}"#, "not json"];
    for job in ["vocab", "dedup"] {
        let (code, stderr, s, rejects) = run_over(job, &mixed);
        assert_eq!(code, Some(0), "{job}: {stderr}");
        assert_eq!((s["records"]["integrated"].as_u64(), rejects), (Some(1), 1));
        let (code, stderr, s, _) = run_over(job, &[]);
        assert_eq!(code, Some(0), "{job}, empty input: {stderr}");
        assert_eq!(s["records"]["read"], 0, "{job}");
    }
}
