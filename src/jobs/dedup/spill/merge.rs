//! The k-way merge of sorted runs: entries of several runs (and of lists
//! still in memory) in one stream, in `(key, record)` order, read
//! sequentially, one block of each run in memory at a time.
//!
//! Pass 1's spilled runs cover disjoint ranges of records, so the merge of
//! one band's runs is the band's list as one sort in memory would have
//! made it: the same buckets, their records in input order. A run whose
//! records are numbered from 0 in another numbering (a saved index's band,
//! whose records come before this run's own) joins with a record offset
//! ([`Merge::add_with_offset`]): its records are moved by the offset, and
//! the run's own by theirs, so that the two numberings do not overlap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::runs::{Entry, RunError, RunReader};

/// Anything that yields entries in strictly increasing `(key, record)`
/// order: a run being read, a sorted list in memory, a merge.
pub trait EntrySource: Send {
    /// The next entry; `None` at the end.
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError>;
}

impl EntrySource for RunReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        RunReader::next_entry(self)
    }
}

/// A sorted list in memory, as an [`EntrySource`].
#[derive(Debug)]
pub struct Sorted(std::vec::IntoIter<Entry>);

impl Sorted {
    /// The `entries`, sorted here by `(key, record)`.
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_unstable_by_key(Entry::order);
        Sorted(entries.into_iter())
    }
}

impl EntrySource for Sorted {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        Ok(self.0.next())
    }
}

/// A source's entries with their records moved by an offset.
struct Offset {
    source: Box<dyn EntrySource>,
    offset: u32,
}

/// The merge of several [`EntrySource`]s: the smallest `(key, record)`
/// first; of equal ones (never, between runs of disjoint records), the
/// source added first.
pub struct Merge {
    sources: Vec<Offset>,
    heads: Vec<Entry>,
    heap: BinaryHeap<Reverse<((u64, u32), usize)>>,
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge")
            .field("sources", &self.sources.len())
            .field("pending", &self.heap.len())
            .finish()
    }
}

impl Default for Merge {
    fn default() -> Self {
        Merge::new()
    }
}

