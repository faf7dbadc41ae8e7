//! The candidate pairs across of a run against saved indexes (an indexed
//! record and one of this run's sharing a bucket) as pass 1 hands them
//! to the verification of the pairs across
//! ([`crate::jobs::dedup::index::hooks::Joiner`]): in memory while they
//! fit, beside this run's own, pass 2's share of the candidate pairs
//! ([`crate::jobs::dedup::budget::Shares::verify_pairs`]), else written
//! as one sorted run as pass 1's merge of its pair runs gives them
//! ([`super::pairs::PairSpill::finish_across`]): never held whole.
//!
//! The run (`dedup-pairs-across.sorted`, no fingerprints) is keyed by this
//! run's record, its entry's record the indexed one: the order pass 2
//! reads the records in, so it is read front to back, once to find which
//! indexed records' sets are wanted and which records to read, once by
//! the sets' eviction when they pass their share ([`Pending`]), and once
//! as pass 2 verifies them ([`CrossReader`]). Its name starts as every
//! pass 1 run's ([`super::writer::PREFIX`]); it is removed once pass 2 has
//! read it and the run has committed its outputs (the index run's state
//! names it: a resumed run may read it again), and with the temporary
//! folder on every other exit path.

use std::io;

use drainpipe_actors::TempSpace;

use super::held::Pending;
use super::pair_files::{pair_of, CandidatePairs, PairReader, PAIR_BYTES_IN_MEMORY};
use super::runs::{Entry, RunError, RunInfo, RunWriter};
use super::writer::{PREFIX, SUFFIX};

/// The name of the run the pairs across go to, past their share.
pub const ACROSS_NAME: &str = "pairs-across";

/// `(indexed record, record)`, sorted by the record, then the indexed
/// record, numbered as the run numbers them (the indexed record in the
/// joined numbering, this run's record from 0).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CrossPairs {
    /// Held whole.
    Memory(Vec<(u32, u32)>),
    /// In one run in the temporary space.
    Disk(RunInfo),
}

impl Default for CrossPairs {
    fn default() -> Self {
        CrossPairs::Memory(Vec::new())
    }
}

impl CrossPairs {
    /// How many pairs.
    pub fn len(&self) -> u64 {
        match self {
            CrossPairs::Memory(pairs) => pairs.len() as u64,
            CrossPairs::Disk(info) => info.entries,
        }
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the run they were written to (0: in memory).
    pub fn bytes_spilled(&self) -> u64 {
        match self {
            CrossPairs::Memory(_) => 0,
            CrossPairs::Disk(info) => info.bytes,
        }
    }

    /// Calls `f` with every pair in order, read front to back.
    pub fn each(
        &self,
        temp: &TempSpace,
        f: &mut dyn FnMut((u32, u32)) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        match self {
            CrossPairs::Memory(pairs) => pairs.iter().try_for_each(|&p| f(p)),
            CrossPairs::Disk(info) => {
                let mut reader = PairReader::open(temp, info)?;
                while let Some(entry) = reader.next_entry()? {
                    f(pair_of(entry))?;
                }
                Ok(())
            }
        }
    }

    /// The pairs as [`super::held::HeldSpill::evict`] reads them.
    pub fn pending<'a>(&'a self, temp: &'a TempSpace) -> impl Pending + 'a {
        CrossPending { temp, pairs: self }
    }

    /// A reader of the pairs in order, taking them (from memory, or the
    /// run opened).
    pub fn reader(self, temp: &TempSpace) -> Result<CrossReader, RunError> {
        Ok(match self {
            CrossPairs::Memory(pairs) => CrossReader::Memory(pairs.into_iter().peekable()),
            CrossPairs::Disk(info) => CrossReader::Disk(PairReader::open(temp, &info)?),
        })
    }

    /// Removes their run, if they are on disk.
    pub fn remove(&self, temp: &TempSpace) -> io::Result<()> {
        match self {
            CrossPairs::Memory(_) => Ok(()),
            CrossPairs::Disk(info) => temp.remove(&info.name, info.bytes),
        }
    }
}

/// Takes the pairs across out of `pairs` (joined numbering, sorted by
/// `(later, earlier)`): those whose earlier record is one of the `offset`
/// indexed ones, as `(indexed, record)` with the record numbered from 0,
/// in the same order; what is left, this run's own, is renumbered from 0
/// in place. Nothing taken when `offset` is 0.
pub fn split(pairs: &mut Vec<(u32, u32)>, offset: u32) -> Vec<(u32, u32)> {
    if offset == 0 {
        return Vec::new();
    }
    let (mut cross, mut kept) = (Vec::new(), 0);
    for at in 0..pairs.len() {
        let (a, b) = pairs[at];
        if a < offset {
            cross.push((a, b - offset));
        } else {
            pairs[kept] = (a - offset, b - offset);
            kept += 1;
        }
    }
    pairs.truncate(kept);
    // Both are held through pass 2: not at the room of the joined list
    // (the run's own are often a few of them), nor a doubling's.
    pairs.shrink_to_fit();
    cross.shrink_to_fit();
    cross
}

/// True when `count` pairs across fit pass 2's share of the candidate
/// pairs beside `own` pairs of the run held in memory (`None`: no
/// budget), each counted as much as one of the run's
/// ([`CandidatePairs::fit`]).
pub fn fit(count: u64, own: u64, max_memory: Option<u64>) -> bool {
    if let (Some(share), Some(_)) = (lowered_share(), max_memory) {
        return count.saturating_mul(PAIR_BYTES_IN_MEMORY) <= share;
    }
    count == 0 || CandidatePairs::fit(count.saturating_add(own), max_memory)
}

/// Under a budget, the shares of the pairs across (candidate and
/// verified), lowered by tests (feature `failpoints`):
/// `dedup::across_share=return(BYTES)`, so that a corpus of a few
/// thousand records writes them to disk under the least budget a run
/// accepts. `None` otherwise.
pub fn lowered_share() -> Option<u64> {
    #[cfg(feature = "failpoints")]
    if let Some(bytes) = fail::eval("dedup::across_share", |bytes| {
        bytes.and_then(|b| b.parse::<u64>().ok())
    })
    .flatten()
    {
        return Some(bytes);
    }
    None
}

/// `pairs` across, written to their run in `temp` when they do not
/// [`fit`] beside `own` pairs held.
pub fn handed(
    pairs: Vec<(u32, u32)>,
    own: u64,
    temp: &TempSpace,
    max_memory: Option<u64>,
) -> Result<CrossPairs, RunError> {
    if fit(pairs.len() as u64, own, max_memory) {
        return Ok(CrossPairs::Memory(pairs));
    }
    let mut writer = CrossWriter::create(temp, pairs.len() as u64)?;
    for pair in pairs {
        writer.push(pair)?;
    }
    writer.finish(temp)
}

/// [`CrossPairs`] as pending pairs `(earlier, later)` sorted by `(later,
/// earlier)`: the indexed record is the earlier one.
struct CrossPending<'a> {
    temp: &'a TempSpace,
    pairs: &'a CrossPairs,
}

