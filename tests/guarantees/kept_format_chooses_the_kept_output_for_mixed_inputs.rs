//! Guarantee: `--kept-format` chooses the kept output. By default the kept
//! records are `kept.parquet` when every input is a Parquet file, else
//! `kept.jsonl`; for inputs mixing JSON Lines and Parquet, `kept.jsonl`
//! holds the JSON Lines records byte for byte and each Parquet row as
//! `{"id": ..., "text": ...}`, and `--kept-format parquet` gives
//! `kept.parquet` of two string columns, `id` and `text`, with the same
//! records in the same order. `--kept-format jsonl` on Parquet input gives
//! `kept.jsonl`. A run writing one form into a folder that holds the other
//! (with `--force`) removes it: the folder holds one run's outputs.

use std::io::Write;
use std::path::Path;

use drainpipe::corpus::{Corpus, CorpusSpec};

use crate::binary::drainpipe;
use crate::parquet::{kept_ids, read_rows, write, Column};

fn dedup(input: &Path, out: &Path, format: Option<&str>) {
    let mut cmd = drainpipe();
    cmd.args(["dedup", "--no-progress", "--force"]);
    if let Some(format) = format {
        cmd.args(["--kept-format", format]);
    }
    let output = cmd.arg(input).arg("-o").arg(out).output().unwrap();
    assert!(
        output.status.success(),
        "{format:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("kept"))
        .collect();
    names.sort();
    names
}

#[test]
fn kept_format_chooses_the_kept_output_for_mixed_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = Corpus::new(CorpusSpec {
        docs: 1200,
        ..CorpusSpec::default()
    });
    let texts: Vec<String> = corpus.docs().map(|d| d.text).collect();
    // Shards: a.jsonl (string ids, spaced JSON) then b.parquet (integer ids).
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut lines = Vec::new();
    for (i, text) in texts[..600].iter().enumerate() {
        let text = serde_json::to_string(text).unwrap();
        writeln!(lines, "{{ \"id\": \"j{i}\",  \"text\": {text} }}").unwrap();
    }
    std::fs::write(shards.join("a.jsonl"), &lines).unwrap();
    let ids: Vec<i64> = (600..texts.len() as i64).collect();
    write(
        &shards.join("b.parquet"),
        &[
            ("id", Column::Int64(ids)),
            ("text", Column::Str(texts[600..].to_vec())),
        ],
        250,
    );

    // Default for mixed inputs: kept.jsonl.
    let out = tmp.path().join("out");
    dedup(&shards, &out, None);
    assert_eq!(names(&out), ["kept.jsonl"]);
    let kept = std::fs::read_to_string(out.join("kept.jsonl")).unwrap();
    let ids = kept_ids(&out);
    assert!(ids.len() < texts.len() && ids.iter().any(|id| id.starts_with('"')));
    let input_lines: Vec<&str> = std::str::from_utf8(&lines).unwrap().lines().collect();
    for line in kept.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        match &value["id"] {
            // A JSON Lines record, byte for byte.
            serde_json::Value::String(_) => assert!(input_lines.contains(&line), "{line}"),
            // A Parquet row as the JSON object it is read as.
            serde_json::Value::Number(n) => {
                let i = n.as_u64().unwrap() as usize;
                let expected = serde_json::json!({ "id": i, "text": texts[i] });
                assert_eq!(line, expected.to_string());
            }
            other => panic!("{other:?}"),
        }
    }

    // --kept-format parquet: columns id and text, the same records in order;
    // the earlier kept.jsonl is gone.
    dedup(&shards, &out, Some("parquet"));
    assert_eq!(names(&out), ["kept.parquet"]);
    let (schema, rows) = read_rows(&out.join("kept.parquet"));
    let columns: Vec<String> = schema
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert_eq!(columns, ["id", "text"]);
    let unquoted: Vec<String> = ids
        .iter()
        .map(
            |id| match serde_json::from_str::<serde_json::Value>(id).unwrap() {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
        )
        .collect();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            let mut fields = row.get_column_iter().map(|(_, f)| match f {
                ::parquet::record::Field::Str(s) => s.clone(),
                other => panic!("{other:?}"),
            });
            (fields.next().unwrap(), fields.next().unwrap())
        })
        .collect();
    let got_ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got_ids, unquoted);
    for (id, text) in &got {
        let i: usize = id.trim_start_matches('j').parse().unwrap();
        assert_eq!(text, &texts[i], "{id}");
    }

    // Parquet input alone: kept.parquet by default, kept.jsonl when asked.
    let parquet = shards.join("b.parquet");
    let alone = tmp.path().join("alone");
    dedup(&parquet, &alone, None);
    assert_eq!(names(&alone), ["kept.parquet"]);
    let parquet_ids = kept_ids(&alone);
    dedup(&parquet, &alone, Some("jsonl"));
    assert_eq!(names(&alone), ["kept.jsonl"]);
    assert_eq!(kept_ids(&alone), parquet_ids);
    // JSON Lines input alone: kept.jsonl either way unless asked.
    let jsonl = shards.join("a.jsonl");
    dedup(&jsonl, &alone, None);
    assert_eq!(names(&alone), ["kept.jsonl"]);
    let default_bytes = std::fs::read(alone.join("kept.jsonl")).unwrap();
    dedup(&jsonl, &alone, Some("jsonl"));
    assert_eq!(
        std::fs::read(alone.join("kept.jsonl")).unwrap(),
        default_bytes
    );
}
