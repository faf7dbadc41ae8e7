//! The candidate pairs pass 1 hands pass 2, on disk once they would pass
//! their share of the budget in pass 2 ([`Shares::verify_pairs`]).
//!
//! In memory, pass 2 holds the pairs (8 bytes each) and, for every earlier
//! record, its last partner (8 bytes each), after which its shingle set is
//! dropped: both grow with the pairs, not the records. Past the share, pass
//! 1 writes them instead as two sorted runs ([`super::runs`], no
//! fingerprints) in the run's temporary space, made from the same stream
//! of pairs in `(later, earlier)` order:
//!
//! - `dedup-pairs-by-later.sorted`: every pair, keyed by the later record,
//!   the earlier one as the entry's record: pass 2 reads it front to back
//!   as its records arrive ([`PairReader`]);
//! - `dedup-pairs-last.sorted`: each earlier record, as the key, with its
//!   last partner as the record: pass 2 reads it front to back too, as
//!   each candidate arrives, and keeps the last partner beside the held set
//!   only. It is an external sort of the pairs by their earlier record:
//!   a buffer within the share, sorted and cut to each record's latest
//!   partner, written as runs when full, and merged (in levels past the
//!   readers' room) keeping each record's last entry.
//!
//! Pass 1's result names both files ([`PairFiles`]; it does not copy
//! them); they are removed once the run's outputs are committed, and with
//! the temporary folder on every other exit that leaves nothing to resume.
//! Their names start as every pass 1 run's ([`super::writer::PREFIX`]), so
//! a pass 1 resumed from a checkpoint removes those a killed one left.
//! Sequential IO only: each file is written once and read front to back.

use std::io;

use drainpipe_actors::{Heartbeat, TempSpace};
use serde::{Deserialize, Serialize};

use super::held::Pending;
use super::levels;
use super::merge::EntrySource;
use super::runs::{Entry, RunError, RunInfo, RunReader, RunWriter};
use super::writer::{write_run, PREFIX, SUFFIX};
use crate::jobs::dedup::budget::Shares;

/// Bytes pass 2 holds for a pair when the pairs are in memory: the pair,
/// and at most one entry of the last-partner table.
pub const PAIR_BYTES_IN_MEMORY: u64 = 16;

/// Entries a [`PairReader`] decodes at a time.
const READ_BATCH: usize = 256;

/// The pairs' files, as pass 1's result names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairFiles {
    /// Every pair `(earlier, later)`, keyed by the later record.
    pub by_later: RunInfo,
    /// Every earlier record, keyed by itself, with its last partner.
    pub last: RunInfo,
}

impl PairFiles {
    /// Pairs the files hold.
    pub fn pairs(&self) -> u64 {
        self.by_later.entries
    }

    /// Removes both files from `temp`.
    pub fn remove(&self, temp: &TempSpace) -> io::Result<()> {
        temp.remove(&self.by_later.name, self.by_later.bytes)?;
        temp.remove(&self.last.name, self.last.bytes)
    }
}

/// The candidate pairs pass 1 hands pass 2: `(earlier, later)` sorted by
/// the later record, then the earlier one, without repeats; in memory, or
/// on disk past their share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidatePairs {
    /// Held whole.
    Memory(Vec<(u32, u32)>),
    /// In the run's temporary space.
    Disk(PairFiles),
}

impl Default for CandidatePairs {
    fn default() -> Self {
        CandidatePairs::Memory(Vec::new())
    }
}

