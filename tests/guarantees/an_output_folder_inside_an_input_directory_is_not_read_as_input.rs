//! Guarantee: a run whose output folder is inside one of its input
//! directories (`cd corpus && drainpipe dedup .`, the default output
//! folder) reads neither its outputs nor their temporaries as input: the
//! run completes, a re-run reads the same records and writes the same
//! outputs, and `vocab` counts no word of its own output files. The same
//! holds for its temporary folder given inside an input directory
//! (`--tmp-dir corpus`).

use crate::binary;

use std::path::Path;

use binary::{drainpipe, summary};

/// A corpus folder: four files, one of them a copy of another.
fn corpus(root: &Path) {
    let text = |seed: u32| -> String {
        (0..12)
            .map(|i| format!("w{seed}x{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), text(1)).unwrap();
    std::fs::write(root.join("b.txt"), text(2)).unwrap();
    std::fs::write(root.join("sub/c.txt"), text(1)).unwrap();
    std::fs::write(root.join("sub/d.txt"), text(3)).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = drainpipe().current_dir(dir).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap(), stderr)
}

#[test]
fn dedup_of_the_current_directory_leaves_its_output_folder_out() {
    let tmp = tempfile::tempdir().unwrap();
    // The default output folder, and one deeper inside the input (each in
    // a corpus of its own: another run's folder is input like any other).
    for (k, output) in [None, Some("sub/deeper/out")].into_iter().enumerate() {
        let root = tmp.path().join(format!("corpus{k}"));
        corpus(&root);
        let mut args = vec!["dedup", "."];
        if let Some(output) = output {
            args.extend(["--output", output]);
        }
        let out_dir = root.join(output.unwrap_or("drainpipe-out"));
        let mut first = None;
        // The second run finds the first one's outputs in its input folder.
        for attempt in 0..2 {
            let (code, stderr) = run(&root, &args);
            assert_eq!(code, 0, "{output:?} run {attempt}: {stderr}");
            let summary = summary(&out_dir);
            assert_eq!(summary["records"]["read"], 4, "{output:?} run {attempt}");
            assert_eq!(summary["result"]["duplicates_removed"], 1);
            let clusters = std::fs::read_to_string(out_dir.join("clusters.jsonl")).unwrap();
            assert_eq!(
                clusters,
                "{\"id\":\"./sub/c.txt\",\"duplicate_of\":\"./a.txt\",\"similarity\":1.0}\n"
            );
            let kept = std::fs::read(out_dir.join("kept.jsonl")).unwrap();
            match &first {
                None => first = Some(kept),
                Some(first) => assert!(*first == kept, "{output:?}: the re-run differs"),
            }
        }
    }
}

#[test]
fn vocab_counts_no_word_of_its_own_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corpus");
    corpus(&root);
    let mut first = None;
    for attempt in 0..2 {
        let (code, stderr) = run(&root, &["vocab", "."]);
        assert_eq!(code, 0, "run {attempt}: {stderr}");
        let vocab = std::fs::read_to_string(root.join("drainpipe-out/vocab.tsv")).unwrap();
        // Every word is one of the corpus's (`w<seed>x<i>`): none of
        // vocab.tsv's or summary.json's own.
        for line in vocab.lines() {
            let word = line.split('\t').next().unwrap();
            assert!(
                word.starts_with('w') && word.contains('x'),
                "run {attempt} counted {word:?}"
            );
        }
        assert_eq!(summary(&root.join("drainpipe-out"))["records"]["read"], 4);
        match &first {
            None => first = Some(vocab),
            Some(first) => assert_eq!(*first, vocab, "the re-run differs"),
        }
    }
}

#[test]
fn an_input_that_is_the_output_folder_itself_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corpus");
    corpus(&root);
    std::os::unix::fs::symlink(&root, tmp.path().join("link")).unwrap();
    // Left out of its own listing, it would be read as an empty input.
    for (input, output) in [
        ("corpus", "corpus"),
        ("corpus", "link"),
        ("link/sub/..", "corpus"),
    ] {
        for job in ["dedup", "vocab"] {
            let (code, stderr) = run(tmp.path(), &[job, input, "-o", output]);
            assert_eq!(code, 2, "{job} {input} -o {output}: {stderr}");
            assert!(
                stderr.contains("is the output folder"),
                "{job} {input} -o {output}: {stderr}"
            );
            assert!(!root.join("summary.json").exists(), "{job}: {stderr}");
        }
    }
}

#[test]
fn a_temporary_folder_inside_an_input_directory_is_not_read_as_input() {
    // A folder of documents reads hidden files too: the run's temporary
    // folder in it (`.drainpipe-tmp-<hash>`, with a spilled file written
    // before the job runs) was read as input, and a spill made during
    // pass 1 failed the run as an input that changed between passes.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corpus");
    corpus(&root);
    let out_dir = tmp.path().join("out");
    let out = drainpipe()
        .env("FAILPOINTS", "main::spill=return(run-0)")
        .args(["dedup", "--no-progress"])
        .arg(&root)
        .arg("-o")
        .arg(&out_dir)
        .arg("--tmp-dir")
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary = summary(&out_dir);
    assert_eq!(summary["records"]["read"], 4, "{summary}");
    let kept = std::fs::read_to_string(out_dir.join("kept.jsonl")).unwrap();
    assert!(!kept.contains(".drainpipe-tmp"), "{kept}");
    assert_eq!(summary["result"]["duplicates_removed"], 1);
}
