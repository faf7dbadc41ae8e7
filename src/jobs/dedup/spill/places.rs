//! The records' places ([`Spans`]) on disk once they pass their share of
//! the memory budget ([`crate::jobs::dedup::budget::Shares::places`]),
//! instead of being dropped: passes 2 and 3 then still read only the
//! records they need, and the copy of `kept.jsonl` still runs beside
//! pass 2.
//!
//! Once past the share, every place goes to disk: the table held so far
//! is written as the first run, and the places that come after are held
//! until they fill a segment ([`PlacesSpill`]), then written as the next
//! run. All on disk rather than a prefix kept in memory: the later passes
//! read the places in record order anyway (pass 2 its candidates', pass 3
//! the kept records'), so a table in memory would save nothing but a
//! sequential read, and its share goes to their own state. A checkpoint
//! names the runs written (the segment being filled is in the table it
//! saves); a restore removes the runs it does not name
//! ([`super::leftovers`]). The runs stay until the outputs are committed
//! ([`remove_runs`]), since pass 3 reads them last and a run resumed in
//! pass 3 reads them again.
//!
//! Reading back ([`PlaceCursor`]) is one pass over the runs, front to back,
//! one block in memory: nothing is looked up by record on disk.
//!
//! # Format (version [`PLACES_VERSION`])
//!
//! The framing of [`super::runs::blocks`] (magic `DPPLACES`, no flags),
//! with one entry per record that has a place, in increasing record order:
//! the record as its gap from the block's previous one (the first of a
//! block: the record itself), its length, and its offset as the zigzag of
//! its distance from the end of the block's previous record (the first of
//! a block: the offset itself), all LEB128. A line after a line is then 3
//! to 5 bytes, where memory holds 12.

use std::fs;
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::leftovers::remove_unnamed;
use super::runs::blocks::{put_varint, BlockReader, BlockWriter, Format, BLOCK_BYTES};
use super::runs::{RunError, RunInfo};
use crate::jobs::dedup::spans::{Located, Spans};

/// The format's version; bump on any change of it.
pub const PLACES_VERSION: u32 = 1;

const FORMAT: Format = Format {
    magic: b"DPPLACES",
    version: PLACES_VERSION,
    flags: 0,
    // An entry is at most three 10-byte integers past a block.
    max_payload: BLOCK_BYTES + 32,
    what: "a run of records' places",
};

/// Names of the runs this module writes start and end so (not `.sorted`:
/// pass 1's sorted runs are removed by that suffix).
const PREFIX: &str = "dedup-places-";
const SUFFIX: &str = ".places";

/// Bytes of memory one place takes in the table.
const PLACE_BYTES: u64 = 12;

/// Records a segment holds at most (3 MiB of places), and at least.
const MAX_SEGMENT: usize = 1 << 18;
const MIN_SEGMENT: usize = 1 << 10;

/// Writes pass 1's places to runs once they pass their share.
#[derive(Debug)]
pub struct PlacesSpill {
    temp: Arc<TempSpace>,
    /// Bytes the table may hold before it goes to disk.
    share: u64,
    /// Records held before they are written as a run, once on disk.
    segment: usize,
}

impl PlacesSpill {
    /// Writes to `temp` once the places pass `share` bytes (`None`: never,
    /// but a table a checkpoint left on disk goes on there).
    pub fn new(temp: Arc<TempSpace>, share: Option<u64>) -> Self {
        let share = share.unwrap_or(u64::MAX);
        let quarter = usize::try_from(share / PLACE_BYTES / 4).unwrap_or(usize::MAX);
        PlacesSpill {
            temp,
            share,
            segment: quarter.clamp(MIN_SEGMENT, MAX_SEGMENT),
        }
    }

    /// After a record's place was noted in `spans`: writes the table to a
    /// run when it passes its share (the first time) or fills a segment
    /// (once on disk). A table dropped (a record without a place) has its
    /// runs removed.
    pub fn after_record(&self, spans: &mut Spans) -> Result<(), RunError> {
        if !spans.is_complete() {
            return self.remove(spans);
        }
        let held = spans.in_memory();
        let full = if spans.on_disk() {
            held >= self.segment
        } else {
            held as u64 * PLACE_BYTES > self.share
        };
        if full {
            if !spans.on_disk() {
                log::info!(
                    "dedup pass 1: the records' places pass their share of the memory budget at record {}: \
                     written to disk in record order from here on ({})",
                    spans.base() + held as u64,
                    self.temp.folder().display()
                );
            }
            self.write(spans)?;
        }
        Ok(())
    }

    /// When the pass ends: the places still in memory go to disk too, if
    /// the table is on disk.
    pub fn finish(&self, spans: &mut Spans) -> Result<(), RunError> {
        if !spans.is_complete() {
            return self.remove(spans);
        }
        if spans.on_disk() && spans.in_memory() > 0 {
            self.write(spans)?;
        }
        self.sync(spans)
    }

