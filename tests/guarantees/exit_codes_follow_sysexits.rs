//! Exit codes people know: 2 for a bad command line, 74 for an output folder
//! that cannot be written (naming it), 70 when the Integrator fails (with
//! failpoints), 65 past `--max-rejects`.

use crate::binary;

#[cfg(feature = "failpoints")]
use std::time::Duration;

use binary::drainpipe;
#[cfg(feature = "failpoints")]
use binary::{spawn, summary, wait};

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
