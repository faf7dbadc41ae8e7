//! Pass 2's verified pairs on disk once they pass their share of the
//! memory budget ([`crate::jobs::dedup::budget::Shares::verified_pairs`]).
//!
//! A corpus with many duplicates has about as many verified pairs as
//! records (16 bytes each in memory), and they are known only once pass 2
//! ends: held whole, they grow with the corpus. Pass 2 makes them in
//! `(later, earlier)` order, the order of a sorted run, so past the share
//! it writes them (those held so far first) as sorted runs
//! ([`super::runs`]: `key` the later record, `record` the earlier one,
//! `print` the similarity's bits, so with fingerprints) one after the
//! other: a segment is held in memory until it fills
//! ([`PairsSpill::push`]), then written as the next run, durable, so that
//! a checkpoint may name it. Read back, the runs give the pairs in order,
//! one block in memory ([`VerifiedPairs::reader`]).
//!
//! A checkpoint names the runs written (the segment being filled is in
//! the state it saves); a restore removes the runs it does not name
//! ([`super::leftovers`]). Pass 2's result names them too; they are
//! removed once the run's outputs are committed
//! ([`VerifiedPairs::remove`]), and with the temporary folder on every
//! other exit path.

use std::io;
use std::sync::Arc;

use drainpipe_actors::TempSpace;
use serde::{Deserialize, Serialize};

use super::leftovers::remove_unnamed;
use super::runs::{sync, Entry, RunError, RunInfo, RunReader, RunWriter};

/// Names of the runs this module writes start and end so (not `.sorted`:
/// pass 1's sorted runs are removed by that suffix).
const PREFIX: &str = "dedup-verify-pairs-";
const SUFFIX: &str = ".vpairs";
/// How the names of the runs of the verified pairs across start (a run
/// against saved indexes, [`PairsSpill::across`]).
const ACROSS_PREFIX: &str = "dedup-verify-across-";

/// Bytes a verified pair takes in memory.
pub const VERIFIED_PAIR_BYTES: u64 = std::mem::size_of::<(u32, u32, f64)>() as u64;

/// Pairs a segment holds after the first spill: at most this many bytes,
/// and at least.
const MAX_SEGMENT: u64 = 8 << 20;
const MIN_SEGMENT: u64 = 64 << 10;

/// A verified pair: `(earlier, later, similarity)`.
pub type VerifiedPair = (u32, u32, f64);

/// The runs holding verified pairs, in order: each run's pairs come after
/// the previous run's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedRun {
    /// The runs, in order.
    pub runs: Vec<RunInfo>,
}

impl VerifiedRun {
    /// Pairs the runs hold.
    pub fn pairs(&self) -> u64 {
        self.runs.iter().map(|r| r.entries).sum()
    }

    /// Bytes the runs take.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.bytes).sum()
    }
}

/// Pass 2's verified pairs, sorted by the later record, then the earlier
/// one: held in memory, or on disk past their share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VerifiedPairs {
    /// Held whole.
    Memory(Vec<VerifiedPair>),
    /// In the run's temporary space.
    Disk(VerifiedRun),
}

impl Default for VerifiedPairs {
    fn default() -> Self {
        VerifiedPairs::Memory(Vec::new())
    }
}

