//! Pass 2's held shingle sets under a memory budget: a sort-based join
//! instead of a table that grows with the corpus.
//!
//! Pass 2 verifies a candidate pair `(a, b)` when its later record `b`
//! arrives, so it holds `a`'s shingle set from `a`'s arrival until its
//! last partner's. When the held sets pass their share of the budget,
//! [`HeldSpill::evict`] writes, for every held `a` and every later partner
//! `b` still to come, an entry `(b, a, set(a))`, and the sets are freed.
//! The pending pairs are sorted by `(later, earlier)`, so scanning them
//! from the pass's cursor yields the entries already in the run's order:
//! no sort. As the Integrator advances in input order, a k-way merge of
//! the runs ([`HeldSpill::take_for`]) hands it, when `b` arrives, the sets
//! of `b`'s earlier partners that went to disk: each run is read once,
//! front to back; nothing is looked up by record on disk.
//!
//! A set is written once per pending partner: a record with many later
//! partners costs as many copies, the price of reading every run
//! sequentially.
//!
//! A run against indexes holds the indexed records' sets for its pairs
//! across the same way ([`HeldSpill::indexed`]): read before pass 2 in
//! indexed record order, each pair across a pending pair, merged back as
//! pass 2 reads the records.
//!
//! The runs being merged stay few: each holds a descriptor and two blocks
//! of buffers, which count against the share, so without a bound every
//! eviction would leave less room for the held sets, until each record
//! made a run of its own (and the process ran out of descriptors). When
//! the runs would pass [`fan_in`] (half the share in buffers, and the
//! descriptors [`super::levels::descriptor_room`] leaves), their entries
//! not yet handed back are merged into one run first
//! ([`HeldSpill::evict`]). The runs merged stay on disk until the pass's
//! result is written, as a checkpoint taken before may name them; the
//! merged run has a name of its own, which a resumed pass removes when
//! its checkpoint does not name it.
//!
//! # Format (version [`HELD_VERSION`])
//!
//! The framing of [`super::runs::blocks`] (a 16-byte header with magic
//! `DPHELDST` and no flags, blocks of about [`BLOCK_BYTES`] with their
//! length, entry count and CRC-32, an end with the total entries), with
//! entries in strictly
//! increasing `(later, earlier)` order, each: the later record as its gap
//! from the block's previous one, the earlier record and the set's length
//! as LEB128 integers, then the set's hashes as fixed `u64`s (random
//! 64-bit hashes do not shrink as gaps).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::leftovers::remove_unnamed;
use super::runs::blocks::{put_varint, BlockReader, BlockWriter, Format};
use super::runs::{RunError, RunInfo, BLOCK_BYTES};

/// The format's version; bump on any change of it.
pub const HELD_VERSION: u32 = 1;

const FORMAT: Format = Format {
    magic: b"DPHELDST",
    version: HELD_VERSION,
    flags: 0,
    // One entry can pass a block by a whole set (a document of millions
    // of words).
    max_payload: 256 << 20,
    what: "a run of held sets",
};

/// Names of the runs pass 2's held sets spill to start and end so; a
/// resumed pass 2 removes those its checkpoint does not name.
const PREFIX: &str = "dedup-verify-held-";

/// Names of the runs of the indexed records' sets a run against an index
/// verifies its pairs across with ([`HeldSpill::indexed`]): apart from
/// pass 2's own, as both are merged beside each other.
const INDEXED_PREFIX: &str = "dedup-index-sets-";
const SUFFIX: &str = ".sorted";

/// Bytes the reader and writer buffers of one run take.
const RUN_BUFFER_BYTES: u64 = 2 * BLOCK_BYTES as u64;

/// The most runs merged at once for held sets of `share` bytes: their
/// buffers within half of it, within the descriptors the process may
/// open, and never below 2.
pub fn fan_in(share: u64) -> usize {
    let by_bytes = share / 2 / RUN_BUFFER_BYTES;
    let by_descriptors = super::levels::descriptor_room();
    usize::try_from(by_bytes.min(by_descriptors))
        .unwrap_or(usize::MAX)
        .max(2)
}

