//! Guarantee: a Parquet file that cannot be read is refused, naming it,
//! before any output. One without the text column (or with a text column
//! that is not a string) exits 65 and lists the columns it has; one that
//! is corrupt or was cut short exits 74; both leave no `kept.jsonl`.

use std::path::Path;

use crate::binary::drainpipe;
use crate::parquet::{write, Column};

/// Runs dedup on `input`: its exit code and stderr.
fn dedup(input: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let output = drainpipe()
        .arg("dedup")
        .args(extra)
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(!out.join("kept.jsonl").exists(), "no output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("document number {i} of the file"))
        .collect()
}

#[test]
fn a_parquet_file_without_the_text_column_exits_65_listing_its_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.parquet");
    write(
        &path,
        &[
            ("id", Column::Int64(vec![1, 2])),
            ("body", Column::Str(texts(2))),
        ],
        10,
    );
    let (code, stderr) = dedup(&path, &tmp.path().join("o1"), &[]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(r#"no text column "text" (--text-field); its columns: "id", "body""#),
        "{stderr}"
    );
    // Naming a column that is not a string.
    let (code, stderr) = dedup(&path, &tmp.path().join("o2"), &["--text-field", "id"]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains(r#"text column "id" is INT64, not a string"#),
        "{stderr}"
    );
    // The right column: read.
    let out = tmp.path().join("o3");
    let output = drainpipe()
        .args(["dedup", "--text-field", "body"])
        .arg(&path)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success());
    // Parquet input: the kept rows are kept.parquet.
    let (_, kept) = crate::parquet::read_rows(&out.join("kept.parquet"));
    assert_eq!(kept.len(), 2);
    // A shard of a directory is checked before any work too.
    let dir = tmp.path().join("shards");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("0.jsonl"), "{\"text\":\"a b c d e\"}\n").unwrap();
    std::fs::copy(&path, dir.join("1.parquet")).unwrap();
    let (code, stderr) = dedup(&dir, &tmp.path().join("o4"), &[]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains(&dir.join("1.parquet").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_or_truncated_parquet_file_exits_74_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.parquet");
    write(&good, &[("text", Column::Str(texts(20_000)))], 5000);
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let mut pages = bytes.clone();
    for b in &mut pages[100..bytes.len() / 2] {
        *b = 0x5A;
    }
    let damaged = tmp.path().join("damaged.parquet");
    std::fs::write(&damaged, &pages).unwrap();
    let not = tmp.path().join("not.parquet");
    std::fs::write(&not, b"{\"text\":\"json, not parquet\"}\n").unwrap();
    for (i, path) in [&cut, &damaged, &not].into_iter().enumerate() {
        let (code, stderr) = dedup(path, &tmp.path().join(format!("o{i}")), &[]);
        assert_eq!(code, Some(74), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot read {}", path.display())),
            "{stderr}"
        );
    }
}
