//! Guarantee: for Parquet input, `kept.parquet` has the input's schema
//! (every column, in order, of the same types, nested ones included) and
//! the kept rows, whole, in input order: those a run over the same records
//! as JSON Lines keeps. A directory of Parquet shards of one schema gives
//! one `kept.parquet` of the shards' kept rows in path order; shards of two
//! schemas are refused before any work (exit 65), naming both files and the
//! first column that differs.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use ::parquet::basic::Compression;
use ::parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::parser::parse_message_type;
use drainpipe::corpus::{Corpus, CorpusSpec};

use crate::binary::{drainpipe, summary};
use crate::parquet::{kept_ids, read_rows};

/// Columns of every kind the copy must carry: required and optional
/// scalars, a string, and a list of optional strings (three definition
/// levels, one repetition level).
const SCHEMA: &str = "message doc {
    required int64 id;
    optional binary lang (UTF8);
    required binary text (UTF8);
    optional double score;
    optional group tags (LIST) { repeated group list { optional binary element (UTF8); } }
}";

fn texts(docs: u64) -> Vec<String> {
    let corpus = Corpus::new(CorpusSpec {
        docs,
        ..CorpusSpec::default()
    });
    corpus.docs().map(|d| d.text).collect()
}

/// Writes rows `from..to` of the records (ids are row numbers) with
/// `SCHEMA`, `group` rows per row group.
fn write_rows(path: &Path, texts: &[String], (from, to): (usize, usize), group: usize) {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(Default::default()))
        .build();
    let schema = Arc::new(parse_message_type(SCHEMA).unwrap());
    let mut writer =
        SerializedFileWriter::new(File::create(path).unwrap(), schema, Arc::new(props)).unwrap();
    let mut start = from;
    while start < to {
        let end = (start + group).min(to);
        let rows = start..end;
        let mut g = writer.next_row_group().unwrap();
        // id
        let ids: Vec<i64> = rows.clone().map(|i| i as i64).collect();
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<Int64Type>()
            .write_batch(&ids, None, None)
            .unwrap();
        c.close().unwrap();
        // lang: null on every fifth row
        let def: Vec<i16> = rows.clone().map(|i| i16::from(i % 5 != 0)).collect();
        let langs: Vec<ByteArray> = rows
            .clone()
            .filter(|i| i % 5 != 0)
            .map(|i| ByteArray::from(["en", "fr", "de"][i % 3]))
            .collect();
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&langs, Some(&def), None)
            .unwrap();
        c.close().unwrap();
        // text
        let t: Vec<ByteArray> = rows.clone().map(|i| texts[i].as_str().into()).collect();
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&t, None, None)
            .unwrap();
        c.close().unwrap();
        // score: null on every seventh row
        let def: Vec<i16> = rows.clone().map(|i| i16::from(i % 7 != 0)).collect();
        let scores: Vec<f64> = rows
            .clone()
            .filter(|i| i % 7 != 0)
            .map(|i| i as f64 / 8.0)
            .collect();
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<DoubleType>()
            .write_batch(&scores, Some(&def), None)
            .unwrap();
        c.close().unwrap();
        // tags: null, empty, or two tags (the second null on odd rows)
        let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
        for i in rows {
            match i % 3 {
                0 => {
                    def.push(0);
                    rep.push(0);
                }
                1 => {
                    def.push(1);
                    rep.push(0);
                }
                _ => {
                    values.push(ByteArray::from(format!("tag{i}").as_str()));
                    def.push(3);
                    rep.push(0);
                    if i % 2 == 0 {
                        values.push(ByteArray::from("b"));
                        def.push(3);
                    } else {
                        def.push(2);
                    }
                    rep.push(1);
                }
            }
        }
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&values, Some(&def), Some(&rep))
            .unwrap();
        c.close().unwrap();
        g.close().unwrap();
        start = end;
    }
    writer.close().unwrap();
}

