//! The states the passes hand each other, in the order of the chain:
//! pass 1 turns the records into [`Candidates`] (read by the later passes
//! as [`Found`]), pass 2 turns them into [`Verified`] pairs, union-find
//! makes those [`super::clusters::Clusters`], and pass 3 writes what they
//! keep ([`Written`]).
//!
//! They live here, not in the pass that makes them, so that a pass imports
//! what it reads and what it makes, never another pass: the next stage
//! (spilling, saved indexes, remote workers) moves these states between
//! processes and hosts. Their serialized forms are in [`super::state`].

use std::collections::HashMap;
use std::sync::Arc;

use drainpipe_actors::{AtomicFile, TempSpace};

use super::ids::IdKeys;
use super::keep::KeepKey;
use super::spans::Spans;
use super::spill::ids::IdsRunReader;
use super::spill::merge::Merge;
pub use super::spill::pair_files::CandidatePairs;
use super::spill::pairs::{PairSpill, PairsMade};
use super::spill::record_sets::{RecordSet, SetWriter};
use super::spill::repeats::RepeatedIds;
use super::spill::runs::{RunError, RunInfo};
pub use super::spill::verified::VerifiedPairs;

/// The kept records.
pub const KEPT_FILE: &str = "kept.jsonl";
/// The kept records, in Parquet ([`crate::jobs::dedup::passes::kept::form`]).
pub const KEPT_PARQUET_FILE: &str = "kept.parquet";

/// What pass 1 calls instead of [`super::lsh::merged_candidate_pairs`]
/// when the run joins or writes a saved index ([`super::index`]): the
/// hook merges the index's band runs before this run's, keeps what it
/// needs, and returns this run's own candidate pairs, numbered as the run
/// numbers its records. Nothing is held whole: the run's bands reach it as
/// sorted runs (pass 1 spills its last chunk for it), the index's are read
/// from their files, one block of each at a time.
pub trait BandsHook: Send + Sync + std::fmt::Debug {
    /// The candidate pairs of the run's `bands` band lists, sorted as
    /// [`Candidates::pairs`]; `open(band)` gives band `band`'s entries
    /// (records numbered as the run numbers them, each with its twin
    /// fingerprint) in `(key, record)` order, on up to `threads` threads.
    /// Under a budget, the pairs as they are made (the hook's too) stay
    /// within `spill`'s share, and are handed on as it hands them
    /// ([`PairSpill`]); without one (`None`), in memory.
    fn candidate_pairs(
        &self,
        bands: usize,
        threads: usize,
        spill: Option<PairSpill<'_>>,
        open: &(dyn Fn(usize) -> Result<Merge, RunError> + Sync),
    ) -> Result<(CandidatePairs, PairsMade), RunError>;
}

/// What pass 2's Integrator tells, for every record it reads, when the
/// run joins or writes a saved index ([`super::index`]).
pub trait RecordHook: Send + Sync + std::fmt::Debug {
    /// Records whose shingle sets the hook needs besides the candidates'
    /// (past its share of the budget, on disk: read in increasing order).
    fn records(&self) -> &RecordSet;
    /// True when [`RecordHook::record`] needs every record's normalized
    /// words: pass 2 then reads every record pass 1 integrated, and sends
    /// an empty shingle set for those neither a candidate nor in
    /// [`RecordHook::records`].
    fn wants_words(&self) -> bool;
    /// `record`'s id, shingle set and (when it wants them) normalized
    /// words, in record order.
    fn record(&self, record: u32, id: &str, set: &[u64], words: Option<&[u8]>);
}

