//! An external sort of [`Entry`] values within a share of the memory
//! budget: entries pushed in any order come back in `(key, record)` order.
//!
//! The entries are held in a buffer of at most the share; a full buffer
//! is sorted and written as a run in the run's temporary space
//! ([`write_run`], names `dedup-clusters-...sorted`, so a pass 1 resumed
//! from a checkpoint removes those a killed run left), and [`Sorter::finish`]
//! merges the runs ([`Merge`]), first in levels when they are more than
//! the share has room for readers ([`levels::fan_in`], as
//! [`levels::reduce`] does). Nothing spilled: the buffer is sorted in
//! memory and nothing is written.
//!
//! Entries of one `(key, record)` come back as one, with the largest
//! print: a sorted run holds each once, and the users of the sort want
//! exactly that (a record's highest similarity, as the bits of a
//! non-negative `f64`, which order as the numbers do; repeated edges
//! once).
//!
//! The runs belong to the sorter, then to its stream ([`SortedRuns`]):
//! they are removed as soon as they are merged, and when either is
//! dropped, on every path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use drainpipe_actors::{Heartbeat, TempSpace};

use super::levels;
use super::merge::{EntrySource, Merge};
use super::runs::{Entry, RunError, RunInfo};
use super::writer::write_run;

/// Bytes an entry takes in the buffer, with the room a growing buffer
/// may take past its length (it grows by at most half its length once it
/// is large, see [`Sorter::push`]).
pub const ENTRY_BYTES: u64 = 36;

/// The fewest entries a buffer holds before a run is written, whatever
/// the share: a run of a few entries costs a file each.
pub const MIN_ENTRIES: usize = 1 << 10;

/// Bytes a written entry takes at most on disk (two LEB128 integers and
/// a print), for the check of the disk's room.
const ENTRY_DISK_BYTES: u64 = 23;

/// Tells the sorts of one process apart in their files' names.
static NEXT_SORT: AtomicU64 = AtomicU64::new(0);

/// A name for a sort's files (or another file of the clusters' own),
/// `what` in it, that no other sort of the process has.
pub fn unique_name(what: &str) -> String {
    let id = NEXT_SORT.fetch_add(1, Ordering::Relaxed);
    format!("clusters-{id:04}-{what}")
}

/// Combines `next` into `kept` when they have the same `(key, record)`:
/// the larger print stays. Returns whether it did.
fn combine(next: &Entry, kept: &mut Entry) -> bool {
    let same = next.order() == kept.order();
    if same {
        kept.print = kept.print.max(next.print);
    }
    same
}

/// Sorts `entries` by `(key, record)`, each once ([`combine`]).
fn sort_combined(entries: &mut Vec<Entry>) {
    entries.sort_unstable_by_key(Entry::order);
    entries.dedup_by(|next, kept| combine(next, kept));
}

/// Removes `runs` from `temp`; the first failure is returned, the rest
/// are still tried.
fn remove_runs(temp: &TempSpace, runs: &[RunInfo]) -> Result<(), RunError> {
    let mut first = Ok(());
    for info in runs {
        if let Err(cause) = temp.remove(&info.name, info.bytes) {
            if first.is_ok() {
                first = Err(RunError::Io {
                    path: temp.folder().join(&info.name),
                    cause,
                });
            }
        }
    }
    first
}

/// An external sort of entries within a share of the budget.
#[derive(Debug)]
pub struct Sorter {
    temp: Arc<TempSpace>,
    name: String,
    limit: usize,
    fan_in: usize,
    buffer: Vec<Entry>,
    /// The runs written, owned: removed when dropped.
    runs: SortedRuns,
    /// Runs written in all, the levels' included (a counter, so that a
    /// run is written from the buffer it borrows).
    written: std::sync::atomic::AtomicUsize,
}

