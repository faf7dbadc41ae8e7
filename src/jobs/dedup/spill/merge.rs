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

use drainpipe_actors::Heartbeat;

use super::runs::{Entry, RunError, RunReader};

/// Anything that yields entries in strictly increasing `(key, record)`
/// order: a run being read, a sorted list in memory, a merge.
pub trait EntrySource: Send {
    /// The next entry; `None` at the end.
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError>;

    /// Appends up to `most` of the next entries (at least one) to `out`,
    /// or returns false at the end: what a [`Merge`] reads its sources by.
    fn next_entries(&mut self, out: &mut Vec<Entry>, _most: usize) -> Result<bool, RunError> {
        match self.next_entry()? {
            Some(entry) => {
                out.push(entry);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl EntrySource for RunReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        RunReader::next_entry(self)
    }

    fn next_entries(&mut self, out: &mut Vec<Entry>, most: usize) -> Result<bool, RunError> {
        RunReader::next_entries(self, out, most)
    }
}

/// Entries a merge reads from a source at once ([`EntrySource::next_entries`]):
/// the per-entry calls through the source's box were most of a merge's
/// time; a batch takes this many entries' room a source
/// ([`BATCH_BYTES`]).
pub const BATCH: usize = 256;

/// The bytes of a source's batch in a merge.
pub const BATCH_BYTES: usize = BATCH * std::mem::size_of::<Entry>();

/// A merge with a heartbeat beats once every this many batches read from
/// its sources (about 65,000 entries, a millisecond or so of merging):
/// often enough for any deadline in seconds, rarely enough to cost
/// nothing ([`Merge::beating`]).
const BEAT_EVERY: u32 = 256;

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

    fn next_entries(&mut self, out: &mut Vec<Entry>, most: usize) -> Result<bool, RunError> {
        let before = out.len();
        out.extend(self.0.by_ref().take(most.max(1)));
        Ok(out.len() > before)
    }
}

/// A source's entries with their records moved by an offset, read a
/// batch at a time.
struct Offset {
    source: Box<dyn EntrySource>,
    offset: u32,
    /// The batch read last, its records offset already.
    batch: Vec<Entry>,
    /// The batch's next entry.
    at: usize,
}

/// The sort key of a source's head once the source ended: past every
/// entry's ([`order_key`] of a key below 2^64 and a record below 2^32,
/// with a source below 2^32).
const ENDED: u128 = u128::MAX;

/// The sort key of source `source`'s head `entry`: `key << 64 |
/// record << 32 | source`. One number to compare: the source in the low
/// bits breaks ties by the order sources were added, and tells the
/// winner of the tree's matches without a look-up.
#[inline]
fn order_key(entry: &Entry, source: usize) -> u128 {
    u128::from(entry.key) << 64 | u128::from(entry.record) << 32 | source as u128
}

/// The merge of several [`EntrySource`]s: the smallest `(key, record)`
/// first; of equal ones (never, between runs of disjoint records), the
/// source added first.
///
/// A tree of losers: each inner node keeps the sort key of the source
/// that lost the match there, the root the winner's; taking an entry
/// replays only the matches on the winner's path, one comparison a level,
/// where a binary heap takes two a level for the pop and the push. The
/// nodes hold the keys themselves (the source is in their low bits), and
/// a match is played without a branch: which of two runs of random keys
/// wins is a coin toss, and a mispredicted branch a level, with a look-up
/// of the loser's key, was most of a merge's time.
pub struct Merge {
    sources: Vec<Offset>,
    /// Each source's next entry (stale once it ended).
    heads: Vec<Entry>,
    /// Each source's head's sort key ([`order_key`]), [`ENDED`] once it
    /// ended.
    keys: Vec<u128>,
    /// `tree[0]`: the winner's sort key; `tree[n]` for `n` in `1..k`: the
    /// loser's at inner node `n`, whose children are `2n` and `2n + 1`,
    /// leaf `i` being node `k + i`.
    tree: Vec<u128>,
    /// Sources were added since the tree was built.
    stale: bool,
    /// Where the merge says it moves on, and the batches read since it
    /// last did ([`Merge::beating`]).
    beat: Option<(Heartbeat, u32)>,
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge")
            .field("sources", &self.sources.len())
            .field(
                "pending",
                &self.keys.iter().filter(|&&k| k != ENDED).count(),
            )
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
            keys: Vec::new(),
            tree: Vec::new(),
            stale: false,
            beat: None,
        }
    }

    /// Beats `heartbeat` as the merge reads its sources (every
    /// 256 batches, `BEAT_EVERY`): a merge in a job's finish shows it moves
    /// on, however long one list takes.
    pub fn beating(&mut self, heartbeat: &Heartbeat) {
        self.beat = Some((heartbeat.clone(), 0));
    }

    /// The heartbeat the merge beats, if any (for a merge that reads this
    /// one, to beat it too).
    pub fn heartbeat(&self) -> Option<&Heartbeat> {
        self.beat.as_ref().map(|(heartbeat, _)| heartbeat)
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
        // The source's number is in its sort keys' low 32 bits.
        assert!(at < u32::MAX as usize, "a merge of 2^32 sources");
        self.sources.push(Offset {
            source: Box::new(source),
            offset,
            batch: Vec::with_capacity(BATCH),
            at: 0,
        });
        self.heads.push(Entry::default());
        self.keys.push(ENDED);
        self.stale = true;
        self.refill(at)
    }

    /// Reads source `at`'s next entry into its head ([`ENDED`] at its
    /// end), and the next batch first when its batch is used up.
    #[inline]
    fn refill(&mut self, at: usize) -> Result<(), RunError> {
        let source = &mut self.sources[at];
        if source.at == source.batch.len() {
            return self.refill_batch(at);
        }
        let entry = source.batch[source.at];
        source.at += 1;
        (self.heads[at], self.keys[at]) = (entry, order_key(&entry, at));
        Ok(())
    }

    /// [`Merge::refill`] once source `at`'s batch is used up.
    #[cold]
    fn refill_batch(&mut self, at: usize) -> Result<(), RunError> {
        if let Some((heartbeat, batches)) = &mut self.beat {
            *batches += 1;
            if *batches == BEAT_EVERY {
                *batches = 0;
                heartbeat.beat();
            }
        }
        let source = &mut self.sources[at];
        source.batch.clear();
        source.at = 0;
        while source.batch.is_empty() {
            if !source.source.next_entries(&mut source.batch, BATCH)? {
                self.keys[at] = ENDED;
                return Ok(());
            }
        }
        if source.offset != 0 {
            let offset = source.offset;
            for entry in &mut source.batch {
                entry.record =
                    entry
                        .record
                        .checked_add(offset)
                        .ok_or(RunError::RecordPastLimit {
                            record: entry.record,
                            offset,
                        })?;
            }
        }
        self.refill(at)
    }

    /// Plays every match.
    fn build(&mut self) {
        let k = self.keys.len();
        let mut winners = vec![0u128; 2 * k];
        self.tree = vec![0; k];
        winners[k..].copy_from_slice(&self.keys);
        for n in (1..k).rev() {
            let (a, b) = (winners[2 * n], winners[2 * n + 1]);
            (winners[n], self.tree[n]) = (a.min(b), a.max(b));
        }
        if k > 0 {
            self.tree[0] = if k > 1 { winners[1] } else { self.keys[0] };
        }
        self.stale = false;
    }

    /// Replays the matches on the path of source `at`, whose head changed:
    /// the smaller key goes up, the larger stays, without a branch.
    #[inline]
    fn replay(&mut self, at: usize) {
        let mut key = self.keys[at];
        let mut node = (self.keys.len() + at) / 2;
        while node >= 1 {
            let other = self.tree[node];
            self.tree[node] = other.max(key);
            key = other.min(key);
            node /= 2;
        }
        self.tree[0] = key;
    }

    /// The next entry, once the tree is built.
    #[inline]
    fn take(&mut self) -> Result<Option<Entry>, RunError> {
        let Some(&top) = self.tree.first() else {
            return Ok(None);
        };
        if top == ENDED {
            return Ok(None);
        }
        let at = top as u32 as usize;
        let entry = self.heads[at];
        self.refill(at)?;
        self.replay(at);
        Ok(Some(entry))
    }
}

