//! How every pass names a record and refuses one pass 1 refused: shared
//! by the passes, so that none of them imports another for it.

use drainpipe_actors::{RawRecord, RecordError};

use crate::input::{parse_text_record, TextFields};

/// The most records one run numbers, the records of the indexes it is
/// against included: the tables number records with 32 bits, and
/// `u32::MAX` itself is never a record (counts of records fit in a `u32`,
/// and the value is free as a marker).
pub const MAX_RECORDS: u64 = u32::MAX as u64;

/// The most records a run reads (`Settings::max_records`): [`MAX_RECORDS`]
/// less the `indexed` records of its indexes, which are numbered first. A
/// run whose input holds more stops with exit 65 before any record's
/// number passes it.
pub fn record_limit(indexed: u64) -> u64 {
    // Tests lower the limit (feature `failpoints`): `dedup::max_records=return(N)`.
    fail::fail_point!("dedup::max_records", |n: Option<String>| {
        let n = n.and_then(|n| n.parse::<u64>().ok());
        n.expect("dedup::max_records=return(N)")
            .saturating_sub(indexed)
    });
    MAX_RECORDS.saturating_sub(indexed)
}

/// The record index as `u32`, the width the tables use. The run's record
/// limit ([`record_limit`]) keeps every index read below `u32::MAX`: this
/// refuses one only if that limit was not set.
pub fn record_id(index: u64) -> Result<u32, RecordError> {
    u32::try_from(index)
        .ok()
        .filter(|&id| u64::from(id) < MAX_RECORDS)
        .ok_or_else(|| {
            "dedup handles at most 2^32 - 1 records per run (record index too large)".into()
        })
}

/// The reason a later pass rejects a record pass 1 did not integrate: the
/// parser's own error again when it is a parse error (so `rejects.jsonl`,
/// rewritten by every pass, says the same each time), or a note that pass
/// 1 rejected it (its step 1 failed: never, short of a bug).
pub fn rejected_again(raw: &RawRecord<'_>, fields: &TextFields) -> RecordError {
    match parse_text_record(raw, fields) {
        Err(e) => e,
        Ok(_) => "rejected by the first pass of dedup".into(),
    }
}
