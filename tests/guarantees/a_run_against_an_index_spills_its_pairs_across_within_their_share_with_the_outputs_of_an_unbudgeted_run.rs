//! Guarantee: a run against a saved index (`--against OLD --save-index
//! NEW`) whose records nearly all duplicate indexed ones keeps its pairs
//! across within their shares of `--max-memory`: pass 1 makes them within
//! the candidate pairs' share beside its own (`PairSpill::finish_across`,
//! `src/jobs/dedup/spill/pairs.rs`) and past pass 2's share writes them
//! to a sorted run read front to back as pass 2 verifies them
//! (`src/jobs/dedup/spill/across.rs`); the verified pairs across past
//! their share go to runs as the run's own do (`PairsSpill::across`,
//! `src/jobs/dedup/spill/verified.rs`), handed to the clusters as a
//! stream by indexed record (`IndexRun::clusters`,
//! `src/jobs/dedup/index/run.rs`); the indexed records whose sets pass 2
//! needs are found by an external sort within the sets' share
//! (`IndexRun::after_signatures`). `summary.json` counts the bytes of
//! each (`pairs_across_spilled_bytes`,
//! `verified_pairs_across_spilled_bytes`,
//! `indexed_records_sorted_spilled_bytes`); `kept.jsonl`, `clusters.jsonl`,
//! `rejects.jsonl` and the saved index's files are byte-identical to the
//! same run's without a budget, and no temporary file is left.
//!
//! With the binary, under the least budget and the pairs across' shares
//! lowered (failpoint `dedup::across_share`): a write of either spill that
//! fails (failpoint `dedup::run_write`) ends the run with exit 74 naming
//! the file and the cause, with no output, no saved index and nothing
//! left of the run's spills; SIGINT while the verified pairs across are
//! on disk (failpoint `dedup::across_hold`) ends it with exit 130, the
//! same way. What such a run leaves is either nothing (no spill, no
//! draft of the index) or what `--resume` goes on from, which then gives
//! the uninterrupted outputs and saved index and leaves nothing.

use std::path::{Path, PathBuf};
#[cfg(feature = "failpoints")]
use std::process::Command;
#[cfg(feature = "failpoints")]
use std::time::{Duration, Instant};

use drainpipe_actors::{RunReport, TEMP_FOLDER};

use crate::mixed::{assert_same_outputs, dedup_indexed, folder_files, outputs, words, Files};

/// The budget of the in-process legs: shares of 64 KiB for the candidate
/// pairs pass 2 reads, 32 KiB for the verified pairs across.
const BUDGET: u64 = 1 << 20;

/// The outputs of a dedup run.
#[cfg(feature = "failpoints")]
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

#[cfg(feature = "failpoints")]
const DEADLINE: Duration = Duration::from_secs(300);

/// `clusters` chains of near-copies of 60 words (each one word off the
/// one before), and as many texts alone, from `seed`.
fn texts(seed: u64, clusters: usize) -> Vec<String> {
    let mut word = words(seed);
    let mut texts = Vec::new();
    for c in 0..clusters {
        let mut text: Vec<String> = (0..60).map(|_| word()).collect();
        texts.push(text.join(" "));
        for step in 0..1 + c % 4 {
            text[(5 + 13 * step) % 60] = word();
            texts.push(text.join(" "));
        }
        texts.push((0..60).map(|_| word()).collect::<Vec<_>>().join(" "));
    }
    texts
}

fn write(path: &Path, prefix: &str, texts: &[String]) {
    let lines: Vec<String> = (texts.iter().enumerate())
        .map(|(i, text)| {
            serde_json::json!({ "id": format!("{prefix}{i}"), "text": text }).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A, and B: A's texts under new ids, with a few of its own.
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let old = texts(0x5eed, 1_500);
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    write(&a, "a", &old);
    let mut new = old.clone();
    new.extend(texts(0xb0b, 100));
    write(&b, "b", &new);
    (a, b)
}

/// `dedup` over `input` into `out` in this process, under `budget`,
/// against `against` when given, saving into `save`.
fn dedup_into(
    out: &Path,
    input: &Path,
    budget: Option<u64>,
    against: Option<&Path>,
    save: &Path,
) -> RunReport {
    dedup_indexed(
        out,
        input,
        (budget, "first"),
        &Vec::from_iter(against),
        Some(save),
    )
}

/// Names in `dir` (none when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |list| {
            list.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        },
    )
}