impl CandidatePairs {
    /// How many pairs.
    pub fn len(&self) -> u64 {
        match self {
            CandidatePairs::Memory(pairs) => pairs.len() as u64,
            CandidatePairs::Disk(files) => files.pairs(),
        }
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory they hold.
    pub fn heap_bytes(&self) -> usize {
        match self {
            CandidatePairs::Memory(pairs) => pairs.capacity() * std::mem::size_of::<(u32, u32)>(),
            CandidatePairs::Disk(_) => 0,
        }
    }

    /// Removes their files from `temp`, if they are on disk.
    pub fn remove(&self, temp: &TempSpace) -> io::Result<()> {
        match self {
            CandidatePairs::Memory(_) => Ok(()),
            CandidatePairs::Disk(files) => files.remove(temp),
        }
    }

    /// True when `count` pairs fit pass 2's share of `max_memory` (`None`:
    /// no budget, they always do).
    pub fn fit(count: u64, max_memory: Option<u64>) -> bool {
        max_memory.is_none_or(|max_memory| {
            count.saturating_mul(PAIR_BYTES_IN_MEMORY) <= Shares { max_memory }.verify_pairs()
        })
    }

    /// Every pair, read back (tests).
    #[cfg(test)]
    pub fn read(&self, temp: &TempSpace) -> Vec<(u32, u32)> {
        match self {
            CandidatePairs::Memory(pairs) => pairs.clone(),
            CandidatePairs::Disk(files) => {
                let mut reader = PairReader::open(temp, &files.by_later).unwrap();
                let mut out = Vec::new();
                while let Some(e) = reader.next_entry().unwrap() {
                    out.push(pair_of(e));
                }
                out
            }
        }
    }

    /// `pairs`, written to `temp` and freed when they do not
    /// [`fit`](CandidatePairs::fit), beating `heartbeat` as they are.
    pub fn handed(
        pairs: Vec<(u32, u32)>,
        temp: &TempSpace,
        max_memory: Option<u64>,
        heartbeat: &Heartbeat,
    ) -> Result<Self, RunError> {
        let (count, Some(max_memory)) = (pairs.len() as u64, max_memory) else {
            return Ok(CandidatePairs::Memory(pairs));
        };
        if CandidatePairs::fit(count, Some(max_memory)) {
            return Ok(CandidatePairs::Memory(pairs));
        }
        let mut writer = PairFilesWriter::new(temp, count, Shares { max_memory }, heartbeat)?;
        for pair in pairs {
            writer.push(pair)?;
        }
        writer.finish().map(CandidatePairs::Disk)
    }
}

/// `(earlier, later)` pairs sorted by `(earlier, later)`, cut to each
/// earlier record's last pair.
fn cut_to_last(list: &mut Vec<(u32, u32)>) {
    list.sort_unstable();
    list.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 = next.1;
        }
        same
    });
}

/// An entry of the last-partner file: the earlier record, its partner.
fn last_entry((earlier, later): (u32, u32)) -> Entry {
    Entry {
        key: u64::from(earlier),
        record: later,
        print: 0,
    }
}

/// Writes the pairs' files from pairs in `(later, earlier)` order.
#[derive(Debug)]
pub struct PairFilesWriter<'a> {
    temp: &'a TempSpace,
    by_later: RunWriter,
    /// `(earlier, later)` since the last run of last partners.
    last: Vec<(u32, u32)>,
    limit: usize,
    runs: Vec<RunInfo>,
    fan_in: usize,
    /// Beaten every [`BEAT_EVERY`] pairs and by the merges (pass 1's
    /// finish: its deadline counts from the last beat).
    heartbeat: Heartbeat,
    pushed: u64,
}

/// Pairs written between two beats of the heartbeat.
const BEAT_EVERY: u64 = 1 << 16;

impl<'a> PairFilesWriter<'a> {
    /// A writer of `count` pairs into `temp`, its buffer and merge readers
    /// within `shares` of the budget, beating `heartbeat` as it goes.
    pub fn new(
        temp: &'a TempSpace,
        count: u64,
        shares: Shares,
        heartbeat: &Heartbeat,
    ) -> Result<Self, RunError> {
        let folder = || temp.folder().to_owned();
        // Two files of at most 11 bytes an entry (two varints and a
        // block's framing), and the runs of the sort as much again.
        temp.ensure_room(count.saturating_mul(33) + 4096)
            .map_err(|cause| RunError::Io {
                path: folder(),
                cause,
            })?;
        log::info!(
            "dedup pass 1: the {count} candidate pairs pass their share of pass 2's memory budget; \
             writing them to sorted runs in {}",
            temp.folder().display()
        );
        let name = format!("{PREFIX}pairs-by-later{SUFFIX}");
        let path = temp.path(&name).map_err(|cause| RunError::Io {
            path: folder(),
            cause,
        })?;
        let limit = shares.verify_pairs() / std::mem::size_of::<(u32, u32)>() as u64;
        Ok(PairFilesWriter {
            temp,
            by_later: RunWriter::create(&path, false)?,
            last: Vec::new(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1024),
            runs: Vec::new(),
            fan_in: levels::fan_in(shares.verify_pairs(), 1),
            heartbeat: heartbeat.clone(),
            pushed: 0,
        })
    }