impl Sorter {
    /// A sort into `temp`, its runs named for `what`, holding at most
    /// `share` bytes: the buffer, and at the end the merge's readers.
    pub fn new(temp: &Arc<TempSpace>, what: &str, share: u64) -> Self {
        let limit = usize::try_from(share / ENTRY_BYTES)
            .unwrap_or(usize::MAX)
            .max(MIN_ENTRIES);
        Sorter {
            temp: Arc::clone(temp),
            name: unique_name(what),
            limit,
            fan_in: levels::fan_in(share, 1),
            buffer: Vec::new(),
            runs: SortedRuns::new(temp),
            written: Default::default(),
        }
    }

    /// Entries the buffer holds before it is written as a run.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Runs written so far, those of the merge in levels included.
    pub fn runs_written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Adds `entry`; a full buffer is sorted and written as a run.
    pub fn push(&mut self, entry: Entry) -> Result<(), RunError> {
        if self.buffer.len() == self.buffer.capacity() {
            // Grown by half at most, never past the limit: a doubling
            // buffer would hold twice its entries' room at its end.
            let room = self
                .buffer
                .capacity()
                .clamp(MIN_ENTRIES / 2, self.limit / 2);
            let room = room.min(self.limit - self.buffer.len()).max(1);
            self.buffer.reserve_exact(room);
        }
        self.buffer.push(entry);
        if self.buffer.len() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the buffer and writes it as the next run.
    fn spill(&mut self) -> Result<(), RunError> {
        sort_combined(&mut self.buffer);
        let info = self.write(self.buffer.iter().copied());
        self.buffer.clear();
        self.runs.runs.push(info?);
        Ok(())
    }

    /// Writes `entries` (sorted, each once) as the next run.
    fn write(&self, entries: impl Iterator<Item = Entry>) -> Result<RunInfo, RunError> {
        let (low, _) = entries.size_hint();
        self.temp
            .ensure_room(low as u64 * ENTRY_DISK_BYTES + 64)
            .map_err(|cause| RunError::Io {
                path: self.temp.folder().to_owned(),
                cause,
            })?;
        let seq = self.written.fetch_add(1, Ordering::Relaxed);
        write_run(
            &self.temp,
            &format!("{}-{seq:06}", self.name),
            true,
            entries,
        )
    }

    /// Every entry pushed, in `(key, record)` order, each once: in memory
    /// when nothing was written, else merged from the runs (the buffer
    /// written as the last one first, so the merge's readers have the
    /// share).
    pub fn finish(mut self) -> Result<SortedStream, RunError> {
        if self.runs.runs.is_empty() {
            let mut entries = std::mem::take(&mut self.buffer);
            sort_combined(&mut entries);
            return Ok(SortedStream::Memory(entries.into_iter()));
        }
        self.into_runs()?.stream()
    }

    /// Every entry pushed, written to runs (the buffer too, whatever its
    /// size) and merged in levels until the share has room for their
    /// readers: what a caller keeps on disk to read later, holding no
    /// memory meanwhile.
    pub fn into_runs(mut self) -> Result<SortedRuns, RunError> {
        if !self.buffer.is_empty() || self.runs.runs.is_empty() {
            self.spill()?;
        }
        self.buffer = Vec::new();
        self.reduce()?;
        self.runs.written = self.runs_written();
        Ok(self.runs)
    }

    /// Merges the first runs into one (fewer than the fan-in, when fewer
    /// suffice), put at the end, until at most the fan-in are left, as
    /// [`levels::reduce`] does, each `(key, record)` once. The runs
    /// merged are removed.
    fn reduce(&mut self) -> Result<(), RunError> {
        let fan_in = self.fan_in.max(2);
        while self.runs.runs.len() > fan_in {
            let take = fan_in.min(self.runs.runs.len() - fan_in + 1);
            let mut group = SortedRuns::new(&self.temp);
            group.runs = self.runs.runs.drain(..take).collect();
            let mut source = group.stream()?;
            let mut failed = None;
            let entries = std::iter::from_fn(|| match source.next_entry() {
                Ok(entry) => entry,
                Err(e) => {
                    failed = Some(e);
                    None
                }
            });
            let info = self.write(entries);
            if let Some(e) = failed {
                return Err(e);
            }
            self.runs.runs.push(info?);
            // The group's runs go as `source` drops.
        }
        Ok(())
    }
}

/// Sorted runs on disk in the temporary space, owned: removed when
/// dropped (or by [`SortedRuns::remove`], which says why it failed).
#[derive(Debug)]
pub struct SortedRuns {
    temp: Arc<TempSpace>,
    runs: Vec<RunInfo>,
    /// Runs the sort wrote to make them, those merged since included.
    written: usize,
}

impl SortedRuns {
    fn new(temp: &Arc<TempSpace>) -> Self {
        SortedRuns {
            temp: Arc::clone(temp),
            runs: Vec::new(),
            written: 0,
        }
    }

