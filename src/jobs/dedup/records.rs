//! How every pass names a record and refuses one pass 1 refused: shared
//! by the passes, so that none of them imports another for it.

use drainpipe_actors::{RawRecord, RecordError};

use crate::input::{parse_text_record, TextFields};

/// The record index as `u32`, the width the tables use.
pub fn record_id(index: u64) -> Result<u32, RecordError> {
    u32::try_from(index)
        .map_err(|_| "dedup handles at most 2^32 records per run (record index too large)".into())
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
