//! The removed records named by id, for `clusters.jsonl`, from streams
//! and within a share of the memory budget
//! ([`crate::jobs::dedup::budget::Shares::clusters_file`]): neither the
//! removed records nor the ids are ever held whole.
//!
//! A line names a removed record and its kept one by id, but the ids come
//! in record order and a kept record is anywhere (before its removed ones
//! under `--keep first`, after them under `--keep longest`), so looking
//! each up would be a random read a record. Instead, two sorts and two
//! merge joins, every file read front to back:
//!
//! 1. `(kept, removed, similarity)` sorted by the kept record;
//! 2. joined with a first pass over the ids: `(removed, kept, similarity,
//!    the kept record's id)`, sorted by the removed record;
//! 3. joined with a second pass over the ids (and the lines of records
//!    removed as duplicates of an indexed record, interleaved by record):
//!    the lines, in record order.
//!
//! Each sort holds half the share: the first's output and the second's
//! input are alive at once. A sort whose records fit its half is done in
//! memory and writes nothing; past it, each full chunk is sorted and
//! written as a run, and the runs are merged (in levels past the fan-in
//! the half has room for). Runs are removed once merged, and every one
//! left when the writer ends, with an error or not, or is dropped.
//!
//! # Format (version [`NAMED_VERSION`])
//!
//! The framing of [`super::runs::blocks`] (magic `DPNAMING`, no flags),
//! entries in `(key, other)` order: the key as its gap from the block's
//! previous key (the first of a block: the key itself), the other record,
//! both LEB128; the similarity as its 8 bytes; the id (empty in the first
//! sort's runs) as its length (LEB128) and bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::convert::Infallible;
use std::fs;
use std::sync::Arc;

use drainpipe_actors::{OutputError, TempSpace};

use super::components::StopCheck;
use super::levels::descriptor_room;
use super::runs::blocks::{put_varint, BlockReader, BlockWriter, Format};
use super::runs::{RunError, RunInfo, BLOCK_BYTES, READ_BUFFER};

/// The format's version; bump on any change of it.
pub const NAMED_VERSION: u32 = 1;

const FORMAT: Format = Format {
    magic: b"DPNAMING",
    version: NAMED_VERSION,
    flags: 0,
    // One entry can pass a block by a whole id (a string field of a
    // record's size), as in the runs of candidates' ids.
    max_payload: 256 << 20,
    what: "a run of named removed records",
};

/// Names of the runs this module writes start and end so.
const PREFIX: &str = "dedup-clusters-";
const SUFFIX: &str = ".named";

/// Bytes a run being merged holds: its block, its read buffer and its
/// head's id (an id's length, on average, taken as 1 KiB at most).
const READER_BYTES: u64 = (BLOCK_BYTES + READ_BUFFER + 1024) as u64;

/// What writing the lines failed on.
#[derive(Debug, thiserror::Error)]
pub enum NamingError {
    /// A run could not be written or read back (it names its file).
    #[error(transparent)]
    Spill(#[from] RunError),
    /// The ids do not hold a removed or kept record.
    #[error("no id for record {0}: the input changed between passes")]
    NoId(u32),
    /// The ids did not come in strictly increasing record order.
    #[error("the ids came out of record order at record {0} (a bug)")]
    IdsOutOfOrder(u32),
    /// A line could not be written.
    #[error(transparent)]
    Write(#[from] OutputError),
}

impl From<Infallible> for NamingError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// One line of `clusters.jsonl`, in record order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Line<'a> {
    /// A record removed as a duplicate of one of the run's records.
    Removed {
        /// The removed record's id.
        id: &'a str,
        /// The kept record's id.
        kept: &'a str,
        /// As [`crate::jobs::dedup::clusters::Clusters::removed`]'s.
        similarity: f64,
    },
    /// A record removed as a duplicate of an indexed record: the `nth` of
    /// those given, with its id.
    Indexed {
        /// Its place among the indexed records given.
        nth: usize,
        /// Its id.
        id: &'a str,
    },
}

/// The runs each sort wrote (0: done in memory) and their bytes, levels
/// of the merge included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spilled {
    /// Runs of the sort by kept record.
    pub by_kept: usize,
    /// Runs of the sort by removed record.
    pub by_removed: usize,
    /// Bytes of all of them.
    pub bytes: u64,
}