impl VerifiedPairs {
    /// Pairs held.
    pub fn len(&self) -> u64 {
        match self {
            VerifiedPairs::Memory(pairs) => pairs.len() as u64,
            VerifiedPairs::Disk(run) => run.pairs(),
        }
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the runs they are in (0: in memory).
    pub fn bytes_on_disk(&self) -> u64 {
        match self {
            VerifiedPairs::Memory(_) => 0,
            VerifiedPairs::Disk(run) => run.bytes(),
        }
    }

    /// Every pair in order, from memory or read from the runs in `temp`
    /// front to back, one block in memory.
    pub fn reader<'a>(&'a self, temp: &'a TempSpace) -> PairsReader<'a> {
        match self {
            VerifiedPairs::Memory(pairs) => PairsReader::Memory(pairs.iter()),
            VerifiedPairs::Disk(run) => PairsReader::Disk {
                temp,
                runs: &run.runs,
                reader: None,
            },
        }
    }

    /// Every pair in one list: what the callers that still need them
    /// whole (union-find) take, read once from disk.
    pub fn to_vec(&self, temp: &TempSpace) -> Result<Vec<VerifiedPair>, RunError> {
        match self {
            VerifiedPairs::Memory(pairs) => Ok(pairs.clone()),
            VerifiedPairs::Disk(run) => {
                let mut all = Vec::with_capacity(usize::try_from(run.pairs()).unwrap_or(0));
                for pair in self.reader(temp) {
                    all.push(pair?);
                }
                Ok(all)
            }
        }
    }

    /// Removes the runs (nothing when in memory).
    pub fn remove(&self, temp: &TempSpace) -> io::Result<()> {
        match self {
            VerifiedPairs::Memory(_) => Ok(()),
            VerifiedPairs::Disk(run) => remove_runs(temp, &run.runs),
        }
    }
}

fn remove_runs(temp: &TempSpace, runs: &[RunInfo]) -> io::Result<()> {
    for info in runs {
        temp.remove(&info.name, info.bytes)?;
    }
    Ok(())
}

/// The pair of a run's entry.
fn pair_of(entry: Entry) -> Result<VerifiedPair, u64> {
    let later = u32::try_from(entry.key).map_err(|_| entry.key)?;
    Ok((entry.record, later, f64::from_bits(entry.print)))
}

/// The entry of a pair.
fn entry_of(&(earlier, later, similarity): &VerifiedPair) -> Entry {
    Entry {
        key: u64::from(later),
        record: earlier,
        print: similarity.to_bits(),
    }
}

/// Reads verified pairs in order ([`VerifiedPairs::reader`]).
#[derive(Debug)]
pub enum PairsReader<'a> {
    /// From memory.
    Memory(std::slice::Iter<'a, VerifiedPair>),
    /// From the runs, one after the other.
    Disk {
        /// Their folder.
        temp: &'a TempSpace,
        /// The runs not opened yet.
        runs: &'a [RunInfo],
        /// The run being read.
        reader: Option<RunReader>,
    },
}

impl PairsReader<'_> {
    fn next_from_disk(&mut self) -> Result<Option<VerifiedPair>, RunError> {
        let PairsReader::Disk { temp, runs, reader } = self else {
            unreachable!("called for runs only");
        };
        loop {
            if let Some(open) = reader {
                if let Some(entry) = open.next_entry()? {
                    return pair_of(entry).map(Some).map_err(|key| RunError::Failed {
                        kind: io::ErrorKind::InvalidData,
                        message: format!("a verified pair's later record {key} passes 2^32"),
                    });
                }
                *reader = None;
            }
            let Some((info, rest)) = runs.split_first() else {
                return Ok(None);
            };
            *runs = rest;
            let path = temp.path(&info.name).map_err(|cause| RunError::Io {
                path: temp.folder().join(&info.name),
                cause,
            })?;
            *reader = Some(RunReader::open(&path, Some(info))?);
        }
    }
}

impl Iterator for PairsReader<'_> {
    type Item = Result<VerifiedPair, RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            PairsReader::Memory(pairs) => pairs.next().map(|&p| Ok(p)),
            PairsReader::Disk { .. } => match self.next_from_disk() {
                Ok(pair) => pair.map(Ok),
                Err(e) => {
                    // Nothing more after an error.
                    if let PairsReader::Disk { runs, reader, .. } = self {
                        (*runs, *reader) = (&[], None);
                    }
                    Some(Err(e))
                }
            },
        }
    }
}

/// Pass 2's verified pairs as it makes them: in memory within `share`
/// bytes, past it written as runs in `temp`, a segment at a time.
#[derive(Debug)]
pub struct PairsSpill {
    temp: Option<Arc<TempSpace>>,
    /// How the runs' names start.
    prefix: &'static str,
    /// Whose pairs these are, for the log.
    what: &'static str,
    /// The pairs' share of the budget (`None`: no budget).
    share: Option<u64>,
    /// The pairs not written yet (all of them, until the first spill).
    held: Vec<VerifiedPair>,
    /// The runs written, in order.
    runs: Vec<RunInfo>,
    /// Most bytes `held` took.
    peak_bytes: u64,
}

impl Default for PairsSpill {
    fn default() -> Self {
        PairsSpill::new(None, None)
    }
}

impl PairsSpill {
    /// Pairs held in memory within `share` bytes of the budget (`None`:
    /// no budget), past it written to runs in `temp` (`None`: never).
    pub fn new(temp: Option<Arc<TempSpace>>, share: Option<u64>) -> Self {
        PairsSpill {
            temp,
            prefix: PREFIX,
            what: "dedup pass 2: the verified pairs",
            share,
            held: Vec::new(),
            runs: Vec::new(),
            peak_bytes: 0,
        }
    }

    /// The verified pairs across of a run against saved indexes
    /// (`(indexed record, record, similarity)`, made in the same order
    /// as the run's own), within `share` (`None`: no budget), past it
    /// written as the run's own are, in runs of their own name.
    pub fn across(temp: Arc<TempSpace>, share: Option<u64>) -> Self {
        PairsSpill {
            prefix: ACROSS_PREFIX,
            what: "dedup pass 2: the verified pairs across",
            ..PairsSpill::new(Some(temp), share)
        }
    }

