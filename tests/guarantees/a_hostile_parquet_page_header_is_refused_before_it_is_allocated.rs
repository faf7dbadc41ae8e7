//! Guarantee: a hostile Parquet page header is refused before it is
//! allocated. A page whose header declares 2 GiB uncompressed (the `parquet`
//! crate would allocate and zero that before finding the page is not what
//! it says) ends the run with exit 74 and a message naming the file, the
//! column and the page, whether the column is the text (read by pass 1) or
//! another column (read only to copy the kept rows into `kept.parquet`);
//! no output is written.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ::parquet::basic::Compression;
use ::parquet::data_type::{ByteArray, ByteArrayType};
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::parser::parse_message_type;

use crate::binary::drainpipe;
use crate::thrift::next_i32_field;

/// Writes one row group of string `columns`, one page each, no
/// dictionary, snappy-compressed: the first column's page header is at
/// byte 4.
fn write(path: &Path, columns: &[(&str, Vec<String>)]) {
    let fields: Vec<String> = columns
        .iter()
        .map(|(name, _)| format!("required binary {name} (UTF8);"))
        .collect();
    let schema = parse_message_type(&format!("message m {{ {} }}", fields.join(" "))).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .build();
    let file = File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for (_, values) in columns {
        let values: Vec<ByteArray> = values.iter().map(|v| v.as_str().into()).collect();
        let mut column = group.next_column().unwrap().unwrap();
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        column.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();
}

fn read_zigzag(bytes: &[u8], at: &mut usize) -> i64 {
    let (mut u, mut shift) = (0u64, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        u |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return (u >> 1) as i64 ^ -((u & 1) as i64);
        }
    }
}

/// The file with its first page's header declaring `i32::MAX` bytes
/// uncompressed. The header grows by some bytes and the page's compressed
/// size shrinks by as many, so the column chunk, and every offset in the
/// footer, stay as they were.
fn hostile(bytes: &[u8]) -> Vec<u8> {
    // Fields 1 (type), 2 (uncompressed size), 3 (compressed size), each an
    // i32 (compact type 5, delta 1: 0x15).
    let mut at = 4;
    assert_eq!(bytes[at], 0x15);
    at += 1;
    read_zigzag(bytes, &mut at);
    let sizes_at = at;
    assert_eq!(bytes[at], 0x15);
    at += 1;
    read_zigzag(bytes, &mut at);
    assert_eq!(bytes[at], 0x15);
    at += 1;
    let compressed = read_zigzag(bytes, &mut at);
    let old = at - sizes_at;
    let mut grown = 0;
    let sizes = loop {
        let mut sizes = next_i32_field(i32::MAX.into());
        sizes.extend(next_i32_field(compressed - grown as i64));
        if sizes.len() - old == grown {
            break sizes;
        }
        grown = sizes.len() - old;
    };
    let header_end = at;
    let mut out = bytes[..sizes_at].to_vec();
    out.extend(&sizes);
    // The rest of the header, then the page's data less its last `grown`
    // bytes; what follows stays where it was.
    let page_end = find_page_end(bytes, header_end, compressed as usize);
    out.extend(&bytes[header_end..page_end - grown]);
    out.extend(&bytes[page_end..]);
    assert_eq!(out.len(), bytes.len());
    out
}

/// Where the first page ends: after the rest of its header (a data page
/// header struct, field 5, and the stop byte) and its `compressed` bytes.
fn find_page_end(bytes: &[u8], mut at: usize, compressed: usize) -> usize {
    skip_struct_fields(bytes, &mut at);
    at + compressed
}

/// Skips compact-protocol fields up to and including the stop byte.
fn skip_struct_fields(bytes: &[u8], at: &mut usize) {
    loop {
        let head = bytes[*at];
        *at += 1;
        let kind = head & 0x0f;
        if kind == 0 {
            return;
        }
        if head >> 4 == 0 {
            read_zigzag(bytes, at);
        }
        skip_value(bytes, at, kind);
    }
}

fn skip_value(bytes: &[u8], at: &mut usize, kind: u8) {
    match kind {
        1 | 2 => {}
        3 => *at += 1,
        4..=6 => {
            read_zigzag(bytes, at);
        }
        7 => *at += 8,
        8 => {
            let mut len_at = *at;
            let (mut u, mut shift) = (0usize, 0);
            loop {
                let b = bytes[len_at];
                len_at += 1;
                u |= usize::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            *at = len_at + u;
        }
        12 => skip_struct_fields(bytes, at),
        other => panic!("type {other} not expected in a page header"),
    }
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("document {i} says something of its own, word {}", i * 7))
        .collect()
}

fn run(input: &Path, out: &Path) -> (Option<i32>, String) {
    let output = drainpipe()
        .args(["dedup", "--no-progress"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_hostile_parquet_page_header_is_refused_before_it_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    // The text column's page, read by pass 1; then another column's, read
    // only by the copy of the kept rows.
    for (name, columns, column) in [
        ("text.parquet", vec![("text", texts(300))], "text"),
        (
            "meta.parquet",
            vec![
                ("meta", (0..300).map(|i| format!("m{i}")).collect()),
                ("text", texts(300)),
            ],
            "meta",
        ),
    ] {
        let good = tmp.path().join(format!("good-{name}"));
        write(&good, &columns);
        let (code, stderr) = run(&good, &tmp.path().join(format!("out-good-{name}")));
        assert_eq!(code, Some(0), "{name}: {stderr}");
        let path = tmp.path().join(name);
        std::fs::write(&path, hostile(&std::fs::read(&good).unwrap())).unwrap();
        let out = tmp.path().join(format!("out-{name}"));
        let (code, stderr) = run(&path, &out);
        assert_eq!(code, Some(74), "{name}: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "column {column:?}, page 0: declares 2147483647 bytes uncompressed"
            )),
            "{name}: {stderr}"
        );
        assert!(!out.join("kept.parquet").exists(), "{name}");
        assert!(!out.join("clusters.jsonl").exists(), "{name}");
    }
}
