//! Every parameter is checked before anything is read or written: an
//! invalid value (a threshold of 0, above 1 or NaN; no words per shingle;
//! no permutations, bands or rows; more bands x rows than permutations;
//! `dedup -`; a record limit of 0) and an absurd one (four billion
//! permutations, a batch of four billion, 65,535 workers) exit 2 with a
//! message naming the option, and no output folder is created. `--explain`
//! prints the memory a run needs, as an estimate. A `--max-memory` that is
//! not a size, or is below the memory the run holds whatever its input,
//! exits 2 the same way, and so does a `--nats-deadline` outside 1 to
//! 604800 seconds.

use crate::binary;

use std::time::Duration;

use binary::{drainpipe, spawn, wait};

/// Runs `drainpipe <args> -o <fresh folder>` and returns the exit code,
/// stderr, and whether the output folder exists afterwards.
fn run(args: &[&str]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = drainpipe();
    cmd.args(args).arg("-o").arg(&out);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr, out.exists())
}

/// Asserts that `args` exit 2, that the message contains `says`, and that
/// nothing was written.
fn refused(args: &[&str], says: &str) {
    let (code, stderr, wrote) = run(args);
    assert_eq!(code, Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(says),
        "{args:?}: expected {says:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!wrote, "{args:?} created the output folder");
}

#[test]
fn invalid_dedup_parameters_exit_2_naming_the_option() {
    let dedup = |extra: &[&'static str]| {
        let mut args = vec!["dedup", "--no-progress", "--demo-docs", "100"];
        args.extend_from_slice(extra);
        args
    };
    for value in ["0", "1.5", "NaN", "inf"] {
        refused(
            &dedup(&["--threshold", value]),
            &format!("invalid value '{value}' for '--threshold <J>'"),
        );
    }
    refused(&dedup(&["--threshold", "x"]), "\"x\" is not a number");
    refused(&dedup(&["--ngram", "0"]), "'--ngram <N>'");
    refused(&dedup(&["--num-perm", "0"]), "'--num-perm <P>'");
    refused(&dedup(&["--bands", "0", "--rows", "7"]), "'--bands <B>'");
    refused(&dedup(&["--bands", "7", "--rows", "0"]), "'--rows <R>'");
    refused(
        &dedup(&["--bands", "20", "--rows", "7"]),
        "--bands 20 x --rows 7 need 140 MinHash values, more than --num-perm 128",
    );
    refused(
        &dedup(&["--bands", "20", "--rows", "7", "--explain"]),
        "more than --num-perm 128",
    );
    refused(
        &dedup(&["-"]),
        "stdin (`-`) only once: save it to a file first",
    );
    refused(
        &dedup(&["--max-record-bytes", "0"]),
        "'--max-record-bytes <BYTES>'",
    );
    refused(&["vocab", "--max-record-bytes", "0"], "--max-record-bytes");
}

#[test]
fn a_memory_budget_that_is_not_a_size_or_below_the_least_exits_2_naming_it() {
    for job in ["vocab", "dedup"] {
        let args = |max: &'static str| {
            vec![
                job,
                "--no-progress",
                "--demo-docs",
                "100",
                "--max-memory",
                max,
            ]
        };
        refused(&args("lots"), "\"lots\" is not a size");
        refused(&args("1.5G"), "\"1.5G\" is not a whole number");
        refused(&args("12X"), "\"X\" in \"12X\" is not K, M, G or T");
        refused(
            &args("99999999T"),
            "99999999T is more bytes than can be counted",
        );
        refused(
            &args("99999999999999999999"),
            "99999999999999999999 is more bytes than can be counted",
        );
        refused(&args("1P"), "\"P\" in \"1P\" is not K, M, G or T");
        refused(&args("-5"), "invalid value '-5' for '--max-memory <SIZE>'");
        refused(&args("1"), "--max-memory 1 B is below the least budget");
        // With one worker and a window of 1 the run holds 28 MiB whatever
        // its input: less is refused, naming the least.
        let mut small = args("27M");
        small.extend(["--workers", "1", "--window", "1"]);
        refused(
            &small,
            "--max-memory 27.0 MiB is below the least budget of this run, 28.0 MiB",
        );
        refused(
            &small,
            "give at least --max-memory 28M, or fewer --window or --workers",
        );
        refused(&args("0"), "--max-memory 0 B is below the least budget");
        // The least itself is accepted.
        let mut least = args("28M");
        least.extend(["--workers", "1", "--window", "1"]);
        let (code, stderr, wrote) = run(&least);
        assert_eq!(code, Some(0), "{job}: {stderr}");
        assert!(wrote);
    }
}