    /// Pairs a segment holds once the pairs went to disk: a quarter of
    /// the share.
    fn segment(&self) -> usize {
        let bytes = self
            .share
            .map_or(MAX_SEGMENT, |s| (s / 4).clamp(MIN_SEGMENT, MAX_SEGMENT));
        (bytes / VERIFIED_PAIR_BYTES) as usize
    }

    /// Appends `pair` (after every earlier one); first writes those held
    /// as the next run when holding one more would pass the share (or,
    /// once on disk, fill the segment).
    pub fn push(&mut self, pair: VerifiedPair) -> Result<(), RunError> {
        if self.held.len() == self.held.capacity() && self.temp.is_some() {
            let full = if self.runs.is_empty() {
                let grown = (2 * self.held.capacity()).max(4) as u64 * VERIFIED_PAIR_BYTES;
                self.share.is_some_and(|share| grown > share)
            } else {
                true
            };
            if full && !self.held.is_empty() {
                self.write_held()?;
            }
        }
        self.held.push(pair);
        self.peak_bytes = self.peak_bytes.max(self.heap_bytes());
        Ok(())
    }

    /// Writes the pairs held as the next run, durable, and keeps a
    /// segment's room for the next ones.
    fn write_held(&mut self) -> Result<(), RunError> {
        let temp = Arc::clone(
            self.temp
                .as_ref()
                .expect("spills only with a temporary space"),
        );
        let seq = self.runs.len();
        let name = format!("{}{seq:06}{SUFFIX}", self.prefix);
        let path = temp.path(&name).map_err(RunError::io(temp.folder()))?;
        temp.ensure_room(self.held.len() as u64 * 16 + 64)
            .map_err(RunError::io(temp.folder()))?;
        if seq == 0 {
            log::info!(
                "{} pass their share of the memory budget; written to disk from here on ({})",
                self.what,
                temp.folder().display()
            );
        }
        let written = (|| {
            let mut writer = RunWriter::create(&path, true)?;
            for pair in &self.held {
                writer.push(entry_of(pair))?;
            }
            let info = writer.finish()?;
            sync(&path)?;
            Ok(info)
        })();
        // A run whose write failed is removed: the run ends with the
        // write's error, and no checkpoint names it.
        let info = written.inspect_err(|_| {
            if let Err(e) = temp.remove(&name, 0) {
                log::warn!(
                    "dedup pass 2: removing {name}: {e} (removed with the temporary folder)"
                );
            }
        })?;
        temp.wrote(info.bytes);
        self.runs.push(info);
        let segment = self.segment();
        if seq == 0 || self.held.capacity() < segment {
            // The segments that follow are a fraction of the share (and
            // whole: a list restored from a checkpoint is only as long
            // as it was).
            self.held = Vec::with_capacity(segment);
        } else {
            self.held.clear();
        }
        Ok(())
    }

    /// The pairs held in memory (after those of the runs).
    pub fn held(&self) -> &[VerifiedPair] {
        &self.held
    }

    /// The runs written so far, in order.
    pub fn runs(&self) -> &[RunInfo] {
        &self.runs
    }

