//! Shared by the dedup integration tests: a mixed in-memory corpus and a
//! run that returns every output file.
#![allow(dead_code)]

use std::sync::Arc;

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, REJECTS_FILE};

/// Demo documents with their near-duplicates, some JSON Lines records, a
/// record the reader rejects, one that is not UTF-8 and one that is not
/// JSON.
pub fn records() -> Vec<MemoryRecord> {
    let corpus = Corpus::new(CorpusSpec {
        docs: 1200,
        ..CorpusSpec::default()
    });
    let mut records: Vec<MemoryRecord> =
        corpus.docs().map(|d| MemoryRecord::text(d.text)).collect();
    let base = corpus.doc(7).text;
    for (at, id) in [(100, "a"), (500, "b"), (900, "c")] {
        let line = serde_json::json!({ "id": id, "text": base }).to_string();
        records.insert(at, MemoryRecord::jsonl(line));
    }
    records.insert(300, MemoryRecord::rejected("too large (test)"));
    records.insert(450, MemoryRecord::jsonl(r#"{"id": 1, "text": "#));
    records.insert(
        600,
        MemoryRecord {
            bytes: b"not utf-8 \xff\xfe".to_vec(),
            ..MemoryRecord::text("")
        },
    );
    records
}

pub struct Outputs {
    pub files: Vec<(String, Vec<u8>)>,
    pub result: serde_json::Value,
    pub rejected: u64,
}

pub fn run(
    records: &Arc<Vec<MemoryRecord>>,
    workers: usize,
    window: usize,
    batch: Option<usize>,
) -> Outputs {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    ctx.settings.workers = workers;
    ctx.settings.window = window;
    ctx.settings.batch = batch;
    let open = MemorySource::opener(Arc::clone(records));
    let report = dedup::run_on(&ctx, &DedupParams::default(), &open, true).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert!(report.conservation);
    let mut result = report.result.clone();
    result.as_object_mut().unwrap().remove("passes");
    result["accuracy"]
        .as_object_mut()
        .unwrap()
        .remove("truth_s");
    let files = [KEPT_FILE, CLUSTERS_FILE, REJECTS_FILE]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(dir.path().join(name)).unwrap(),
            )
        })
        .collect();
    Outputs {
        files,
        result,
        rejected: report.records.rejected,
    }
}
