//! Guarantee: the odd and damaged files real corpora hold are read
//! correctly, or end the run with a message naming the file (and its row or
//! line where there is one) and the documented exit code; never a panic, a
//! hang or a record dropped without a word. One test per case: a Parquet
//! text column of plain binary, null texts and ids, a dictionary-encoded
//! column, a file of no rows or no row groups, an id column of floats; a
//! `.gz` shard cut short, a `.zst` shard with bytes after its frame; a
//! directory holding a loop of symbolic links; a WET file with bare `\n`
//! line ends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::binary::{drainpipe, spawn, wait};

/// What a run did.
struct Ran {
    code: Option<i32>,
    stderr: String,
    out: PathBuf,
}

impl Ran {
    /// The lines of `rejects.jsonl` (none when it is not there).
    fn rejects(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.join("rejects.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn summary(&self) -> serde_json::Value {
        crate::binary::summary(&self.out)
    }
}

/// `drainpipe dedup -q <args> <input> -o <dir>/out-<name>`, with a deadline
/// (a hang fails the test).
fn dedup(input: &Path, name: &str, args: &[&str]) -> Ran {
    let out = input.parent().unwrap().join(format!("out-{name}"));
    let mut cmd = drainpipe();
    cmd.args(["dedup", "-q"])
        .args(args)
        .arg(input)
        .arg("-o")
        .arg(&out);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ran {
        code: output.status.code(),
        stderr,
        out,
    }
}

/// Writes a Parquet file of `schema` whose row groups each hold the
/// columns' values (as byte arrays or int64s) and definition levels.
fn write_parquet(path: &Path, schema: &str, props: WriterProperties, groups: &[Vec<Values>]) {
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let mut writer =
        SerializedFileWriter::new(File::create(path).unwrap(), schema, Arc::new(props)).unwrap();
    for group in groups {
        let mut rows = writer.next_row_group().unwrap();
        for values in group {
            let mut column = rows.next_column().unwrap().unwrap();
            match values {
                Values::Bytes(v, levels) => {
                    let v: Vec<ByteArray> = v.iter().map(|b| b.clone().into()).collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&v, levels.as_deref(), None)
                        .unwrap();
                }
                Values::Ints(v, levels) => {
                    column
                        .typed::<Int64Type>()
                        .write_batch(v, levels.as_deref(), None)
                        .unwrap();
                }
            }
            column.close().unwrap();
        }
        rows.close().unwrap();
    }
    writer.close().unwrap();
}

/// One column chunk: its values (nulls left out) and definition levels.
enum Values {
    Bytes(Vec<Vec<u8>>, Option<Vec<i16>>),
    Ints(Vec<i64>, Option<Vec<i16>>),
}

fn text(i: usize) -> String {
    format!("a document numbered {i} with a few words to shingle and hash")
}

fn props() -> WriterProperties {
    WriterProperties::builder().build()
}

#[test]
fn a_parquet_text_column_of_plain_binary_is_read_as_text_and_a_value_not_utf8_is_a_rejected_row() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("binary.parquet");
    let mut texts: Vec<Vec<u8>> = (0..5).map(|i| text(i).into_bytes()).collect();
    texts[3] = b"caf\xe9 latin-1, not UTF-8".to_vec();
    write_parquet(
        &path,
        "message m { required int64 id; required binary text; }",
        props(),
        &[vec![
            Values::Ints((1..=5).collect(), None),
            Values::Bytes(texts, None),
        ]],
    );
    let ran = dedup(&path, "b", &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let rejects = ran.rejects();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["file"], path.display().to_string());
    assert_eq!(rejects[0]["line"], 4);
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not valid UTF-8"),
        "{rejects:?}"
    );
    assert_eq!(
        crate::parquet::kept_ids(&ran.out),
        ["1", "2", "3", "5"],
        "the other rows are kept"
    );
}