/// Writes one run of held sets.
#[derive(Debug)]
pub struct HeldWriter {
    blocks: BlockWriter,
    previous_later: u32,
    last: Option<(u32, u32)>,
}

impl HeldWriter {
    /// Creates the file at `path` and writes a run into it.
    pub fn create(path: &Path) -> Result<Self, RunError> {
        let file = fs::File::create(path).map_err(RunError::io(path))?;
        Ok(HeldWriter {
            blocks: BlockWriter::new(file, path.to_owned(), &FORMAT, 0)?,
            previous_later: 0,
            last: None,
        })
    }

    /// Appends `earlier`'s `set` for its partner `later`, after the
    /// previous entry in `(later, earlier)` order.
    pub fn push(&mut self, later: u32, earlier: u32, set: &[u64]) -> Result<(), RunError> {
        if self.last.is_some_and(|last| last >= (later, earlier)) {
            return Err(RunError::damaged(
                self.blocks.path(),
                format!("entry ({later}, {earlier}) written out of order (a bug)"),
            ));
        }
        self.last = Some((later, earlier));
        let previous = &mut self.previous_later;
        self.blocks.push(|payload, first| {
            let from = if first { 0 } else { *previous };
            put_varint(payload, u64::from(later - from));
            put_varint(payload, u64::from(earlier));
            put_varint(payload, set.len() as u64);
            for &h in set {
                payload.extend_from_slice(&h.to_le_bytes());
            }
            *previous = later;
        })
    }

    /// Writes the last block and the end, and makes the file durable (a
    /// checkpoint may name it next).
    pub fn finish(self) -> Result<RunInfo, RunError> {
        self.blocks.finish(true)
    }
}

/// One entry of a run of held sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEntry {
    /// The partner whose arrival needs the set.
    pub later: u32,
    /// The record whose set it is.
    pub earlier: u32,
    /// Its shingle set.
    pub set: Vec<u64>,
}

/// Streams a run of held sets back, one block at a time, checking every
/// block's checksum, the entries' order and (given the writer's
/// [`RunInfo`]) the file's length and checksum.
#[derive(Debug)]
pub struct HeldReader {
    blocks: BlockReader,
    previous_later: u32,
    last: Option<(u32, u32)>,
}

impl HeldReader {
    /// Opens the run at `path`; with `expected`, a file of another length
    /// is refused here, one of another checksum at its end.
    pub fn open(path: &Path, expected: Option<&RunInfo>) -> Result<Self, RunError> {
        let file = fs::File::open(path).map_err(RunError::io(path))?;
        let (blocks, _) = BlockReader::new(file, path.to_owned(), &FORMAT, expected)?;
        Ok(HeldReader {
            blocks,
            previous_later: 0,
            last: None,
        })
    }

    fn small(&mut self, what: &str) -> Result<u32, RunError> {
        let value = self.blocks.varint()?;
        u32::try_from(value).map_err(|_| self.blocks.damaged(format!("{what} past 2^32")))
    }

    /// The next entry, `None` at the run's end (once its end and checks
    /// were read).
    pub fn next_entry(&mut self) -> Result<Option<HeldEntry>, RunError> {
        let Some(first) = self.blocks.next_entry()? else {
            return Ok(None);
        };
        let from = if first { 0 } else { self.previous_later };
        let later = from
            .checked_add(self.small("a record")?)
            .ok_or_else(|| self.blocks.damaged("a record past 2^32"))?;
        let earlier = self.small("a record")?;
        let len = self.small("a set's length")? as usize;
        let set = self
            .blocks
            .take(len.saturating_mul(8))?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        if self.last.is_some_and(|last| last >= (later, earlier)) {
            return Err(self.blocks.damaged("entries out of order"));
        }
        (self.last, self.previous_later) = (Some((later, earlier)), later);
        Ok(Some(HeldEntry {
            later,
            earlier,
            set,
        }))
    }
}