/// What pass 1 found, handed to the next passes.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Candidate pairs `(earlier, later)` by record index, sorted by the
    /// later record, then the earlier one; no repeats: in memory, or on
    /// disk past pass 2's share of the budget.
    pub pairs: CandidatePairs,
    /// The records pass 1 integrated (the others were rejected): past
    /// their share of the budget, on disk.
    pub integrated: SetWriter,
    /// Records integrated.
    pub records: u64,
    /// Records rejected (known once the pass has finished).
    pub rejected: u64,
    /// Records without any shingle (no word at all).
    pub empty: u64,
    /// Peak bytes held by the Integrator (band lists, bits, pairs,
    /// places).
    pub integrator_bytes: u64,
    /// Where each integrated record is in the input, when every one came
    /// from an uncompressed file.
    pub spans: Spans,
    /// Each integrated record's id key, while the pass runs.
    pub ids: IdKeys,
    /// `(first, later)`: records whose id key an earlier record has, with
    /// the first one, as the pass ends: in memory, or on disk past their
    /// share of the budget (removed once the outputs are committed).
    pub repeated_ids: RepeatedIds,
    /// How many of [`Candidates::repeated_ids`] really share their id
    /// (confirmed by [`super::spill::repeats::report`] once the pass is done or its
    /// result loaded).
    pub confirmed_repeats: u64,
}

impl Candidates {
    /// What the later passes read of pass 1's result, and the candidate
    /// pairs apart: pass 2 takes them, and they are freed when it ends.
    pub fn split(self) -> (Found, CandidatePairs) {
        let found = Found {
            integrated: Arc::new(self.integrated.into_set()),
            spans: Arc::new(self.spans),
            records: self.records,
            rejected: self.rejected,
            empty: self.empty,
            integrator_bytes: self.integrator_bytes,
            candidate_pairs: self.pairs.len(),
            repeated_ids: self.confirmed_repeats,
        };
        (found, self.pairs)
    }
}

/// What pass 1 found, as every later pass reads it: the tables behind
/// `Arc`s (held at once by the passes' jobs and the copy's thread, never
/// copied), the counts by value. The candidate pairs go to pass 2 alone
/// ([`Candidates::split`]).
#[derive(Debug)]
pub struct Found {
    /// [`Candidates::integrated`]. Readers that move apart from the
    /// pass's processors take a cursor of their own
    /// ([`RecordSet::apart`]).
    pub integrated: Arc<RecordSet>,
    /// [`Candidates::spans`].
    pub spans: Arc<Spans>,
    /// [`Candidates::records`].
    pub records: u64,
    /// [`Candidates::rejected`].
    pub rejected: u64,
    /// [`Candidates::empty`].
    pub empty: u64,
    /// [`Candidates::integrator_bytes`].
    pub integrator_bytes: u64,
    /// How many [`Candidates::pairs`] there were.
    pub candidate_pairs: u64,
    /// [`Candidates::confirmed_repeats`].
    pub repeated_ids: u64,
}

impl Found {
    /// Records pass 1 read: what every later pass over the whole input
    /// must read again.
    pub fn read(&self) -> u64 {
        self.records + self.rejected
    }
}

/// How passes 2 and 3 read the input, decided from pass 1's result: in
/// full, or only what they need, at the places pass 1 noted ([`Spans`]).
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// Pass 2 reads the candidate records only.
    pub candidates_only: bool,
    /// Pass 3 copies the kept records' bytes from the inputs.
    pub copy: bool,
}

/// What pass 2 found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Candidate pairs whose exact similarity reaches the threshold:
    /// `(earlier, later, similarity)`, sorted by the later record, then
    /// the earlier one; in memory, or on disk past their share.
    pub pairs: VerifiedPairs,
    /// The ids and `--keep` keys of the clustered records (those of the
    /// verified pairs): in memory, or on disk when they went there.
    pub ids: ClusteredIds,
    /// Candidate pairs whose similarity was computed.
    pub checked: u64,
    /// Records the pass rejected (known once it has finished): those pass 1
    /// rejected, unless the input changed.
    pub rejected: u64,
    /// Candidate pairs that could not be checked because a record did not
    /// reach pass 2 (always 0 unless the input changed between passes).
    pub unverifiable: u64,
    /// Most bytes the Integrator held at once (estimated): the shingle
    /// sets waiting for a partner at their peak, plus the candidate pairs,
    /// the last-partner table, the ids and the verified pairs.
    pub peak_bytes: u64,
}

