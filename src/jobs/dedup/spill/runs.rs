//! Sorted runs: the on-disk form of band lists (and of id keys) that did
//! not fit the memory budget, read back in one sequential pass.
//!
//! A run is a list of [`Entry`] values in strictly increasing
//! `(key, record)` order, written once by a [`RunWriter`] and streamed back
//! by a [`RunReader`]. The same format holds a saved index's band lists
//! (one run per band, records numbered from 0), so that they merge with a
//! run's own spilled runs ([`super::merge`]).
//!
//! # Format (version [`RUN_VERSION`])
//!
//! The framing of [`blocks`] (a header, blocks of about [`BLOCK_BYTES`]
//! with their length, entry count and CRC-32, an end with the total
//! entries; all integers little-endian), with magic `DPSORTED` and flags
//! bit 0: entries carry a fingerprint.
//!
//! A block's payload is its entries one after the other: the key as its
//! gap from the block's previous key (from 0 at the block's start) and the
//! record, both as LEB128 variable-length integers, then, with flag bit 0,
//! the fingerprint as a fixed `u64`. A sorted band's keys are close, so a
//! key takes 1 to 3 bytes, where a fixed width takes 4 (bands) or 8 (ids).
//! The writer encodes an entry into an array and the reader decodes a
//! batch of a block's entries in one loop ([`RunReader::next_entries`]):
//! the merge's and the spill's time goes there.
//!
//! A reader given the writer's [`RunInfo`] checks the file's length and
//! checksum too; every error names the file ([`RunError`]).

pub mod blocks;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use self::blocks::{BlockReader, BlockWriter, Format};
pub use self::blocks::{BLOCK_BYTES, READ_BUFFER};

/// The format's version; bump on any change of it.
pub const RUN_VERSION: u32 = 1;

/// Flag bit: entries carry a fingerprint.
const WITH_PRINTS: u32 = 1;

const FORMAT: Format = Format {
    magic: b"DPSORTED",
    version: RUN_VERSION,
    flags: WITH_PRINTS,
    // A block's entries can pass [`BLOCK_BYTES`] by one entry at most.
    max_payload: BLOCK_BYTES + 64,
    what: "a sorted run",
};

/// One entry of a sorted run: a record's key in one band (or its id key),
/// the record, and the record's twin fingerprint
/// ([`crate::jobs::dedup::buckets::fingerprint`]; 0 in runs without one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// The band key (`u32` widened) or id key.
    pub key: u64,
    /// The record's index.
    pub record: u32,
    /// The record's twin fingerprint.
    pub print: u64,
}

impl Entry {
    /// The order of a run: by key, then record.
    pub fn order(&self) -> (u64, u32) {
        (self.key, self.record)
    }
}

/// What a written run is, as a checkpoint names it: its file name (inside
/// the folder it was written to), length, entries and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The file's name.
    pub name: String,
    /// The file's length in bytes.
    pub bytes: u64,
    /// Entries it holds.
    pub entries: u64,
    /// CRC-32 of all its bytes.
    pub checksum: u32,
}

/// A run that cannot be written or read back as written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The file could not be created, written, opened or read.
    #[error("sorted run {}: {cause}", path.display())]
    Io {
        /// The run's file.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// The file is not the run that was written.
    #[error("sorted run {} is damaged: {what}", path.display())]
    Damaged {
        /// The run's file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Entries were not given in strictly increasing `(key, record)` order.
    #[error("sorted run {}: entry {entry:?} out of order (a bug)", path.display())]
    OutOfOrder {
        /// The run's file.
        path: PathBuf,
        /// The entry.
        entry: Entry,
    },
    /// A run could not be written, as told when it failed (with the
    /// file's name): a chunk written on a thread of its own
    /// ([`super::writer`]) tells its failure to every later wait.
    #[error("{message}")]
    Failed {
        /// The kind of the IO error it was.
        kind: io::ErrorKind,
        /// What it said.
        message: String,
    },
    /// A run merged with a record offset ([`super::merge::Merge::add_with_offset`])
    /// has a record whose index passes `u32::MAX` once offset.
    #[error("record {record} of a sorted run, offset by {offset}, passes 2^32 records")]
    RecordPastLimit {
        /// The record, as the run holds it.
        record: u32,
        /// The offset.
        offset: u32,
    },
    /// The work reading and writing runs was told to stop (the run was
    /// asked to: [`super::components::StopCheck`]); its runs are removed
    /// as they drop.
    #[error("stopped at the run's request")]
    Stopped,
}

impl RunError {
    pub(super) fn io(path: &Path) -> impl FnOnce(io::Error) -> RunError + '_ {
        move |cause| RunError::Io {
            path: path.to_owned(),
            cause,
        }
    }

    pub(super) fn damaged(path: &Path, what: impl Into<String>) -> RunError {
        RunError::Damaged {
            path: path.to_owned(),
            what: what.into(),
        }
    }

    /// As an IO error (what the pipeline maps to exit code 74), keeping
    /// the message.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            RunError::Io { cause, .. } => cause.kind(),
            RunError::Failed { kind, .. } => *kind,
            RunError::Stopped => io::ErrorKind::Interrupted,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self.to_string())
    }
}

