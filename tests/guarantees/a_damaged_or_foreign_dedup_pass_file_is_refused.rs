//! Guarantee: what `dedup` keeps to resume from (the results of its
//! completed passes, `dedup-signatures.bin` and `dedup-verified.bin`, and
//! the checkpoint of the pass that was running) is refused with a clear
//! message when it is corrupt, truncated, of another format version, of
//! another run (other inputs or parameters) or of another pass; the binary
//! exits 2. It never produces a silently wrong result, and an output folder
//! holding it is not overwritten without `--resume` or `--force`.

use crate::binary;
use crate::mixed;

use std::path::Path;
use std::sync::Arc;

use drainpipe::jobs::dedup::memory::MemoryRecord;
use drainpipe::jobs::dedup::resume::{SIGNATURES_FILE, VERIFIED_FILE};
use drainpipe::jobs::dedup::KEPT_FILE;
use drainpipe_actors::checkpoint::FORMAT_VERSION;
use drainpipe_actors::{codec, PassResult, CHECKPOINT_FILE};
use mixed::{outputs, records, run, run_leg, Leg, StopAt};

fn resumed() -> Leg {
    Leg {
        resume: true,
        ..Leg::default()
    }
}

fn stopped(at: StopAt) -> Leg {
    Leg {
        batch: Some(10),
        stop: Some(at),
        ..Leg::default()
    }
}