    /// Appends `(earlier, later)`, after the previous pair in `(later,
    /// earlier)` order.
    pub fn push(&mut self, (earlier, later): (u32, u32)) -> Result<(), RunError> {
        self.by_later.push(Entry {
            key: u64::from(later),
            record: earlier,
            print: 0,
        })?;
        self.last.push((earlier, later));
        self.pushed += 1;
        if self.pushed.is_multiple_of(BEAT_EVERY) {
            self.heartbeat.beat();
        }
        if self.last.len() >= self.limit {
            self.write_last()?;
        }
        Ok(())
    }

    /// Writes the buffer of last partners as the next run.
    fn write_last(&mut self) -> Result<(), RunError> {
        cut_to_last(&mut self.last);
        let name = format!("pairs-last-run-{:06}", self.runs.len());
        let info = write_run(self.temp, &name, false, self.last.drain(..).map(last_entry))?;
        self.runs.push(info);
        Ok(())
    }

    /// Ends both files; the runs of the sort are merged and removed.
    pub fn finish(mut self) -> Result<PairFiles, RunError> {
        let last = self.finish_last()?;
        let by_later = self.by_later.finish()?;
        self.temp.wrote(by_later.bytes);
        self.heartbeat.beat();
        Ok(PairFiles { by_later, last })
    }

    /// The last-partner file: the buffer sorted, or its runs merged (in
    /// levels past the readers' room).
    fn finish_last(&mut self) -> Result<RunInfo, RunError> {
        if self.runs.is_empty() {
            cut_to_last(&mut self.last);
            let entries = self.last.drain(..).map(last_entry);
            return write_run(self.temp, "pairs-last", false, entries);
        }
        if !self.last.is_empty() {
            self.write_last()?;
        }
        self.last = Vec::new();
        let mut level = 0;
        while self.runs.len() > self.fan_in {
            let group: Vec<RunInfo> = self.runs.drain(..self.fan_in).collect();
            let name = format!("pairs-last-level-{level:06}");
            let info = merge_last(self.temp, &group, &name, &self.heartbeat)?;
            self.runs.push(info);
            level += 1;
        }
        let runs = std::mem::take(&mut self.runs);
        merge_last(self.temp, &runs, "pairs-last", &self.heartbeat)
    }
}

/// Merges `runs` of last partners into the run `name`, each record with
/// its last entry (the runs were written in the pairs' order, so the
/// later partner is the larger), and removes them.
fn merge_last(
    temp: &TempSpace,
    runs: &[RunInfo],
    name: &str,
    heartbeat: &Heartbeat,
) -> Result<RunInfo, RunError> {
    let mut merge = levels::merge(temp, runs, heartbeat)?;
    let mut held: Option<Entry> = None;
    let mut fault = None;
    let entries = std::iter::from_fn(|| loop {
        match merge.next_entry() {
            Ok(Some(e)) => match held {
                Some(h) if h.key == e.key => held = Some(e),
                _ => {
                    if let Some(out) = held.replace(e) {
                        return Some(out);
                    }
                }
            },
            Ok(None) => return held.take(),
            Err(e) => {
                fault = Some(e);
                return None;
            }
        }
    });
    let info = write_run(temp, name, false, entries);
    if let Some(e) = fault {
        return Err(e);
    }
    for run in runs {
        temp.remove(&run.name, run.bytes)
            .map_err(|cause| RunError::Io {
                path: temp.folder().join(&run.name),
                cause,
            })?;
    }
    info
}

/// Streams one of the pairs' files front to back, a batch of entries
/// decoded at a time, counting the entries passed.
#[derive(Debug)]
pub struct PairReader {
    reader: RunReader,
    batch: Vec<Entry>,
    at: usize,
    passed: u64,
}

impl PairReader {
    /// Opens the file `info` in `temp`.
    pub fn open(temp: &TempSpace, info: &RunInfo) -> Result<Self, RunError> {
        Ok(PairReader {
            reader: levels::open(temp, info)?,
            batch: Vec::with_capacity(READ_BATCH),
            at: 0,
            passed: 0,
        })
    }

    /// The next entry, left in place; `None` at the end.
    #[inline]
    pub fn peek(&mut self) -> Result<Option<Entry>, RunError> {
        if self.at == self.batch.len() {
            self.batch.clear();
            self.at = 0;
            if !self.reader.next_entries(&mut self.batch, READ_BATCH)? {
                return Ok(None);
            }
        }
        Ok(Some(self.batch[self.at]))
    }

    /// Passes the entry [`PairReader::peek`] gave.
    #[inline]
    pub fn pass(&mut self) {
        debug_assert!(self.at < self.batch.len());
        self.at += 1;
        self.passed += 1;
    }