    /// Makes the runs `spans` names durable, before a checkpoint or the
    /// pass's result names them (a run already synced costs little).
    pub fn sync(&self, spans: &Spans) -> Result<(), RunError> {
        for run in spans.runs() {
            let path = self.temp.folder().join(&run.name);
            let file = fs::File::open(&path).map_err(RunError::io(&path))?;
            file.sync_all().map_err(RunError::io(&path))?;
        }
        Ok(())
    }

    /// Takes up the runs a checkpoint's table names: the runs of places
    /// it does not name were written after it, and are removed.
    pub fn restore(&self, spans: &Spans) -> Result<(), RunError> {
        if !spans.on_disk() && !self.temp.folder().is_dir() {
            // Nothing can be there: the folder is not made for nothing.
            return Ok(());
        }
        remove_unnamed(&self.temp, PREFIX, SUFFIX, spans.runs())?;
        self.temp.holds(spans.runs().iter().map(|r| r.bytes).sum());
        Ok(())
    }

    fn remove(&self, spans: &mut Spans) -> Result<(), RunError> {
        remove_runs(&self.temp, spans)?;
        spans.forget_runs();
        Ok(())
    }

    /// Writes the places in memory as the next run.
    fn write(&self, spans: &mut Spans) -> Result<(), RunError> {
        let name = format!("{PREFIX}{:06}{SUFFIX}", spans.runs().len());
        let path = self.temp.path(&name).map_err(|cause| RunError::Io {
            path: self.temp.folder().join(&name),
            cause,
        })?;
        // At most 30 bytes a place; a line after a line takes 3 to 5.
        self.temp
            .ensure_room(spans.in_memory() as u64 * 8 + 64)
            .map_err(RunError::io(self.temp.folder()))?;
        let file = fs::File::create(&path).map_err(RunError::io(&path))?;
        let mut blocks = BlockWriter::new(file, path, &FORMAT, 0)?;
        let (mut previous, mut end) = (0u64, 0u64);
        for (index, offset, len) in spans.held() {
            blocks.push(|payload, first| {
                let (from, after) = if first { (0, 0) } else { (previous, end) };
                put_varint(payload, index - from);
                put_varint(payload, u64::from(len));
                put_varint(payload, zigzag(offset.wrapping_sub(after)));
                (previous, end) = (index, offset + u64::from(len));
            })?;
        }
        // Not synced here (the Integrator would wait for the disk): a
        // checkpoint, or the pass's result, syncs the runs it names
        // ([`PlacesSpill::sync`]).
        let info = blocks.finish(false)?;
        self.temp.wrote(info.bytes);
        spans.moved_to(info);
        Ok(())
    }
}

/// Removes the runs of places of `spans` from `temp`, once the outputs
/// are committed.
pub fn remove_runs(temp: &TempSpace, spans: &Spans) -> Result<(), RunError> {
    for run in spans.runs() {
        temp.remove(&run.name, run.bytes)
            .map_err(|cause| RunError::Io {
                path: temp.folder().join(&run.name),
                cause,
            })?;
    }
    Ok(())
}

/// Bytes of the runs of places on disk.
pub fn bytes_on_disk(spans: &Spans) -> u64 {
    spans.runs().iter().map(|r| r.bytes).sum()
}

fn zigzag(delta: u64) -> u64 {
    let signed = delta as i64;
    ((signed << 1) ^ (signed >> 63)) as u64
}

fn unzigzag(value: u64) -> u64 {
    (value >> 1) ^ (value & 1).wrapping_neg()
}

/// The places of records asked for in increasing order: those before the
/// table's [`Spans::base`] read from its runs, front to back, one block
/// in memory; the others from the table.
#[derive(Debug)]
pub struct PlaceCursor<'a> {
    spans: &'a Spans,
    temp: &'a TempSpace,
    /// The run being read, and the next one to open.
    reader: Option<BlockReader>,
    next_run: usize,
    /// The next entry not yet passed: `(index, offset, len)`.
    head: Option<(u64, u64, u32)>,
    /// The previous entry of the block, as its gaps need it.
    previous: (u64, u64),
    /// The record asked for last.
    last: Option<u64>,
}

impl<'a> PlaceCursor<'a> {
    /// A cursor over `spans`, whose runs are in `temp`.
    pub fn new(spans: &'a Spans, temp: &'a TempSpace) -> Self {
        PlaceCursor {
            spans,
            temp,
            reader: None,
            next_run: 0,
            head: None,
            previous: (0, 0),
            last: None,
        }
    }

    /// The place of the record at `index` (`None`: it has none, as
    /// [`Spans::get`]); `index` must increase from one call to the next.
    pub fn get(&mut self, index: u64) -> Result<Option<Located>, RunError> {
        if self.last.is_some_and(|last| last >= index) {
            return Err(RunError::Failed {
                kind: std::io::ErrorKind::InvalidInput,
                message: format!("the place of record {index} asked for out of order (a bug)"),
            });
        }
        self.last = Some(index);
        if index >= self.spans.base() {
            return Ok(self.spans.get(index));
        }
        while let Some((at, offset, len)) = self.peek()? {
            if at > index {
                break;
            }
            self.head = None;
            if at == index {
                return Ok(self.spans.locate(index, offset, len));
            }
        }
        Ok(None)
    }

