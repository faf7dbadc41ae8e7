//! IO faults end the run with a message naming the path, the documented
//! exit code, and no half-written output file: an output folder that cannot
//! be written, a disk that fills up, an input truncated while being read.
//! An output folder holding another run's results is refused (exit 2) unless
//! `--force` or `--resume` says what to do with them; an input deleted while
//! being read is read whole.
//!
//! The mount tests need root (tests and CI run as root); if `mount` fails
//! they fail saying so, they never skip.

use crate::binary;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use binary::{drainpipe, leftovers, spawn, summary, wait};

/// A tmpfs mounted on a fresh temporary folder, unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with these options (e.g. `size=200k`, `ro`).
    pub(crate) fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (as root): `mount -t tmpfs -o {options} tmpfs {}` failed: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a child still running after a failed assertion): detach
            // it, so the temporary folder can still be removed.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Runs `drainpipe vocab --no-progress -o out` with `args` under a deadline.
fn vocab(out: &Path, args: &[&str]) -> Output {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--no-progress", "-o"])
        .arg(out)
        .args(args);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    output
}

fn code_and_stderr(output: &Output) -> (Option<i32>, String) {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_read_only_output_folder_exits_74_naming_it() {
    let ro = Tmpfs::mount("ro,size=64k");
    // The folder itself, and a folder to be created in it.
    for target in [ro.path().to_path_buf(), ro.path().join("out")] {
        let output = vocab(&target, &["--demo-docs", "10"]);
        let (code, stderr) = code_and_stderr(&output);
        assert_eq!(code, Some(74), "{stderr}");
        let message = format!("cannot write {}: Read-only file system", target.display());
        assert!(stderr.contains(&message), "{stderr}");
    }
    assert!(binary::names(ro.path()).is_empty());
}

#[test]
fn an_output_folder_with_results_of_another_run_is_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    std::fs::write(&a, "alpha words\n").unwrap();
    std::fs::write(&b, "beta words\n").unwrap();
    let out = dir.path().join("out");
    let first = vocab(&out, &[a.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(0));
    let vocab_a = std::fs::read_to_string(out.join("vocab.tsv")).unwrap();
    assert_eq!(vocab_a, "alpha\t1\nwords\t1\n");

    // The same command again, over its own results: allowed.
    let again = vocab(&out, &[a.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{:?}",
        code_and_stderr(&again)
    );

    // Another run (another input, or other parameters): refused, nothing
    // touched.
    for args in [
        &[b.to_str().unwrap()][..],
        &[a.to_str().unwrap(), "--text-field", "body"],
    ] {
        let refused = vocab(&out, args);
        let (code, stderr) = code_and_stderr(&refused);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{} holds results of another run", out.display())),
            "{stderr}"
        );
        assert!(stderr.contains("--force"), "{stderr}");
        assert_eq!(
            std::fs::read_to_string(out.join("vocab.tsv")).unwrap(),
            vocab_a
        );
    }
    assert_eq!(summary(&out)["records"]["read"], 1);

    // --force overwrites them.
    let forced = vocab(&out, &[b.to_str().unwrap(), "--force"]);
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{:?}",
        code_and_stderr(&forced)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("vocab.tsv")).unwrap(),
        "beta\t1\nwords\t1\n"
    );
    assert_eq!(binary::names(&out), ["summary.json", "vocab.tsv"]);
}

#[test]
fn a_full_disk_exits_74_naming_the_file_and_leaves_no_half_written_output() {
    let small = Tmpfs::mount("size=200k");
    let out = small.path().join("out");
    // The demo corpus's vocab.tsv is over 500 kB.
    let output = vocab(&out, &["--demo-docs", "20000"]);
    let (code, stderr) = code_and_stderr(&output);
    assert_eq!(code, Some(74), "{stderr}");
    let vocab_tsv = out.join("vocab.tsv");
    let message = format!(
        "cannot write {}: No space left on device",
        vocab_tsv.display()
    );
    assert!(stderr.contains(&message), "{stderr}");
    assert!(!vocab_tsv.exists(), "a half-written vocab.tsv");
    assert_eq!(leftovers(&out), Vec::<String>::new());
    // What is left is only the report of the failed run (it is small and
    // fits once the temporary file is gone), saying what happened.
    assert_eq!(binary::names(&out), ["summary.json"]);
    let s = summary(&out);
    assert_eq!(s["exit"], "failed");
    assert_eq!(s["exit_code"], 74);
    assert_eq!(s["conservation"], true);
    assert_eq!(s["outputs_written"], false);
    assert!(s["errors"][0].as_str().unwrap().contains(&message), "{s}");
}

/// Tests that act while a run is going: failpoints slow it down.
#[cfg(feature = "failpoints")]
mod during_a_run {
    use std::path::{Path, PathBuf};
    use std::process::Child;
    use std::time::{Duration, Instant};

    use super::binary::{drainpipe, spawn, summary, wait};
    use super::{binary, code_and_stderr, vocab};