/// The most bytes an entry takes: a key gap (10), a record (5), a
/// fingerprint (8).
const ENTRY_MAX: usize = 23;

/// Writes `value` as LEB128 into `out` from `at`; returns where it ends.
/// Into an array, then appended once an entry: a push a byte was most of
/// a spill's writing.
#[inline]
fn put_varint(out: &mut [u8; ENTRY_MAX], mut at: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        out[at] = value as u8 | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
    at + 1
}

/// The LEB128 integer at `*at` in `payload`, `*at` moved past it; `None`
/// when it runs past the payload or past ten bytes.
#[inline]
fn varint_at(payload: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let &byte = payload.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The entry at `*at` in a block's `payload`, the block's previous key
/// being `previous`; `None` when it runs past the payload, or its key
/// passes 2^64 or its record 2^32.
#[inline]
fn decode_entry(payload: &[u8], at: &mut usize, previous: u64, with_prints: bool) -> Option<Entry> {
    let key = previous.checked_add(varint_at(payload, at)?)?;
    let record = u32::try_from(varint_at(payload, at)?).ok()?;
    let print = if with_prints {
        let bytes = payload.get(*at..*at + 8)?;
        *at += 8;
        u64::from_le_bytes(bytes.try_into().ok()?)
    } else {
        0
    };
    Some(Entry { key, record, print })
}

/// Writes one sorted run.
#[derive(Debug)]
pub struct RunWriter {
    blocks: BlockWriter,
    with_prints: bool,
    previous_key: u64,
    last: Option<(u64, u32)>,
}

impl RunWriter {
    /// A run written to `file` (created empty), known as `path` in errors;
    /// `with_prints`: entries carry their fingerprint.
    pub fn new(file: File, path: PathBuf, with_prints: bool) -> Result<Self, RunError> {
        let flags = if with_prints { WITH_PRINTS } else { 0 };
        Ok(RunWriter {
            blocks: BlockWriter::new(file, path, &FORMAT, flags)?,
            with_prints,
            previous_key: 0,
            last: None,
        })
    }

    /// Creates the file at `path` and writes a run into it.
    pub fn create(path: &Path, with_prints: bool) -> Result<Self, RunError> {
        let file = File::create(path).map_err(RunError::io(path))?;
        RunWriter::new(file, path.to_owned(), with_prints)
    }

    /// Appends `entry`, which must come after the previous one in
    /// `(key, record)` order.
    #[inline]
    pub fn push(&mut self, entry: Entry) -> Result<(), RunError> {
        if self.last.is_some_and(|last| last >= entry.order()) {
            return Err(RunError::OutOfOrder {
                path: self.blocks.path().to_owned(),
                entry,
            });
        }
        self.last = Some(entry.order());
        let (previous, with_prints) = (&mut self.previous_key, self.with_prints);
        self.blocks.push(|payload, first| {
            let from = if first { 0 } else { *previous };
            let mut bytes = [0u8; ENTRY_MAX];
            let mut end = put_varint(&mut bytes, 0, entry.key - from);
            end = put_varint(&mut bytes, end, u64::from(entry.record));
            if with_prints {
                bytes[end..end + 8].copy_from_slice(&entry.print.to_le_bytes());
                end += 8;
            }
            // A copy of the whole array, then cut: a copy of a length
            // known here is a few moves, one of `end` bytes a call.
            let len = payload.len();
            payload.extend_from_slice(&bytes);
            payload.truncate(len + end);
            *previous = entry.key;
        })
    }

    /// Writes the last block and the end. The file is not made durable
    /// here: most runs are merged and removed before any checkpoint names
    /// them, and a sync per run made every spill wait for the disk; a
    /// checkpoint syncs the runs it names first ([`sync`]).
    pub fn finish(self) -> Result<RunInfo, RunError> {
        self.blocks.finish(false)
    }
}

/// Makes the run at `path`, written and closed, durable: its data reach
/// the disk before a checkpoint names it.
pub fn sync(path: &Path) -> Result<(), RunError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(RunError::io(path))
}

