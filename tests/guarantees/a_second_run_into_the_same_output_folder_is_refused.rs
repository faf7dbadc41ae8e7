//! A run locks its output folder before it reads or writes anything there.
//! A second run into that folder while the first goes on, whatever it asks
//! (another job, `--force`, `--resume`), is refused with exit 2 and a
//! message naming the holder (its pid and when it started), and touches
//! nothing: the first run's outputs come out whole and unmixed, byte for
//! byte those of the same run alone. The lock goes with the run: once it
//! ends the folder is free and no lock file stays behind.

#[cfg(feature = "failpoints")]
mod while_a_run_holds_the_folder {
    use std::path::Path;
    use std::process::Child;
    use std::time::{Duration, Instant};

    use crate::binary::{drainpipe, names, spawn, summary, wait};

    const LOCK_FILE: &str = ".drainpipe.lock";

    /// `dedup` over the demo corpus of 3,000 documents into `out`.
    fn dedup(out: &Path) -> std::process::Command {
        let mut cmd = drainpipe();
        cmd.args([
            "dedup",
            "--no-progress",
            "--demo-docs",
            "3000",
            "--workers",
            "2",
            "--batch",
            "10",
            "-o",
        ])
        .arg(out);
        cmd
    }

    /// Polls until the child's pid is in the folder's lock file; fails after
    /// 20 s naming what it saw.
    fn wait_for_lock(child: &Child, out: &Path) -> String {
        let started = Instant::now();
        let pid = format!("pid {}, started ", child.id());
        loop {
            let said = std::fs::read_to_string(out.join(LOCK_FILE)).unwrap_or_default();
            if said.starts_with(&pid) {
                return said;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the run never locked {}: {said:?}",
                out.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_second_run_is_refused_naming_the_holder_and_the_first_ends_intact() {
        let dir = tempfile::tempdir().unwrap();
        // The result of the first run's command alone.
        let alone = dir.path().join("alone");
        let (output, _) = wait(spawn(dedup(&alone)), Duration::from_secs(120));
        assert_eq!(output.status.code(), Some(0));

        let out = dir.path().join("out");
        let mut first = dedup(&out);
        // About 1.5 s a pass: long enough for the runs below.
        first.env("FAILPOINTS", "processor::record=sleep(1)");
        let first = spawn(first);
        let said = wait_for_lock(&first, &out);
        assert!(
            said.contains("dedup --no-progress --demo-docs 3000"),
            "{said}"
        );

        for second in [
            &["dedup", "--no-progress", "--demo-docs", "100", "--force"][..],
            &["dedup", "--no-progress", "--demo-docs", "3000", "--resume"],
            &["vocab", "--no-progress", "--demo-docs", "100"],
        ] {
            let mut cmd = drainpipe();
            cmd.args(second).arg("-o").arg(&out);
            let (output, _) = wait(spawn(cmd), Duration::from_secs(60));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{second:?}: {stderr}");
            let holder = format!(
                "{} is in use by another run (pid {}, started ",
                out.display(),
                first.id()
            );
            assert!(stderr.contains(&holder), "{second:?}: {stderr}");
            assert!(
                stderr.contains("wait for it to end, or use -o for another folder"),
                "{stderr}"
            );
            assert!(!stderr.contains("checkpoint"), "{stderr}");
        }

        let (output, _) = wait(first, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert_eq!(
            names(&out),
            ["clusters.jsonl", "kept.jsonl", "summary.json"],
            "a lock file or another run's output stayed"
        );
        for name in ["kept.jsonl", "clusters.jsonl"] {
            assert!(
                std::fs::read(out.join(name)).unwrap() == std::fs::read(alone.join(name)).unwrap(),
                "{name} is not the first run's"
            );
        }
        let s = summary(&out);
        assert_eq!(s["exit"], "complete");
        assert_eq!(s["records"]["read"], 3000);
        assert_eq!(s["fingerprint"], summary(&alone)["fingerprint"]);

        // Free again.
        let mut cmd = drainpipe();
        cmd.args([
            "vocab",
            "--no-progress",
            "--demo-docs",
            "100",
            "--force",
            "-o",
        ])
        .arg(&out);
        let (output, _) = wait(spawn(cmd), Duration::from_secs(60));
        assert_eq!(output.status.code(), Some(0));
        assert!(!out.join(LOCK_FILE).exists());
    }
}
