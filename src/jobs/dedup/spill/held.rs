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
//! # Format (version [`HELD_VERSION`])
//!
//! The framing of [`super::runs`] (a 16-byte header with magic `DPHELDST`,
//! blocks of about [`BLOCK_BYTES`] with their length, entry count and
//! CRC-32, an end with the total entries), with entries in strictly
//! increasing `(later, earlier)` order, each: the later record as its gap
//! from the block's previous one, the earlier record and the set's length
//! as LEB128 integers, then the set's hashes as fixed `u64`s (random
//! 64-bit hashes do not shrink as gaps).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::runs::{RunError, RunInfo, BLOCK_BYTES};

const MAGIC: &[u8; 8] = b"DPHELDST";

/// The format's version; bump on any change of it.
pub const HELD_VERSION: u32 = 1;

/// Names of the runs this module writes start and end so; a resumed pass
/// 2 removes those its checkpoint does not name.
const PREFIX: &str = "dedup-verify-held-";
const SUFFIX: &str = ".sorted";

const HEADER_LEN: usize = 16;
const BLOCK_HEAD: usize = 12;

/// The largest block a reader accepts: one entry can pass
/// [`BLOCK_BYTES`] by a whole set (a document of millions of words).
const MAX_PAYLOAD: usize = 256 << 20;