#[test]
fn null_parquet_texts_and_ids_are_rejected_rows_naming_the_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nulls.parquet");
    // Rows 1..=6: row 2 has a null text, row 5 a null id.
    let texts: Vec<Vec<u8>> = [1, 3, 4, 5, 6]
        .iter()
        .map(|&i| text(i).into_bytes())
        .collect();
    let ids: Vec<i64> = vec![1, 2, 3, 4, 6];
    write_parquet(
        &path,
        "message m { optional int64 id; optional binary text (UTF8); }",
        props(),
        &[vec![
            Values::Ints(ids, Some(vec![1, 1, 1, 1, 0, 1])),
            Values::Bytes(texts, Some(vec![1, 0, 1, 1, 1, 1])),
        ]],
    );
    for (name, args) in [("p", &[][..]), ("j", &["--kept-format", "jsonl"][..])] {
        let ran = dedup(&path, name, args);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        let rejects = ran.rejects();
        let at: Vec<(String, u64)> = rejects
            .iter()
            .map(|r| {
                (
                    r["file"].as_str().unwrap().to_owned(),
                    r["line"].as_u64().unwrap(),
                )
            })
            .collect();
        let file = path.display().to_string();
        assert_eq!(at, [(file.clone(), 2), (file, 5)], "{rejects:?}");
        assert!(rejects[0]["reason"].as_str().unwrap().contains("is null"));
        assert!(rejects[1]["reason"].as_str().unwrap().contains("null"));
        assert_eq!(ran.summary()["records"]["rejected"], 2, "counted");
        assert_eq!(crate::parquet::kept_ids(&ran.out), ["1", "3", "4", "6"]);
    }
}

#[test]
fn a_dictionary_encoded_parquet_column_is_read_and_its_kept_rows_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dict.parquet");
    // Three texts, each repeated: the writer keeps them in a dictionary.
    let n = 3000;
    let texts: Vec<Vec<u8>> = (0..n).map(|i| text(i % 3).into_bytes()).collect();
    let groups: Vec<Vec<Values>> = (0..3)
        .map(|g| {
            let rows = g * 1000..(g + 1) * 1000;
            vec![
                Values::Ints(rows.clone().map(|i| i as i64).collect(), None),
                Values::Bytes(texts[rows].to_vec(), None),
            ]
        })
        .collect();
    let props = WriterProperties::builder()
        .set_dictionary_enabled(true)
        .set_data_page_row_count_limit(100)
        .build();
    write_parquet(
        &path,
        "message m { required int64 id; required binary text (UTF8); }",
        props,
        &groups,
    );
    {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let column = reader.metadata().row_group(0).column(1);
        assert!(
            column.dictionary_page_offset().is_some(),
            "the fixture is dictionary-encoded"
        );
    }
    for (name, args) in [("p", &[][..]), ("j", &["--kept-format", "jsonl"][..])] {
        let ran = dedup(&path, name, args);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(ran.summary()["records"]["read"], n, "every row read");
        // Three clusters, the first of each kept.
        assert_eq!(crate::parquet::kept_ids(&ran.out), ["0", "1", "2"]);
    }
}

#[test]
fn a_parquet_file_of_no_rows_or_no_row_groups_gives_empty_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = "message m { required int64 id; required binary text (UTF8); }";
    let no_rows = tmp.path().join("no-rows.parquet");
    write_parquet(
        &no_rows,
        schema,
        props(),
        &[vec![
            Values::Ints(vec![], None),
            Values::Bytes(vec![], None),
        ]],
    );
    let no_groups = tmp.path().join("no-groups.parquet");
    write_parquet(&no_groups, schema, props(), &[]);
    for (name, path) in [("rows", &no_rows), ("groups", &no_groups)] {
        let ran = dedup(path, name, &[]);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(ran.summary()["records"]["read"], 0);
        let (schema, rows) = crate::parquet::read_rows(&ran.out.join("kept.parquet"));
        assert!(rows.is_empty());
        assert_eq!(schema.get_fields().len(), 2, "the input's schema");
        assert_eq!(std::fs::read(ran.out.join("clusters.jsonl")).unwrap(), b"");
    }
}

#[test]
fn a_float_id_column_is_refused_with_exit_65_naming_the_file_and_listing_its_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("float-id.parquet");
    crate::parquet::write(
        &path,
        &[
            (
                "id",
                crate::parquet::Column::OptDouble(vec![Some(1.5), None]),
            ),
            ("text", crate::parquet::Column::Str(vec![text(1), text(2)])),
        ],
        10,
    );
    let ran = dedup(&path, "f", &[]);
    assert_eq!(ran.code, Some(65), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&path.display().to_string()),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(
            r#"id column "id" is DOUBLE, not an integer or a string; its columns: "id", "text""#
        ),
        "{}",
        ran.stderr
    );
    assert!(!ran.out.join("kept.parquet").exists());
}