fn dedup(input: &Path, out: &Path) -> std::process::Output {
    drainpipe()
        .args(["dedup", "--no-progress", "--workers", "2"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

fn dedup_ok(input: &Path, out: &Path) {
    let output = dedup(input, out);
    assert!(
        output.status.success(),
        "{}: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn kept_parquet_has_the_input_schema_and_the_kept_rows_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = texts(2500);
    let n = texts.len();
    let jsonl = tmp.path().join("all.jsonl");
    let mut lines = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        writeln!(lines, "{}", serde_json::json!({ "id": i, "text": text })).unwrap();
    }
    std::fs::write(&jsonl, lines).unwrap();
    let parquet = tmp.path().join("all.parquet");
    write_rows(&parquet, &texts, (0, n), 400);
    // The same rows as two shards, the second of two row groups.
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    write_rows(&shards.join("a.parquet"), &texts, (0, 1000), 1000);
    write_rows(&shards.join("b.parquet"), &texts, (1000, n), 777);

    let out_jsonl = tmp.path().join("out-jsonl");
    dedup_ok(&jsonl, &out_jsonl);
    let expected = kept_ids(&out_jsonl);
    assert!(
        expected.len() < n && expected.len() > n / 2,
        "the corpus has duplicates: {} kept of {n}",
        expected.len()
    );
    let (schema, input_rows) = read_rows(&parquet);
    for (input, name) in [(&parquet, "file"), (&shards, "shards")] {
        let out = tmp.path().join(format!("out-{name}"));
        dedup_ok(input, &out);
        assert!(!out.join("kept.jsonl").exists(), "{name}");
        let (kept_schema, kept_rows) = read_rows(&out.join("kept.parquet"));
        assert_eq!(kept_schema, schema, "{name}: the input's schema");
        assert_eq!(kept_ids(&out), expected, "{name}: the kept rows, in order");
        // Each kept row whole: every column as in the input's row.
        for row in &kept_rows {
            let (_, id) = row.get_column_iter().next().unwrap();
            let ::parquet::record::Field::Long(id) = id else {
                panic!("{id:?}")
            };
            assert_eq!(row, &input_rows[*id as usize], "{name}: row {id}");
        }
        let summary = summary(&out);
        assert_eq!(summary["result"]["kept"], expected.len() as u64, "{name}");
        assert_eq!(
            summary["result"]["outputs"],
            serde_json::json!(["kept.parquet", "clusters.jsonl"]),
            "{name}"
        );
    }
}

#[test]
fn parquet_shards_of_two_schemas_are_refused_naming_both_and_the_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = texts(50);
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    write_rows(&shards.join("a.parquet"), &texts, (0, 25), 100);
    crate::parquet::write(
        &shards.join("b.parquet"),
        &[
            ("id", crate::parquet::Column::Int64((25..50).collect())),
            ("text", crate::parquet::Column::Str(texts[25..].to_vec())),
        ],
        100,
    );
    let out = tmp.path().join("out");
    let output = dedup(&shards, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    let a = shards.join("a.parquet").display().to_string();
    let b = shards.join("b.parquet").display().to_string();
    assert!(
        stderr.contains(&format!("cannot read {b}: its schema is not that of {a}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"column 2: "lang" BYTE_ARRAY (UTF8) OPTIONAL there, "text" BYTE_ARRAY (UTF8) REQUIRED here"#),
        "{stderr}"
    );
    assert!(stderr.contains("--kept-format jsonl"), "{stderr}");
    assert!(!out.join("kept.parquet").exists());
    // As JSON Lines, the same shards are read.
    let output = drainpipe()
        .args(["dedup", "--no-progress", "--kept-format", "jsonl"])
        .arg(&shards)
        .arg("-o")
        .arg(&out)
        .arg("--force")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary(&out)["records"]["read"], 50);
    assert!(out.join("kept.jsonl").exists() && !out.join("kept.parquet").exists());
}
