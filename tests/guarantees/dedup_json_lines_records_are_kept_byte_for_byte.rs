//! Guarantee: a JSON Lines record that `dedup` keeps is copied to
//! `kept.jsonl` byte for byte, whatever its formatting.

use std::sync::Arc;

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::OutputDir;

#[test]
fn json_lines_records_are_kept_byte_for_byte() {
    let corpus = Corpus::new(CorpusSpec {
        docs: 40,
        dup_fraction: 0.0,
        ..CorpusSpec::default()
    });
    // Unusual but valid formatting that a re-serialization would change.
    let lines: Vec<String> = corpus
        .docs()
        .map(|d| {
            format!(
                "{{ \"text\" : {},  \"id\":{}, \"extra\": [1.50, \"\\u00e9\"] }}",
                serde_json::to_string(&d.text).unwrap(),
                d.index
            )
        })
        .collect();
    let mut records: Vec<MemoryRecord> = lines.iter().cloned().map(MemoryRecord::jsonl).collect();
    // An exact duplicate of record 3 (another id), removed.
    records.push(MemoryRecord::jsonl(
        lines[3].replace("\"id\":3,", "\"id\":1003,"),
    ));
    let records = Arc::new(records);
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    let open = MemorySource::opener(Arc::clone(&records));
    let report = dedup::run_on(&ctx, &DedupParams::default(), &open, false).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    let kept = std::fs::read_to_string(dir.path().join(KEPT_FILE)).unwrap();
    let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert!(kept == expected, "kept.jsonl is not the input's lines");
    let clusters = std::fs::read_to_string(dir.path().join(CLUSTERS_FILE)).unwrap();
    assert_eq!(clusters.lines().count(), 1, "{clusters}");
}

/// Line terminators and a byte order mark are the input's too: each kept
/// line is written as it was, with its own `\r\n` or `\n` (a last line
/// without one gets a `\n`); only the byte order mark at the start of a
/// file is dropped. The byte-range copy (beside pass 2, or after it) and
/// the pipeline pass (over a compressed input) write the same bytes.
#[test]
fn crlf_mixed_line_ends_and_a_byte_order_mark_follow_the_byte_rule() {
    use std::io::Write as _;

    let corpus = Corpus::new(CorpusSpec {
        docs: 30,
        dup_fraction: 0.0,
        ..CorpusSpec::default()
    });
    let line = |i: usize, d: &drainpipe::corpus::Doc| {
        format!(
            r#"{{"id":{i},"text":{}}}"#,
            serde_json::to_string(&d.text).unwrap()
        )
    };
    let docs: Vec<_> = corpus.docs().collect();
    let terminators: [&[u8]; 4] = [b"\r\n", b"\n", b"\r\n", b"\r\r\n"];
    let mut input = b"\xef\xbb\xbf".to_vec();
    let mut expected = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let terminator = terminators[i % terminators.len()];
        // Record 10 again, another id: removed, terminator and all.
        let removed = i == 11;
        let text = if removed { &docs[10] } else { d };
        let mut bytes = line(i, text).into_bytes();
        if i + 1 < docs.len() {
            bytes.extend_from_slice(terminator);
        } else {
            // The last line, unterminated, ends in a `\r` of its own.
            bytes.push(b'\r');
        }
        input.extend_from_slice(&bytes);
        if !removed {
            expected.extend_from_slice(&bytes);
        }
    }
    expected.push(b'\n');
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("in.jsonl");
    std::fs::write(&plain, &input).unwrap();
    let compressed = dir.path().join("in.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&input).unwrap();
    std::fs::write(&compressed, gz.finish().unwrap()).unwrap();
    for (path, beside, reads) in [
        (&plain, true, "copied byte ranges"),
        (&plain, false, "copied byte ranges"),
        (&compressed, true, "whole input"),
    ] {
        let out = dir.path().join(format!("out-{beside}-{reads}"));
        let ctx = RunContext::quiet(vec![path.clone()], OutputDir::create(&out).unwrap());
        let params = DedupParams {
            copy_beside_verify: beside,
            ..DedupParams::default()
        };
        let report = dedup::run(&ctx, &params).unwrap();
        assert_eq!(report.exit_code, 0, "{}", report.human());
        assert_eq!(report.result["reads"]["kept"], reads);
        assert_eq!(report.result["duplicates_removed"], 1);
        let kept = std::fs::read(out.join(KEPT_FILE)).unwrap();
        assert!(
            kept == expected,
            "{reads}, beside {beside}: kept.jsonl is not the input's lines\n{:?}",
            String::from_utf8_lossy(&kept)
        );
    }
}