/// A directory of two JSON Lines shards, the second one `bad` (its name
/// and bytes), the first good.
fn shards(tmp: &Path, bad: (&str, Vec<u8>)) -> PathBuf {
    let dir = tmp.join("shards");
    std::fs::create_dir(&dir).unwrap();
    let lines: String = (0..2000)
        .map(|i| format!("{{\"id\":{i},\"text\":\"{}\"}}\n", text(i)))
        .collect();
    std::fs::write(dir.join("a.jsonl"), &lines).unwrap();
    std::fs::write(dir.join(bad.0), bad.1).unwrap();
    dir
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"id\":\"b{i}\",\"text\":\"{}\"}}\n", text(i + 5000)))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_gz_shard_cut_short_exits_74_naming_the_shard_and_its_last_line() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&lines(3000)).unwrap();
    let gz = gz.finish().unwrap();
    let dir = shards(tmp.path(), ("b.jsonl.gz", gz[..gz.len() / 2].to_vec()));
    let ran = dedup(&dir, "gz", &[]);
    assert_eq!(ran.code, Some(74), "{}", ran.stderr);
    let shard = dir.join("b.jsonl.gz").display().to_string();
    assert!(
        ran.stderr
            .contains(&format!("cannot read {shard} after line ")),
        "{}",
        ran.stderr
    );
    assert!(!ran.out.join("kept.jsonl").exists(), "no output");
}

#[test]
fn a_zst_shard_with_bytes_after_its_frame_exits_74_naming_the_shard_and_its_last_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut zst = zstd::encode_all(&lines(3000)[..], 3).unwrap();
    zst.extend_from_slice(b"trailing garbage, not a zstd frame");
    let dir = shards(tmp.path(), ("b.jsonl.zst", zst));
    let ran = dedup(&dir, "zst", &[]);
    assert_eq!(ran.code, Some(74), "{}", ran.stderr);
    let shard = dir.join("b.jsonl.zst").display().to_string();
    // Every line of the frame was read: the error is after the last one.
    assert!(
        ran.stderr
            .contains(&format!("cannot read {shard} after line 3000: ")),
        "{}",
        ran.stderr
    );
    assert!(!ran.out.join("kept.jsonl").exists(), "no output");
}

#[test]
fn a_directory_holding_a_loop_of_symbolic_links_is_read_without_following_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = shards(tmp.path(), ("b.jsonl", lines(10)));
    std::os::unix::fs::symlink("self.jsonl", dir.join("self.jsonl")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("up")).unwrap();
    std::os::unix::fs::symlink(".", dir.join("here")).unwrap();
    let ran = dedup(&dir, "loop", &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // The two shards' records, and the link to itself as one rejected
    // record naming it.
    assert_eq!(ran.summary()["records"]["read"], 2011);
    let rejects = ran.rejects();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(
        rejects[0]["file"],
        dir.join("self.jsonl").display().to_string()
    );
}

/// A WET file of two conversion records and a `warcinfo`, its header
/// lines ended by `eol`.
fn wet(eol: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut record = |kind: &str, extra: &str, content: &str| {
        let head = format!(
            "WARC/1.0{eol}WARC-Type: {kind}{eol}{extra}Content-Length: {}{eol}{eol}",
            content.len()
        );
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(content.as_bytes());
        out.extend_from_slice(format!("{eol}{eol}").as_bytes());
    };
    record("warcinfo", "", "software: x");
    for i in 0..2 {
        let extra = format!(
            "WARC-Target-URI: http://example.com/{i}{eol}WARC-Record-ID: <urn:uuid:{i}>{eol}"
        );
        record(
            "conversion",
            &extra,
            &format!("{}\n{}", text(i), text(i + 10)),
        );
    }
    out
}

#[test]
fn a_wet_file_with_bare_lf_line_ends_gives_the_records_of_its_crlf_form() {
    let tmp = tempfile::tempdir().unwrap();
    let mut kept = Vec::new();
    for (name, eol) in [("crlf", "\r\n"), ("lf", "\n")] {
        let path = tmp.path().join(format!("{name}.warc.wet"));
        std::fs::write(&path, wet(eol)).unwrap();
        let ran = dedup(&path, name, &[]);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(ran.summary()["records"]["read"], 2, "{name}");
        kept.push(std::fs::read_to_string(ran.out.join("kept.jsonl")).unwrap());
    }
    assert_eq!(kept[0], kept[1]);
    assert!(
        kept[0].contains(r#""url":"http://example.com/1""#),
        "{}",
        kept[0]
    );
}