/// Hands `line` the lines of `clusters.jsonl` in record order: one per
/// `removed` record `(removed, kept, similarity)` (in any order, each
/// removed record once), and one per record of `indexed` (in increasing
/// order, or the error that ended their read; after a removed record's
/// line of the same number), each with
/// the ids `ids` gives: every call opens a pass over them, `(record, id)`
/// in strictly increasing record order, holding at least the removed, kept
/// and indexed records. Holds about `share` bytes at most (but one record
/// a sort, if larger); runs go to `temp`.
pub fn name_removed<E, I, S>(
    removed: impl IntoIterator<Item = Result<(u32, u32, f64), E>>,
    mut ids: impl FnMut() -> Result<I, E>,
    indexed: impl IntoIterator<Item = Result<u32, RunError>>,
    (share, temp): (u64, &TempSpace),
    mut line: impl FnMut(Line<'_>) -> Result<(), NamingError>,
) -> Result<Spilled, NamingError>
where
    E: Into<NamingError>,
    I: Iterator<Item = Result<(u32, S), E>>,
    S: AsRef<str>,
{
    let half = (share / 2).max(1);
    let mut by_kept = Sorter::new(temp, "kept", half);
    for item in removed {
        let (record, kept, similarity) = item.map_err(Into::into)?;
        by_kept.push(kept, record, similarity, "")?;
    }
    let mut by_removed = Sorter::new(temp, "removed", half);
    let mut kept = by_kept.finish()?;
    let mut spilled = Spilled {
        by_kept: kept.made(),
        ..Spilled::default()
    };
    if !kept.is_empty() {
        let mut cursor = Cursor::new(ids().map_err(Into::into)?);
        while let Some(r) = kept.next()? {
            by_removed.push(r.other, r.key, r.similarity, cursor.id(r.key)?)?;
        }
    }
    spilled.bytes += kept.close()?;
    let mut named = by_removed.finish()?;
    spilled.by_removed = named.made();
    let mut indexed = indexed.into_iter().enumerate().peekable();
    let mut cursor = if named.is_empty() && indexed.peek().is_none() {
        None
    } else {
        Some(Cursor::new(ids().map_err(Into::into)?))
    };
    while let Some(r) = named.next()? {
        let cursor = cursor.as_mut().expect("opened: a record to name");
        let before =
            |(_, x): &(usize, Result<u32, RunError>)| x.as_ref().map_or(true, |&x| x < r.key);
        while let Some((nth, record)) = indexed.next_if(before) {
            let record = record?;
            line(Line::Indexed {
                nth,
                id: cursor.id(record)?,
            })?;
        }
        let id = cursor.id(r.key)?;
        line(Line::Removed {
            id,
            kept: r.id,
            similarity: r.similarity,
        })?;
    }
    for (nth, record) in indexed {
        let record = record?;
        let cursor = cursor.as_mut().expect("opened: a record to name");
        line(Line::Indexed {
            nth,
            id: cursor.id(record)?,
        })?;
    }
    spilled.bytes += named.close()?;
    Ok(spilled)
}

/// A pass over the ids, advanced to the records asked for, in order.
struct Cursor<I, S> {
    ids: I,
    head: Option<(u32, S)>,
    started: bool,
}

impl<E, I, S> Cursor<I, S>
where
    E: Into<NamingError>,
    I: Iterator<Item = Result<(u32, S), E>>,
    S: AsRef<str>,
{
    fn new(ids: I) -> Self {
        Cursor {
            ids,
            head: None,
            started: false,
        }
    }

    /// `record`'s id; records are asked for in increasing order (the same
    /// one again too).
    fn id(&mut self, record: u32) -> Result<&str, NamingError> {
        loop {
            match &self.head {
                Some((at, _)) if *at >= record => break,
                None if self.started => break,
                _ => {}
            }
            let before = self.head.as_ref().map(|(at, _)| *at);
            self.started = true;
            self.head = self.ids.next().transpose().map_err(Into::into)?;
            if let (Some(before), Some((at, _))) = (before, &self.head) {
                if *at <= before {
                    return Err(NamingError::IdsOutOfOrder(*at));
                }
            }
        }
        match &self.head {
            Some((at, id)) if *at == record => Ok(id.as_ref()),
            _ => Err(NamingError::NoId(record)),
        }
    }
}

/// A record of a sort: `key` and `other` are its order (also sorted
/// by [`super::ranked`], its `--keep` key as the text).
#[derive(Debug, Clone, Copy)]
pub(super) struct Named<'a> {
    pub(super) key: u32,
    pub(super) other: u32,
    pub(super) similarity: f64,
    pub(super) id: &'a str,
}

/// A record in memory, 24 bytes: its order as one number (`key << 32 |
/// other`, sorted faster than the pair), its id's place in its chunk's
/// text (a chunk's text stays below 4 GiB: [`Chunk::room_for`]).
#[derive(Debug, Clone, Copy)]
struct Row {
    order: u64,
    similarity: f64,
    start: u32,
    len: u32,
}

/// Records held in memory: the rows, and their ids end to end.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    rows: Vec<Row>,
    text: String,
}

impl Chunk {
    /// At most the bytes it holds once a record with an id of `len` bytes
    /// is added (a full list doubles), so that a share is kept before the
    /// memory is taken.
    fn bytes_after(&self, len: usize) -> u64 {
        let grown = |capacity: usize, used: usize, more: usize, least: usize| {
            if used + more <= capacity {
                capacity
            } else {
                (2 * capacity).max(used + more).max(least)
            }
        };
        let rows = grown(self.rows.capacity(), self.rows.len(), 1, 4);
        let text = grown(self.text.capacity(), self.text.len(), len, 8);
        (rows * std::mem::size_of::<Row>() + text) as u64
    }

