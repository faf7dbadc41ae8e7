//! A saved index (`--save-index DIR`) is written by one run at a time,
//! into a folder of its own. A second run saving the same index while the
//! first writes it is refused with exit 2 naming the holder (it used to
//! remove the first run's draft as if a killed run had left it, and the
//! first then failed); the first ends intact. An index that would be the
//! output folder or inside it, inside an input directory, a folder below
//! a file, or an `--against` index named twice is refused with exit 2
//! before any work, naming the option; so is an output folder (`-o`) that
//! is a saved index or inside one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binary::{drainpipe, spawn, wait};

const DEADLINE: Duration = Duration::from_secs(120);

/// `dedup --demo-docs 300 -o OUT` with `extra`.
fn dedup(out: &Path, extra: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = drainpipe();
    cmd.args(["dedup", "--no-progress", "--demo-docs", "300", "-o"])
        .arg(out)
        .args(extra);
    cmd
}

/// Runs `cmd`; returns its exit code and stderr.
fn finish(cmd: Command) -> (Option<i32>, String) {
    let (output, _) = wait(spawn(cmd), DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), stderr)
}

/// The names in `dir` that start with `prefix`.
#[cfg(feature = "failpoints")]
fn starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
#[cfg(feature = "failpoints")]
fn a_second_run_saving_the_same_index_is_refused_and_the_first_ends_intact() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("IDX");
    let save = [
        "--save-index".as_ref(),
        idx.as_os_str(),
        "--workers".as_ref(),
        "2".as_ref(),
    ];
    let mut first = dedup(&dir.path().join("first"), &save);
    // Every record takes 10 ms: the first run writes its index for seconds.
    first.env("FAILPOINTS", "processor::record=sleep(10)");
    let first = spawn(first);
    let lock = dir.path().join(".IDX.index-lock");
    let started = std::time::Instant::now();
    while !lock.exists() {
        assert!(
            started.elapsed() < DEADLINE,
            "the first run never took the index's lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, stderr) = finish(dedup(&dir.path().join("second"), &save));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("another run is writing this index")
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );
    assert!(!dir.path().join("second").join("kept.jsonl").exists());

    let (output, _) = wait(first, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(idx.join("manifest.bin").exists());
    assert_eq!(starting(dir.path(), ".IDX"), Vec::<String>::new());
    // And it is an index a later run can use.
    let against = ["--against".as_ref(), idx.as_os_str()];
    let (code, stderr) = finish(dedup(&dir.path().join("third"), &against));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_index_folder_that_cannot_be_its_own_or_an_index_named_twice_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The output folder, which the run would make before saving into it.
    let (code, stderr) = finish(dedup(&out, &["--save-index".as_ref(), out.as_os_str()]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is the output folder (-o)"), "{stderr}");
    assert!(!out.exists());
    // Below a file.
    let file = dir.path().join("file");
    std::fs::write(&file, "not a folder").unwrap();
    let below = file.join("IDX");
    let (code, stderr) = finish(dedup(&out, &["--save-index".as_ref(), below.as_os_str()]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is a file, not a folder"), "{stderr}");
    assert!(!out.exists());
    // The same index twice, by two paths.
    let idx = dir.path().join("IDX");
    let (code, stderr) = finish(dedup(
        &dir.path().join("saved"),
        &["--save-index".as_ref(), idx.as_os_str()],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    let again = dir.path().join(".").join("IDX");
    let twice = [
        "--against".as_ref(),
        idx.as_os_str(),
        "--against".as_ref(),
        again.as_os_str(),
    ];
    let (code, stderr) = finish(dedup(&out, &twice));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is given twice"), "{stderr}");
    assert!(!out.exists());
    // A folder that is not an index: damaged (exit 65), naming the file.
    let (code, stderr) = finish(dedup(&out, &["--against".as_ref(), out.as_os_str()]));
    assert_eq!(code, Some(2), "{stderr}");
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let (code, stderr) = finish(dedup(&out, &["--against".as_ref(), plain.as_os_str()]));
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("manifest.bin"), "{stderr}");
}

#[test]
fn an_index_and_a_runs_outputs_never_share_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("IDX");
    let save = ["--save-index".as_ref(), idx.as_os_str()];
    let (code, stderr) = finish(dedup(&dir.path().join("saved"), &save));
    assert_eq!(code, Some(0), "{stderr}");
    let files = crate::binary::names(&idx);
    // Outputs into the index's folder, or into a folder inside it, of
    // either job, with or without the index as --against.
    let against = ["--against".as_ref(), idx.as_os_str()];
    let mut vocab = drainpipe();
    vocab.args(["vocab", "--demo-docs", "10", "-o"]).arg(&idx);
    for cmd in [
        vocab,
        dedup(&idx, &[]),
        dedup(&idx, &against),
        dedup(&idx.join("out"), &[]),
    ] {
        let what = format!("{cmd:?}");
        let (code, stderr) = finish(cmd);
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("is a saved dedup index"),
            "{what}: {stderr}"
        );
    }
    assert_eq!(crate::binary::names(&idx), files, "the index is untouched");
    // An index inside the output folder.
    let out = dir.path().join("out");
    let inside = out.join("IDX");
    let (code, stderr) = finish(dedup(&out, &["--save-index".as_ref(), inside.as_os_str()]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is the output folder (-o) or inside it"),
        "{stderr}"
    );
    assert!(!out.exists());
    // An index inside an input directory, which a later run over the
    // directory would read as input.
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::write(corpus.join("a.jsonl"), "{\"text\": \"one record\"}\n").unwrap();
    let in_corpus = corpus.join("IDX");
    let mut cmd = dedup(&out, &["--save-index".as_ref(), in_corpus.as_os_str()]);
    cmd.arg(&corpus);
    let (code, stderr) = finish(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is inside the input directory"), "{stderr}");
    assert!(!out.exists() && !in_corpus.exists());
}
