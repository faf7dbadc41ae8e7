//! Guarantee: when dedup's later passes read only part of the input (the
//! candidate records at their places, then the kept records' byte ranges
//! copied), a run stopped in the middle of pass 2 resumes from its
//! checkpoint, skipping what it had read, to the outputs of an
//! uninterrupted run, and one stopped before pass 3 resumes by copying,
//! from the loaded results of passes 1 and 2; and an input that changes after pass 2 has read it
//! (truncated, or rewritten keeping its size and modification time) fails
//! pass 3 with exit code 74 and a report, leaving no `kept.jsonl` or
//! `clusters.jsonl` (not even an earlier run's), rather than copying wrong
//! bytes. When pass 3 copies beside pass 2 (the default), it may have
//! copied everything before the change: then a rewrite keeping the size
//! and time either fails the run so or leaves the outputs of the input
//! every pass read; a truncation always fails it.
//!
//! The moment is chosen with a failpoint callback on the processors' record
//! step (feature `failpoints`); failpoints are global to the process, so
//! the runs of this file take turns.
#![cfg(feature = "failpoints")]

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::resume::{SIGNATURES_FILE, VERIFIED_FILE};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, Progress, RunHandle, RunReport, CHECKPOINT_FILE, REJECTS_FILE};

static TURN: Mutex<()> = Mutex::new(());

type Action = Box<dyn Fn(&RunHandle) + Send + Sync>;

/// A JSON Lines corpus with near-duplicates and a malformed line.
fn corpus(dir: &Path) -> PathBuf {
    let corpus = Corpus::new(CorpusSpec {
        docs: 400,
        ..CorpusSpec::default()
    });
    let mut text = String::new();
    for (i, doc) in corpus.docs().enumerate() {
        if i == 30 {
            text.push_str("{\"text\": \n");
        }
        text.push_str(&serde_json::json!({ "id": doc.index, "text": doc.text }).to_string());
        text.push_str(if i % 2 == 0 { "\n" } else { "\r\n" });
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// How one run goes.
struct Leg<'a> {
    input: &'a Path,
    out: &'a Path,
    resume: bool,
    batch: usize,
    /// Copy `kept.jsonl` beside pass 2 (else after it).
    copy_beside: bool,
    /// Called, with the run's handle, by the processor about to run step 1
    /// on the `n`-th record of the verify pass.
    at_verify_record: Option<(u64, Action)>,
}

fn run(leg: Leg<'_>) -> RunReport {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctx = RunContext::quiet(
        vec![leg.input.to_owned()],
        OutputDir::create(leg.out).unwrap(),
    );
    ctx.settings.batch = Some(leg.batch);
    ctx.settings.workers = 2;
    ctx.resume = leg.resume;
    ctx.fingerprint = "part of the input".into();
    let verifying = Arc::new(AtomicBool::new(false));
    ctx.progress = {
        let verifying = Arc::clone(&verifying);
        Rc::new(move |pass: &str| {
            verifying.store(pass == "verify", Ordering::SeqCst);
            Box::new(|_: &Progress| {})
        })
    };
    match leg.at_verify_record {
        Some((n, action)) => {
            let seen = AtomicU64::new(0);
            let handle = ctx.handle.clone();
            fail::cfg_callback("processor::record", move || {
                if verifying.load(Ordering::SeqCst) && seen.fetch_add(1, Ordering::SeqCst) + 1 == n
                {
                    action(&handle);
                }
            })
            .unwrap();
        }
        None => fail::remove("processor::record"),
    }
    let params = DedupParams {
        copy_beside_verify: leg.copy_beside,
        ..DedupParams::default()
    };
    let report = dedup::run(&ctx, &params);
    fail::remove("processor::record");
    report.unwrap()
}

fn outputs(out: &Path) -> Vec<(String, Vec<u8>)> {
    [KEPT_FILE, CLUSTERS_FILE, REJECTS_FILE]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(out.join(name)).unwrap_or_else(|_| b"missing".to_vec());
            (name.to_string(), bytes)
        })
        .collect()
}

fn reads(report: &RunReport) -> (&str, &str) {
    let reads = &report.result["reads"];
    (
        reads["verify"].as_str().unwrap(),
        reads["kept"].as_str().unwrap(),
    )
}

/// A run whose `input` is changed by `change` once pass 2 has read every
/// candidate (all in its first batch): before pass 3 copies, or while it
/// does when it copies `beside` pass 2.
fn changed_after_pass_2_read(
    input: &Path,
    out: &Path,
    beside: bool,
    change: impl Fn(&Path) + Send + Sync + 'static,
) -> RunReport {
    let target = input.to_owned();
    run(Leg {
        input,
        out,
        resume: false,
        batch: 100_000,
        copy_beside: beside,
        at_verify_record: Some((1, Box::new(move |_: &RunHandle| change(&target)))),
    })
}

fn clean(input: &Path, out: &Path) -> RunReport {
    let report = run(Leg {
        input,
        out,
        resume: false,
        batch: 4,
        copy_beside: true,
        at_verify_record: None,
    });
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_eq!(reads(&report), ("candidate records", "copied byte ranges"));
    report
}

