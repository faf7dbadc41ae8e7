//! A command whose output goes to a reader that has closed the pipe
//! (`drainpipe generate | head -1`, `drainpipe dedup --explain | true`)
//! ends at once, with exit 0 and nothing on stderr, as `seq` or `cat`
//! would; it neither hangs nor reports an error nobody made.

use crate::binary;

use std::process::{Command, Stdio};
use std::time::Duration;

use binary::{drainpipe, wait};

/// `cmd` writing into a pipe whose reading end is already closed.
fn into_a_closed_pipe(mut cmd: Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The parent's copy of the writing end is gone with `cmd`.
    drop(cmd);
    wait(child, Duration::from_secs(60)).0
}

/// Runs `drainpipe args...` into a closed pipe: exit 0, nothing on stderr.
fn exits_0_quietly(args: &[&str]) {
    let mut cmd = drainpipe();
    cmd.args(args);
    let out = into_a_closed_pipe(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(stderr.is_empty(), "{args:?}: {stderr}");
}

#[test]
fn generate_into_a_closed_pipe_exits_0_quietly() {
    exits_0_quietly(&["generate", "--docs", "100000"]);
}

#[test]
fn explain_into_a_closed_pipe_exits_0_quietly() {
    exits_0_quietly(&["dedup", "--explain"]);
}

#[test]
fn generate_into_a_file_that_cannot_be_written_still_fails() {
    let mut cmd = drainpipe();
    cmd.args([
        "generate",
        "--docs",
        "10",
        "-o",
        "/proc/drainpipe-cannot-write-here",
    ]);
    let out = wait(binary::spawn(cmd), Duration::from_secs(60)).0;
    assert_eq!(
        out.status.code(),
        Some(74),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