impl Verified {
    /// Removes the files its pairs and ids are in (nothing when they are
    /// in memory): once the run's outputs are committed.
    pub fn remove_files(&self, temp: &TempSpace) -> std::io::Result<()> {
        self.pairs.remove(temp)?;
        self.ids.remove(temp)
    }
}

/// A clustered record's id (JSON value text) and `--keep` key.
pub type ClusteredId = (u32, String, Option<KeepKey>);

/// The clustered records' ids and `--keep` keys (none under `first`), as
/// pass 2 hands them on: in memory, or in a run in record order
/// ([`crate::jobs::dedup::spill::ids`]) when the candidates' ids went to
/// disk. Read front to back ([`ClusteredIds::reader`]), by every caller.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusteredIds {
    /// Held whole.
    Memory {
        /// The ids, by record.
        ids: CandidateIds,
        /// The keys, by record.
        keys: HashMap<u32, KeepKey>,
    },
    /// In the run's temporary space.
    Disk(RunInfo),
}

impl Default for ClusteredIds {
    fn default() -> Self {
        ClusteredIds::Memory {
            ids: CandidateIds::default(),
            keys: HashMap::new(),
        }
    }
}

impl ClusteredIds {
    /// Every clustered record's `(record, id, key)` in record order, from
    /// memory or read front to back from its run in `temp`, one block in
    /// memory. A record without an id (read for a saved index's words
    /// only) is in no cluster, and not given.
    pub fn reader<'a>(
        &'a self,
        temp: &'a TempSpace,
    ) -> Box<dyn Iterator<Item = Result<ClusteredId, RunError>> + 'a> {
        match self {
            ClusteredIds::Memory { ids, keys } => Box::new(
                ids.iter()
                    .map(|(r, id)| Ok((r, id.to_owned(), keys.get(&r).cloned()))),
            ),
            ClusteredIds::Disk(info) => {
                let mut reader = match IdsRunReader::open(temp, info) {
                    Ok(reader) => Some(reader),
                    Err(e) => return Box::new(std::iter::once(Err(e))),
                };
                Box::new(std::iter::from_fn(move || loop {
                    let next = reader.as_mut()?.next_entry();
                    match next {
                        Ok(Some((record, Some(id), key))) => return Some(Ok((record, id, key))),
                        Ok(Some((_, None, _))) => continue,
                        Ok(None) => return None,
                        Err(e) => {
                            reader = None;
                            return Some(Err(e));
                        }
                    }
                }))
            }
        }
    }

    /// The keys by record, when held in memory.
    pub fn keys(&self) -> Option<&HashMap<u32, KeepKey>> {
        match self {
            ClusteredIds::Memory { keys, .. } => Some(keys),
            ClusteredIds::Disk(_) => None,
        }
    }

    /// The ids and keys held whole, by record: what the tests compare
    /// the stream with.
    #[cfg(test)]
    pub fn to_memory(
        &self,
        temp: &TempSpace,
    ) -> Result<(CandidateIds, HashMap<u32, KeepKey>), RunError> {
        let info = match self {
            ClusteredIds::Memory { ids, keys } => return Ok((ids.clone(), keys.clone())),
            ClusteredIds::Disk(info) => info,
        };
        // Read twice: once to size the lists (a list grown by doubling
        // would hold up to twice them), once to fill them.
        let (mut count, mut text, mut keyed) = (0, 0, 0);
        let mut reader = IdsRunReader::open(temp, info)?;
        while let Some((_, id, key)) = reader.next_entry()? {
            count += usize::from(id.is_some());
            text += id.map_or(0, |id| id.len());
            keyed += usize::from(key.is_some());
        }
        let mut ids = CandidateIds::with_capacity(count, text);
        let mut keys = HashMap::with_capacity(keyed);
        let mut reader = IdsRunReader::open(temp, info)?;
        while let Some((record, id, key)) = reader.next_entry()? {
            if let Some(id) = id {
                ids.insert(record, &id);
            }
            if let Some(key) = key {
                keys.insert(record, key);
            }
        }
        Ok((ids, keys))
    }

    /// Removes its run (nothing when in memory).
    pub fn remove(&self, temp: &TempSpace) -> std::io::Result<()> {
        match self {
            ClusteredIds::Memory { .. } => Ok(()),
            ClusteredIds::Disk(info) => temp.remove(&info.name, info.bytes),
        }
    }
}

