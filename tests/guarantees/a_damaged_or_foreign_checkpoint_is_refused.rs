//! A checkpoint that is corrupt, truncated, of another format version, or
//! written for other inputs or parameters is refused with a clear message;
//! it never produces a silently wrong result.

use drainpipe::jobs::{vocab, RunContext};
use drainpipe_actors::{codec, Checkpoint, OutputDir, RunHandle, CHECKPOINT_FILE};

fn interrupted_run(dir: &std::path::Path) -> RunContext {
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir).unwrap());
    ctx.demo_docs = 5_000;
    ctx.fingerprint = "vocab; demo corpus of 5000 documents".into();
    let handle = RunHandle::new();
    handle.request_stop();
    ctx.handle = handle;
    let report = vocab::run(&ctx).unwrap();
    assert_eq!(report.exit_code, 130);
    assert!(dir.join(CHECKPOINT_FILE).exists());
    ctx.handle = RunHandle::new();
    ctx.resume = true;
    ctx
}

fn refusal(ctx: &RunContext) -> String {
    match vocab::run(ctx) {
        Ok(report) => panic!("resumed from a bad checkpoint: {}", report.human()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn each_kind_of_bad_checkpoint_gets_its_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = interrupted_run(dir.path());
    let path = dir.path().join(CHECKPOINT_FILE);
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    assert!(
        refusal(&ctx).contains("corrupt or truncated"),
        "{}",
        refusal(&ctx)
    );

    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    assert!(refusal(&ctx).contains("corrupt or truncated"));

    std::fs::write(&path, b"hello").unwrap();
    assert!(refusal(&ctx).contains("not a drainpipe checkpoint"));

    let mut other_version = good.clone();
    other_version[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &other_version).unwrap();
    assert!(
        refusal(&ctx).contains("format version 99"),
        "{}",
        refusal(&ctx)
    );

    std::fs::write(&path, &good).unwrap();
    let mut other_run = ctx.clone();
    other_run.fingerprint = "vocab; demo corpus of 6000 documents".into();
    let message = refusal(&other_run);
    assert!(
        message.contains("for another run") && message.contains("6000"),
        "{message}"
    );

    // The job's own state is checked too.
    let mut checkpoint: Checkpoint =
        codec::decode(&good, drainpipe_actors::checkpoint::FORMAT_VERSION).unwrap();
    checkpoint.job = b"not a vocabulary".to_vec();
    std::fs::write(&path, checkpoint.encode().unwrap()).unwrap();
    assert!(refusal(&ctx).contains("cannot resume"), "{}", refusal(&ctx));

    // And the intact checkpoint still resumes.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(vocab::run(&ctx).unwrap().exit_code, 0);
}

#[test]
fn resume_without_a_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    ctx.resume = true;
    let message = refusal(&ctx);
    assert!(message.contains("no checkpoint"), "{message}");
}

#[test]
fn resume_without_a_checkpoint_leaves_the_earlier_runs_outputs_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let dedup = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_drainpipe"))
            .args(["dedup", "--demo-docs", "500", "--no-progress", "-o"])
            .arg(dir.path())
            .args(extra)
            .env_remove("FAILPOINTS")
            .output()
            .unwrap()
    };
    assert_eq!(dedup(&[]).status.code(), Some(0));
    let files = || {
        ["kept.jsonl", "clusters.jsonl", "summary.json"]
            .map(|name| std::fs::read(dir.path().join(name)).unwrap())
    };
    let before = files();
    let out = dedup(&["--resume"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no checkpoint"), "{stderr}");
    assert!(
        files() == before,
        "the refused run changed the earlier run's outputs"
    );
}

#[test]
fn the_binary_refuses_resume_without_a_checkpoint_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drainpipe"))
        .args(["vocab", "--demo-docs", "10", "--resume", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no checkpoint"), "{stderr}");
}