/// The spills of the pairs across left in `out`'s temporary folder.
#[cfg(feature = "failpoints")]
fn across_left(out: &Path) -> Vec<String> {
    names(&out.join(TEMP_FOLDER))
        .into_iter()
        .filter(|n| n.contains("across"))
        .collect()
}

#[test]
fn a_run_against_an_index_spills_its_pairs_across_within_their_share_with_the_outputs_of_an_unbudgeted_run(
) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = corpus(dir.path());
    let old_index = dir.path().join("old").join("OLD");
    dedup_into(&dir.path().join("save"), &a, None, None, &old_index);
    let mut legs: Vec<(Files, Files, RunReport)> = Vec::new();
    for (name, budget) in [("unbudgeted", None), ("budgeted", Some(BUDGET))] {
        let leg = dir.path().join(name);
        let (out, index) = (leg.join("out"), leg.join("i").join("NEW"));
        let report = dedup_into(&out, &b, budget, Some(&old_index), &index);
        let s = &report.result["index"];
        let candidates = s["pairs_across_spilled_bytes"].as_u64().unwrap();
        let verified = s["verified_pairs_across_spilled_bytes"].as_u64().unwrap();
        let wanted = s["indexed_records_sorted_spilled_bytes"].as_u64().unwrap();
        if budget.is_none() {
            assert_eq!(
                (candidates, verified, wanted),
                (0, 0, 0),
                "held without a budget"
            );
        } else {
            assert!(candidates > 0, "the candidate pairs across were held: {s}");
            assert!(verified > 0, "the verified pairs across were held: {s}");
            // The indexed records whose sets pass 2 needs, sorted within
            // the sets' share: never a list of them held whole.
            assert!(wanted > 0, "the indexed records needed were held: {s}");
        }
        let mut left = names(&out.join(TEMP_FOLDER));
        left.extend(
            names(&leg.join("i"))
                .into_iter()
                .filter(|n| n.ends_with(".tmp")),
        );
        assert!(left.is_empty(), "{name}: left {left:?}");
        legs.push((outputs(&out), folder_files(&index), report));
    }
    let (want, got) = (&legs[0], &legs[1]);
    let unbudgeted = &want.2.result["index"];
    // Far past the shares: every record of A's has its copy in B.
    let across = unbudgeted["pairs_across"].as_u64().unwrap();
    assert!(across > 4 * 4096, "{across} pairs across");
    let removed = unbudgeted["removed_as_indexed"].as_u64().unwrap();
    assert!(removed > 6_000, "{removed} removed as the index's");
    assert_eq!(got.2.result["index"]["removed_as_indexed"], removed);
    assert_eq!(got.2.result["index"]["pairs_across"], across);
    assert_eq!(
        got.2.result["cluster_sizes"], want.2.result["cluster_sizes"],
        "cluster sizes"
    );
    assert_same_outputs(&want.0, &got.0, "the budgeted run's outputs");
    assert_same_outputs(&want.1, &got.1, "the budgeted run's index");
}

/// `dedup B --against OLD --save-index NEW -o OUT` with the binary under
/// the least budget, the pairs across' shares lowered, with `failpoints`
/// more.
#[cfg(feature = "failpoints")]
fn against(b: &Path, old: &Path, new: &Path, out: &Path, failpoints: &str) -> Command {
    let mut cmd = crate::binary::least_budget_dedup(b, out);
    cmd.arg("--against")
        .arg(old)
        .arg("--save-index")
        .arg(new)
        .env(
            "FAILPOINTS",
            format!("dedup::across_share=return(4096){failpoints}"),
        );
    cmd
}