/// Bytes the reader and writer buffers of one run take.
const RUN_BUFFER_BYTES: u64 = 2 * BLOCK_BYTES as u64;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn damaged(path: &Path, what: impl Into<String>) -> RunError {
    RunError::Damaged {
        path: path.to_owned(),
        what: what.into(),
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RunError + '_ {
    move |cause| RunError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// Writes one run of held sets.
#[derive(Debug)]
pub struct HeldWriter {
    out: BufWriter<File>,
    path: PathBuf,
    payload: Vec<u8>,
    in_block: u32,
    previous_later: u32,
    last: Option<(u32, u32)>,
    entries: u64,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl HeldWriter {
    /// Creates the file at `path` and writes a run into it.
    pub fn create(path: &Path) -> Result<Self, RunError> {
        let file = File::create(path).map_err(io_error(path))?;
        let mut writer = HeldWriter {
            out: BufWriter::with_capacity(BLOCK_BYTES, file),
            path: path.to_owned(),
            payload: Vec::with_capacity(BLOCK_BYTES + 1024),
            in_block: 0,
            previous_later: 0,
            last: None,
            entries: 0,
            bytes: 0,
            crc: crc32fast::Hasher::new(),
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&HELD_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        writer.write(&header)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RunError> {
        self.out.write_all(bytes).map_err(io_error(&self.path))?;
        self.crc.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Appends `earlier`'s `set` for its partner `later`, after the
    /// previous entry in `(later, earlier)` order.
    pub fn push(&mut self, later: u32, earlier: u32, set: &[u64]) -> Result<(), RunError> {
        if self.last.is_some_and(|last| last >= (later, earlier)) {
            return Err(damaged(
                &self.path,
                format!("entry ({later}, {earlier}) written out of order (a bug)"),
            ));
        }
        self.last = Some((later, earlier));
        put_varint(&mut self.payload, u64::from(later - self.previous_later));
        put_varint(&mut self.payload, u64::from(earlier));
        put_varint(&mut self.payload, set.len() as u64);
        for &h in set {
            self.payload.extend_from_slice(&h.to_le_bytes());
        }
        self.previous_later = later;
        self.in_block += 1;
        self.entries += 1;
        if self.payload.len() >= BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), RunError> {
        if self.in_block == 0 {
            return Ok(());
        }
        let mut head = [0u8; BLOCK_HEAD];
        head[..4].copy_from_slice(&(self.payload.len() as u32).to_le_bytes());
        head[4..8].copy_from_slice(&self.in_block.to_le_bytes());
        head[8..].copy_from_slice(&crc32fast::hash(&self.payload).to_le_bytes());
        self.write(&head)?;
        let payload = std::mem::take(&mut self.payload);
        self.write(&payload)?;
        self.payload = payload;
        self.payload.clear();
        (self.in_block, self.previous_later) = (0, 0);
        Ok(())
    }

    /// Writes the last block and the end, and makes the file durable (a
    /// checkpoint may name it next).
    pub fn finish(mut self) -> Result<RunInfo, RunError> {
        self.flush_block()?;
        let total = self.entries.to_le_bytes();
        let mut end = [0u8; BLOCK_HEAD];
        end[8..].copy_from_slice(&crc32fast::hash(&total).to_le_bytes());
        self.write(&end)?;
        self.write(&total)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error(&self.path)(e.into_error()))?;
        file.sync_all().map_err(io_error(&self.path))?;
        let name = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(RunInfo {
            name,
            bytes: self.bytes,
            entries: self.entries,
            checksum: self.crc.finalize(),
        })
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
    input: BufReader<File>,
    path: PathBuf,
    payload: Vec<u8>,
    at: usize,
    left_in_block: u32,
    previous_later: u32,
    last: Option<(u32, u32)>,
    entries: u64,
    crc: crc32fast::Hasher,
    checksum: Option<u32>,
    ended: bool,
}

impl HeldReader {
    /// Opens the run at `path`; with `expected`, a file of another length
    /// is refused here, one of another checksum at its end.
    pub fn open(path: &Path, expected: Option<&RunInfo>) -> Result<Self, RunError> {
        let file = File::open(path).map_err(io_error(path))?;
        if let Some(info) = expected {
            let len = file.metadata().map_err(io_error(path))?.len();
            if len != info.bytes {
                return Err(damaged(
                    path,
                    format!("{len} bytes, {} written", info.bytes),
                ));
            }
        }
        let mut reader = HeldReader {
            input: BufReader::with_capacity(BLOCK_BYTES, file),
            path: path.to_owned(),
            payload: Vec::new(),
            at: 0,
            left_in_block: 0,
            previous_later: 0,
            last: None,
            entries: 0,
            crc: crc32fast::Hasher::new(),
            checksum: expected.map(|i| i.checksum),
            ended: false,
        };
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header, "its header")?;
        if &header[..8] != MAGIC {
            return Err(damaged(path, "not a run of held sets (bad magic number)"));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if version != HELD_VERSION {
            return Err(damaged(
                path,
                format!("format version {version}, this build reads version {HELD_VERSION}"),
            ));
        }
        Ok(reader)
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), RunError> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.crc.update(buf);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(damaged(
                &self.path,
                format!("truncated: the file ends inside {what}"),
            )),
            Err(e) => Err(io_error(&self.path)(e)),
        }
    }

    /// Reads the next block, or the end; false at the end.
    fn next_block(&mut self) -> Result<bool, RunError> {
        let mut head = [0u8; BLOCK_HEAD];
        self.read_exact(&mut head, "a block's header")?;
        let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let (len, count, crc) = (word(0) as usize, word(4), word(8));
        if len == 0 {
            return self.read_end(count, crc).map(|()| false);
        }
        if len > MAX_PAYLOAD || count == 0 {
            return Err(damaged(
                &self.path,
                format!("a block of {len} bytes and {count} entries"),
            ));
        }
        let mut payload = std::mem::take(&mut self.payload);
        payload.resize(len, 0);
        let read = self.read_exact(&mut payload, "a block");
        self.payload = payload;
        read?;
        if crc32fast::hash(&self.payload) != crc {
            return Err(damaged(&self.path, "a block's checksum does not match"));
        }
        (self.at, self.left_in_block, self.previous_later) = (0, count, 0);
        Ok(true)
    }

    fn read_end(&mut self, zero: u32, crc: u32) -> Result<(), RunError> {
        let mut total = [0u8; 8];
        self.read_exact(&mut total, "its end")?;
        if zero != 0 || crc32fast::hash(&total) != crc {
            return Err(damaged(&self.path, "its end is damaged"));
        }
        let total = u64::from_le_bytes(total);
        if total != self.entries {
            return Err(damaged(
                &self.path,
                format!("{} entries read, {total} written", self.entries),
            ));
        }
        let mut rest = [0u8; 1];
        match self.input.read(&mut rest) {
            Ok(0) => {}
            Ok(_) => return Err(damaged(&self.path, "bytes after its end")),
            Err(e) => return Err(io_error(&self.path)(e)),
        }
        if self
            .checksum
            .is_some_and(|c| self.crc.clone().finalize() != c)
        {
            return Err(damaged(&self.path, "its checksum does not match"));
        }
        self.ended = true;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, RunError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.payload.get(self.at) else {
                break;
            };
            self.at += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(damaged(&self.path, "an entry runs past its block"))
    }

    fn small(&mut self, what: &str) -> Result<u32, RunError> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| damaged(&self.path, format!("{what} past 2^32")))
    }

    /// The next entry, `None` at the run's end (once its end and checks
    /// were read).
    pub fn next_entry(&mut self) -> Result<Option<HeldEntry>, RunError> {
        if self.left_in_block == 0 {
            if self.at != self.payload.len() {
                return Err(damaged(&self.path, "a block has bytes past its entries"));
            }
            if self.ended || !self.next_block()? {
                return Ok(None);
            }
        }
        let later = self
            .previous_later
            .checked_add(self.small("a record")?)
            .ok_or_else(|| damaged(&self.path, "a record past 2^32"))?;
        let earlier = self.small("a record")?;
        let len = self.small("a set's length")? as usize;
        let bytes = self
            .payload
            .get(self.at..self.at.saturating_add(len.saturating_mul(8)))
            .ok_or_else(|| damaged(&self.path, "an entry runs past its block"))?;
        let set = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        self.at += len * 8;
        if self.last.is_some_and(|last| last >= (later, earlier)) {
            return Err(damaged(&self.path, "entries out of order"));
        }
        (self.last, self.previous_later) = (Some((later, earlier)), later);
        self.left_in_block -= 1;
        self.entries += 1;
        Ok(Some(HeldEntry {
            later,
            earlier,
            set,
        }))
    }
}

/// The held sets of pass 2 that went to disk: the runs written (what a
/// checkpoint names), and the merge that hands each set back when its
/// later partner arrives.
#[derive(Debug)]
pub struct HeldSpill {
    temp: Arc<TempSpace>,
    /// Bytes the held sets may take in memory (`u64::MAX`: no budget).
    share: u64,
    runs: Vec<RunInfo>,
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
            share: share.unwrap_or(u64::MAX),
            runs: Vec::new(),
            readers: Vec::new(),
            heads: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// True when held sets of `bytes` pass their share.
    pub fn is_over(&self, bytes: u64) -> bool {
        bytes > self.share
    }

    /// The runs written so far, in order.
    pub fn runs(&self) -> &[RunInfo] {
        &self.runs
    }

    /// Bytes of every run written.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.bytes).sum()
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
    /// (the candidate pairs whose later record has not arrived, as
    /// `(earlier, later)` sorted by `(later, earlier)`), and empties
    /// `held`.
    pub fn evict(
        &mut self,
        held: &mut HashMap<u32, Vec<u64>>,
        pending: &[(u32, u32)],
    ) -> Result<(), RunError> {
        let seq = self.runs.len();
        let name = format!("{PREFIX}{seq:06}{SUFFIX}");
        let path = self.path(&name)?;
        // A generous estimate: every pending pair's earlier set at the
        // largest size held.
        let largest = held.values().map(Vec::len).max().unwrap_or(0) as u64;
        let pairs = pending.iter().filter(|p| held.contains_key(&p.0)).count() as u64;
        self.temp
            .ensure_room(pairs * (largest * 8 + 15) + 64)
            .map_err(|cause| RunError::Io {
                path: self.temp.folder().to_owned(),
                cause,
            })?;
        if seq == 0 {
            log::info!(
                "dedup pass 2: the held shingle sets pass their share of the memory budget; \
                 writing them to sorted runs in {}",
                self.temp.folder().display()
            );
        }
        let mut writer = HeldWriter::create(&path)?;
        for &(a, b) in pending {
            if let Some(set) = held.get(&a) {
                writer.push(b, a, set)?;
            }
        }
        let info = writer.finish()?;
        self.temp.wrote(info.bytes);
        held.clear();
        held.shrink_to_fit();
        let reader = HeldReader::open(&path, Some(&info))?;
        self.runs.push(info);
        self.add(reader)
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
        let named: HashSet<&str> = runs.iter().map(|i| i.name.as_str()).collect();
        let dir = self.temp.dir().map_err(|cause| RunError::Io {
            path: self.temp.folder().to_owned(),
            cause,
        })?;
        let io = |cause| RunError::Io {
            path: dir.clone(),
            cause,
        };
        for item in fs::read_dir(&dir).map_err(io)? {
            let name = item.map_err(io)?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(PREFIX) && name.ends_with(SUFFIX) && !named.contains(&*name) {
                let path = dir.join(&*name);
                fs::remove_file(&path).map_err(|cause| RunError::Io { path, cause })?;
            }
        }
        (self.readers, self.heads, self.heap) = (Vec::new(), Vec::new(), BinaryHeap::new());
        for info in &runs {
            let reader = HeldReader::open(&self.path(&info.name)?, Some(info))?;
            self.add(reader)?;
        }
        self.runs = runs;
        Ok(())
    }

    /// Removes every run written (the pass's result is safe elsewhere).
    pub fn remove_all(&mut self) -> io::Result<()> {
        (self.readers, self.heads, self.heap) = (Vec::new(), Vec::new(), BinaryHeap::new());
        for info in std::mem::take(&mut self.runs) {
            self.temp.remove(&info.name, info.bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        spill.evict(&mut held, &pairs).unwrap();
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
}
