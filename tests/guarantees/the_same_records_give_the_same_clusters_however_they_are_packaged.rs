//! Guarantee: the same records give the same clusters however they are
//! packaged. A few thousand records with planted near-duplicates, as one
//! JSON Lines file, as one Parquet file (several row groups), and as a
//! directory mixing `.jsonl.gz`, `.jsonl.zst` and `.parquet` shards in
//! nested folders (read as records because every file is a record file):
//! `clusters.jsonl` is byte-identical (ids and similarities) and the kept
//! ids are the same, in the same order. The demo corpus written by
//! `drainpipe generate --format parquet` gives the clusters of its JSON
//! Lines form.

use crate::common::gz;
use std::io::Write;
use std::path::Path;

use drainpipe::corpus::{Corpus, CorpusSpec};

use crate::binary::drainpipe;
use crate::parquet::{kept_ids, write, Column};

const DOCS: u64 = 3000;

fn records() -> Vec<(i64, String)> {
    let corpus = Corpus::new(CorpusSpec {
        docs: DOCS,
        ..CorpusSpec::default()
    });
    corpus.docs().map(|d| (d.index as i64, d.text)).collect()
}

fn json_lines(records: &[(i64, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, text) in records {
        let line = serde_json::json!({ "id": id, "text": text });
        writeln!(out, "{line}").unwrap();
    }
    out
}

fn parquet(path: &Path, records: &[(i64, String)], group: usize) {
    let ids = records.iter().map(|(id, _)| *id).collect();
    let texts = records.iter().map(|(_, t)| t.clone()).collect();
    write(
        path,
        &[("id", Column::Int64(ids)), ("text", Column::Str(texts))],
        group,
    );
}

/// Runs dedup on `input`; its clusters and its kept records' ids.
fn dedup(input: &Path, out: &Path) -> (Vec<u8>, Vec<String>) {
    let output = drainpipe()
        .args(["dedup", "--workers", "2"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let clusters = std::fs::read(out.join("clusters.jsonl")).unwrap();
    // kept.jsonl, or kept.parquet for an input of Parquet files only.
    (clusters, kept_ids(out))
}

#[test]
fn the_same_records_give_the_same_clusters_however_they_are_packaged() {
    let tmp = tempfile::tempdir().unwrap();
    let records = records();
    let jsonl = tmp.path().join("all.jsonl");
    std::fs::write(&jsonl, json_lines(&records)).unwrap();
    let one_parquet = tmp.path().join("all.parquet");
    parquet(&one_parquet, &records, 700);
    // Shards in path order: a/0.jsonl.gz, a/1.parquet, b/2.jsonl.zst, b/c/3.parquet.
    let shards = tmp.path().join("shards");
    std::fs::create_dir_all(shards.join("b/c")).unwrap();
    std::fs::create_dir_all(shards.join("a")).unwrap();
    let quarter = records.len() / 4;
    let parts: Vec<&[(i64, String)]> = records.chunks(quarter).collect();
    std::fs::write(shards.join("a/0.jsonl.gz"), gz(&json_lines(parts[0]))).unwrap();
    parquet(&shards.join("a/1.parquet"), parts[1], 300);
    let zst = zstd::encode_all(&json_lines(parts[2])[..], 3).unwrap();
    std::fs::write(shards.join("b/2.jsonl.zst"), zst).unwrap();
    let rest: Vec<(i64, String)> = parts[3..].concat();
    parquet(&shards.join("b/c/3.parquet"), &rest, 1000);

    let (clusters, kept) = dedup(&jsonl, &tmp.path().join("out-jsonl"));
    assert!(
        clusters.iter().filter(|&&b| b == b'\n').count() > 50,
        "the corpus has near-duplicates"
    );
    assert!(kept.len() < records.len() && !kept.is_empty());
    for input in [&one_parquet, &shards] {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let (c, k) = dedup(input, &tmp.path().join(format!("out-{name}")));
        assert!(c == clusters, "{name}: clusters.jsonl differs");
        assert_eq!(k, kept, "{name}: kept ids differ");
    }
}

#[test]
fn the_demo_corpus_as_parquet_gives_the_clusters_of_its_json_lines_form() {
    let tmp = tempfile::tempdir().unwrap();
    let mut clusters = Vec::new();
    for (format, name) in [("jsonl", "demo.jsonl"), ("parquet", "demo.parquet")] {
        let path = tmp.path().join(name);
        let status = drainpipe()
            .args([
                "generate",
                "--docs",
                "2000",
                "--row-group",
                "300",
                "--format",
                format,
                "-o",
            ])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        clusters.push(dedup(&path, &tmp.path().join(format!("out-{format}"))));
    }
    assert!(!clusters[0].0.is_empty());
    assert!(clusters[0] == clusters[1], "clusters or kept ids differ");
    let magic = std::fs::read(tmp.path().join("demo.parquet")).unwrap();
    assert_eq!(&magic[..4], b"PAR1");
}