impl EntrySource for Merge {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        if self.stale {
            self.build();
        }
        self.take()
    }

    fn next_entries(&mut self, out: &mut Vec<Entry>, most: usize) -> Result<bool, RunError> {
        if self.stale {
            self.build();
        }
        let before = out.len();
        for _ in 0..most.max(1) {
            match self.take()? {
                Some(entry) => out.push(entry),
                None => break,
            }
        }
        Ok(out.len() > before)
    }
}

/// Reads a source bucket by bucket ([`Buckets::next_bucket`]): its
/// entries a batch at a time ([`EntrySource::next_entries`]), where one
/// call an entry through the source was a fifth of a merge's time, and a
/// bucket within the batch given where it lies (most buckets hold one
/// entry: copying each was a tenth).
#[derive(Debug)]
pub struct Buckets<S> {
    source: S,
    /// The batch read last.
    batch: Vec<Entry>,
    /// Its next entry.
    at: usize,
    /// A bucket that runs past the end of a batch, gathered.
    across: Vec<Entry>,
}

impl<S: EntrySource> Buckets<S> {
    /// The buckets of `source`, its entries in `(key, record)` order.
    pub fn new(source: S) -> Self {
        Buckets {
            source,
            batch: Vec::with_capacity(BATCH),
            at: 0,
            across: Vec::new(),
        }
    }