    /// True when an id of `len` bytes can be added: the text's places
    /// are 32-bit.
    fn room_for(&self, len: usize) -> bool {
        self.text.len() + len <= u32::MAX as usize
    }

    fn push(&mut self, key: u32, other: u32, similarity: f64, id: &str) {
        let start = self.text.len() as u32;
        self.text.push_str(id);
        self.rows.push(Row {
            order: u64::from(key) << 32 | u64::from(other),
            similarity,
            start,
            len: id.len() as u32,
        });
    }

    fn sort(&mut self) {
        self.rows.sort_unstable_by_key(|r| r.order);
    }

    /// Records held.
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> u64 {
        (self.rows.capacity() * std::mem::size_of::<Row>() + self.text.capacity()) as u64
    }

    /// The record at `at`.
    pub(super) fn named(&self, at: usize) -> Named<'_> {
        let r = &self.rows[at];
        let start = r.start as usize;
        Named {
            key: (r.order >> 32) as u32,
            other: r.order as u32,
            similarity: r.similarity,
            id: &self.text[start..start + r.len as usize],
        }
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.text.clear();
    }
}

/// The runs one sort has on disk: removed when merged, and every one left
/// when dropped.
#[derive(Debug)]
pub(super) struct Runs<'t> {
    temp: &'t TempSpace,
    list: &'static str,
    /// Runs written so far (levels included): each one's number.
    made: usize,
    /// Their bytes.
    bytes: u64,
    /// The runs on disk, not yet merged.
    files: Vec<RunInfo>,
    /// The run being written, if any.
    writing: Option<String>,
}

impl<'t> Runs<'t> {
    fn path(&self, name: &str) -> Result<std::path::PathBuf, RunError> {
        self.temp.path(name).map_err(|cause| RunError::Io {
            path: self.temp.folder().join(name),
            cause,
        })
    }

    /// A new run of about `bytes`, once the disk has room for it.
    fn create(&mut self, bytes: u64) -> Result<RunWriter, RunError> {
        let name = format!("{PREFIX}{}-{:06}{SUFFIX}", self.list, self.made);
        self.made += 1;
        let path = self.path(&name)?;
        self.temp
            .ensure_room(bytes + 64)
            .map_err(RunError::io(self.temp.folder()))?;
        self.writing = Some(name);
        let file = fs::File::create(&path).map_err(RunError::io(&path))?;
        Ok(RunWriter {
            blocks: BlockWriter::new(file, path, &FORMAT, 0)?,
            previous: 0,
            last: None,
        })
    }

    /// Ends `writer`'s run; returns it.
    fn finish(&mut self, writer: RunWriter) -> Result<RunInfo, RunError> {
        let info = writer.blocks.finish(false)?;
        self.writing = None;
        self.temp.wrote(info.bytes);
        self.bytes += info.bytes;
        self.files.push(info.clone());
        Ok(info)
    }

    fn open(&self, info: &RunInfo) -> Result<RunCursor, RunError> {
        open_cursor(self.temp, info)
    }

    fn remove(&mut self, name: &str) -> Result<(), RunError> {
        let Some(at) = self.files.iter().position(|f| f.name == name) else {
            return Ok(());
        };
        let info = self.files.remove(at);
        self.temp
            .remove(&info.name, info.bytes)
            .map_err(|cause| RunError::Io {
                path: self.temp.folder().join(&info.name),
                cause,
            })
    }

    fn remove_all(&mut self) -> Result<(), RunError> {
        if let Some(name) = self.writing.take() {
            // Never finished, so never counted.
            self.files.push(RunInfo {
                name,
                bytes: 0,
                entries: 0,
                checksum: 0,
            });
        }
        while let Some(info) = self.files.last() {
            let name = info.name.clone();
            self.remove(&name)?;
        }
        Ok(())
    }
}

impl Drop for Runs<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.remove_all() {
            log::warn!("dedup: a temporary run was not removed: {e}");
        }
    }
}

/// Writes one run of [`Named`] records in `(key, other)` order.
struct RunWriter {
    blocks: BlockWriter,
    previous: u32,
    last: Option<(u32, u32)>,
}

impl RunWriter {
    fn push(&mut self, r: &Named<'_>) -> Result<(), RunError> {
        if self.last.is_some_and(|last| last > (r.key, r.other)) {
            let what = format!("record {} written out of order (a bug)", r.key);
            return Err(RunError::damaged(self.blocks.path(), what));
        }
        self.last = Some((r.key, r.other));
        let previous = &mut self.previous;
        self.blocks.push(|payload, first| {
            let from = if first { 0 } else { *previous };
            put_varint(payload, u64::from(r.key - from));
            put_varint(payload, u64::from(r.other));
            payload.extend_from_slice(&r.similarity.to_bits().to_le_bytes());
            put_varint(payload, r.id.len() as u64);
            payload.extend_from_slice(r.id.as_bytes());
            *previous = r.key;
        })
    }
}

