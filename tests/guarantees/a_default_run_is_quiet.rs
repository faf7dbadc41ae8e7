//! A run without `-v`, off a terminal, writes on stderr its progress lines
//! and its summary, and of the log only warnings and errors; `-v` adds each
//! pass's phases, `-q` leaves a complete run silent. Warnings show at every
//! level.

use crate::binary;

use std::path::Path;
use std::time::Duration;

use binary::{drainpipe, spawn, wait};

/// `drainpipe ARGS… -o DIR` with stderr a pipe (not a terminal): its exit
/// code and stderr's lines.
fn run(args: &[&str], out: &Path) -> (Option<i32>, Vec<String>) {
    let mut cmd = drainpipe();
    cmd.args(args).arg("-o").arg(out);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = stderr.lines().map(str::to_owned).collect();
    (output.status.code(), lines)
}

/// A progress line, as printed off a terminal every few seconds.
fn is_progress(line: &str) -> bool {
    line.starts_with("drainpipe: ") && line.contains(" records read") && line.contains("records/s")
}

fn dedup_demo(extra: &[&str], out: &Path) -> (Option<i32>, Vec<String>) {
    let mut args = vec!["dedup", "--demo-docs", "3000"];
    args.extend_from_slice(extra);
    run(&args, out)
}

#[test]
fn a_default_dedup_shows_only_its_summary_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (code, lines) = dedup_demo(&[], dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    let summary: Vec<&String> = lines.iter().filter(|l| !is_progress(l)).collect();
    assert_eq!(summary.len(), 3, "{lines:#?}");
    assert!(
        summary[0].starts_with("dedup: complete (end of input) in "),
        "{lines:#?}"
    );
    assert!(summary[1].contains("near-duplicates removed"), "{lines:#?}");
    assert!(summary[2].starts_with("dedup: precision "), "{lines:#?}");
}

#[test]
fn a_default_vocab_shows_only_its_summary_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (code, lines) = run(&["vocab", "--demo-docs", "3000"], dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    let summary: Vec<&String> = lines.iter().filter(|l| !is_progress(l)).collect();
    assert_eq!(summary.len(), 1, "{lines:#?}");
    assert!(summary[0].starts_with("vocab: complete"), "{lines:#?}");
}

#[test]
fn verbose_shows_every_phase_of_every_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (code, lines) = dedup_demo(&["-v"], dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    for phase in [
        "phase running: ",
        "phase running -> draining",
        "phase draining -> finishing",
        "phase finishing -> releasing",
        "phase releasing -> stopped",
    ] {
        let passes = lines.iter().filter(|l| l.contains(phase)).count();
        assert_eq!(passes, 3, "{phase:?} once per pass in {lines:#?}");
    }
    assert!(
        lines.iter().all(|l| !l.starts_with("DEBUG")),
        "-v is not -vv: {lines:#?}"
    );
    let (code, lines) = dedup_demo(&["-vv", "--force"], dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("DEBUG")), "{lines:#?}");
}

#[test]
fn quiet_leaves_a_complete_run_silent() {
    let dir = tempfile::tempdir().unwrap();
    let (code, lines) = dedup_demo(&["-q"], dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines.is_empty(), "{lines:#?}");
}

#[test]
fn quiet_still_shows_the_errors_and_summary_of_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, "{\"text\": \"fine\"}\nnot json\n").unwrap();
    let input = input.to_str().unwrap();
    let out = dir.path().join("out");
    let (code, lines) = run(&["vocab", input, "--max-rejects", "0", "-q"], &out);
    assert_eq!(code, Some(65), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("ERROR")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("vocab: ") && l.contains("1 rejected")),
        "{lines:#?}"
    );
}

#[test]
fn warnings_show_without_verbose_and_with_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(input.join("real")).unwrap();
    std::fs::write(input.join("real/a.txt"), "one record").unwrap();
    // A link to a directory is not followed, with a warning.
    std::os::unix::fs::symlink(input.join("real"), input.join("link")).unwrap();
    let input = input.to_str().unwrap();
    // vocab lists the directory twice (fingerprint, reading), dedup more
    // (each pass, the check before the commit): the warning is said once.
    for job in ["vocab", "dedup"] {
        for quiet in [&[][..], &["-q"][..]] {
            let out = dir.path().join(format!("out-{job}{}", quiet.len()));
            let mut args = vec![job, input];
            args.extend_from_slice(quiet);
            let (code, lines) = run(&args, &out);
            assert_eq!(code, Some(0), "{job} {quiet:?}: {lines:#?}");
            let warnings: Vec<&String> = lines.iter().filter(|l| l.starts_with("WARN")).collect();
            assert_eq!(warnings.len(), 1, "{job} {quiet:?}: {lines:#?}");
            assert!(
                warnings[0].contains("link") && warnings[0].contains("not followed"),
                "{job} {quiet:?}: {lines:#?}"
            );
            if !quiet.is_empty() {
                assert_eq!(lines.len(), 1, "{job}: {lines:#?}");
            }
        }
    }
}