/// The error a resumed leg ends with; fails if it runs.
fn refusal(records: &Arc<Vec<MemoryRecord>>, dir: &Path, leg: &Leg) -> String {
    match run_leg(records, dir, leg) {
        Ok(report) => panic!("resumed from a bad file: {}", report.human()),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_resumes_to(records: &Arc<Vec<MemoryRecord>>, dir: &Path, expected: &[(String, Vec<u8>)]) {
    let report = run_leg(records, dir, &resumed()).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert!(outputs(dir) == expected, "not the uninterrupted result");
}

#[test]
fn each_kind_of_bad_pass_result_gets_its_own_message() {
    let records = Arc::new(records());
    let expected = run(&records, 2, 4, None).files;
    let dir = tempfile::tempdir().unwrap();
    // Passes 1 and 2 complete; the stop comes as pass 3 starts.
    let report = run_leg(&records, dir.path(), &stopped(StopAt::Opening(3))).unwrap();
    assert_eq!(report.exit_code, 130, "{}", report.human());
    let files = [SIGNATURES_FILE, VERIFIED_FILE].map(|name| {
        let path = dir.path().join(name);
        let good = std::fs::read(&path).unwrap();
        (name, path, good)
    });

    for (name, path, good) in &files {
        let refused = |bytes: &[u8]| {
            std::fs::write(path, bytes).unwrap();
            let message = refusal(&records, dir.path(), &resumed());
            assert!(message.contains(name), "{message}");
            message
        };
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        let message = refused(&flipped);
        assert!(message.contains("corrupt or truncated"), "{message}");

        let message = refused(&good[..good.len() - 3]);
        assert!(message.contains("corrupt or truncated"), "{message}");

        let message = refused(b"hello");
        assert!(message.contains("not a drainpipe checkpoint"), "{message}");

        let mut other_version = good.clone();
        other_version[8..12].copy_from_slice(&99u32.to_le_bytes());
        let message = refused(&other_version);
        assert!(message.contains("format version 99"), "{message}");

        // Intact and of this run, but not a pass result inside.
        let mut result: PassResult = codec::decode(good, FORMAT_VERSION).unwrap();
        result.state = b"not a pass result".to_vec();
        let message = refused(&result.encode().unwrap());
        assert!(message.contains("refused"), "{message}");

        std::fs::write(path, good).unwrap();
    }

    // Another run: other inputs or parameters give another fingerprint.
    let other_run = Leg {
        fingerprint: "dedup over another corpus".into(),
        ..resumed()
    };
    let message = refusal(&records, dir.path(), &other_run);
    assert!(
        message.contains("for another run") && message.contains("another corpus"),
        "{message}"
    );

    // One pass's result is never taken for another's.
    let (_, signatures, good_signatures) = &files[0];
    std::fs::write(signatures, &files[1].2).unwrap();
    let message = refusal(&records, dir.path(), &resumed());
    assert!(
        message.contains("for another run") && message.contains("result of pass verify"),
        "{message}"
    );

    // The intact files still resume, to the uninterrupted result.
    std::fs::write(signatures, good_signatures).unwrap();
    assert_resumes_to(&records, dir.path(), &expected);
}

#[test]
fn a_checkpoint_is_never_loaded_into_another_run_or_another_pass() {
    let records = Arc::new(records());
    let expected = run(&records, 2, 4, None).files;

    // A checkpoint of pass 1, offered to a run with other parameters.
    let pass1 = tempfile::tempdir().unwrap();
    let stop = StopAt::During {
        pass: "signatures",
        after: 400,
    };
    run_leg(&records, pass1.path(), &stopped(stop)).unwrap();
    let pass1_checkpoint = std::fs::read(pass1.path().join(CHECKPOINT_FILE)).unwrap();
    let other_params = Leg {
        fingerprint: "dedup with threshold 0.9".into(),
        ..resumed()
    };
    let message = refusal(&records, pass1.path(), &other_params);
    assert!(
        message.contains("for another run") && message.contains("threshold 0.9"),
        "{message}"
    );
    assert_resumes_to(&records, pass1.path(), &expected);

    // A checkpoint of pass 2, offered to pass 1 (its result is gone).
    let pass2 = tempfile::tempdir().unwrap();
    let stop = StopAt::During {
        pass: "verify",
        after: 400,
    };
    run_leg(&records, pass2.path(), &stopped(stop)).unwrap();
    std::fs::remove_file(pass2.path().join(SIGNATURES_FILE)).unwrap();
    let message = refusal(&records, pass2.path(), &resumed());
    assert!(
        message.contains("for another run")
            && message.contains("pass verify")
            && message.contains("pass signatures"),
        "{message}"
    );

    // A checkpoint of pass 1 beside pass 1's result (what a stop between
    // writing the result and removing the checkpoint leaves) is not loaded
    // into pass 2, which starts from the beginning.
    let between = tempfile::tempdir().unwrap();
    run_leg(&records, between.path(), &stopped(StopAt::Opening(2))).unwrap();
    assert!(between.path().join(SIGNATURES_FILE).exists());
    std::fs::write(between.path().join(CHECKPOINT_FILE), &pass1_checkpoint).unwrap();
    assert_resumes_to(&records, between.path(), &expected);
    assert!(!between.path().join(CHECKPOINT_FILE).exists());
}

/// A small JSON Lines corpus with a near-duplicate pair.
fn corpus(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("input.jsonl");
    let text = "the quick brown fox jumps over the lazy dog near the river bank today";
    let mut lines = String::new();
    for i in 0..40 {
        let t = if i % 10 == 3 {
            text.to_owned()
        } else {
            format!("record {i} says something of its own, number {i}")
        };
        lines += &serde_json::json!({ "id": i, "text": t }).to_string();
        lines.push('\n');
    }
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn the_binary_refuses_a_folder_with_a_pass_result_unless_told_and_a_bad_one_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(SIGNATURES_FILE), b"hello").unwrap();
    let dedup = |extra: &[&str]| {
        let mut cmd = binary::drainpipe();
        cmd.arg("dedup")
            .arg(&input)
            .args(["--no-progress", "-q", "-o"])
            .arg(&out)
            .args(extra);
        let output = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };

    let (code, stderr) = dedup(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("interrupted run") && stderr.contains(SIGNATURES_FILE),
        "{stderr}"
    );

    let (code, stderr) = dedup(&["--resume"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("not a drainpipe checkpoint") && stderr.contains(SIGNATURES_FILE),
        "{stderr}"
    );

    let (code, stderr) = dedup(&["--force"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(out.join(KEPT_FILE).exists());
    assert!(!out.join(SIGNATURES_FILE).exists(), "{stderr}");
    assert!(!out.join(VERIFIED_FILE).exists(), "{stderr}");
}

/// Editing a file in place inside a directory input leaves the directory's
/// own size and time as they were. The run's fingerprint covers every file
/// below the directory, so the earlier run's pass results are refused, not
/// used for the changed input.
#[cfg(feature = "failpoints")]
#[test]
fn a_file_changed_inside_a_directory_input_makes_the_pass_results_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let text = "the quick brown fox jumps over the lazy dog near the river bank today";
    for i in 0..40 {
        let t = if i % 10 == 3 {
            text.to_owned()
        } else {
            format!("document {i} says something of its own, number {i}")
        };
        std::fs::write(docs.join(format!("d{i:02}.txt")), t).unwrap();
    }
    let out = dir.path().join("out");
    let dedup = |extra: &[&str], failpoints: Option<&str>| {
        let mut cmd = binary::drainpipe();
        cmd.arg("dedup")
            .arg(&docs)
            .args(["--no-progress", "-q", "-o"])
            .arg(&out)
            .args(extra);
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f);
        }
        let output = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };

    // Passes 1 and 2 integrate 40 records each; pass 3 fails, so the
    // results of passes 1 and 2 stay to resume from.
    let (code, stderr) = dedup(&[], Some("integrator::integrate=80*off->return(boom)"));
    assert_eq!(code, Some(70), "{stderr}");
    assert!(out.join(SIGNATURES_FILE).exists(), "{stderr}");

    let dir_modified = std::fs::metadata(&docs).unwrap().modified().unwrap();
    std::fs::write(
        docs.join("d13.txt"),
        "an unrelated text that duplicates nothing",
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&docs).unwrap().modified().unwrap(),
        dir_modified,
        "the directory itself looks unchanged"
    );

    let (code, stderr) = dedup(&["--resume"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("for another run"), "{stderr}");

    let (code, stderr) = dedup(&["--force"], None);
    assert_eq!(code, Some(0), "{stderr}");
    let clusters = std::fs::read_to_string(out.join("clusters.jsonl")).unwrap();
    assert!(!clusters.contains("d13"), "{clusters}");
    assert_eq!(clusters.lines().count(), 2, "{clusters}");
}

/// `--force` starts over whatever job left the state: another job run with
/// `--force` removes dedup's pass results, so they block no later run.
#[test]
fn force_removes_the_pass_results_for_any_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(SIGNATURES_FILE), b"left by an interrupted dedup").unwrap();
    let vocab = |extra: &[&str]| {
        let output = binary::drainpipe()
            .arg("vocab")
            .arg(&input)
            .args(["--no-progress", "-q", "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let (code, stderr) = vocab(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = vocab(&["--force"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!out.join(SIGNATURES_FILE).exists());
    let (code, stderr) = vocab(&[]);
    assert_eq!(
        code,
        Some(0),
        "the same command over its own results: {stderr}"
    );
}