/// Opens the run `info` of `temp`, before its first record.
fn open_cursor(temp: &TempSpace, info: &RunInfo) -> Result<RunCursor, RunError> {
    let path = temp.path(&info.name).map_err(|cause| RunError::Io {
        path: temp.folder().join(&info.name),
        cause,
    })?;
    let file = fs::File::open(&path).map_err(RunError::io(&path))?;
    let (blocks, _) = BlockReader::new(file, path, &FORMAT, Some(info))?;
    Ok(RunCursor {
        blocks,
        previous: 0,
        head: None,
        id: String::new(),
    })
}

/// Reads one run back, its next record at its head.
struct RunCursor {
    blocks: BlockReader,
    previous: u32,
    head: Option<(u32, u32, f64)>,
    id: String,
}

impl RunCursor {
    /// Reads the next record into the head; false at the run's end.
    fn advance(&mut self) -> Result<bool, RunError> {
        let Some(first) = self.blocks.next_entry()? else {
            self.head = None;
            return Ok(false);
        };
        let from = if first { 0 } else { self.previous };
        let record = |blocks: &mut BlockReader| -> Result<u32, RunError> {
            u32::try_from(blocks.varint()?).map_err(|_| blocks.damaged("a record past 2^32"))
        };
        let key = from
            .checked_add(record(&mut self.blocks)?)
            .ok_or_else(|| self.blocks.damaged("a record past 2^32"))?;
        let other = record(&mut self.blocks)?;
        let bits: [u8; 8] = self.blocks.take(8)?.try_into().expect("8 bytes");
        let similarity = f64::from_bits(u64::from_le_bytes(bits));
        let len = usize::try_from(self.blocks.varint()?).unwrap_or(usize::MAX);
        self.id.clear();
        match std::str::from_utf8(self.blocks.take(len)?) {
            Ok(id) => self.id.push_str(id),
            Err(_) => return Err(self.blocks.damaged("an id is not UTF-8")),
        }
        if self.head.is_some_and(|(k, o, _)| (k, o) > (key, other)) {
            return Err(self.blocks.damaged("records out of order"));
        }
        (self.previous, self.head) = (key, Some((key, other, similarity)));
        Ok(true)
    }

    fn named(&self) -> Option<Named<'_>> {
        self.head.map(|(key, other, similarity)| Named {
            key,
            other,
            similarity,
            id: &self.id,
        })
    }
}

/// The merge of runs: the smallest `(key, other)` first (of equal ones,
/// the run given first).
pub(super) struct RunMerge {
    runs: Vec<RunCursor>,
    heads: BinaryHeap<Reverse<(u32, u32, usize)>>,
    /// The run whose head was handed out last: advanced at the next call.
    taken: Option<usize>,
}

impl RunMerge {
    fn open(runs: &Runs<'_>, infos: &[RunInfo]) -> Result<Self, RunError> {
        let mut merge = RunMerge {
            runs: Vec::with_capacity(infos.len()),
            heads: BinaryHeap::with_capacity(infos.len()),
            taken: None,
        };
        for info in infos {
            let mut run = runs.open(info)?;
            if run.advance()? {
                let (key, other, _) = run.head.expect("advanced");
                merge.heads.push(Reverse((key, other, merge.runs.len())));
            }
            merge.runs.push(run);
        }
        Ok(merge)
    }

    fn next(&mut self) -> Result<Option<Named<'_>>, RunError> {
        if let Some(at) = self.taken.take() {
            let run = &mut self.runs[at];
            if run.advance()? {
                let (key, other, _) = run.head.expect("advanced");
                self.heads.push(Reverse((key, other, at)));
            }
        }
        let Some(Reverse((_, _, at))) = self.heads.pop() else {
            return Ok(None);
        };
        self.taken = Some(at);
        Ok(self.runs[at].named())
    }
}

/// An external sort of [`Named`] records by `(key, other)` within `share`
/// bytes: in memory while they fit, else runs merged.
pub(super) struct Sorter<'t> {
    share: u64,
    chunk: Chunk,
    runs: Runs<'t>,
}

impl<'t> Sorter<'t> {
    pub(super) fn new(temp: &'t TempSpace, list: &'static str, share: u64) -> Self {
        Sorter {
            share,
            chunk: Chunk::default(),
            runs: Runs {
                temp,
                list,
                made: 0,
                bytes: 0,
                files: Vec::new(),
                writing: None,
            },
        }
    }

    pub(super) fn push(
        &mut self,
        key: u32,
        other: u32,
        similarity: f64,
        id: &str,
    ) -> Result<(), RunError> {
        let full = self.chunk.bytes_after(id.len()) > self.share || !self.chunk.room_for(id.len());
        if !self.chunk.rows.is_empty() && full {
            self.spill()?;
        }
        self.chunk.push(key, other, similarity, id);
        Ok(())
    }