/// A run stopped by `stop` in pass 2 (batches of `batch`), checked by
/// `check_stopped`, then resumed: the resumed run completes with the
/// outputs and record counts of a clean run. Returns the resumed report.
fn stopped_and_resumed(
    batch: usize,
    stop: (u64, Action),
    check_stopped: impl Fn(&RunReport, &Path),
) -> RunReport {
    let tmp = tempfile::tempdir().unwrap();
    let input = corpus(tmp.path());
    let expected = tmp.path().join("clean");
    let clean_report = clean(&input, &expected);
    let out = tmp.path().join("stopped");
    let stopped = run(Leg {
        input: &input,
        out: &out,
        resume: false,
        batch,
        copy_beside: true,
        at_verify_record: Some(stop),
    });
    assert_eq!(stopped.exit_code, 130, "{}", stopped.human());
    assert!(!out.join(KEPT_FILE).exists());
    check_stopped(&stopped, &out);
    let resumed = run(Leg {
        input: &input,
        out: &out,
        resume: true,
        batch: 7,
        copy_beside: true,
        at_verify_record: None,
    });
    assert_eq!(resumed.exit_code, 0, "{}", resumed.human());
    assert!(
        outputs(&expected) == outputs(&out),
        "the resumed outputs differ"
    );
    // The whole input's counts, as an uninterrupted run reports them.
    assert_eq!(resumed.records, clean_report.records);
    for name in [CHECKPOINT_FILE, SIGNATURES_FILE, VERIFIED_FILE] {
        assert!(!out.join(name).exists(), "{name} left behind");
    }
    resumed
}

#[test]
fn a_run_stopped_in_the_middle_of_pass_2_resumes_to_the_same_outputs() {
    let stop: Action = Box::new(|handle: &RunHandle| handle.request_stop());
    let resumed = stopped_and_resumed(4, (12, stop), |stopped, out| {
        assert_eq!(stopped.result["stopped_in_pass"], "verify");
        assert!(
            out.join(CHECKPOINT_FILE).exists(),
            "no checkpoint to resume"
        );
    });
    assert!(
        resumed.checkpoints.resumed,
        "the verify pass did not resume"
    );
    assert!(
        resumed.checkpoints.resumed_at > 0,
        "the checkpoint was taken before any record was read"
    );
    assert_eq!(reads(&resumed), ("candidate records", "copied byte ranges"));
}

#[test]
fn an_input_truncated_after_pass_2_fails_pass_3_without_output() {
    for beside in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let input = corpus(tmp.path());
        let out = tmp.path().join("out");
        // An earlier run's outputs, which must not survive the failed run.
        clean(&input, &out);
        let len = std::fs::metadata(&input).unwrap().len();
        let report = changed_after_pass_2_read(&input, &out, beside, move |path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        });
        assert_eq!(report.exit_code, 74, "beside {beside}: {}", report.human());
        assert_eq!(
            report.result["stopped_in_pass"], "kept",
            "beside {beside}: {}",
            report.result
        );
        assert!(report.cause.contains("changed"), "{}", report.cause);
        for name in [KEPT_FILE, CLUSTERS_FILE] {
            assert!(
                !out.join(name).exists(),
                "beside {beside}: {name} left in place"
            );
        }
    }
}

/// Shifts every byte of `path` one place later, dropping the last: the
/// same size; then gives it back its modification time.
fn rewrite_keeping_size_and_time(path: &Path) {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    let bytes = std::fs::read(path).unwrap();
    let mut shifted = vec![b' '];
    shifted.extend_from_slice(&bytes[..bytes.len() - 1]);
    std::fs::write(path, &shifted).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}

#[test]
fn an_input_rewritten_with_its_size_and_time_kept_fails_pass_3_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = corpus(tmp.path());
    let out = tmp.path().join("out");
    let report = changed_after_pass_2_read(&input, &out, false, rewrite_keeping_size_and_time);
    assert_eq!(report.exit_code, 74, "{}", report.human());
    assert!(
        report.cause.contains("changed since pass 1"),
        "{}",
        report.cause
    );
    for name in [KEPT_FILE, CLUSTERS_FILE] {
        assert!(!out.join(name).exists(), "{name} written");
    }
}

#[test]
fn an_input_rewritten_while_kept_is_copied_beside_pass_2_never_gives_wrong_bytes() {
    let (mut failed, mut completed) = (0, 0);
    for _ in 0..6 {
        let tmp = tempfile::tempdir().unwrap();
        let input = corpus(tmp.path());
        let expected = tmp.path().join("clean");
        clean(&input, &expected);
        let out = tmp.path().join("out");
        let report = changed_after_pass_2_read(&input, &out, true, rewrite_keeping_size_and_time);
        if report.exit_code == 0 {
            // Copied before the rewrite: the outputs of the input that
            // every pass read.
            completed += 1;
            assert!(outputs(&expected) == outputs(&out), "wrong bytes copied");
        } else {
            failed += 1;
            assert_eq!(report.exit_code, 74, "{}", report.human());
            assert!(report.cause.contains("changed"), "{}", report.cause);
            for name in [KEPT_FILE, CLUSTERS_FILE] {
                assert!(!out.join(name).exists(), "{name} written");
            }
        }
    }
    eprintln!("rewritten beside pass 2: {failed} runs failed, {completed} completed");
}

#[test]
fn a_run_stopped_before_pass_3_resumes_copying_from_the_loaded_passes() {
    // One batch: the pass has seen the end of its input long before the
    // stop, asked for after a pause, so it completes, and the run stops
    // before pass 3.
    let stop: Action = Box::new(|handle: &RunHandle| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        handle.request_stop();
    });
    let resumed = stopped_and_resumed(100_000, (1, stop), |stopped, out| {
        assert_eq!(
            stopped.result["stopped_in_pass"], "kept",
            "{}",
            stopped.result
        );
        for name in [SIGNATURES_FILE, VERIFIED_FILE] {
            assert!(out.join(name).exists(), "{name} was not kept");
        }
    });
    let loaded: Vec<bool> = resumed.result["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["loaded"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(loaded, [true, true, false], "{}", resumed.result);
    assert_eq!(reads(&resumed).1, "copied byte ranges");
}