/// Streams a sorted run back, one block in memory at a time, checking
/// every block's checksum and the entries' order.
#[derive(Debug)]
pub struct RunReader {
    blocks: BlockReader,
    with_prints: bool,
    previous_key: u64,
    last: Option<(u64, u32)>,
}

impl RunReader {
    /// Reads the run in `file`, known as `path` in errors. With `expected`
    /// (what the writer returned), a file of another length is refused
    /// here, one of another checksum at its end.
    pub fn new(file: File, path: PathBuf, expected: Option<&RunInfo>) -> Result<Self, RunError> {
        let (blocks, flags) = BlockReader::new(file, path, &FORMAT, expected)?;
        Ok(RunReader {
            blocks,
            with_prints: flags & WITH_PRINTS != 0,
            previous_key: 0,
            last: None,
        })
    }

    /// Opens the run at `path` (see [`RunReader::new`]).
    pub fn open(path: &Path, expected: Option<&RunInfo>) -> Result<Self, RunError> {
        let file = File::open(path).map_err(RunError::io(path))?;
        RunReader::new(file, path.to_owned(), expected)
    }

    /// True when the entries carry fingerprints.
    pub fn with_prints(&self) -> bool {
        self.with_prints
    }

    /// Appends up to `most` (at least one) of the next entries to `out`,
    /// all from one block, or returns false at the run's end: the merge
    /// reads runs so, one call a batch and the entries decoded in one
    /// loop, where one call an entry was most of its time. The same
    /// checks as [`RunReader::next_entry`]'s.
    pub fn next_entries(&mut self, out: &mut Vec<Entry>, most: usize) -> Result<bool, RunError> {
        match self.blocks.fill()? {
            None => return Ok(false),
            Some(true) => self.previous_key = 0,
            Some(false) => {}
        }
        let (payload, mut at, left) = self.blocks.rest();
        let count = (left as usize).min(most.max(1));
        out.reserve(count);
        let with_prints = self.with_prints;
        let (mut key, mut last) = (self.previous_key, self.last);
        let mut fault = None;
        for _ in 0..count {
            let Some(entry) = decode_entry(payload, &mut at, key, with_prints) else {
                fault = Some("an entry runs past its block, or a key or record past its width");
                break;
            };
            if last.is_some_and(|last| last >= entry.order()) {
                fault = Some("entries out of order");
                break;
            }
            (last, key) = (Some(entry.order()), entry.key);
            out.push(entry);
        }
        if let Some(what) = fault {
            return Err(self.blocks.damaged(what));
        }
        (self.previous_key, self.last) = (key, last);
        self.blocks.consumed(at, count as u32);
        Ok(true)
    }