    /// The entries of the next key (in record order), `None` at the end.
    pub fn next_bucket(&mut self) -> Result<Option<&[Entry]>, RunError> {
        self.across.clear();
        loop {
            if self.at == self.batch.len() {
                self.batch.clear();
                self.at = 0;
                if !self.source.next_entries(&mut self.batch, BATCH)? {
                    return Ok((!self.across.is_empty()).then_some(&self.across[..]));
                }
            }
            let from = self.at;
            let key = self.across.first().map_or(self.batch[from].key, |e| e.key);
            let same = self.batch[from..]
                .iter()
                .take_while(|e| e.key == key)
                .count();
            self.at += same;
            if self.at < self.batch.len() && self.across.is_empty() {
                return Ok(Some(&self.batch[from..self.at]));
            }
            self.across.extend_from_slice(&self.batch[from..self.at]);
            if self.at < self.batch.len() {
                return Ok(Some(&self.across[..]));
            }
        }
    }
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
        let mut source = Buckets::new(Sorted::new(all.clone()));
        let mut keys = Vec::new();
        let mut count = 0;
        while let Some(bucket) = source.next_bucket().unwrap() {
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

    #[test]
    fn a_merge_of_any_number_of_sources_gives_the_one_sorted_list() {
        for sources in [1usize, 2, 3, 5, 8, 13] {
            let mut merge = Merge::new();
            let mut all = Vec::new();
            for s in 0..sources {
                // Source `s` holds the records `r` with `r % sources == s`
                // (one source in three empty), and `(5, 1_000_000)`, the
                // same entry in every source: ties go to the source added
                // first.
                let mut list: Vec<Entry> = (0..3000u32)
                    .filter(|r| r % sources as u32 == s as u32 && s % 3 != 2)
                    .map(|r| entry(u64::from(r.wrapping_mul(2_654_435_761) % 61), r))
                    .collect();
                list.push(Entry {
                    key: 5,
                    record: 1_000_000,
                    print: s as u64,
                });
                all.extend_from_slice(&list);
                merge.add(Sorted::new(list)).unwrap();
            }
            let merged = drain(&mut merge);
            all.sort_by_key(Entry::order);
            assert_eq!(merged.len(), all.len());
            let orders = |l: &[Entry]| l.iter().map(Entry::order).collect::<Vec<_>>();
            assert_eq!(orders(&merged), orders(&all), "{sources} sources");
            let ties: Vec<u64> = merged
                .iter()
                .filter(|e| e.record == 1_000_000)
                .map(|e| e.print)
                .collect();
            assert_eq!(ties, (0..sources as u64).collect::<Vec<_>>());
        }
        assert_eq!(Merge::new().next_entry().unwrap(), None);
    }

    #[test]
    fn a_merge_with_a_heartbeat_beats_as_it_reads_and_gives_the_same_list() {
        // 4 sources of 100,000 entries: 392 reads of a batch from each
        // (the last finds the end), 1,568 in all: 6 beats.
        let lists: Vec<Vec<Entry>> = (0..4u32)
            .map(|s| chunk(s * 100_000..(s + 1) * 100_000))
            .collect();
        let merged = |heartbeat: Option<&Heartbeat>| {
            let mut merge = Merge::new();
            if let Some(heartbeat) = heartbeat {
                merge.beating(heartbeat);
            }
            for list in &lists {
                merge.add(Sorted::new(list.clone())).unwrap();
            }
            drain(&mut merge)
        };
        let heartbeat = Heartbeat::default();
        assert!(merged(Some(&heartbeat)) == merged(None));
        assert_eq!(heartbeat.beats(), 1_568 / u64::from(BEAT_EVERY));
    }
}