    /// Pairs made so far.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|r| r.entries).sum::<u64>() + self.held.len() as u64
    }

    /// True when no pair was made.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the pairs held take.
    pub fn heap_bytes(&self) -> u64 {
        self.held.capacity() as u64 * VERIFIED_PAIR_BYTES
    }

    /// Most bytes the pairs held took.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes.max(self.heap_bytes())
    }

    /// Bytes of the runs written.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.bytes).sum()
    }

    /// Every pair made so far, in order: the runs', then those held.
    pub fn reader(&self) -> impl Iterator<Item = Result<VerifiedPair, RunError>> + '_ {
        let runs = match &self.temp {
            Some(temp) if !self.runs.is_empty() => Some(PairsReader::Disk {
                temp,
                runs: &self.runs,
                reader: None,
            }),
            _ => None,
        };
        runs.into_iter()
            .flatten()
            .chain(self.held.iter().map(|&p| Ok(p)))
    }

    /// Takes up what a checkpoint names: the runs written then (runs it
    /// does not name were written after it, and are removed) and the
    /// pairs held.
    pub fn restore(&mut self, runs: Vec<RunInfo>, held: Vec<VerifiedPair>) -> Result<(), RunError> {
        if let Some(temp) = &self.temp {
            if !runs.is_empty() || temp.folder().is_dir() {
                remove_unnamed(temp, PREFIX, SUFFIX, &runs)?;
            }
            temp.holds(runs.iter().map(|r| r.bytes).sum());
        } else if !runs.is_empty() {
            return Err(RunError::Failed {
                kind: io::ErrorKind::NotFound,
                message: "the checkpoint names runs of verified pairs, and this run has no \
                          temporary space"
                    .into(),
            });
        }
        if !runs.is_empty() {
            log::info!(
                "dedup pass 2: resumed with {} runs of verified pairs on disk",
                runs.len()
            );
        }
        self.runs = runs;
        self.held = held;
        self.peak_bytes = self.peak_bytes.max(self.heap_bytes());
        Ok(())
    }

    /// The pairs made: in memory if none was written, else every one on
    /// disk (those held written as the last run).
    pub fn finish(&mut self) -> Result<VerifiedPairs, RunError> {
        if self.runs.is_empty() {
            return Ok(VerifiedPairs::Memory(std::mem::take(&mut self.held)));
        }
        if !self.held.is_empty() {
            self.write_held()?;
        }
        self.held = Vec::new();
        Ok(VerifiedPairs::Disk(VerifiedRun {
            runs: std::mem::take(&mut self.runs),
        }))
    }

    /// Removes the runs written (a pass that failed before its result
    /// named them).
    pub fn remove_all(&mut self) -> io::Result<()> {
        if let Some(temp) = &self.temp {
            remove_runs(temp, &std::mem::take(&mut self.runs))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n: u32) -> Vec<VerifiedPair> {
        (1..=n)
            .flat_map(|later| {
                (0..later % 3)
                    .rev()
                    .map(move |d| (later - 1 - d, later, 0.5 + f64::from(d) / 7.0))
            })
            .collect()
    }

    #[test]
    fn pairs_past_their_share_go_to_disk_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let all = pairs(60_000);
        let mut spill = PairsSpill::new(Some(Arc::clone(&temp)), Some(64 << 10));
        for &p in &all {
            spill.push(p).unwrap();
            assert!(spill.heap_bytes() <= 64 << 10);
        }
        assert!(spill.runs().len() > 1);
        let so_far: Vec<_> = spill.reader().map(Result::unwrap).collect();
        assert_eq!(so_far, all);
        // A checkpoint named the runs so far: a later one is removed.
        let (named, held) = (spill.runs().to_vec(), spill.held().to_vec());
        let done = spill.finish().unwrap();
        assert!(matches!(done, VerifiedPairs::Disk(_)));
        assert_eq!(done.len(), all.len() as u64);
        assert_eq!(done.to_vec(&temp).unwrap(), all);
        let mut resumed = PairsSpill::new(Some(Arc::clone(&temp)), Some(64 << 10));
        resumed.restore(named.clone(), held).unwrap();
        let back: Vec<_> = resumed.reader().map(Result::unwrap).collect();
        assert_eq!(back, all);
        let files = std::fs::read_dir(temp.folder()).unwrap().count();
        assert_eq!(files, named.len());
        let done = resumed.finish().unwrap();
        done.remove(&temp).unwrap();
        assert_eq!(std::fs::read_dir(temp.folder()).unwrap().count(), 0);
    }

    #[test]
    fn a_run_resumed_without_a_budget_goes_on_writing_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut spill = PairsSpill::new(Some(Arc::clone(&temp)), Some(1));
        let all = pairs(30_000);
        let (first, rest) = all.split_at(10);
        for &p in first {
            spill.push(p).unwrap();
        }
        let named = spill.runs().to_vec();
        assert_eq!(named.len(), 1);
        let mut resumed = PairsSpill::new(Some(Arc::clone(&temp)), None);
        resumed.restore(named, spill.held().to_vec()).unwrap();
        for &p in rest {
            resumed.push(p).unwrap();
        }
        assert_eq!(
            resumed.runs().len(),
            2,
            "one run for the rest, not one a few pairs"
        );
        let done = resumed.finish().unwrap();
        assert_eq!(done.to_vec(&temp).unwrap(), all);
    }

    #[test]
    fn pairs_within_their_share_or_without_a_budget_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let all = pairs(10_000);
        for share in [None, Some(1 << 20)] {
            let mut spill = PairsSpill::new(Some(Arc::clone(&temp)), share);
            for &p in &all {
                spill.push(p).unwrap();
            }
            assert_eq!(spill.finish().unwrap(), VerifiedPairs::Memory(all.clone()));
        }
        assert!(!temp.folder().exists());
    }

    #[test]
    fn a_damaged_run_of_pairs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut spill = PairsSpill::new(Some(Arc::clone(&temp)), Some(1));
        for p in pairs(20_000) {
            spill.push(p).unwrap();
        }
        let done = spill.finish().unwrap();
        let VerifiedPairs::Disk(run) = &done else {
            panic!("on disk");
        };
        let path = temp.path(&run.runs[0].name).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        assert!(done.to_vec(&temp).is_err());
        assert!(done.reader(&temp).any(|p| p.is_err()));
    }
}