    /// The next entry, `None` at the run's end (once its end and checks
    /// were read).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        let Some(first) = self.blocks.next_entry()? else {
            return Ok(None);
        };
        let from = if first { 0 } else { self.previous_key };
        let key = from
            .checked_add(self.blocks.varint()?)
            .ok_or_else(|| self.blocks.damaged("a key past 2^64"))?;
        let record = u32::try_from(self.blocks.varint()?)
            .map_err(|_| self.blocks.damaged("a record index past 2^32"))?;
        let print = if self.with_prints {
            let bytes = self.blocks.take(8)?;
            u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
        } else {
            0
        };
        let entry = Entry { key, record, print };
        if self.last.is_some_and(|last| last >= entry.order()) {
            return Err(self.blocks.damaged("entries out of order"));
        }
        (self.last, self.previous_key) = (Some(entry.order()), key);
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::blocks::{BLOCK_HEAD, HEADER_LEN};
    use super::*;

    fn entries(n: u32) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                key: u64::from(i / 3) * 1_000_003,
                record: i * 7 % 1000 + (i % 3) * 1000,
                print: u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            })
            .collect()
    }

    fn write(path: &Path, list: &[Entry], with_prints: bool) -> RunInfo {
        let mut writer = RunWriter::create(path, with_prints).unwrap();
        for &e in list {
            writer.push(e).unwrap();
        }
        writer.finish().unwrap()
    }

    fn read_all(path: &Path, info: Option<&RunInfo>) -> Result<Vec<Entry>, RunError> {
        let mut reader = RunReader::open(path, info)?;
        let mut out = Vec::new();
        while let Some(e) = reader.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn a_run_round_trips_over_many_blocks_with_and_without_prints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.run");
        let mut list = entries(30_000);
        list.sort_unstable_by_key(Entry::order);
        let info = write(&path, &list, true);
        assert_eq!(info.entries, 30_000);
        assert_eq!(info.bytes, std::fs::metadata(&path).unwrap().len());
        assert!(info.bytes > 3 * BLOCK_BYTES as u64, "several blocks");
        assert_eq!(read_all(&path, Some(&info)).unwrap(), list);
        // Without prints, the same entries with print 0, and fewer bytes.
        let info2 = write(&path, &list, false);
        let back = read_all(&path, Some(&info2)).unwrap();
        assert!(back
            .iter()
            .zip(&list)
            .all(|(b, l)| b.order() == l.order() && b.print == 0));
        assert!(info2.bytes < info.bytes / 2);
        // An empty run.
        let info3 = write(&path, &[], true);
        assert_eq!(read_all(&path, Some(&info3)).unwrap(), []);
    }

    #[test]
    fn a_run_read_in_batches_gives_the_entries_read_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.run");
        let mut list = entries(30_000);
        list.sort_unstable_by_key(Entry::order);
        for with_prints in [true, false] {
            let info = write(&path, &list, with_prints);
            let one_by_one = read_all(&path, Some(&info)).unwrap();
            for most in [1, 7, 256, 100_000] {
                let mut reader = RunReader::open(&path, Some(&info)).unwrap();
                let mut batched = Vec::new();
                let mut batches = 0;
                while reader.next_entries(&mut batched, most).unwrap() {
                    batches += 1;
                }
                assert_eq!(batched, one_by_one, "{most} at a time");
                assert!(batches >= list.len().div_ceil(most), "{batches} batches");
            }
        }
        // A damaged block is refused read in batches too.
        let info = write(&path, &list, true);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + BLOCK_HEAD + 100] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = RunReader::open(&path, Some(&info)).unwrap();
        let err = reader.next_entries(&mut Vec::new(), 256).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn a_damaged_run_is_refused_with_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("band-03.run");
        let mut list = entries(20_000);
        list.sort_unstable_by_key(Entry::order);
        let info = write(&path, &list, true);
        let good = std::fs::read(&path).unwrap();
        let named = |e: RunError| {
            let text = e.to_string();
            assert!(text.contains("band-03.run"), "{text}");
            text
        };
        // A flipped byte inside a block.
        let mut bytes = good.clone();
        bytes[HEADER_LEN + BLOCK_HEAD + 100] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let text = named(read_all(&path, None).unwrap_err());
        assert!(text.contains("checksum"), "{text}");
        // Truncated: refused up front with its expected length, or at the
        // end without it.
        std::fs::write(&path, &good[..good.len() - 5]).unwrap();
        let text = named(read_all(&path, Some(&info)).unwrap_err());
        assert!(text.contains("written"), "{text}");
        let text = named(read_all(&path, None).unwrap_err());
        assert!(text.contains("truncated"), "{text}");
        // Not a run at all, or another version.
        std::fs::write(&path, b"{\"id\":1}\n").unwrap();
        named(read_all(&path, None).unwrap_err());
        let mut bytes = good.clone();
        bytes[8] = 99;
        std::fs::write(&path, &bytes).unwrap();
        let text = named(read_all(&path, None).unwrap_err());
        assert!(text.contains("version 99"), "{text}");
        // Another run of the same length: its checksum differs.
        let mut other = list.clone();
        other[5].print ^= 1;
        write(&path, &other, true);
        let text = named(read_all(&path, Some(&info)).unwrap_err());
        assert!(text.contains("checksum"), "{text}");
        // A missing file.
        std::fs::remove_file(&path).unwrap();
        named(read_all(&path, Some(&info)).unwrap_err());
    }

    #[test]
    fn entries_out_of_order_are_refused_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = RunWriter::create(&dir.path().join("x.run"), false).unwrap();
        let e = |key, record| Entry {
            key,
            record,
            print: 0,
        };
        writer.push(e(5, 1)).unwrap();
        writer.push(e(5, 2)).unwrap();
        assert!(matches!(
            writer.push(e(5, 2)),
            Err(RunError::OutOfOrder { .. })
        ));
        assert!(matches!(
            writer.push(e(4, 9)),
            Err(RunError::OutOfOrder { .. })
        ));
    }
}