    #[test]
    fn an_output_folder_with_a_checkpoint_is_refused_without_resume_or_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // An interrupted run leaves a checkpoint.
        let mut cmd = drainpipe();
        cmd.args(["vocab", "--no-progress", "--demo-docs", "100000", "-o"])
            .arg(&out)
            .env("FAILPOINTS", "processor::record=sleep(1)");
        let child = spawn(cmd);
        wait_for(&child, "its SIGINT handler", || handles_sigint(&child));
        std::thread::sleep(Duration::from_millis(300));
        super::binary::signal(&child, "INT");
        let (output, _) = wait(child, Duration::from_secs(30));
        assert_eq!(
            output.status.code(),
            Some(130),
            "{:?}",
            code_and_stderr(&output)
        );
        assert!(
            out.join("checkpoint.bin").exists(),
            "{:?}",
            binary::names(&out)
        );

        // Another run into that folder is refused; it names both ways out.
        let refused = vocab(&out, &["--demo-docs", "10"]);
        let (code, stderr) = code_and_stderr(&refused);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("checkpoint of an interrupted run"),
            "{stderr}"
        );
        assert!(
            stderr.contains("--resume") && stderr.contains("--force"),
            "{stderr}"
        );

        // --force starts over (and leaves no checkpoint behind).
        let forced = vocab(&out, &["--demo-docs", "10", "--force"]);
        assert_eq!(
            forced.status.code(),
            Some(0),
            "{:?}",
            code_and_stderr(&forced)
        );
        assert!(!has_checkpoint(&out), "{:?}", binary::names(&out));
        assert_eq!(summary(&out)["records"]["read"], 10);
    }

    /// Whether `dir` holds a checkpoint file.
    fn has_checkpoint(dir: &Path) -> bool {
        dir.join("checkpoint.bin").exists()
    }

    /// Whether the child catches SIGINT yet (bit 1 of `SigCgt` in its status).
    fn handles_sigint(child: &Child) -> bool {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
    }

    /// Polls `ready` every 5 ms for up to 20 s; fails naming `what`.
    fn wait_for(child: &Child, what: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        while !ready() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "drainpipe (pid {}) never reached {what}",
                child.id()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How far the child has read `path`: the offset of its open file
    /// description, `None` while it does not have it open.
    fn read_position(child: &Child, path: &Path) -> Option<u64> {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id())).ok()?;
        let fd = fds
            .flatten()
            .find(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))?;
        let info = format!("/proc/{}/fdinfo/{}", child.id(), fd.file_name().to_str()?);
        let info = std::fs::read_to_string(info).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("pos:"))
            .and_then(|pos| pos.trim().parse().ok())
    }

    /// A text input of `lines` lines of 100 bytes each.
    fn lines_file(dir: &Path, lines: usize) -> PathBuf {
        let path = dir.join("input.txt");
        let text: String = (0..lines)
            .map(|i| format!("{:<99}\n", format!("line {i} word{}", i % 7)))
            .collect();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts a run over `input`, slowed to about a millisecond per record so
    /// that the test can act on the input while it is being read, and returns
    /// once reading has begun, with how far it got (at least 1 byte: the input
    /// is not merely checked, as when the run starts, but being read).
    fn start_slow_run(input: &Path, out: &Path) -> (Child, u64) {
        let mut cmd = drainpipe();
        cmd.args([
            "vocab",
            "--no-progress",
            "--workers",
            "2",
            "--batch",
            "10",
            "-o",
        ])
        .arg(out)
        .arg(input)
        .env("FAILPOINTS", "processor::record=sleep(1)");
        let child = spawn(cmd);
        let mut read = 0;
        wait_for(&child, "reading its input", || {
            read = read_position(&child, input).unwrap_or(0);
            read > 0
        });
        (child, read)
    }

    #[test]
    fn an_input_deleted_mid_run_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        // 300 kB: several times the readers' 64 kB buffer.
        let input = lines_file(dir.path(), 3000);
        let out = dir.path().join("out");
        let (child, read) = start_slow_run(&input, &out);
        std::fs::remove_file(&input).unwrap();
        assert!(read < 300_000, "read whole before it was deleted");
        let (output, _) = wait(child, Duration::from_secs(60));
        let (code, stderr) = code_and_stderr(&output);
        assert_eq!(code, Some(0), "{stderr}");
        let s = summary(&out);
        assert_eq!(s["records"]["read"], 3000, "{s}");
        assert_eq!(s["records"]["integrated"], 3000, "{s}");
        assert_eq!(s["partial"], false);
        let vocab = std::fs::read_to_string(out.join("vocab.tsv")).unwrap();
        assert!(vocab.starts_with("line\t3000\n"), "{vocab}");
    }

    #[test]
    fn an_input_truncated_mid_run_exits_74_naming_it_with_no_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let input = lines_file(dir.path(), 3000);
        let out = dir.path().join("out");
        let (child, read) = start_slow_run(&input, &out);
        // Cut it to half: far ahead of the 64 kB read so far.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .unwrap()
            .set_len(150_000)
            .unwrap();
        assert!(read < 150_000, "read {read} bytes before the cut");
        let (output, _) = wait(child, Duration::from_secs(60));
        let (code, stderr) = code_and_stderr(&output);
        assert_eq!(code, Some(74), "{stderr}");
        let message = format!(
            "cannot read {} after line 1500: file shrank while being read: 300000 bytes at open, ended after 150000",
            input.display()
        );
        assert!(stderr.contains(&message), "{stderr}");
        assert_eq!(binary::names(&out), ["summary.json"]);
        let s = summary(&out);
        assert_eq!(s["exit"], "failed");
        assert_eq!(s["outputs_written"], false);
        assert_eq!(s["conservation"], true);
        assert_eq!(s["records"]["read"], 1500);
    }
}