/// The candidate records' ids (JSON value text), as pass 2 meets them in
/// record order: one list of records, one of where each id ends, and the
/// ids' bytes end to end, found by binary search. About 12 bytes a
/// record beside the id's bytes, where a hash table of boxed strings took
/// about 60 (an entry, a slack and an allocation per id).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CandidateIds {
    records: Vec<u32>,
    ends: Vec<u64>,
    text: String,
}

impl CandidateIds {
    /// Notes `record`'s `id`. Records come in increasing order; a record
    /// given again keeps its first id, and one out of order is placed
    /// where it belongs (slowly: that never happens in a pass).
    pub fn insert(&mut self, record: u32, id: &str) {
        match self.records.last() {
            Some(&last) if last >= record => {
                if let Err(at) = self.records.binary_search(&record) {
                    let mut all: Vec<(u32, Box<str>)> =
                        self.iter().map(|(r, i)| (r, i.into())).collect();
                    all.insert(at, (record, id.into()));
                    *self = CandidateIds::default();
                    for (r, i) in all {
                        self.insert(r, &i);
                    }
                }
            }
            _ => {
                self.text.push_str(id);
                self.records.push(record);
                self.ends.push(self.text.len() as u64);
            }
        }
    }

    /// `record`'s id.
    pub fn get(&self, record: u32) -> Option<&str> {
        let at = self.records.binary_search(&record).ok()?;
        Some(self.at(at))
    }

    fn at(&self, at: usize) -> &str {
        let start = if at == 0 {
            0
        } else {
            self.ends[at - 1] as usize
        };
        &self.text[start..self.ends[at] as usize]
    }

    /// Every `(record, id)` in record order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        self.records
            .iter()
            .enumerate()
            .map(|(at, &r)| (r, self.at(at)))
    }

    /// Records noted.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record was noted.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Keeps the ids of the records `keep` is true for, in place, and
    /// gives back the memory of the others.
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        let (mut records, mut ends, mut text) = (Vec::new(), Vec::new(), String::new());
        for (record, id) in self.iter().filter(|&(r, _)| keep(r)) {
            text.push_str(id);
            records.push(record);
            ends.push(text.len() as u64);
        }
        // Exactly what is kept: pruning is for giving memory back.
        records.shrink_to_fit();
        ends.shrink_to_fit();
        text.shrink_to_fit();
        (self.records, self.ends, self.text) = (records, ends, text);
    }

    /// Bytes of memory it holds.
    pub fn heap_bytes(&self) -> usize {
        self.records.capacity() * 4 + self.ends.capacity() * 8 + self.text.capacity()
    }

    /// At most the bytes of memory it will hold once an id of `len` bytes
    /// is noted after the others: a full vector doubles (as `Vec` grows,
    /// at least to 4 items, a string to 8 bytes), so that a budget can be
    /// kept before the memory is taken, not after.
    pub fn bytes_after(&self, len: usize) -> usize {
        let grown = |capacity: usize, used: usize, more: usize, least: usize| {
            if used + more <= capacity {
                capacity
            } else {
                (2 * capacity).max(used + more).max(least)
            }
        };
        let records = grown(self.records.capacity(), self.records.len(), 1, 4);
        let ends = grown(self.ends.capacity(), self.ends.len(), 1, 4);
        records * 4 + ends * 8 + grown(self.text.capacity(), self.text.len(), len, 8)
    }

    /// Room for `records` ids of `text` bytes in all, taken at once: a
    /// list whose size is known is not grown by doubling.
    pub fn with_capacity(records: usize, text: usize) -> Self {
        CandidateIds {
            records: Vec::with_capacity(records),
            ends: Vec::with_capacity(records),
            text: String::with_capacity(text),
        }
    }

    /// Forgets every id, keeping the memory for the next ones.
    pub fn clear(&mut self) {
        self.records.clear();
        self.ends.clear();
        self.text.clear();
    }
}