    /// Sorts the chunk and writes it as the next run.
    fn spill(&mut self) -> Result<(), RunError> {
        self.chunk.sort();
        let bytes = (self.chunk.rows.len() * 24 + self.chunk.text.len()) as u64;
        let mut writer = self.runs.create(bytes)?;
        for at in 0..self.chunk.rows.len() {
            writer.push(&self.chunk.named(at))?;
        }
        self.runs.finish(writer)?;
        self.chunk.clear();
        if self.chunk.bytes_after(0) > self.share {
            // Grown past the share by one large record: given back, or
            // every later run would hold one record.
            self.chunk = Chunk::default();
        }
        Ok(())
    }

    /// The records in order: the chunk sorted, when nothing was written;
    /// else the runs (the chunk written as the last), merged in levels
    /// until the share has room for a reader of each.
    pub(super) fn finish(mut self) -> Result<Sorted<'t>, RunError> {
        if self.runs.files.is_empty() {
            self.chunk.sort();
            let chunk = std::mem::take(&mut self.chunk);
            return Ok(Sorted::Memory(chunk, 0));
        }
        if !self.chunk.rows.is_empty() {
            self.spill()?;
        }
        self.chunk = Chunk::default();
        let fan_in = usize::try_from((self.share / READER_BYTES).min(descriptor_room()))
            .unwrap_or(usize::MAX)
            .max(2);
        while self.runs.files.len() > fan_in {
            let take = fan_in.min(self.runs.files.len() - fan_in + 1);
            let group: Vec<RunInfo> = self.runs.files[..take].to_vec();
            let bytes = group.iter().map(|r| r.bytes).sum();
            let mut merge = RunMerge::open(&self.runs, &group)?;
            let mut writer = self.runs.create(bytes)?;
            while let Some(r) = merge.next()? {
                writer.push(&r)?;
            }
            drop(merge);
            self.runs.finish(writer)?;
            for done in &group {
                self.runs.remove(&done.name)?;
            }
        }
        let merge = RunMerge::open(&self.runs, &self.runs.files)?;
        Ok(Sorted::Runs(merge, self.runs))
    }
}

/// A sort's records in order.
pub(super) enum Sorted<'t> {
    /// Sorted in memory; the next one's place.
    Memory(Chunk, usize),
    /// Merged from runs, removed when it closes or drops.
    Runs(RunMerge, Runs<'t>),
}

impl Sorted<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Sorted::Memory(chunk, _) => chunk.rows.is_empty(),
            Sorted::Runs(..) => false,
        }
    }

    /// Runs the sort wrote.
    pub(super) fn made(&self) -> usize {
        match self {
            Sorted::Memory(..) => 0,
            Sorted::Runs(_, runs) => runs.made,
        }
    }

    pub(super) fn next(&mut self) -> Result<Option<Named<'_>>, RunError> {
        match self {
            Sorted::Memory(chunk, at) => {
                if *at == chunk.rows.len() {
                    return Ok(None);
                }
                *at += 1;
                Ok(Some(chunk.named(*at - 1)))
            }
            Sorted::Runs(merge, _) => merge.next(),
        }
    }

    /// Removes the runs; returns the bytes the sort wrote.
    pub(super) fn close(self) -> Result<u64, RunError> {
        match self {
            Sorted::Memory(..) => Ok(0),
            Sorted::Runs(merge, mut runs) => {
                drop(merge);
                runs.remove_all()?;
                Ok(runs.bytes)
            }
        }
    }
}

/// A sort's records kept to be read again, as many times as asked: in
/// memory when nothing was written, else in one run of their own.
#[derive(Debug)]
pub(super) enum Kept {
    /// Sorted in memory.
    Memory(Chunk),
    /// Merged into one run, removed when dropped.
    Run(KeptRun),
}

/// One run of a sort's records, every other run of the sort removed;
/// removed itself when dropped.
#[derive(Debug)]
pub(super) struct KeptRun {
    temp: Arc<TempSpace>,
    info: RunInfo,
}

impl KeptRun {
    /// Records it holds.
    pub(super) fn len(&self) -> u64 {
        self.info.entries
    }

    /// A pass over it, front to back.
    pub(super) fn open(&self) -> Result<KeptReader, RunError> {
        open_cursor(&self.temp, &self.info).map(KeptReader)
    }
}

impl Drop for KeptRun {
    fn drop(&mut self) {
        if let Err(e) = self.temp.remove(&self.info.name, self.info.bytes) {
            log::warn!(
                "dedup clusters: removing {}: {e} (removed with the temporary folder)",
                self.info.name
            );
        }
    }
}

/// A pass over a [`KeptRun`].
pub(super) struct KeptReader(RunCursor);

impl KeptReader {
    /// The next record, `None` past the last.
    pub(super) fn next(&mut self) -> Result<Option<Named<'_>>, RunError> {
        match self.0.advance()? {
            true => Ok(self.0.named()),
            false => Ok(None),
        }
    }
}