/// The candidate pairs whose later record has not arrived, as `(earlier,
/// later)` sorted by `(later, earlier)`: what [`HeldSpill::evict`] reads
/// (twice: to count, then to write), from memory or from disk.
pub trait Pending {
    /// Calls `f` with each pair in order; its first error ends the scan.
    fn each(&self, f: &mut dyn FnMut((u32, u32)) -> Result<(), RunError>) -> Result<(), RunError>;
}

impl Pending for [(u32, u32)] {
    fn each(&self, f: &mut dyn FnMut((u32, u32)) -> Result<(), RunError>) -> Result<(), RunError> {
        self.iter().try_for_each(|&p| f(p))
    }
}

/// The held sets of pass 2 that went to disk: the runs written (what a
/// checkpoint names), and the merge that hands each set back when its
/// later partner arrives.
#[derive(Debug)]
pub struct HeldSpill {
    temp: Arc<TempSpace>,
    /// How the runs' names start.
    prefix: &'static str,
    /// Whose sets these are, for the log.
    what: &'static str,
    /// Bytes the held sets may take in memory (`u64::MAX`: no budget).
    share: u64,
    /// The runs being merged (what a checkpoint names).
    runs: Vec<RunInfo>,
    /// Runs merged into a later one: kept until the pass's result is
    /// written, as an earlier checkpoint may name them.
    aside: Vec<RunInfo>,
    /// The number in the next run's name.
    next: usize,
    /// Bytes of every run written, the merged ones included.
    written: u64,
    /// Runs written, the merged ones included.
    written_runs: usize,
    readers: Vec<HeldReader>,
    /// Each reader's next entry, by position in `readers`.
    heads: Vec<Option<HeldEntry>>,
    /// `(later, earlier, reader)` of every head, smallest first.
    heap: BinaryHeap<Reverse<(u32, u32, usize)>>,
}