impl Pending for CrossPending<'_> {
    fn each(&self, f: &mut dyn FnMut((u32, u32)) -> Result<(), RunError>) -> Result<(), RunError> {
        self.pairs.each(self.temp, f)
    }
}

/// The pairs across in order, one at a time.
#[derive(Debug)]
pub enum CrossReader {
    /// From memory.
    Memory(std::iter::Peekable<std::vec::IntoIter<(u32, u32)>>),
    /// From their run, a block at a time.
    Disk(PairReader),
}

impl Default for CrossReader {
    fn default() -> Self {
        CrossReader::Memory(Vec::new().into_iter().peekable())
    }
}

impl CrossReader {
    /// The next pair, left in place; `None` at the end.
    pub fn peek(&mut self) -> Result<Option<(u32, u32)>, RunError> {
        match self {
            CrossReader::Memory(pairs) => Ok(pairs.peek().copied()),
            CrossReader::Disk(reader) => Ok(reader.peek()?.map(pair_of)),
        }
    }

    /// Passes the pair [`CrossReader::peek`] gave.
    pub fn pass(&mut self) {
        match self {
            CrossReader::Memory(pairs) => {
                pairs.next();
            }
            CrossReader::Disk(reader) => reader.pass(),
        }
    }
}

/// Writes the pairs across, in order, to their run in `temp`.
#[derive(Debug)]
pub struct CrossWriter {
    writer: RunWriter,
}

impl CrossWriter {
    /// The run for `count` pairs, in `temp` (refused when the disk has no
    /// room for them).
    pub fn create(temp: &TempSpace, count: u64) -> Result<Self, RunError> {
        let folder = || temp.folder().to_owned();
        // Two varints and a block's framing an entry at most.
        temp.ensure_room(count.saturating_mul(11) + 64)
            .map_err(|cause| RunError::Io {
                path: folder(),
                cause,
            })?;
        log::info!(
            "dedup pass 1: the {count} candidate pairs across pass their share of pass 2's \
             memory budget; writing them to a sorted run in {}",
            temp.folder().display()
        );
        let name = format!("{PREFIX}{ACROSS_NAME}{SUFFIX}");
        let path = temp.path(&name).map_err(|cause| RunError::Io {
            path: folder(),
            cause,
        })?;
        Ok(CrossWriter {
            writer: RunWriter::create(&path, false)?,
        })
    }

    /// Appends `(indexed, record)`, after every earlier pair.
    pub fn push(&mut self, (indexed, record): (u32, u32)) -> Result<(), RunError> {
        self.writer.push(Entry {
            key: u64::from(record),
            record: indexed,
            print: 0,
        })
    }

    /// Ends the run; counts it as written in `temp`.
    pub fn finish(self, temp: &TempSpace) -> Result<CrossPairs, RunError> {
        let info = self.writer.finish()?;
        temp.wrote(info.bytes);
        Ok(CrossPairs::Disk(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_across_written_to_their_run_are_read_back_in_order_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        let pairs: Vec<(u32, u32)> = (0..5000u32)
            .flat_map(|record| (0..record % 3).map(move |k| (k * 1000 + record % 997, record)))
            .collect();
        let mut writer = CrossWriter::create(&temp, pairs.len() as u64).unwrap();
        for &p in &pairs {
            writer.push(p).unwrap();
        }
        let on_disk = writer.finish(&temp).unwrap();
        assert_eq!(on_disk.len(), pairs.len() as u64);
        assert!(on_disk.bytes_spilled() > 0);
        for across in [CrossPairs::Memory(pairs.clone()), on_disk.clone()] {
            let mut seen = Vec::new();
            across
                .pending(&temp)
                .each(&mut |p| {
                    seen.push(p);
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, pairs);
            let mut reader = across.clone().reader(&temp).unwrap();
            let mut read = Vec::new();
            while let Some(p) = reader.peek().unwrap() {
                assert_eq!(reader.peek().unwrap(), Some(p), "a peek leaves it");
                reader.pass();
                read.push(p);
            }
            assert_eq!(read, pairs);
        }
        on_disk.remove(&temp).unwrap();
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0, "the run is removed");
    }
}