    /// The runs.
    pub fn runs(&self) -> &[RunInfo] {
        &self.runs
    }

    /// Runs the sort wrote to make them, those merged in levels since
    /// included.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Entries the runs hold (an entry repeated across runs counts once
    /// a run).
    pub fn entries(&self) -> u64 {
        self.runs.iter().map(|r| r.entries).sum()
    }

    /// Their merge, each `(key, record)` once; the runs are removed once
    /// it is dropped.
    pub fn stream(self) -> Result<SortedStream, RunError> {
        let merge = levels::merge(&self.temp, &self.runs, &Heartbeat::default())?;
        Ok(SortedStream::Disk {
            merge,
            next: None,
            runs: self,
        })
    }

    /// Removes the runs now.
    pub fn remove(mut self) -> Result<(), RunError> {
        let runs = std::mem::take(&mut self.runs);
        remove_runs(&self.temp, &runs)
    }
}

impl Drop for SortedRuns {
    fn drop(&mut self) {
        if let Err(e) = remove_runs(&self.temp, &self.runs) {
            log::warn!("dedup clusters: {e} (removed with the temporary folder)");
        }
    }
}

/// A sort's entries in `(key, record)` order, each once.
#[derive(Debug)]
pub enum SortedStream {
    /// Sorted in memory.
    Memory(std::vec::IntoIter<Entry>),
    /// Merged from runs, removed once the stream is dropped.
    Disk {
        /// The runs' merge.
        merge: Merge,
        /// The entry read past the last one given.
        next: Option<Entry>,
        /// The runs, owned.
        runs: SortedRuns,
    },
}

impl SortedStream {
    /// True when the entries are read from disk.
    pub fn on_disk(&self) -> bool {
        matches!(self, SortedStream::Disk { .. })
    }
}

impl EntrySource for SortedStream {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        let (merge, next) = match self {
            SortedStream::Memory(entries) => return Ok(entries.next()),
            SortedStream::Disk { merge, next, .. } => (merge, next),
        };
        let Some(mut entry) = next
            .take()
            .map_or_else(|| merge.next_entry(), |e| Ok(Some(e)))?
        else {
            return Ok(None);
        };
        while let Some(after) = merge.next_entry()? {
            if !combine(&after, &mut entry) {
                *next = Some(after);
                break;
            }
        }
        Ok(Some(entry))
    }

    fn next_entries(&mut self, out: &mut Vec<Entry>, most: usize) -> Result<bool, RunError> {
        if let SortedStream::Memory(entries) = self {
            let before = out.len();
            out.extend(entries.by_ref().take(most.max(1)));
            return Ok(out.len() > before);
        }
        let before = out.len();
        for _ in 0..most.max(1) {
            match self.next_entry()? {
                Some(entry) => out.push(entry),
                None => break,
            }
        }
        Ok(out.len() > before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_entries(count: usize, seed: u64) -> Vec<Entry> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            state >> 17
        };
        (0..count)
            .map(|_| Entry {
                key: next() % 5_000,
                record: (next() % 100_000) as u32,
                print: next(),
            })
            .collect()
    }

    /// `entries` sorted and cut to one a `(key, record)`, the largest
    /// print kept: what the sort must give.
    fn expected(entries: &[Entry]) -> Vec<Entry> {
        let mut sorted = entries.to_vec();
        sorted.sort_unstable_by_key(|e| (e.order(), std::cmp::Reverse(e.print)));
        sorted.dedup_by_key(|e| e.order());
        sorted
    }