impl HeldSpill {
    /// Spills to `temp` when the held sets pass `share` bytes (`None`: no
    /// budget; the runs a checkpoint names are still merged).
    pub fn new(temp: Arc<TempSpace>, share: Option<u64>) -> Self {
        HeldSpill {
            temp,
            prefix: PREFIX,
            what: "dedup pass 2: the held shingle sets",
            share: share.unwrap_or(u64::MAX),
            runs: Vec::new(),
            aside: Vec::new(),
            next: 0,
            written: 0,
            written_runs: 0,
            readers: Vec::new(),
            heads: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// The indexed records' sets a run against an index reads before pass
    /// 2 ([`crate::jobs::dedup::index::hooks::Joiner`]), spilled to `temp`
    /// past `share` bytes (`None`: no budget) as pass 2's held sets are,
    /// in runs of their own name.
    pub fn indexed(temp: Arc<TempSpace>, share: Option<u64>) -> Self {
        HeldSpill {
            prefix: INDEXED_PREFIX,
            what: "dedup index: the indexed records' shingle sets",
            ..HeldSpill::new(temp, share)
        }
    }

    /// True when `held` bytes of sets, beside `merge` bytes of the
    /// merge's buffers, pass their share and are a quarter of it at least.
    /// [`fan_in`] never goes below 2 runs, so in a share smaller than two
    /// runs' buffers the buffers alone fill it: evicting then at every set
    /// held made a run a record, each merged again with all the others, and
    /// the bytes written grew with the square of the records (48 GB for
    /// 16,000 records under a 1 MiB budget).
    pub fn must_evict(&self, held: u64, merge: u64) -> bool {
        held + merge > self.share && held >= self.share / 4
    }

    /// The runs being merged, in order: what a checkpoint names.
    pub fn runs(&self) -> &[RunInfo] {
        &self.runs
    }

    /// Bytes of every run written, those merged into others included.
    pub fn bytes(&self) -> u64 {
        self.written
    }

    /// The runs written, those merged into others included (those a
    /// resumed pass took up count as written).
    pub fn runs_written(&self) -> usize {
        self.written_runs
    }

    /// Bytes of memory the merge's buffers hold.
    pub fn heap_bytes(&self) -> u64 {
        let heads: usize = self.heads.iter().flatten().map(|e| e.set.len() * 8).sum();
        self.readers.len() as u64 * RUN_BUFFER_BYTES + heads as u64
    }

    fn path(&self, name: &str) -> Result<PathBuf, RunError> {
        self.temp.path(name).map_err(|cause| RunError::Io {
            path: self.temp.folder().join(name),
            cause,
        })
    }

    /// Writes every `held` set to a run, each once per partner of `pending`
    /// ([`Pending`]), and empties `held`.
    pub fn evict(
        &mut self,
        held: &mut HashMap<u32, Vec<u64>>,
        pending: &(impl Pending + ?Sized),
    ) -> Result<(), RunError> {
        if self.readers.len() >= fan_in(self.share) {
            self.merge_runs()?;
        }
        let seq = self.next;
        self.next += 1;
        let name = format!("{}{seq:06}{SUFFIX}", self.prefix);
        let path = self.path(&name)?;
        // A generous estimate: every pending pair's earlier set at the
        // largest size held.
        let largest = held.values().map(Vec::len).max().unwrap_or(0) as u64;
        let mut pairs = 0u64;
        pending.each(&mut |(a, _)| {
            pairs += u64::from(held.contains_key(&a));
            Ok(())
        })?;
        self.temp
            .ensure_room(pairs * (largest * 8 + 15) + 64)
            .map_err(|cause| RunError::Io {
                path: self.temp.folder().to_owned(),
                cause,
            })?;
        if seq == 0 {
            log::info!(
                "{} pass their share of the memory budget; writing them to sorted runs in {}",
                self.what,
                self.temp.folder().display()
            );
        }
        let written = (|| {
            let mut writer = HeldWriter::create(&path)?;
            pending.each(&mut |(a, b)| match held.get(&a) {
                Some(set) => writer.push(b, a, set),
                None => Ok(()),
            })?;
            writer.finish()
        })();
        let info = written.inspect_err(|_| self.discard(&name))?;
        self.temp.wrote(info.bytes);
        self.written += info.bytes;
        self.written_runs += 1;
        held.clear();
        held.shrink_to_fit();
        let reader = HeldReader::open(&path, Some(&info))?;
        self.runs.push(info);
        self.add(reader)
    }

    /// Merges the entries of every run not yet handed back into one run,
    /// which takes their place; the runs merged are set aside.
    fn merge_runs(&mut self) -> Result<(), RunError> {
        let seq = self.next;
        self.next += 1;
        let name = format!("{}{seq:06}{SUFFIX}", self.prefix);
        let path = self.path(&name)?;
        let most: u64 = self.runs.iter().map(|r| r.bytes).sum();
        self.temp.ensure_room(most).map_err(|cause| RunError::Io {
            path: self.temp.folder().to_owned(),
            cause,
        })?;
        let info = self
            .merge_into(&path)
            .inspect_err(|_| self.discard(&name))?;
        self.temp.wrote(info.bytes);
        self.written += info.bytes;
        self.written_runs += 1;
        (self.readers, self.heads) = (Vec::new(), Vec::new());
        self.aside.append(&mut self.runs);
        let reader = HeldReader::open(&path, Some(&info))?;
        self.runs.push(info);
        self.add(reader)
    }

    /// Writes the merge of the runs' readers to a run at `path`.
    fn merge_into(&mut self, path: &Path) -> Result<RunInfo, RunError> {
        let mut writer = HeldWriter::create(path)?;
        while let Some(Reverse((later, earlier, at))) = self.heap.pop() {
            let next = self.readers[at].next_entry()?;
            if let Some(e) = &next {
                self.heap.push(Reverse((e.later, e.earlier, at)));
            }
            let entry = std::mem::replace(&mut self.heads[at], next)
                .expect("each entry of the heap is its reader's head");
            writer.push(later, earlier, &entry.set)?;
        }
        writer.finish()
    }

    /// Removes the run `name` whose write failed (never counted, never
    /// named by a checkpoint): the run ends with the write's error.
    fn discard(&self, name: &str) {
        if let Err(e) = self.temp.remove(name, 0) {
            log::warn!("dedup pass 2: removing {name}: {e} (removed with the temporary folder)");
        }
    }

    fn add(&mut self, mut reader: HeldReader) -> Result<(), RunError> {
        let at = self.readers.len();
        let head = reader.next_entry()?;
        if let Some(e) = &head {
            self.heap.push(Reverse((e.later, e.earlier, at)));
        }
        self.readers.push(reader);
        self.heads.push(head);
        Ok(())
    }

    /// The spilled sets of `later`'s earlier partners, as `(earlier,
    /// set)` sorted by the earlier record. Entries for records before
    /// `later` (which never arrived, or arrived before a checkpoint the
    /// pass resumed from) are passed over. `later` must not decrease from
    /// one call to the next.
    pub fn take_for(&mut self, later: u32) -> Result<Vec<(u32, Vec<u64>)>, RunError> {
        let mut found = Vec::new();
        while let Some(&Reverse((b, a, at))) = self.heap.peek() {
            if b > later {
                break;
            }
            self.heap.pop();
            let next = self.readers[at].next_entry()?;
            if let Some(e) = &next {
                self.heap.push(Reverse((e.later, e.earlier, at)));
            }
            // An entry of the heap is its reader's head: an empty set here
            // would check the pair against nothing.
            let entry = std::mem::replace(&mut self.heads[at], next)
                .expect("each entry of the heap is its reader's head");
            if b == later {
                found.push((a, entry.set));
            }
        }
        Ok(found)
    }

    /// Takes up the runs a checkpoint names, each from its start (entries
    /// before the pass's next record are passed over by
    /// [`HeldSpill::take_for`]); runs of this module the checkpoint does
    /// not name were written after it, and are removed.
    pub fn restore(&mut self, runs: Vec<RunInfo>) -> Result<(), RunError> {
        remove_unnamed(&self.temp, self.prefix, SUFFIX, &runs)?;
        (self.readers, self.heads, self.heap) = (Vec::new(), Vec::new(), BinaryHeap::new());
        // Past every name taken, so that a run written next replaces none.
        self.next = runs
            .iter()
            .filter_map(|r| {
                r.name
                    .strip_prefix(self.prefix)?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()
            })
            .map(|seq: usize| seq + 1)
            .max()
            .unwrap_or(0);
        for info in &runs {
            let reader = HeldReader::open(&self.path(&info.name)?, Some(info))?;
            self.add(reader)?;
        }
        self.written = runs.iter().map(|r| r.bytes).sum();
        self.written_runs = runs.len();
        (self.runs, self.aside) = (runs, Vec::new());
        Ok(())
    }

    /// Removes every run written (the pass's result is safe elsewhere).
    pub fn remove_all(&mut self) -> io::Result<()> {
        (self.readers, self.heads, self.heap) = (Vec::new(), Vec::new(), BinaryHeap::new());
        let aside = std::mem::take(&mut self.aside);
        for info in std::mem::take(&mut self.runs).into_iter().chain(aside) {
            self.temp.remove(&info.name, info.bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::runs::blocks::{BLOCK_HEAD, HEADER_LEN};
    use super::*;

    #[test]
    fn held_sets_in_a_share_the_buffers_fill_are_evicted_a_quarter_of_it_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let share = 3 * RUN_BUFFER_BYTES / 2;
        let spill = HeldSpill::new(Arc::new(TempSpace::new(dir.path())), Some(share));
        let buffers = fan_in(share) as u64 * RUN_BUFFER_BYTES;
        assert!(
            buffers > share,
            "the buffers of {} runs fill the share",
            fan_in(share)
        );
        assert!(
            !spill.must_evict(1, buffers),
            "one set beside full buffers is held"
        );
        assert!(!spill.must_evict(share / 4 - 1, buffers));
        assert!(spill.must_evict(share / 4, buffers));
        // In a share with room for the buffers, as before: past the share.
        let roomy = HeldSpill::new(
            Arc::new(TempSpace::new(dir.path())),
            Some(64 * RUN_BUFFER_BYTES),
        );
        assert!(!roomy.must_evict(32 * RUN_BUFFER_BYTES, 32 * RUN_BUFFER_BYTES));
        assert!(roomy.must_evict(32 * RUN_BUFFER_BYTES + 1, 32 * RUN_BUFFER_BYTES));
    }

    /// Candidate pairs `(earlier, later)` sorted by `(later, earlier)`,
    /// and a set for every record.
    fn sorted(mut pairs: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        pairs.sort_unstable_by_key(|&(a, b)| (b, a));
        pairs.dedup();
        pairs
    }

    /// Records 50 and 51 are twins: the same set.
    fn set_of(record: u32) -> Vec<u64> {
        let record = if record == 51 { 50 } else { record };
        (0..(record % 5 + 1) as u64)
            .map(|i| u64::from(record).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i)
            .collect()
    }

    /// What the join hands back for each pair `(a, b)` when records
    /// arrive in order and every held set goes to disk after each
    /// `evict_every`-th arrival: `(b, a, set of a)` in pair order.
    fn joined(pairs: &[(u32, u32)], records: u32, evict_every: u32) -> Vec<(u32, u32, Vec<u64>)> {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut spill = HeldSpill::new(Arc::clone(&temp), Some(0));
        let mut held: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut cursor = 0;
        let mut out = Vec::new();
        for x in 0..records {
            let from_disk = spill.take_for(x).unwrap();
            while cursor < pairs.len() && pairs[cursor].1 == x {
                let y = pairs[cursor].0;
                let set = held.get(&y).cloned().or_else(|| {
                    from_disk
                        .iter()
                        .find(|(a, _)| *a == y)
                        .map(|(_, s)| s.clone())
                });
                out.push((x, y, set.expect("every earlier set reaches its partner")));
                cursor += 1;
            }
            if pairs[cursor..].iter().any(|&(a, _)| a == x) {
                held.insert(x, set_of(x));
            }
            if x % evict_every == evict_every - 1 && !held.is_empty() {
                spill.evict(&mut held, &pairs[cursor..]).unwrap();
                assert!(spill.readers.len() <= fan_in(0), "{}", spill.readers.len());
            }
        }
        assert!(spill.bytes() > 0);
        let names: Vec<String> = spill.runs().iter().map(|r| r.name.clone()).collect();
        spill.remove_all().unwrap();
        assert!(names.iter().all(|n| !temp.path(n).unwrap().exists()));
        out
    }

    fn expected(pairs: &[(u32, u32)]) -> Vec<(u32, u32, Vec<u64>)> {
        pairs.iter().map(|&(a, b)| (b, a, set_of(a))).collect()
    }

    #[test]
    fn the_join_hands_each_earlier_set_to_every_later_partner() {
        // A record whose partner is far off (0 and 9,000), one with many
        // partners (7 with 200 later records), twins (identical sets, 50
        // and 51, both paired with 60 and 61), and close pairs.
        let mut pairs = vec![(0, 9_000), (50, 51), (50, 60), (51, 60), (50, 61), (51, 61)];
        pairs.extend((8..208).map(|b| (7, b)));
        pairs.extend((300..2_000).step_by(3).map(|a| (a, a + 2)));
        let pairs = sorted(pairs);
        for evict_every in [1, 2, 17, 1_000] {
            assert_eq!(
                joined(&pairs, 9_001, evict_every),
                expected(&pairs),
                "evicting every {evict_every} records"
            );
        }
    }

    #[test]
    fn a_run_of_held_sets_round_trips_over_many_blocks_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dedup-verify-held-000000.sorted");
        let mut writer = HeldWriter::create(&path).unwrap();
        let entries: Vec<HeldEntry> = (0..20_000u32)
            .map(|i| HeldEntry {
                later: i / 2 + 1,
                earlier: i % 2 + (i / 2) % 7,
                set: set_of(i),
            })
            .collect();
        let mut list = entries.clone();
        list.sort_by_key(|e| (e.later, e.earlier));
        list.dedup_by_key(|e| (e.later, e.earlier));
        for e in &list {
            writer.push(e.later, e.earlier, &e.set).unwrap();
        }
        assert!(writer.push(0, 0, &[]).is_err(), "out of order");
        let info = writer.finish().unwrap();
        assert!(info.bytes > 3 * BLOCK_BYTES as u64);
        let mut reader = HeldReader::open(&path, Some(&info)).unwrap();
        let mut back = Vec::new();
        while let Some(e) = reader.next_entry().unwrap() {
            back.push(e);
        }
        assert_eq!(back, list);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + BLOCK_HEAD + 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = HeldReader::open(&path, Some(&info)).unwrap();
        let error = loop {
            match reader.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a damaged run read to its end"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(
            error.contains("checksum") && error.contains("dedup-verify-held-000000"),
            "{error}"
        );
    }

    #[test]
    fn a_restored_spill_takes_up_the_named_runs_and_removes_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let pairs = sorted(vec![(1, 5), (2, 5), (1, 9), (3, 9)]);
        let mut spill = HeldSpill::new(Arc::clone(&temp), Some(0));
        let mut held = HashMap::from([(1, set_of(1)), (2, set_of(2))]);
        spill.evict(&mut held, &pairs[..]).unwrap();
        let named = spill.runs().to_vec();
        let mut held = HashMap::from([(3, set_of(3))]);
        spill.evict(&mut held, &pairs[2..]).unwrap();
        assert_eq!(spill.runs().len(), 2);
        // Resumed from a checkpoint taken after record 5 and the first
        // eviction: the second run is removed, record 5's entries passed
        // over, record 9 gets 1's set.
        let mut resumed = HeldSpill::new(Arc::clone(&temp), None);
        resumed.restore(named).unwrap();
        assert!(!temp.path(&spill.runs()[1].name).unwrap().exists());
        assert_eq!(resumed.take_for(7).unwrap(), []);
        assert_eq!(resumed.take_for(9).unwrap(), [(1, set_of(1))]);
    }

    #[test]
    fn held_runs_read_at_once_stay_within_the_fan_in_and_an_earlier_checkpoint_still_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        // Every record of 0..100 waits for a partner 1,000 records later,
        // and each is written to a run of its own (a share of 0): without
        // the merge, a reader (a descriptor and two blocks) a record.
        let pairs = sorted((0..100).map(|a| (a, a + 1_000)).collect());
        let mut spill = HeldSpill::new(Arc::clone(&temp), Some(0));
        let mut named = Vec::new();
        for a in 0..100 {
            let mut held = HashMap::from([(a, set_of(a))]);
            spill.evict(&mut held, &pairs[..]).unwrap();
            assert!(spill.readers.len() <= fan_in(0), "{}", spill.readers.len());
            if a == 10 {
                named = spill.runs().to_vec();
            }
        }
        assert!(spill.bytes() > spill.runs().iter().map(|r| r.bytes).sum::<u64>());
        for b in 1_000..1_100 {
            assert_eq!(spill.take_for(b).unwrap(), [(b - 1_000, set_of(b - 1_000))]);
        }
        // A checkpoint taken before the runs were merged names runs merged
        // since: they are still on disk, and the merged ones are removed.
        let merged: Vec<String> = spill.runs().iter().map(|r| r.name.clone()).collect();
        let mut resumed = HeldSpill::new(Arc::clone(&temp), Some(0));
        resumed.restore(named).unwrap();
        assert!(merged.iter().all(|n| !temp.path(n).unwrap().exists()));
        for b in 1_000..1_011 {
            assert_eq!(
                resumed.take_for(b).unwrap(),
                [(b - 1_000, set_of(b - 1_000))]
            );
        }
        let mut held = HashMap::from([(11, set_of(11))]);
        resumed.evict(&mut held, &pairs[11..]).unwrap();
        assert_eq!(resumed.take_for(1_011).unwrap(), [(11, set_of(11))]);
        spill.remove_all().unwrap();
        resumed.remove_all().unwrap();
        assert_eq!(std::fs::read_dir(temp.folder()).unwrap().count(), 0);
    }
}
