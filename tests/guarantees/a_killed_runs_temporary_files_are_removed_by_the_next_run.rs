//! Outputs are written to temporary files (`.NAME.XXXXXX.tmp`) and renamed
//! when complete; a run killed before then (SIGKILL, a power loss) leaves
//! them, and they can be gigabytes. The next run into the folder removes
//! them under the folder's lock, before anything else, whatever it was
//! asked (a plain run, `--resume`, even one then refused, `--force`), and
//! says so. Other files, hidden or not, stay.

use crate::binary;

use std::path::Path;
use std::time::Duration;

use binary::{drainpipe, leftovers, names, spawn, wait};

/// Temporary files as a killed run leaves them.
const STALE: [&str; 3] = [
    ".kept.jsonl.Xq3vTz.tmp",
    ".clusters.jsonl.a81LmQ.tmp",
    ".checkpoint.bin.ZZ09ab.tmp",
];

/// Puts the stale temporaries in `out`, beside files that are not theirs.
fn leave_stale(out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for name in STALE {
        std::fs::write(out.join(name), vec![b'x'; 100_000]).unwrap();
    }
    std::fs::write(out.join(".notes"), "mine").unwrap();
    std::fs::write(out.join("notes.tmp"), "mine too").unwrap();
    // Hidden and ending in .tmp, but not of the temporaries' shape.
    std::fs::write(out.join(".cache.tmp"), "mine as well").unwrap();
}

fn run(out: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = drainpipe();
    cmd.args(args).arg("-o").arg(out);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(60));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_next_run_removes_a_killed_runs_temporaries_whatever_it_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let vocab = ["vocab", "--no-progress", "--demo-docs", "10"];
    for (args, code) in [
        (&vocab[..], 0),
        // The same command: its own results are there.
        (&vocab[..], 0),
        // No checkpoint to resume: refused, but only after tidying up.
        (&[&vocab[..], &["--resume"]].concat()[..], 2),
        (&[&vocab[..], &["--force"]].concat()[..], 0),
        (
            &["dedup", "--no-progress", "--demo-docs", "100", "--force"][..],
            0,
        ),
    ] {
        leave_stale(&out);
        let (got, stderr) = run(&out, args);
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
        let mut left = leftovers(&out);
        left.sort();
        assert_eq!(left, [".cache.tmp", "notes.tmp"], "{args:?}");
        assert!(
            stderr.contains(&format!(
                "removed 3 temporary files a killed run left in {}: {}",
                out.display(),
                ".checkpoint.bin.ZZ09ab.tmp, .clusters.jsonl.a81LmQ.tmp, .kept.jsonl.Xq3vTz.tmp"
            )),
            "{args:?}: {stderr}"
        );
        let names = names(&out);
        assert!(names.contains(&".notes".to_owned()), "{names:?}");
    }
}
