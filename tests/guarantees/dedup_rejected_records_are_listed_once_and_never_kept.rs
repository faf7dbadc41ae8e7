//! Guarantee: the records rejected in pass 1 (by the reader or the
//! parser) are rejected once: `rejects.jsonl` (the passes' list,
//! committed with the other outputs) lists each of them once, the counts are pass 1's, and none is kept.

use crate::mixed;

use std::sync::Arc;

use mixed::{records, run};

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
