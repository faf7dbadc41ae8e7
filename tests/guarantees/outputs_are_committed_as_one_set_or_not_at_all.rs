//! dedup's outputs (`kept.jsonl`, `clusters.jsonl`) are committed as one
//! set. A disk that fills up while the second is flushed renames none of
//! them: the folder keeps the earlier run's set whole, and `summary.json`
//! says this run failed and committed nothing (exit 74). A crash between
//! the renames leaves a journal, and the next run into the folder, before
//! anything else, completes the set, so the folder never holds one run's
//! `kept.jsonl` beside another's `clusters.jsonl`.

use crate::binary;

#[cfg(feature = "failpoints")]
mod with_injected_faults {
    use std::path::Path;
    use std::time::Duration;

    use super::binary::{drainpipe, leftovers, names, spawn, summary, wait};

    const JOURNAL: &str = ".drainpipe.commit";

    /// Runs dedup over 2,000 demo documents at `threshold` into `out`, with
    /// `failpoints` (may be empty); returns the exit code and stderr.
    fn dedup(out: &Path, threshold: &str, failpoints: &str) -> (Option<i32>, String) {
        let mut cmd = drainpipe();
        cmd.args(["dedup", "--no-progress", "--demo-docs", "2000", "--force"])
            .args(["--threshold", threshold, "-o"])
            .arg(out)
            .env("FAILPOINTS", failpoints);
        let (output, _) = wait(spawn(cmd), Duration::from_secs(120));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn outputs(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(dir.join("kept.jsonl")).unwrap(),
            std::fs::read(dir.join("clusters.jsonl")).unwrap(),
        )
    }

    #[test]
    fn a_full_disk_while_committing_leaves_the_earlier_set_whole_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        assert_eq!(dedup(&out, "0.8", "").0, Some(0));
        let earlier = outputs(&out);
        // Another threshold: another set (checked below, so the test can
        // tell the sets apart).
        let other = dir.path().join("other");
        assert_eq!(dedup(&other, "0.5", "").0, Some(0));
        assert!(outputs(&other) != earlier);

        let (code, stderr) = dedup(&out, "0.5", "output::sync=return(clusters.jsonl)");
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
        let out = dir.path().join("out");
        assert_eq!(dedup(&out, "0.8", "").0, Some(0));
        let earlier = outputs(&out);
        let other = dir.path().join("other");
        assert_eq!(dedup(&other, "0.5", "").0, Some(0));
        let expected = outputs(&other);

        // The process dies (abort) after kept.jsonl is renamed, before
        // clusters.jsonl is.
        let (code, stderr) = dedup(&out, "0.5", "output::rename=return(clusters.jsonl)");
        assert_eq!(code, None, "it did not die: {stderr}");
        assert!(out.join(JOURNAL).exists(), "{:?}", names(&out));
        let (kept, clusters) = outputs(&out);
        assert!(
            kept == expected.0 && clusters == earlier.1,
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
}