impl Sorter<'_> {
    /// Every record pushed, in order, kept to be read again: the chunk
    /// sorted when nothing was written, else the runs merged (in levels
    /// first, as [`Sorter::finish`] does) into one run of `temp` (the
    /// one the sort wrote to), the others removed. Returns the bytes the
    /// sort wrote, the kept run's included. `stop` is looked at every
    /// record merged.
    pub(super) fn finish_kept(
        mut self,
        temp: &Arc<TempSpace>,
        stop: &StopCheck<'_>,
    ) -> Result<(Kept, u64), RunError> {
        if self.runs.files.is_empty() {
            self.chunk.sort();
            return Ok((Kept::Memory(std::mem::take(&mut self.chunk)), 0));
        }
        let Sorted::Runs(mut merge, mut runs) = self.finish()? else {
            unreachable!("runs were written")
        };
        let bytes = runs.files.iter().map(|r| r.bytes).sum();
        let mut writer = runs.create(bytes)?;
        while let Some(r) = merge.next()? {
            stop.step()?;
            writer.push(&r)?;
        }
        drop(merge);
        let info = runs.finish(writer)?;
        runs.files.retain(|f| f.name != info.name);
        let kept = KeptRun {
            temp: Arc::clone(temp),
            info,
        };
        runs.remove_all()?;
        Ok((Kept::Run(kept), runs.bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use drainpipe_actors::OutputDir;

    use super::*;
    use crate::jobs::dedup::chain::CandidateIds;
    use crate::jobs::dedup::clusters::{
        write_clusters, write_clusters_from, Clusters, Removed, RemovedAsIndexed,
    };

    /// A xorshift: the same random data on every run.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// An id as the input gives it (JSON value text): numbers, and strings
    /// with unicode and escaped quotes, up to a few KB.
    fn id_of(random: &mut Random, record: u32) -> String {
        match random.below(5) {
            0 => format!("{}", u64::from(record) * 1_000_003),
            1 => format!("\"doc-{record}\""),
            2 => format!("\"é \\\"漢字\\\" {record} 🦀\""),
            3 => format!(
                "\"{record}-{}\"",
                "x\\\"ü".repeat(random.below(800) as usize)
            ),
            _ => format!("{{\"k\":[{record},\"\\u00e9\"]}}"),
        }
    }

    /// An indexed root's id, and its index's name (two indexes, the
    /// second from root 25).
    fn root_id(root: u32) -> String {
        format!("\"old-{}\"", root * 7 % 1000)
    }

    fn root_index(root: u32) -> &'static str {
        if root < 25 {
            "old \"é\""
        } else {
            "other"
        }
    }

    /// `records` records, each with an id; about a third removed, each as
    /// a duplicate of a record kept (before or after it); a few others
    /// removed as duplicates of indexed records.
    fn corpus(seed: u64, records: u32) -> (Vec<String>, Clusters) {
        let mut random = Random(seed);
        let ids: Vec<String> = (0..records).map(|r| id_of(&mut random, r)).collect();
        let kept: Vec<u32> = (0..records).filter(|r| r % 3 == 0).collect();
        let mut clusters = Clusters::default();
        let mut indexed = Vec::new();
        for r in (0..records).filter(|r| r % 3 != 0) {
            if random.below(10) == 0 {
                let root = random.below(50) as u32;
                indexed.push((r, root, 0.5 + random.below(1000) as f64 / 2000.0));
            } else if random.below(4) != 0 {
                let k = kept[random.below(kept.len() as u64) as usize];
                let similarity = f64::from_bits(0.6f64.to_bits() + random.below(1 << 40));
                clusters.removed.in_memory_mut().push((r, k, similarity));
            }
        }
        clusters.indexed = named(indexed);
        (ids, clusters)
    }

    /// `indexed` records `(record, root, similarity)` named in memory.
    fn named(indexed: Vec<(u32, u32, f64)>) -> RemovedAsIndexed {
        let mut named = RemovedAsIndexed::unnamed(Removed::Memory(indexed));
        let names = vec![(0, "old \"é\"".into()), (25, "other".into())];
        let unused = Arc::new(TempSpace::new(std::env::temp_dir().join("unused")));
        let ids = |root: u32, out: &mut String| {
            out.push_str(&root_id(root));
            Ok::<(), Infallible>(())
        };
        let never = StopCheck::never();
        named.name(ids, names, (None, &unused), &never).unwrap();
        named
    }

    /// `clusters.jsonl` as it was written before it was streamed: every id
    /// looked up in memory.
    fn looked_up(ids: &[String], clusters: &Clusters) -> Vec<u8> {
        let mut out = Vec::new();
        let id = |r: u32| &ids[r as usize];
        let indexed_line = |out: &mut Vec<u8>, &(record, root, similarity): &(u32, u32, f64)| {
            writeln!(
                out,
                "{{\"id\":{},\"duplicate_of\":{},\"similarity\":{},\"index\":{}}}",
                id(record),
                root_id(root),
                serde_json::to_string(&similarity).unwrap(),
                serde_json::to_string(root_index(root)).unwrap()
            )
            .unwrap();
        };
        let all = clusters.indexed.to_vec().unwrap();
        let mut indexed = all.iter().peekable();
        for &(r, kept, j) in clusters.removed.in_memory() {
            while let Some(x) = indexed.next_if(|x| x.0 < r) {
                indexed_line(&mut out, x);
            }
            writeln!(
                out,
                "{{\"id\":{},\"duplicate_of\":{},\"similarity\":{}}}",
                id(r),
                id(kept),
                serde_json::to_string(&j).unwrap()
            )
            .unwrap();
        }
        for x in indexed {
            indexed_line(&mut out, x);
        }
        out
    }

    /// A pass over the ids, as runs on disk give them.
    type IdsPass = std::vec::IntoIter<Result<(u32, String), RunError>>;

    /// Every record's id, as a pass over runs on disk gives them: owned,
    /// with an error type of its own.
    fn streamed(ids: &[String]) -> impl FnMut() -> Result<IdsPass, RunError> + '_ {
        move || {
            let all: Vec<Result<(u32, String), RunError>> = (0u32..)
                .zip(ids)
                .map(|(r, id)| Ok((r, id.clone())))
                .collect();
            Ok(all.into_iter())
        }
    }

    fn files_in(temp: &TempSpace) -> Vec<String> {
        match fs::read_dir(temp.folder()) {
            Ok(dir) => dir
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn written(mut file: drainpipe_actors::AtomicFile) -> Vec<u8> {
        file.written().unwrap()
    }

    #[test]
    fn clusters_jsonl_from_streams_spilled_at_both_sorts_is_the_one_written_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let output = OutputDir::create(dir.path().join("out")).unwrap();
        let temp = TempSpace::new(dir.path().join("tmp"));
        let (ids, clusters) = corpus(0x5EED, 3_000);
        assert!(
            clusters.removed.in_memory().iter().any(|&(r, k, _)| k > r),
            "kept after"
        );
        assert!(clusters.removed.len() > 500 && clusters.indexed.len() > 100);
        let roots: std::collections::BTreeSet<&str> = (clusters.indexed.to_vec().unwrap().iter())
            .map(|x| root_index(x.1))
            .collect();
        assert_eq!(roots.len(), 2, "both indexes");
        let expected = looked_up(&ids, &clusters);
        // In memory, no budget: no file.
        let in_memory: CandidateIds = (0u32..).zip(ids.iter().map(String::as_str)).collect();
        let file = write_clusters(&output, &clusters, &in_memory, (&temp, None)).unwrap();
        assert!(written(file) == expected, "in memory: other bytes");
        assert_eq!(temp.bytes_spilled(), 0);
        // A budget whose share holds a few dozen records a sort.
        for max_memory in [16 << 10, 4 << 10] {
            let removed = clusters.removed.iter();
            let budget = (&temp, Some(max_memory));
            let file =
                write_clusters_from(&output, removed, streamed(&ids), &clusters.indexed, budget)
                    .unwrap();
            assert!(written(file) == expected, "{max_memory}: other bytes");
        }
        assert!(temp.bytes_spilled() > 0);
        assert!(temp.peak_bytes() > 0);
        assert_eq!(files_in(&temp), Vec::<String>::new(), "runs left");
    }

    /// The lines `name_removed` hands, as text, and what it spilled.
    fn lines(
        ids: &[String],
        clusters: &Clusters,
        share: u64,
        temp: &TempSpace,
    ) -> Result<(Vec<String>, Spilled), NamingError> {
        let mut out = Vec::new();
        let removed = clusters.removed.iter();
        let records = clusters.indexed.records().map(|x| x.map(|x| x.0));
        let spilled = name_removed(removed, streamed(ids), records, (share, temp), |line| {
            out.push(match line {
                Line::Removed {
                    id,
                    kept,
                    similarity,
                } => format!("{id} {kept} {}", similarity.to_bits()),
                Line::Indexed { nth, id } => format!("{id} #{nth}"),
            });
            Ok(())
        })?;
        Ok((out, spilled))
    }

    #[test]
    fn each_sort_spills_several_runs_past_its_share_and_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        let (ids, clusters) = corpus(7, 2_000);
        let (all, none) = lines(&ids, &clusters, u64::MAX, &temp).unwrap();
        assert_eq!(none, Spilled::default());
        assert!(!temp.folder().exists(), "nothing written when it fits");
        assert_eq!(all.len(), clusters.removed_count());
        let (small, spilled) = lines(&ids, &clusters, 2 << 10, &temp).unwrap();
        assert!(small == all, "other lines past the share");
        // A few dozen records a run at the first sort, a few at the
        // second (ids of up to a few KB), merged two by two in levels.
        assert!(spilled.by_kept > 20, "{spilled:?}");
        assert!(spilled.by_removed > 50, "{spilled:?}");
        assert!(spilled.bytes > 0 && temp.bytes_spilled() == spilled.bytes);
        assert_eq!(files_in(&temp), Vec::<String>::new(), "runs left");
    }

    #[test]
    fn a_record_missing_from_the_ids_is_named_and_no_run_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        let (ids, clusters) = corpus(11, 2_000);
        // A kept record's id, then (found in the second pass) a removed
        // record's, then an indexed record's.
        let kept = clusters.removed.in_memory()[clusters.removed.in_memory().len() / 2].1;
        let removed = clusters.removed.in_memory()[clusters.removed.in_memory().len() / 3].0;
        let all = clusters.indexed.to_vec().unwrap();
        let indexed = all[all.len() / 2].0;
        for missing in [kept, removed, indexed] {
            let mut without = ids.clone();
            without[missing as usize] = String::new();
            let opener = || {
                let all: Vec<Result<(u32, String), RunError>> = (0u32..)
                    .zip(&without)
                    .filter(|(_, id)| !id.is_empty())
                    .map(|(r, id)| Ok((r, id.clone())))
                    .collect();
                Ok::<_, RunError>(all.into_iter())
            };
            let removed = clusters.removed.iter();
            let records = clusters.indexed.records().map(|x| x.map(|x| x.0));
            let e =
                name_removed(removed, opener, records, (2 << 10, &temp), |_| Ok(())).unwrap_err();
            assert!(matches!(e, NamingError::NoId(r) if r == missing), "{e}");
            assert_eq!(
                e.to_string(),
                format!("no id for record {missing}: the input changed between passes")
            );
            assert!(temp.bytes_spilled() > 0);
            assert_eq!(files_in(&temp), Vec::<String>::new(), "runs left");
        }
        // An error of the ids' own, in the second pass: carried as is.
        let mut passes = 0;
        let failing = || {
            passes += 1;
            let fail_at = if passes == 2 { 1_500 } else { u32::MAX };
            let all: Vec<Result<(u32, String), RunError>> = (0u32..)
                .zip(&ids)
                .map(|(r, id)| match r == fail_at {
                    true => Err(RunError::damaged(Path::new("ids-run"), "a test")),
                    false => Ok((r, id.clone())),
                })
                .collect();
            Ok::<_, RunError>(all.into_iter())
        };
        let removed = clusters.removed.iter();
        let none = std::iter::empty();
        let e = name_removed(removed, failing, none, (2 << 10, &temp), |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("ids-run is damaged: a test"), "{e}");
        assert_eq!(files_in(&temp), Vec::<String>::new(), "runs left");
    }

    #[test]
    fn a_kept_record_after_its_removed_ones_and_indexed_lines_come_in_record_order() {
        let dir = tempfile::tempdir().unwrap();
        let output = OutputDir::create(dir.path().join("out")).unwrap();
        let temp = TempSpace::new(dir.path().join("tmp"));
        let ids: CandidateIds = [
            (0, "\"a\""),
            (1, "1"),
            (2, "\"c \\\"q\\\"\""),
            (3, "\"d\""),
            (5, "\"longest\""),
            (7, "\"h\""),
            (9, "\"j\""),
        ]
        .into_iter()
        .collect();
        let mut indexed = RemovedAsIndexed::unnamed(Removed::Memory(vec![
            (0, 4, 0.75),
            (2, 4, 0.75),
            (9, 4, 0.75),
        ]));
        let unused = Arc::new(TempSpace::new(dir.path().join("unused")));
        let root_ids = |_, out: &mut String| {
            out.push_str("\"old\"");
            Ok::<(), Infallible>(())
        };
        let names = vec![(0, "idx".into())];
        let never = StopCheck::never();
        (indexed.name(root_ids, names, (None, &unused), &never)).unwrap();
        let clusters = Clusters {
            // Kept 5 comes after 1 and 3; 9 after 7.
            removed: crate::jobs::dedup::spill::components::Removed::Memory(vec![
                (1, 5, 0.9),
                (3, 5, 1.0),
                (7, 9, 0.8125),
            ]),
            indexed,
            ..Clusters::default()
        };
        for max_memory in [None, Some(64)] {
            let file = write_clusters(&output, &clusters, &ids, (&temp, max_memory)).unwrap();
            let text = String::from_utf8(written(file)).unwrap();
            assert_eq!(
                text,
                "{\"id\":\"a\",\"duplicate_of\":\"old\",\"similarity\":0.75,\"index\":\"idx\"}\n\
                 {\"id\":1,\"duplicate_of\":\"longest\",\"similarity\":0.9}\n\
                 {\"id\":\"c \\\"q\\\"\",\"duplicate_of\":\"old\",\"similarity\":0.75,\"index\":\"idx\"}\n\
                 {\"id\":\"d\",\"duplicate_of\":\"longest\",\"similarity\":1.0}\n\
                 {\"id\":\"h\",\"duplicate_of\":\"j\",\"similarity\":0.8125}\n\
                 {\"id\":\"j\",\"duplicate_of\":\"old\",\"similarity\":0.75,\"index\":\"idx\"}\n",
                "{max_memory:?}"
            );
        }
        assert!(temp.bytes_spilled() > 0, "the small budget spilled");
        assert_eq!(files_in(&temp), Vec::<String>::new(), "runs left");
    }
}