    fn drain(mut stream: SortedStream) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some(e) = stream.next_entry().unwrap() {
            out.push(e);
        }
        out
    }

    fn files(temp: &TempSpace) -> usize {
        std::fs::read_dir(temp.dir().unwrap()).unwrap().count()
    }

    #[test]
    fn entries_pushed_in_any_order_come_back_sorted_through_spilled_runs() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let entries = random_entries(50_000, 7);
        let mut sorter = Sorter::new(&temp, "test", 0);
        assert_eq!(sorter.limit(), MIN_ENTRIES);
        for &e in &entries {
            sorter.push(e).unwrap();
        }
        assert!(sorter.runs_written() > 40, "{} runs", sorter.runs_written());
        let stream = sorter.finish().unwrap();
        assert!(stream.on_disk());
        let got = drain(stream);
        assert!(got == expected(&entries), "the sort gives another list");
        assert!(temp.bytes_spilled() > 0);
        assert_eq!(files(&temp), 0, "every run removed once read");
    }

    #[test]
    fn repeated_entries_come_back_once_with_their_largest_print() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut entries = random_entries(5_000, 3);
        // Each entry three times, with other prints, across runs.
        let again: Vec<Entry> = (entries.iter())
            .flat_map(|&e| [e.print / 2, e.print.wrapping_add(1)].map(|print| Entry { print, ..e }))
            .collect();
        entries.extend(again);
        assert!(expected(&entries).len() < entries.len() / 2);
        for share in [0, 1 << 30] {
            let mut sorter = Sorter::new(&temp, "test", share);
            for &e in &entries {
                sorter.push(e).unwrap();
            }
            assert!((sorter.runs_written() > 1) == (share == 0));
            assert!(drain(sorter.finish().unwrap()) == expected(&entries));
        }
        assert_eq!(files(&temp), 0);
    }

    #[test]
    fn runs_past_the_readers_room_merge_in_levels() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let entries = random_entries(40_000, 11);
        let mut sorter = Sorter::new(&temp, "test", 0);
        assert_eq!(sorter.fan_in, 2, "the least room: two readers");
        for &e in &entries {
            sorter.push(e).unwrap();
        }
        let spilled = sorter.runs_written();
        let runs = sorter.into_runs().unwrap();
        assert!(runs.runs().len() <= 2, "{} runs left", runs.runs().len());
        assert_eq!(files(&temp), runs.runs().len(), "merged runs removed");
        assert!(drain(runs.stream().unwrap()) == expected(&entries));
        assert!(spilled > 30);
        assert_eq!(files(&temp), 0);
    }

    #[test]
    fn a_sort_within_its_share_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let entries = random_entries(10_000, 5);
        let mut sorter = Sorter::new(&temp, "test", 64 << 20);
        for &e in &entries {
            sorter.push(e).unwrap();
        }
        let stream = sorter.finish().unwrap();
        assert!(!stream.on_disk());
        assert!(drain(stream) == expected(&entries));
        assert_eq!(temp.bytes_spilled(), 0);
    }

    #[test]
    fn a_sort_dropped_before_its_end_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let entries = random_entries(20_000, 9);
        let mut sorter = Sorter::new(&temp, "test", 0);
        for &e in &entries {
            sorter.push(e).unwrap();
        }
        assert!(files(&temp) > 1);
        drop(sorter);
        assert_eq!(files(&temp), 0);
        // And a stream dropped half read.
        let mut sorter = Sorter::new(&temp, "test", 0);
        for &e in &entries {
            sorter.push(e).unwrap();
        }
        let mut stream = sorter.finish().unwrap();
        for _ in 0..100 {
            stream.next_entry().unwrap();
        }
        assert!(files(&temp) > 0);
        drop(stream);
        assert_eq!(files(&temp), 0);
        assert!(temp.peak_bytes() > 0);
    }
}
