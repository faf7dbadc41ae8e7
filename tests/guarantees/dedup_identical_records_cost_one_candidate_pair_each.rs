//! Guarantee: a bucket of many identical records costs one candidate pair
//! a record, not one per pair of them, even when some near-duplicates
//! that are not identical share the bucket: candidate pairs (and so the
//! verify pass's work and memory) stay linear in the records.
//!
//! 20,000 copies of one 200-word line, with 40 variants spread among them
//! (one word changed each: J 0.95 with the line, distinct signatures).
//! Every pair of the 20,040 records is above the threshold, and they all
//! share a band key in most bands: every pair of a bucket would be 2 x
//! 10^8 pairs. Each copy is paired with the first copy only; each variant
//! with a few of the bucket's distinct records
//! ([`drainpipe::jobs::dedup::buckets`]).

use std::sync::Arc;

use drainpipe::jobs::dedup::buckets::WINDOW;
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams};
use drainpipe::jobs::RunContext;
use drainpipe_actors::OutputDir;

const COPIES: usize = 20_000;
const VARIANTS: usize = 40;

#[test]
fn identical_records_cost_one_candidate_pair_each() {
    let words: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    let line = words.join(" ");
    let mut texts = vec![line; COPIES];
    for v in 0..VARIANTS {
        let mut changed = words.clone();
        changed[5 + v * 4] = format!("variant{v}");
        texts.insert(v * (COPIES / VARIANTS) + 1, changed.join(" "));
    }
    let records: Arc<Vec<MemoryRecord>> =
        Arc::new(texts.into_iter().map(MemoryRecord::text).collect());
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    let open = MemorySource::opener(Arc::clone(&records));
    let params = DedupParams::default();
    // No accuracy measurement: its exhaustive truth is every pair.
    let report = dedup::run_on(&ctx, &params, &open, false).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());

    let result = &report.result;
    let pairs = result["candidate_pairs"].as_u64().unwrap() as usize;
    let bands = params.banding().unwrap().bands;
    let bound = (COPIES - 1) + VARIANTS * (WINDOW + 1) * bands;
    println!(
        "{} records: {pairs} candidate pairs (bound {bound})",
        records.len()
    );
    assert!(
        pairs >= records.len() - 1,
        "{pairs} pairs: every record in one"
    );
    assert!(pairs <= bound, "{pairs} candidate pairs, more than {bound}");
    // And they are one cluster: every record but the first removed.
    assert_eq!(result["duplicates_removed"], records.len() - 1, "{result}");
}
