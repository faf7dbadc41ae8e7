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
