//! Guarantee: a directory whose files (hidden ones aside) are all record
//! files is read as records, file by file, in path order; a directory
//! holding any other file keeps its meaning of one document per file; and
//! `--dir-as records|documents` overrides the choice. Read as records, a
//! file that is not a record file is a rejected record naming it, and
//! hidden files are left out.

use crate::common::gz;
use std::path::Path;

use crate::binary::{drainpipe, succeeded};

/// Runs dedup on `dir`: the kept records' ids and the number rejected.
fn kept_ids(dir: &Path, out: &Path, extra: &[&str]) -> (Vec<String>, u64) {
    succeeded(
        drainpipe()
            .arg("dedup")
            .args(extra)
            .arg(dir)
            .arg("-o")
            .arg(out),
    );
    let rejected = crate::binary::summary(out)["records"]["rejected"]
        .as_u64()
        .unwrap();
    (crate::parquet::kept_ids(out), rejected)
}

fn line(id: &str, text: &str) -> String {
    format!("{{\"id\":\"{id}\",\"text\":\"{text}\"}}\n")
}

#[test]
fn a_directory_is_read_as_records_when_every_file_is_a_record_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("corpus");
    std::fs::create_dir_all(dir.join("b/c")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(
        dir.join("b/c/1.json.gz"),
        gz((line("b1", "one two three four") + &line("b2", "five six seven eight")).as_bytes()),
    )
    .unwrap();
    std::fs::write(dir.join("a.jsonl"), line("a1", "alpha beta gamma delta")).unwrap();
    std::fs::write(dir.join(".gitattributes"), "*.gz binary\n").unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let (ids, rejected) = kept_ids(&dir, &tmp.path().join("o1"), &[]);
    assert_eq!(ids, [r#""a1""#, r#""b1""#, r#""b2""#]);
    assert_eq!(rejected, 0);
    // Forced to documents: each file is one document, hidden ones too.
    let files = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .map(|n| format!("{:?}", dir.join(n).display().to_string()))
            .collect()
    };
    let (ids, _) = kept_ids(&dir, &tmp.path().join("o2"), &["--dir-as", "documents"]);
    let all = [".git/HEAD", ".gitattributes", "a.jsonl", "b/c/1.json.gz"];
    assert_eq!(ids, files(&all));

    // A README among the shards: documents, unless told otherwise.
    std::fs::write(dir.join("README.md"), "a dataset card\n").unwrap();
    let (ids, _) = kept_ids(&dir, &tmp.path().join("o3"), &[]);
    let all = [
        ".git/HEAD",
        ".gitattributes",
        "README.md",
        "a.jsonl",
        "b/c/1.json.gz",
    ];
    assert_eq!(ids, files(&all));
    let (ids, rejected) = kept_ids(&dir, &tmp.path().join("o4"), &["--dir-as", "records"]);
    assert_eq!(ids, [r#""a1""#, r#""b1""#, r#""b2""#]);
    assert_eq!(rejected, 1);
    let rejects = std::fs::read_to_string(tmp.path().join("o4/rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("README.md") && rejects.contains("not a record file"),
        "{rejects}"
    );
}
