//! The input readers on arbitrary bytes: the first byte picks the file kind
//! (`.jsonl`, `.txt`, `.txt.gz` of the rest, the rest as a raw `.gz` or
//! `.zst`, or a directory holding the rest as one file) and the record size
//! limit; the rest is written to a file and every batch is read through
//! `Inputs` and parsed. Reading must end, with records numbered line by line,
//! or with an error naming the file; never a panic.
#![no_main]

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use drainpipe::input::{parse_text_record, InputOptions, Inputs, TextFields};
use drainpipe_actors::{BatchBuilder, RecordSource};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let dir = scratch().path();
    let (name, bytes): (&str, Vec<u8>) = match selector % 6 {
        0 => ("in.jsonl", content.to_vec()),
        1 => ("in.txt", content.to_vec()),
        2 => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(content).unwrap();
            ("in.txt.gz", encoder.finish().unwrap())
        }
        3 => ("raw.jsonl.gz", content.to_vec()),
        4 => ("raw.txt.zst", content.to_vec()),
        _ => ("tree/sub/in.txt", content.to_vec()),
    };
    let file = dir.join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &bytes).unwrap();
    let input: PathBuf = if name.starts_with("tree/") {
        dir.join("tree")
    } else {
        file.clone()
    };
    // Small limits too, so that long lines are skipped.
    let max_record_bytes = 1 + usize::from(selector / 6) * 4;
    let options = InputOptions {
        max_record_bytes,
        ..InputOptions::default()
    };
    let mut inputs = Inputs::open(&[input], options).expect("the file exists");
    let fields = TextFields::default();
    let mut last_line = 0;
    loop {
        let mut builder = BatchBuilder::default();
        match inputs.fill(&mut builder, 7, 64) {
            Ok(true) => assert!(!builder.is_empty()),
            Ok(false) => break,
            Err(e) => {
                assert!(e.to_string().contains(&file.display().to_string()), "{e}");
                break;
            }
        }
        let batch = builder.finish();
        for record in batch.records() {
            let line = match record {
                Ok(raw) => {
                    let _ = parse_text_record(&raw, &fields);
                    raw.location.line
                }
                Err(rejected) => rejected.location.line,
            };
            if !name.starts_with("tree/") {
                assert_eq!(line, last_line + 1);
            }
            last_line = line;
        }
    }
    std::fs::remove_file(&file).unwrap();
});
