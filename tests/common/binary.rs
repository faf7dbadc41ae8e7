//! Running the real `drainpipe` binary from tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `drainpipe` command with logging at info and no progress display.
pub fn drainpipe() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drainpipe"));
    cmd.env_remove("FAILPOINTS").env_remove("RUST_LOG");
    cmd
}

/// `dedup INPUT -o OUT` under the least budget (one worker, a window of
/// one), with a checkpoint every second: the budgeted kill-and-resume
/// tests' run.
pub fn least_budget_dedup(input: &Path, out: &Path) -> Command {
    let mut cmd = drainpipe();
    cmd.arg("dedup")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(["--no-progress", "-v", "--workers", "1", "--window", "1"])
        .args(["--max-memory", "28M", "--checkpoint-every", "1"]);
    cmd
}

/// Runs `cmd` to its end and asserts that it exits 0 (saying how it
/// failed otherwise); its output.
pub fn succeeded(cmd: &mut Command) -> Output {
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{cmd:?} exited with {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Starts `cmd` with stdout and stderr captured.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Sends `signal` (e.g. "INT") to the child.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the child with a deadline; kills it and fails if it is late.
pub fn wait(mut child: Child, deadline: Duration) -> (Output, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "drainpipe did not exit within {deadline:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads `summary.json` from `dir`.
pub fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json is written");
    serde_json::from_str(&text).unwrap()
}

/// Names of temporary files left in `dir`.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Every name in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Starts `cmd` and kills it (SIGKILL) at the first checkpoint written
/// once a line of its stderr holds `after`; fails, with the lines seen,
/// when the run ends without one.
pub fn killed_at_a_checkpoint_after(cmd: Command, after: &str) {
    let mut child = spawn(cmd);
    let stderr = child.stderr.take().unwrap();
    let (mut past, mut seen) = (false, Vec::new());
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        past |= line.contains(after);
        let at_checkpoint = past && line.contains("checkpoint written");
        seen.push(line);
        if at_checkpoint {
            child.kill().unwrap();
            // Reaped: its exit status is SIGKILL's, nothing to check.
            let _ = child.wait();
            return;
        }
    }
    let _ = child.wait();
    panic!("no checkpoint after \"{after}\": {}", seen.join("\n"));
}

/// Asserts that nothing of a run is left in `out` besides its outputs: no
/// temporary file, checkpoint, temporary folder or commit record.
pub fn nothing_of_the_run_left(out: &Path, what: &str) {
    let left: Vec<String> = names(out)
        .into_iter()
        .filter(|n| {
            n.ends_with(".tmp")
                || n.ends_with(".bin")
                || n.starts_with(".drainpipe-tmp")
                || n == ".drainpipe.commit"
        })
        .collect();
    assert!(left.is_empty(), "{what}: {left:?}");
}