#[test]
fn absurd_values_exit_2_before_they_can_exhaust_the_machine() {
    for (args, says) in [
        (
            &["dedup", "--num-perm", "4000000000"][..],
            "'--num-perm <P>'",
        ),
        (
            &["dedup", "--bands", "4000000000", "--rows", "1"],
            "'--bands <B>'",
        ),
        (&["dedup", "--ngram", "4000000000"], "'--ngram <N>'"),
        (&["vocab", "--batch", "4000000000"], "'--batch <B>'"),
        (&["dedup", "--batch", "4000000000"], "'--batch <B>'"),
        (&["vocab", "--workers", "65535"], "'--workers <N>'"),
        (&["vocab", "--window", "4000000000"], "'--window <W>'"),
        (
            &["vocab", "--max-record-bytes", "18446744073709551615"],
            "'--max-record-bytes <BYTES>'",
        ),
        (
            &["vocab", "--drain-timeout", "18446744073709551615"],
            "'--drain-timeout <SECS>'",
        ),
        (
            &["vocab", "--stall-timeout", "0"],
            "'--stall-timeout <SECS>'",
        ),
        (
            &["vocab", "--checkpoint-every", "18446744073709551615"],
            "'--checkpoint-every <SECS>'",
        ),
        (&["dedup", "--demo-docs", "5000000000"], "'--demo-docs <N>'"),
        // Negative numbers name their option, not an unknown argument.
        (
            &["vocab", "--workers", "-1"],
            "invalid value '-1' for '--workers <N>'",
        ),
        (&["vocab", "--batch", "-5"], "'--batch <B>'"),
        (
            &["vocab", "--checkpoint-every", "-1"],
            "'--checkpoint-every <SECS>'",
        ),
        (&["dedup", "--threshold", "-0.5"], "'--threshold <J>'"),
    ] {
        refused(args, says);
    }
}

#[test]
fn the_help_states_each_bound() {
    let output = drainpipe().args(["dedup", "--help"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for bound in [
        "above 0, at most 1",
        "1 to 100",
        "1 to 1024 (each costs",
        "bands x rows at most --num-perm",
        "Processor threads, 1 to 1024",
        "1 to 4096",
        "1 to 1,000,000",
        "1 to 1 GiB",
    ] {
        assert!(
            help.contains(bound),
            "--help does not say {bound:?}: {help}"
        );
    }
}

#[test]
fn the_largest_values_allowed_are_accepted_and_explain_estimates_the_memory() {
    let output = drainpipe()
        .args(["dedup", "--explain", "--num-perm", "1024", "--ngram", "100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("1024 permutations"), "{stdout}");
    assert!(
        stdout.contains("memory (an estimate, not a bound): about"),
        "{stdout}"
    );
    // The defaults: 18 bands.
    let output = drainpipe().args(["dedup", "--explain"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("about 196 bytes per document for pass 1's band index (18 bands)"),
        "{stdout}"
    );
    // The budget, and whether the run's state fits in it.
    assert!(
        stdout.contains("memory budget: ") && stdout.contains("default: half of the memory"),
        "{stdout}"
    );
    assert!(
        stdout.contains("about 50000 documents in the demo corpus")
            && stdout.contains("within the budget, nothing spills"),
        "{stdout}"
    );
    let output = drainpipe()
        .args(["dedup", "--explain", "--demo-docs", "2000000"])
        .args(["-w", "1", "--window", "1", "--max-memory", "28M"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("memory budget: 28.0 MiB, --max-memory")
            && stdout.contains("past the budget: about 595.1 MiB spills; the clusters of 2000000 verified pairs pass their share: their runs take about 183.1 MiB")
            && stdout.contains("temporary disk at its peak, in pass 1's band runs: about 595.1 MiB in"),
        "{stdout}"
    );
    // The smallest run allowed does run.
    let (code, stderr, wrote) = run(&[
        "dedup",
        "--no-progress",
        "--demo-docs",
        "50",
        "--workers",
        "1",
        "--window",
        "1",
        "--batch",
        "1",
        "--threshold",
        "1",
        "--ngram",
        "1",
        "--num-perm",
        "1",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(wrote);
}

#[test]
fn a_broker_deadline_outside_its_bounds_exits_2_naming_the_option() {
    for value in ["0", "604801", "x"] {
        refused(
            &[
                "vocab",
                "--no-progress",
                "--demo-docs",
                "10",
                "--nats",
                "nats://127.0.0.1:1",
                "--nats-deadline",
                value,
            ],
            "'--nats-deadline <SECS>'",
        );
    }
}

#[test]
fn a_temporary_folder_that_is_a_device_exits_2_naming_the_option() {
    // Found out only when the run spilled, after reading its input, and
    // the folder it recorded then failed the next run into the output.
    for tmp in ["/dev/null", "/dev/null/below"] {
        refused(
            &["dedup", "--demo-docs", "10", "--tmp-dir", tmp],
            &format!("--tmp-dir {tmp}: /dev/null is a device or pipe, not a folder"),
        );
    }
}

#[test]
fn a_temporary_folder_that_is_a_file_exits_2_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "not a folder").unwrap();
    for tmp in [file.clone(), file.join("below")] {
        let tmp = tmp.to_str().unwrap();
        refused(
            &["dedup", "--demo-docs", "10", "--tmp-dir", tmp],
            &format!(
                "--tmp-dir {tmp}: {} is a file, not a folder",
                file.display()
            ),
        );
    }
}

#[test]
fn dedup_of_a_pipe_exits_2_where_its_later_passes_would_wait_forever() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // No writer ever opens it: a run that opened it would block.
    let fifo = fifo.to_str().unwrap();
    refused(
        &["dedup", "--no-progress", fifo],
        &format!("{fifo} is a pipe or a device, read only once: save it to a file first"),
    );
    refused(
        &["dedup", "--no-progress", "/dev/null"],
        "is a pipe or a device",
    );
}