    /// The next entry of the runs, read if needed; `None` past the last.
    fn peek(&mut self) -> Result<Option<(u64, u64, u32)>, RunError> {
        while self.head.is_none() {
            let Some(reader) = &mut self.reader else {
                let Some(info) = self.spans.runs().get(self.next_run) else {
                    return Ok(None);
                };
                self.next_run += 1;
                self.reader = Some(self.open(info)?);
                continue;
            };
            let Some(first) = reader.next_entry()? else {
                self.reader = None;
                continue;
            };
            let (from, after) = if first { (0, 0) } else { self.previous };
            let index = from + reader.varint()?;
            let len = u32::try_from(reader.varint()?)
                .map_err(|_| reader.damaged("a place's length passes 32 bits"))?;
            let offset = after.wrapping_add(unzigzag(reader.varint()?));
            self.previous = (index, offset.wrapping_add(u64::from(len)));
            self.head = Some((index, offset, len));
        }
        Ok(self.head)
    }

    fn open(&self, info: &RunInfo) -> Result<BlockReader, RunError> {
        let path = self.temp.folder().join(&info.name);
        let file = fs::File::open(&path).map_err(RunError::io(&path))?;
        Ok(BlockReader::new(file, path, &FORMAT, Some(info))?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::dedup::spans::{place, Place};

    /// Records of two inputs, every seventh one rejected (no place).
    fn noted(spill: &PlacesSpill, spans: &mut Spans, records: u64) {
        let (mut offset, mut line, mut input) = (0u64, 1u64, 0u32);
        for index in 0..records {
            if index == records / 2 {
                (offset, line, input) = (5, 1, 1);
            }
            let len = (index % 300) as usize;
            if index % 7 != 3 {
                spans.record(index, place(input, offset, len, line));
                spill.after_record(spans).unwrap();
            }
            offset += len as u64 + 1;
            line += 1;
        }
        spill.finish(spans).unwrap();
    }

    #[test]
    fn places_past_their_share_are_read_back_from_disk_as_they_were_noted() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let records = 20_000;
        let mut all = Spans::default();
        noted(
            &PlacesSpill::new(Arc::clone(&temp), None),
            &mut all,
            records,
        );
        assert!(!all.on_disk());
        // A share of 1000 places: the rest in segments of 1024.
        let spill = PlacesSpill::new(Arc::clone(&temp), Some(12_000));
        let mut spans = Spans::default();
        noted(&spill, &mut spans, records);
        assert!(
            spans.on_disk() && spans.runs().len() > 10,
            "{:?}",
            spans.runs()
        );
        assert_eq!((spans.base(), spans.in_memory()), (records, 0));
        let entries: u64 = spans.runs().iter().map(|r| r.entries).sum();
        assert_eq!(entries, (0..records).filter(|i| i % 7 != 3).count() as u64);
        assert!(
            bytes_on_disk(&spans) < entries * 6,
            "{}",
            bytes_on_disk(&spans)
        );
        // Every record, and every third one, in order.
        for step in [1, 3] {
            let mut cursor = PlaceCursor::new(&spans, &temp);
            for index in (0..records + 5).step_by(step) {
                assert_eq!(cursor.get(index).unwrap(), all.get(index), "record {index}");
            }
        }
        let mut cursor = PlaceCursor::new(&spans, &temp);
        cursor.get(10).unwrap();
        assert!(cursor.get(10).is_err(), "a record asked for twice");
    }

    #[test]
    fn a_dropped_table_removes_its_runs_and_a_restore_the_runs_it_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let spill = PlacesSpill::new(Arc::clone(&temp), Some(12_000));
        let mut spans = Spans::default();
        for index in 0..5_000 {
            spans.record(index, place(0, index * 10, 9, index + 1));
            spill.after_record(&mut spans).unwrap();
        }
        let saved = spans.clone();
        let files = || fs::read_dir(temp.folder()).unwrap().count();
        assert_eq!(files(), saved.runs().len());
        for index in 5_000..9_000 {
            spans.record(index, place(0, index * 10, 9, index + 1));
            spill.after_record(&mut spans).unwrap();
        }
        assert!(files() > saved.runs().len());
        spill.restore(&saved).unwrap();
        assert_eq!(files(), saved.runs().len());
        let mut spans = saved;
        spans.record(
            5_000,
            Place {
                span: None,
                len: 3,
                line: 5_001,
            },
        );
        spill.after_record(&mut spans).unwrap();
        assert!(!spans.is_complete() && !spans.on_disk());
        assert_eq!(files(), 0);
    }
}
