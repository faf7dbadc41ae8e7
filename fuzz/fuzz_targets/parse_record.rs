//! `parse_text_record` on arbitrary bytes, for each format tag (and an
//! unknown one): it must return a record or an error, never panic.
#![no_main]

use drainpipe::input::{parse_text_record, TextFields, FORMAT_FILE, FORMAT_JSONL, FORMAT_TEXT};
use drainpipe_actors::{Location, RawRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let fields = TextFields::default();
    for format in [FORMAT_JSONL, FORMAT_TEXT, FORMAT_FILE, 0] {
        let raw = RawRecord {
            index: 0,
            location: Location {
                origin: "fuzz/\"input\"",
                line: 1,
            },
            format,
            bytes,
            span: None,
        };
        if let Ok(record) = parse_text_record(&raw, &fields) {
            assert!(!record.id.is_empty());
            if format != FORMAT_JSONL {
                assert_eq!(record.text.as_bytes(), bytes);
            }
        }
    }
});
