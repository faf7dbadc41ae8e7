//! An in-memory input: records held in a vector, served as a
//! [`RecordSource`]. For tests and measurements of `dedup` that must not
//! depend on files or on the cost of generating the demo corpus.

use std::sync::Arc;

use drainpipe_actors::{BatchBuilder, InputError, Location, RawRecord, RecordSource};

use crate::input::{FORMAT_JSONL, FORMAT_TEXT};

/// One record of a [`MemorySource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRecord {
    /// The format tag a reader would give it (`FORMAT_TEXT`, ...).
    pub format: u8,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// When set, the reader rejects the record with this reason.
    pub rejected: Option<String>,
}

impl MemoryRecord {
    /// A plain-text record.
    pub fn text(text: impl Into<String>) -> Self {
        MemoryRecord {
            format: FORMAT_TEXT,
            bytes: text.into().into_bytes(),
            rejected: None,
        }
    }

    /// A JSON Lines record (the line, as given).
    pub fn jsonl(line: impl Into<String>) -> Self {
        MemoryRecord {
            format: FORMAT_JSONL,
            bytes: line.into().into_bytes(),
            rejected: None,
        }
    }

    /// A record the reader rejects.
    pub fn rejected(reason: impl Into<String>) -> Self {
        MemoryRecord {
            format: 0,
            bytes: Vec::new(),
            rejected: Some(reason.into()),
        }
    }

    /// The record as the processors see it at input position `index`
    /// (origin `memory`, line `index + 1`).
    pub fn raw(&self, index: u64) -> RawRecord<'_> {
        RawRecord {
            index,
            location: Location {
                origin: MemorySource::ORIGIN,
                line: index + 1,
            },
            format: self.format,
            bytes: &self.bytes,
            span: None,
        }
    }
}

/// Serves shared in-memory records in order.
#[derive(Debug, Clone)]
pub struct MemorySource {
    records: Arc<Vec<MemoryRecord>>,
    next: usize,
    origin: Arc<str>,
}

impl MemorySource {
    /// The origin every record reports.
    pub const ORIGIN: &'static str = "memory";

    /// A source serving `records` from the first.
    pub fn new(records: Arc<Vec<MemoryRecord>>) -> Self {
        MemorySource {
            records,
            next: 0,
            origin: Arc::from(Self::ORIGIN),
        }
    }

    /// An opener for [`super::run_on`]: a fresh source over `records` at
    /// each call.
    pub fn opener(
        records: Arc<Vec<MemoryRecord>>,
    ) -> impl Fn() -> anyhow::Result<Box<dyn RecordSource>> {
        move || Ok(Box::new(MemorySource::new(Arc::clone(&records))))
    }
}

impl RecordSource for MemorySource {
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        while self.next < self.records.len()
            && batch.len() < max_records
            && (batch.is_empty() || batch.data_bytes() < max_bytes)
        {
            let record = &self.records[self.next];
            self.next += 1;
            let line = self.next as u64;
            match &record.rejected {
                Some(reason) => batch.push_rejected(&self.origin, line, reason.as_str()),
                None => batch.push(&self.origin, line, record.format, &record.bytes),
            }
        }
        Ok(!batch.is_empty())
    }

    fn position(&self) -> u64 {
        self.next as u64
    }

    fn total(&self) -> Option<u64> {
        Some(self.records.len() as u64)
    }
}
