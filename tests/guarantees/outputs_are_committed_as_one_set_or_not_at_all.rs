//! dedup's outputs (`kept.jsonl`, `clusters.jsonl`, `rejects.jsonl`) are
//! committed as one set. A disk that fills up while one is flushed renames
//! none of them: the folder keeps the earlier run's set whole, and
//! `summary.json` says this run failed and committed nothing (exit 74). A
//! crash between the renames leaves a journal, and the next run into the
//! folder, before anything else, completes the set, so the folder never
//! holds one run's `kept.jsonl` beside another's `clusters.jsonl` or
//! `rejects.jsonl`. A run without rejects removes an earlier run's
//! `rejects.jsonl` in the same set. `vocab` commits `vocab.tsv` and
//! `rejects.jsonl` the same way.

#[cfg(feature = "failpoints")]
mod with_injected_faults {
    use std::path::Path;
    use std::time::Duration;

    use crate::binary::{drainpipe, leftovers, names, spawn, summary, wait};

    const JOURNAL: &str = ".drainpipe.commit";

    /// Writes a JSON Lines corpus of 600 records at `path`: every third
    /// one a near-duplicate of the one before (its last six words changed:
    /// Jaccard 0.625 on 5-word shingles, a duplicate at threshold 0.5, not
    /// at 0.8), and
    /// a malformed line after every `bad_every`-th record (rejected; none
    /// when 0).
    fn corpus(path: &Path, bad_every: usize) {
        let mut text = String::new();
        let mut x: u64 = 7;
        let mut words: Vec<String> = Vec::new();
        for i in 0..600 {
            if i % 3 == 2 {
                words.truncate(24);
                words.extend((0..6).map(|k| format!("changed{i}x{k}")));
            } else {
                words = (0..30)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        format!("w{}", x >> 52)
                    })
                    .collect();
            }
            text.push_str(&format!(
                "{{\"id\":{i},\"text\":\"{}\"}}\n",
                words.join(" ")
            ));
            if bad_every > 0 && i % bad_every == 0 {
                text.push_str("{\"id\": not json\n");
            }
        }
        std::fs::write(path, text).unwrap();
    }

    /// Runs dedup over `input` at `threshold` into `out`, with `failpoints`
    /// (may be empty); returns the exit code and stderr.
    fn dedup(input: &Path, out: &Path, threshold: &str, failpoints: &str) -> (Option<i32>, String) {
        let mut cmd = drainpipe();
        cmd.args(["dedup", "--no-progress", "--force"])
            .arg(input)
            .args(["--threshold", threshold, "-o"])
            .arg(out)
            .env("FAILPOINTS", failpoints);
        let (output, _) = wait(spawn(cmd), Duration::from_secs(120));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `kept.jsonl`, `clusters.jsonl` and `rejects.jsonl`.
    type Set = [Vec<u8>; 3];

    fn outputs(dir: &Path) -> Set {
        ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"]
            .map(|name| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
    }

    /// Two complete runs into two folders, over one input path whose
    /// content changes between them: the earlier set in `out`, the other
    /// run's in the returned one; every file of the two sets differs, so
    /// that a file of one beside the others is seen. The input holds the
    /// later run's records.
    fn two_sets(dir: &Path, input: &Path, out: &Path) -> (Set, Set) {
        corpus(input, 50);
        assert_eq!(dedup(input, out, "0.8", "").0, Some(0));
        let earlier = outputs(out);
        corpus(input, 30);
        let other = dir.join("other");
        assert_eq!(dedup(input, &other, "0.5", "").0, Some(0));
        let later = outputs(&other);
        for (i, (a, b)) in earlier.iter().zip(&later).enumerate() {
            assert!(a != b, "file {i} of the two sets is the same");
        }
        assert!(!later[2].is_empty());
        (earlier, later)
    }

    #[test]
    fn a_full_disk_while_committing_leaves_the_earlier_set_whole_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out"));
        let (earlier, _) = two_sets(dir.path(), &input, &out);

        let (code, stderr) = dedup(&input, &out, "0.5", "output::sync=return(clusters.jsonl)");
        assert_eq!(code, Some(74), "{stderr}");
        let message = format!(
            "cannot write {}: No space left on device",
            out.join("clusters.jsonl").display()
        );
        assert!(stderr.contains(&message), "{stderr}");
        assert!(
            outputs(&out) == earlier,
            "a file of the failed run was committed"
        );
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
        assert!(!out.join(JOURNAL).exists());
        let s = summary(&out);
        assert_eq!(s["exit"], "failed");
        assert_eq!(s["exit_code"], 74);
        assert!(
            s["note"]
                .as_str()
                .unwrap()
                .contains("none of its outputs was committed; any other file in this folder is an earlier run's"),
            "{s}"
        );
    }

    #[test]
    fn a_crash_between_renames_is_completed_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out"));
        let (earlier, expected) = two_sets(dir.path(), &input, &out);

        // The process dies (abort) after rejects.jsonl and kept.jsonl are
        // renamed, before clusters.jsonl is.
        let (code, stderr) = dedup(&input, &out, "0.5", "output::rename=return(clusters.jsonl)");
        assert_eq!(code, None, "it did not die: {stderr}");
        assert!(out.join(JOURNAL).exists(), "{:?}", names(&out));
        let [kept, clusters, rejects] = outputs(&out);
        assert!(
            kept == expected[0] && clusters == earlier[1] && rejects == expected[2],
            "not the state a crash leaves"
        );
        assert!(!out.join("summary.json").exists());

        // The next run, whatever it is, completes it before it does
        // anything else: here another job, then refused because the crashed
        // run's pass results are still there.
        let mut vocab = drainpipe();
        vocab
            .args(["vocab", "--no-progress", "--demo-docs", "10", "-o"])
            .arg(&out);
        let (output, _) = wait(spawn(vocab), Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("checkpoint of an interrupted run"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "completed the commit a killed run began in {}: clusters.jsonl",
                out.display()
            )),
            "{stderr}"
        );
        assert!(
            outputs(&out) == expected,
            "the set is not the crashed run's"
        );
        assert!(!out.join(JOURNAL).exists());
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    }

    #[test]
    fn a_full_disk_while_kept_is_copied_names_the_output_and_leaves_no_file_of_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out"));
        // Distinct records without rejects: kept.jsonl is copied from the
        // input by the kernel, in runs of lines longer than 256 KiB.
        let text: String = (0..4000)
            .map(|i| {
                let words: Vec<String> = (0..20).map(|k| format!("r{i}w{k}")).collect();
                format!("{{\"id\":{i},\"text\":\"{}\"}}\n", words.join(" "))
            })
            .collect();
        std::fs::write(&input, text).unwrap();
        let (code, stderr) = dedup(&input, &out, "0.8", "output::copy=return(kept.jsonl)");
        assert_eq!(code, Some(74), "{stderr}");
        // The file that could not be written is named, not only the input.
        let target = out.join("kept.jsonl");
        let message = format!("to {}: No space left on device", target.display());
        assert!(stderr.contains(&message), "{stderr}");
        assert!(!target.exists() && !out.join("clusters.jsonl").exists());
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
        let s = summary(&out);
        assert_eq!(s["exit_code"], 74, "{s}");
        assert_eq!(s["outputs_written"], false, "{s}");
    }

    #[test]
    fn a_run_without_rejects_removes_the_earlier_rejects_with_its_set() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out"));
        corpus(&input, 50);
        assert_eq!(dedup(&input, &out, "0.8", "").0, Some(0));
        assert!(out.join("rejects.jsonl").exists());
        assert_eq!(summary(&out)["result"]["outputs"][2], "rejects.jsonl");

        // Failing while committing, it leaves the earlier rejects in place.
        corpus(&input, 0);
        let fault = "output::sync=return(clusters.jsonl)";
        assert_eq!(dedup(&input, &out, "0.8", fault).0, Some(74));
        assert!(out.join("rejects.jsonl").exists());

        // Committing, it removes them with the rest of the set.
        let (code, stderr) = dedup(&input, &out, "0.8", "");
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!out.join("rejects.jsonl").exists(), "{:?}", names(&out));
        let s = summary(&out);
        assert_eq!(s["records"]["rejected"], 0);
        assert_eq!(
            s["result"]["outputs"],
            serde_json::json!(["kept.jsonl", "clusters.jsonl"])
        );
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    }

    /// Runs vocab over `input` into `out`, with `failpoints`.
    fn vocab(input: &Path, out: &Path, failpoints: &str) -> (Option<i32>, String) {
        let mut cmd = drainpipe();
        cmd.args(["vocab", "--no-progress", "--force"])
            .arg(input)
            .arg("-o")
            .arg(out)
            .env("FAILPOINTS", failpoints);
        let (output, _) = wait(spawn(cmd), Duration::from_secs(120));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn vocab_outputs(dir: &Path) -> [Vec<u8>; 2] {
        ["vocab.tsv", "rejects.jsonl"]
            .map(|name| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
    }

    #[test]
    fn vocab_commits_its_counts_and_rejects_as_one_set() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out"));
        corpus(&input, 50);
        assert_eq!(vocab(&input, &out, "").0, Some(0));
        let earlier = vocab_outputs(&out);
        corpus(&input, 30);
        // One more word, so that the counts differ too.
        let mut text = std::fs::read_to_string(&input).unwrap();
        text.push_str("{\"text\":\"another\"}\n");
        std::fs::write(&input, text).unwrap();
        let other = dir.path().join("other");
        assert_eq!(vocab(&input, &other, "").0, Some(0));
        let later = vocab_outputs(&other);
        assert!(earlier[0] != later[0] && earlier[1] != later[1]);

        // vocab.tsv is synced, then the disk fills up while rejects.jsonl
        // is: neither is renamed.
        let (code, stderr) = vocab(&input, &out, "output::sync=return(rejects.jsonl)");
        assert_eq!(code, Some(74), "{stderr}");
        assert!(stderr.contains("No space left on device"), "{stderr}");
        assert!(
            vocab_outputs(&out) == earlier,
            "a file of the failed run was committed"
        );
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
        assert!(!out.join(JOURNAL).exists());
        assert_eq!(summary(&out)["exit_code"], 74);

        // Without rejects, the set removes the earlier run's.
        corpus(&input, 0);
        assert_eq!(vocab(&input, &out, "").0, Some(0));
        assert!(!out.join("rejects.jsonl").exists(), "{:?}", names(&out));
        assert!(out.join("vocab.tsv").exists());
    }

    #[test]
    fn a_run_resumed_after_a_crash_in_the_commit_commits_its_set_and_says_so() {
        // Without rejects, and with rejects: the crashed commit had already
        // moved the passes' list into place when it died, and the resumed
        // run, which loads those passes, must keep it as its own.
        for bad_every in [0, 50] {
            resumed_after_a_crash_in_the_commit(bad_every);
        }
    }

    fn resumed_after_a_crash_in_the_commit(bad_every: usize) {
        let dir = tempfile::tempdir().unwrap();
        // A file input: the resumed run then copies kept.jsonl from it and
        // runs no pipeline pass at all.
        let input = dir.path().join("in.jsonl");
        corpus(&input, bad_every);
        let names: &[&str] = if bad_every == 0 {
            &["kept.jsonl", "clusters.jsonl"]
        } else {
            &["kept.jsonl", "clusters.jsonl", "rejects.jsonl"]
        };
        let outputs = |dir: &Path| {
            let read = |name: &&str| std::fs::read(dir.join(name)).ok();
            names.iter().map(read).collect::<Vec<_>>()
        };
        let other = dir.path().join("other");
        assert_eq!(dedup(&input, &other, "0.5", "").0, Some(0));
        let expected = outputs(&other);
        assert!(expected.iter().all(Option::is_some), "{names:?}");
        let out = dir.path().join("out");
        let fault = "output::rename=return(clusters.jsonl)";
        assert_eq!(dedup(&input, &out, "0.5", fault).0, None, "it did not die");

        let mut resume = drainpipe();
        resume
            .args(["dedup", "--no-progress", "--resume", "--threshold", "0.5"])
            .arg(&input)
            .arg("-o")
            .arg(&out);
        let (resumed, _) = wait(spawn(resume), Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&resumed.stderr);
        assert_eq!(resumed.status.code(), Some(0), "{stderr}");
        assert!(outputs(&out) == expected, "not the uninterrupted run's set");
        let s = summary(&out);
        assert_eq!(s["result"]["passes"][1]["loaded"], true, "{s}");
        assert_eq!(s["outputs_written"], true, "{s}");
        let listed = s["result"]["outputs"].to_string().contains("rejects.jsonl");
        assert_eq!(listed, bad_every > 0, "{s}");
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    }
}