    /// The next entry, passed.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        let entry = self.peek()?;
        if entry.is_some() {
            self.pass();
        }
        Ok(entry)
    }

    /// Passes `count` entries (fewer at the end).
    pub fn skip(&mut self, count: u64) -> Result<(), RunError> {
        while self.passed < count && self.next_entry()?.is_some() {}
        Ok(())
    }

    /// Entries passed.
    pub fn passed(&self) -> u64 {
        self.passed
    }

    /// Bytes of memory it holds: the block, the read buffer, the batch.
    pub fn heap_bytes(&self) -> u64 {
        levels::READER_BYTES + (self.batch.capacity() * std::mem::size_of::<Entry>()) as u64
    }
}

/// A pair of the by-later file.
pub fn pair_of(entry: Entry) -> (u32, u32) {
    (entry.record, entry.key as u32)
}

/// The pairs of the by-later file `files` from the `from`-th on, for the
/// held sets' eviction ([`Pending`]): read front to back each time.
#[derive(Debug)]
pub struct PendingOnDisk<'a> {
    /// The run's temporary space.
    pub temp: &'a TempSpace,
    /// The pairs' files.
    pub files: &'a PairFiles,
    /// Pairs before it are passed over.
    pub from: u64,
}

impl Pending for PendingOnDisk<'_> {
    fn each(&self, f: &mut dyn FnMut((u32, u32)) -> Result<(), RunError>) -> Result<(), RunError> {
        let mut reader = PairReader::open(self.temp, &self.files.by_later)?;
        reader.skip(self.from)?;
        while let Some(entry) = reader.next_entry()? {
            f(pair_of(entry))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs sorted by `(later, earlier)`, many earlier records with
    /// several partners far apart.
    fn pairs(count: u32) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = (0..count)
            .map(|i| {
                let later = i.wrapping_mul(2_654_435_761) % 40_000 + 1;
                (i.wrapping_mul(7) % later, later)
            })
            .collect();
        out.sort_unstable_by_key(|&(a, b)| (b, a));
        out.dedup();
        out
    }

    fn read_all(temp: &TempSpace, info: &RunInfo) -> Vec<Entry> {
        let mut reader = PairReader::open(temp, info).unwrap();
        let mut out = Vec::new();
        while let Some(e) = reader.next_entry().unwrap() {
            out.push(e);
        }
        out
    }

    #[test]
    fn pairs_past_their_share_are_written_sorted_by_later_and_by_earlier_with_the_last_partner() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        let pairs = pairs(60_000);
        let mut expected_last = pairs.clone();
        cut_to_last(&mut expected_last);
        // A budget whose share holds a thousand pairs: runs of last
        // partners, merged in levels (the readers' room is two runs); and
        // one whose buffer holds them all, sorted at once.
        for max_memory in [64 << 10, 8 << 20] {
            let beat = Heartbeat::default();
            let handed =
                CandidatePairs::handed(pairs.clone(), &temp, Some(max_memory), &beat).unwrap();
            assert!(beat.beats() > 0, "the writer says it moves on");
            let CandidatePairs::Disk(files) = &handed else {
                panic!("{} pairs fit {max_memory} bytes", pairs.len());
            };
            assert_eq!(handed.len(), pairs.len() as u64);
            let back: Vec<(u32, u32)> = read_all(&temp, &files.by_later)
                .into_iter()
                .map(pair_of)
                .collect();
            assert_eq!(back, pairs);
            let last: Vec<(u32, u32)> = read_all(&temp, &files.last)
                .into_iter()
                .map(|e| (e.key as u32, e.record))
                .collect();
            assert_eq!(last, expected_last, "budget {max_memory}");
            // Pending pairs from the 1000th on, as the eviction reads them.
            let mut pending = Vec::new();
            let on_disk = PendingOnDisk {
                temp: &temp,
                files,
                from: 1000,
            };
            on_disk
                .each(&mut |p| {
                    pending.push(p);
                    Ok(())
                })
                .unwrap();
            assert_eq!(pending, pairs[1000..]);
            files.remove(&temp).unwrap();
            let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
            assert_eq!(left, 0, "the runs of the sort are removed");
        }
        // Within the share: in memory, nothing written.
        let few = pairs[..100].to_vec();
        let beat = Heartbeat::default();
        let handed = CandidatePairs::handed(few.clone(), &temp, Some(64 << 20), &beat).unwrap();
        assert_eq!(handed, CandidatePairs::Memory(few));
        assert!(temp.bytes_spilled() > 0);
    }
}
