//! Property tests (proptest): arbitrary bytes never panic the record parser
//! in any format, and arbitrary lines written to a file come back from
//! `Inputs` exactly, one record per line, with the right line numbers,
//! whatever the terminators, the compression and the batch limits. Lines
//! over the size limit come back as rejects that say how long they were.
//! The `fuzz/` targets explore the same code for longer.

use crate::common::gz;
use std::path::Path;

use drainpipe::input::{
    parse_text_record, InputOptions, Inputs, TextFields, FORMAT_FILE, FORMAT_JSONL, FORMAT_TEXT,
};
use drainpipe_actors::{BatchBuilder, Location, RawRecord, RecordSource};
use proptest::prelude::*;

fn parse(format: u8, bytes: &[u8]) {
    let raw = RawRecord {
        index: 0,
        location: Location {
            origin: "prop",
            line: 1,
        },
        format,
        bytes,
        span: None,
    };
    for fields in [
        TextFields::default(),
        TextFields {
            text: "t".into(),
            id: "t".into(),
        },
    ] {
        if let Ok(record) = parse_text_record(&raw, &fields) {
            // Whatever parsed is valid text and a printable id.
            assert!(!record.id.is_empty());
            if format != FORMAT_JSONL {
                assert_eq!(record.text.as_bytes(), bytes);
            }
        }
    }
}

/// Bytes that look like JSON often enough to reach deep into the parser.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        "{", "}", "[", "]", ":", ",", "\"", "\"text\"", "\"id\"", "\"t\"", "1", "-2.5e3", "true",
        "null", " ", "\\", "\\u00e9", "\\ud800", "é", "\u{0}", "\u{ffff}", "\"a b\"",
    ]);
    prop::collection::vec(token, 0..64).prop_map(|tokens| tokens.concat().into_bytes())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parser(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        format in 0u8..6,
    ) {
        parse(format, &bytes);
    }

    #[test]
    fn json_like_bytes_never_panic_the_parser(bytes in jsonish()) {
        for format in [FORMAT_JSONL, FORMAT_TEXT, FORMAT_FILE] {
            parse(format, &bytes);
        }
    }

    #[test]
    fn every_line_comes_back_once_with_its_line_number(
        lines in prop::collection::vec(
            // No `\n` in a line; a line ending in `\r` would lose it to a
            // `\r\n` terminator, and one starting with a byte order mark
            // would lose that: both are the documented rules, not tested here.
            prop::collection::vec(any::<u8>().prop_filter("newline", |b| *b != b'\n'), 0..40)
                .prop_filter("trailing CR", |l| l.last() != Some(&b'\r'))
                .prop_filter("BOM", |l| !l.starts_with(b"\xef\xbb\xbf")),
            0..60,
        ),
        crlf in prop::collection::vec(any::<bool>(), 60),
        last_terminated in any::<bool>(),
        compress in any::<bool>(),
        max_record_bytes in 1usize..64,
        max_records in 1usize..20,
        max_bytes in 1usize..200,
    ) {
        let mut data = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            data.extend_from_slice(line);
            // The last line may go unterminated, unless it is empty (then
            // there would be no line at all).
            if i + 1 < lines.len() || last_terminated || line.is_empty() {
                data.extend_from_slice(if crlf[i] { b"\r\n" } else { b"\n" });
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if compress { "lines.txt.gz" } else { "lines.txt" });
        let stored = if compress { gz(&data) } else { data };
        std::fs::write(&path, &stored).unwrap();
        let got = read_all(&path, max_record_bytes, max_records, max_bytes);
        let origin = path.display().to_string();
        prop_assert_eq!(got.len(), lines.len());
        for (i, (line, record)) in lines.iter().zip(&got).enumerate() {
            prop_assert_eq!(&record.0, &origin);
            prop_assert_eq!(record.1, i as u64 + 1);
            if line.len() <= max_record_bytes {
                prop_assert_eq!(&record.2, &Ok(line.clone()));
            } else {
                let reason = format!(
                    "record of {} bytes exceeds --max-record-bytes {max_record_bytes}",
                    line.len()
                );
                prop_assert_eq!(&record.2, &Err(reason));
            }
        }
    }
}

/// Every record of the file at `path`: origin, line, and bytes or reject
/// reason; checks the batch limits on the way.
#[allow(clippy::type_complexity)]
fn read_all(
    path: &Path,
    max_record_bytes: usize,
    max_records: usize,
    max_bytes: usize,
) -> Vec<(String, u64, Result<Vec<u8>, String>)> {
    let options = InputOptions {
        max_record_bytes,
        ..InputOptions::default()
    };
    let mut inputs = Inputs::open(&[path.to_owned()], options).unwrap();
    let total = inputs.total();
    assert_eq!(total, Some(std::fs::metadata(path).unwrap().len()));
    let mut out = Vec::new();
    loop {
        let mut builder = BatchBuilder::default();
        if !inputs.fill(&mut builder, max_records, max_bytes).unwrap() {
            assert!(builder.is_empty());
            break;
        }
        assert!(!builder.is_empty() && builder.len() <= max_records);
        // A record larger than `max_bytes` travels alone.
        assert!(builder.data_bytes() <= max_bytes || builder.len() == 1);
        let batch = builder.finish();
        for record in batch.records() {
            out.push(match record {
                Ok(r) => {
                    assert_eq!(r.format, FORMAT_TEXT);
                    (
                        r.location.origin.to_owned(),
                        r.location.line,
                        Ok(r.bytes.to_vec()),
                    )
                }
                Err(r) => (
                    r.location.origin.to_owned(),
                    r.location.line,
                    Err(r.reason.to_owned()),
                ),
            });
        }
    }
    assert_eq!(Some(inputs.position()), total, "every stored byte read");
    out
}