impl Merge {
    /// A merge of nothing yet.
    pub fn new() -> Self {
        Merge {
            sources: Vec::new(),
            heads: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// Adds `source` to the merge, its records as they are.
    pub fn add(&mut self, source: impl EntrySource + 'static) -> Result<(), RunError> {
        self.add_with_offset(source, 0)
    }

    /// Adds `source`, `offset` added to each of its records (a record past
    /// `u32::MAX` is an error).
    pub fn add_with_offset(
        &mut self,
        source: impl EntrySource + 'static,
        offset: u32,
    ) -> Result<(), RunError> {
        let at = self.sources.len();
        self.sources.push(Offset {
            source: Box::new(source),
            offset,
        });
        self.heads.push(Entry {
            key: 0,
            record: 0,
            print: 0,
        });
        self.refill(at)
    }

    /// Reads source `at`'s next entry into its head and the heap.
    fn refill(&mut self, at: usize) -> Result<(), RunError> {
        let source = &mut self.sources[at];
        if let Some(mut entry) = source.source.next_entry()? {
            entry.record =
                entry
                    .record
                    .checked_add(source.offset)
                    .ok_or(RunError::RecordPastLimit {
                        record: entry.record,
                        offset: source.offset,
                    })?;
            self.heads[at] = entry;
            self.heap.push(Reverse((entry.order(), at)));
        }
        Ok(())
    }
}

impl EntrySource for Merge {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        let Some(Reverse((_, at))) = self.heap.pop() else {
            return Ok(None);
        };
        let entry = self.heads[at];
        self.refill(at)?;
        Ok(Some(entry))
    }
}

/// Reads `source` bucket by bucket: each call fills `bucket` with the
/// entries of the next key (in record order) and returns true, or returns
/// false at the end. `next` holds the entry read past the last bucket.
pub fn next_bucket(
    source: &mut dyn EntrySource,
    next: &mut Option<Entry>,
    bucket: &mut Vec<Entry>,
) -> Result<bool, RunError> {
    bucket.clear();
    let first = match next.take() {
        Some(entry) => entry,
        None => match source.next_entry()? {
            Some(entry) => entry,
            None => return Ok(false),
        },
    };
    bucket.push(first);
    while let Some(entry) = source.next_entry()? {
        if entry.key != first.key {
            *next = Some(entry);
            break;
        }
        bucket.push(entry);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::runs::RunWriter;
    use super::*;

    fn entry(key: u64, record: u32) -> Entry {
        Entry {
            key,
            record,
            print: u64::from(record) * 3 + 1,
        }
    }

    fn drain(source: &mut dyn EntrySource) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some(e) = source.next_entry().unwrap() {
            out.push(e);
        }
        out
    }

    /// Entries of records `records`, keys drawn from a few values.
    fn chunk(records: std::ops::Range<u32>) -> Vec<Entry> {
        records
            .map(|r| entry(u64::from(r.wrapping_mul(2_654_435_761) % 97), r))
            .collect()
    }

    #[test]
    fn runs_of_disjoint_records_merge_into_the_one_sorted_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut merge = Merge::new();
        let mut all = Vec::new();
        for (i, range) in [0..5000, 5000..5001, 5001..12_000, 12_000..12_000]
            .into_iter()
            .enumerate()
        {
            let mut list = chunk(range);
            all.extend_from_slice(&list);
            list.sort_unstable_by_key(Entry::order);
            let path = dir.path().join(format!("{i}.run"));
            let mut writer = RunWriter::create(&path, true).unwrap();
            list.iter().for_each(|&e| writer.push(e).unwrap());
            let info = writer.finish().unwrap();
            merge
                .add(RunReader::open(&path, Some(&info)).unwrap())
                .unwrap();
        }
        // And a remainder still in memory.
        let rest = chunk(12_000..13_000);
        all.extend_from_slice(&rest);
        merge.add(Sorted::new(rest)).unwrap();
        let merged = drain(&mut merge);
        all.sort_by_key(Entry::order);
        assert_eq!(merged, all);
        // Bucket by bucket: each key once, records in order.
        let mut source = Sorted::new(all.clone());
        let (mut next, mut bucket, mut keys) = (None, Vec::new(), Vec::new());
        let mut count = 0;
        while next_bucket(&mut source, &mut next, &mut bucket).unwrap() {
            assert!(bucket.iter().all(|e| e.key == bucket[0].key));
            assert!(bucket.windows(2).all(|w| w[0].record < w[1].record));
            keys.push(bucket[0].key);
            count += bucket.len();
        }
        assert_eq!(count, all.len());
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(keys.len(), 97);
    }

    #[test]
    fn a_run_with_a_record_offset_comes_before_the_runs_own_records() {
        // A saved index's band (records 0..3 of its own numbering) joins a
        // run whose own records are numbered from 3 on.
        let index = vec![entry(7, 0), entry(9, 1), entry(7, 2)];
        let own = vec![entry(7, 0), entry(8, 1), entry(9, 2)];
        let mut merge = Merge::new();
        merge.add(Sorted::new(index)).unwrap();
        merge.add_with_offset(Sorted::new(own), 3).unwrap();
        let got: Vec<(u64, u32)> = drain(&mut merge).iter().map(Entry::order).collect();
        assert_eq!(got, [(7, 0), (7, 2), (7, 3), (8, 4), (9, 1), (9, 5)]);
        // An offset that passes 2^32 records is refused, not wrapped.
        let mut merge = Merge::new();
        let err = merge
            .add_with_offset(Sorted::new(vec![entry(1, 5)]), u32::MAX - 2)
            .unwrap_err();
        assert!(matches!(err, RunError::RecordPastLimit { record: 5, .. }));
    }
}