/// Asserts that the run into `out` left no output and no saved index
/// `new`; and either nothing of the pairs across' spills nor a draft of
/// the index, or state to resume from, from which `resume` (the same
/// command with `--resume`) gives the `expected` outputs and index and
/// leaves nothing.
#[cfg(feature = "failpoints")]
fn nothing_written(out: &Path, new: &Path, resume: Command, expected: &Written, what: &str) {
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{what}: {name} written");
    }
    assert!(!new.exists(), "{what}: the index was saved");
    let state = (names(out).into_iter())
        .any(|n| n == drainpipe_actors::CHECKPOINT_FILE || n.starts_with("dedup-"));
    if state {
        let mut resume = resume;
        resume.arg("--resume");
        let (output, _) = crate::binary::wait(crate::binary::spawn(resume), DEADLINE);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{what}: resumed: {stderr}");
        assert!(
            &written(out, new) == expected,
            "{what}: resumed to other outputs"
        );
        crate::binary::nothing_of_the_run_left(out, what);
    }
    let drafts: Vec<String> = names(new.parent().unwrap())
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(drafts.is_empty(), "{what}: drafts left {drafts:?}");
    if out.join(TEMP_FOLDER).exists() {
        assert_eq!(
            across_left(out),
            Vec::<String>::new(),
            "{what}: spills left"
        );
    }
}

/// Outputs, then the saved index's files (`None` when absent).
#[cfg(feature = "failpoints")]
type Written = Vec<(String, Option<Vec<u8>>)>;

/// What [`nothing_written`] compares: the outputs of the run into `out`
/// and the index it saved into `new`.
#[cfg(feature = "failpoints")]
fn written(out: &Path, new: &Path) -> Written {
    let mut all: Written = (OUTPUTS.iter())
        .map(|n| (n.to_string(), std::fs::read(out.join(n)).ok()))
        .collect();
    if new.exists() {
        all.extend(folder_files(new).into_iter().map(|(n, b)| (n, Some(b))));
    }
    all
}

#[cfg(feature = "failpoints")]
#[test]
fn a_spill_of_the_pairs_across_that_cannot_be_written_exits_74_and_a_stop_130_with_no_output() {
    use crate::binary::{signal, spawn, summary, wait};

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = corpus(dir.path());
    let old = dir.path().join("OLD");
    let mut index = crate::binary::drainpipe();
    index
        .arg("dedup")
        .arg(&a)
        .arg("-o")
        .arg(dir.path().join("a-out"));
    index.args(["-q", "--save-index"]).arg(&old);
    crate::binary::succeeded(&mut index);

    // The whole run, for the outputs.
    let (whole, whole_index) = (dir.path().join("whole"), dir.path().join("w").join("NEW"));
    let (output, _) = wait(spawn(against(&b, &old, &whole_index, &whole, "")), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("candidate pairs across pass their share")
            && stderr.contains("verified pairs across pass their share"),
        "both spills must be written for this test to mean anything: {stderr}"
    );
    let expected = written(&whole, &whole_index);

    // A failing disk under either spill: 74, naming the file and cause.
    for (nth, file) in ["dedup-pairs-across", "dedup-verify-across-"]
        .iter()
        .enumerate()
    {
        let (out, new) = (
            dir.path().join(format!("failed-{nth}")),
            dir.path().join(format!("f{nth}")).join("NEW"),
        );
        let failing = format!(";dedup::run_write=return({file})");
        let (output, _) = wait(spawn(against(&b, &old, &new, &out, &failing)), DEADLINE);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(74), "{file}: {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(file) && l.contains("Input/output error")),
            "the message names the file and the cause: {stderr}"
        );
        let s = summary(&out);
        assert_eq!(s["exit_code"].as_i64(), Some(74), "{s}");
        let resume = against(&b, &old, &new, &out, "");
        nothing_written(&out, &new, resume, &expected, file);
    }

    // SIGINT with the verified pairs across on disk: 130.
    let (out, new) = (dir.path().join("stopped"), dir.path().join("s").join("NEW"));
    let held = dir.path().join("held");
    let hold = format!(";dedup::across_hold=return({})", held.display());
    let child = spawn(against(&b, &old, &new, &out, &hold));
    let started = Instant::now();
    while !held.exists() {
        assert!(started.elapsed() < DEADLINE, "the run never held");
        std::thread::sleep(Duration::from_millis(10));
    }
    let spilled = across_left(&out);
    assert!(
        spilled
            .iter()
            .any(|n| n.starts_with("dedup-verify-across-")),
        "held with the verified pairs across on disk: {spilled:?}"
    );
    signal(&child, "INT");
    let (output, _) = wait(child, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let resume = against(&b, &old, &new, &out, "");
    nothing_written(&out, &new, resume, &expected, "stopped");
}
