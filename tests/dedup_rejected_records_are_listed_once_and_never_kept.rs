//! Guarantee: the records rejected in pass 1 (by the reader or the
//! parser) are rejected once: `rejects.jsonl`, rewritten by every pass,
//! lists each of them once, the counts are pass 1's, and none is kept.

use std::sync::Arc;

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, REJECTS_FILE};

/// Demo documents with their near-duplicates, some JSON Lines records, a
/// record the reader rejects, one that is not UTF-8 and one that is not
/// JSON.
fn records() -> Vec<MemoryRecord> {
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

struct Outputs {
    files: Vec<(String, Vec<u8>)>,
    result: serde_json::Value,
    rejected: u64,
}

fn run(
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

#[test]
fn rejected_records_are_listed_once_and_never_kept() {
    let records = Arc::new(records());
    let out = run(&records, 2, 4, Some(5));
    assert_eq!(out.rejected, 3);
    let rejects = String::from_utf8(out.files[2].1.clone()).unwrap();
    let lines: Vec<serde_json::Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{rejects}");
    assert_eq!(lines[0]["index"], 300);
    assert_eq!(lines[1]["index"], 450);
    assert_eq!(lines[2]["index"], 600);
    let kept = String::from_utf8(out.files[0].1.clone()).unwrap();
    assert!(!kept.contains("not utf-8"));
    let total = records.len() as u64;
    assert_eq!(
        out.result["kept"].as_u64().unwrap() + out.result["duplicates_removed"].as_u64().unwrap(),
        total - 3
    );
}