impl<'a> FromIterator<(u32, &'a str)> for CandidateIds {
    fn from_iter<I: IntoIterator<Item = (u32, &'a str)>>(items: I) -> Self {
        let mut ids = CandidateIds::default();
        for (record, id) in items {
            ids.insert(record, id);
        }
        ids
    }
}

/// What pass 3 produced.
#[derive(Debug)]
pub struct Written {
    /// `kept.jsonl` or `kept.parquet`, complete but not committed.
    pub file: AtomicFile,
    /// Its name: [`KEPT_FILE`] or [`KEPT_PARQUET_FILE`].
    pub name: &'static str,
    /// Lines written.
    pub kept: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_ids_are_found_by_record_in_any_order_given() {
        let mut ids: CandidateIds = [(3, "\"a\""), (9, "17"), (40, "\"long id\"")]
            .into_iter()
            .collect();
        ids.insert(9, "\"again\"");
        ids.insert(5, "\"late\"");
        assert_eq!(ids.get(9), Some("17"));
        assert_eq!(ids.get(5), Some("\"late\""));
        assert_eq!(ids.get(4), None);
        let all: Vec<(u32, &str)> = ids.iter().collect();
        assert_eq!(
            all,
            [
                (3, "\"a\""),
                (5, "\"late\""),
                (9, "17"),
                (40, "\"long id\"")
            ]
        );
        assert_eq!(ids.len(), 4);
        ids.retain(|r| r != 5 && r != 40);
        let all: Vec<(u32, &str)> = ids.iter().collect();
        assert_eq!(all, [(3, "\"a\""), (9, "17")]);
        assert_eq!(ids.get(40), None);
        assert!(ids.heap_bytes() < 2 * 4 + 2 * 8 + 16);
    }

    #[test]
    fn clustered_ids_read_the_same_from_memory_and_from_their_run() {
        use crate::jobs::dedup::spill::ids::IdsSpill;
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let ids: CandidateIds = [(2, "\"b\""), (5, "7"), (9, "\"c\"")].into_iter().collect();
        let keys = HashMap::from([(5, KeepKey::Int(-2)), (9, KeepKey::Length(4))]);
        let memory = ClusteredIds::Memory {
            ids: ids.clone(),
            keys: keys.clone(),
        };
        // On disk: every candidate's id written, the clustered ones joined.
        let mut spill = IdsSpill::new(Arc::clone(&temp), None);
        let written = [
            (1, Some("\"a\""), None),
            (2, Some("\"b\""), None),
            (5, Some("7"), keys.get(&5)),
            (7, None, None),
        ];
        spill.write(written, 100).unwrap();
        let tail = [(9, Some("\"c\""), keys.get(&9))];
        let disk = ClusteredIds::Disk(spill.join(|r| r != 1 && r != 7, tail).unwrap());
        let expected: Vec<ClusteredId> = vec![
            (2, "\"b\"".into(), None),
            (5, "7".into(), Some(KeepKey::Int(-2))),
            (9, "\"c\"".into(), Some(KeepKey::Length(4))),
        ];
        for clustered in [&memory, &disk] {
            let read: Vec<ClusteredId> = clustered.reader(&temp).map(Result::unwrap).collect();
            assert_eq!(read, expected);
            let (got_ids, got_keys) = clustered.to_memory(&temp).unwrap();
            assert_eq!((&got_ids, &got_keys), (&ids, &keys));
        }
        disk.remove(&temp).unwrap();
        assert!(disk.reader(&temp).next().unwrap().is_err());
    }

    #[test]
    fn the_bytes_after_an_id_are_never_below_what_noting_it_takes() {
        let mut ids = CandidateIds::default();
        for record in 0..5_000u32 {
            let id = "x".repeat(record as usize % 37);
            let after = ids.bytes_after(id.len());
            ids.insert(record, &id);
            assert!(ids.heap_bytes() <= after, "record {record}");
        }
        let held = ids.heap_bytes();
        ids.clear();
        assert!(ids.is_empty() && ids.heap_bytes() == held);
        assert_eq!(ids.bytes_after(3), held);
    }
}
