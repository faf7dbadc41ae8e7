//! Pass 2's candidates' ids (and `--keep` keys) on disk once they pass
//! their share of the memory budget
//! ([`crate::jobs::dedup::budget::Shares::candidate_ids`]).
//!
//! `clusters.jsonl` names the removed records and their kept ones by id,
//! and `--keep` ranks a cluster's members by their keys, but the clusters
//! are known only once pass 2 has verified every pair: until then the id
//! and key of every candidate still waiting for a later partner must be
//! kept somewhere. Pass 2 meets the candidates in record order, so past
//! the share it appends each one's `(record, id, key)` to runs in record
//! order instead of holding it: a segment is held in memory until it
//! fills ([`IdsSpill::segment_bytes`]), then written as the next run.
//! When the pass ends, [`IdsSpill::join`] reads the runs once, front to
//! back, beside the clustered records (a merge join), and writes only
//! theirs to one more run in record order ([`CLUSTERED_NAME`]): what
//! `clusters.jsonl` and the ranking read, streamed back by
//! [`IdsRunReader`] (they grow with the duplicates, so they are not held
//! in memory either). Pass 2's result names that run; it is removed once
//! the run's outputs are committed.
//!
//! A checkpoint names the runs written (the segment being filled is in the
//! state it saves, as the ids held in memory are); a restore removes the
//! runs it does not name ([`super::leftovers`]). The runs are removed once
//! the pass's result is written ([`IdsSpill::remove_all`]), and with the
//! temporary folder on every other exit path.
//!
//! # Format (version [`IDS_VERSION`])
//!
//! The framing of [`super::runs::blocks`] (magic `DPCANDID`, no flags),
//! with one entry per record in strictly increasing record order: the
//! record as its gap from the block's previous one (the first of a block:
//! the record itself), a tag byte (bit 0: an id follows; bits 1-3: the
//! key's kind, 0 for none), the id as its length and bytes, then the key:
//! a length, an unsigned integer or a string's length as LEB128, a signed
//! integer as the LEB128 of its zigzag, a float as its 8 bytes, a string's
//! bytes after its length.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::leftovers::remove_unnamed;
use super::runs::blocks::{put_varint, BlockReader, BlockWriter, Format};
use super::runs::{RunError, RunInfo};
use crate::jobs::dedup::keep::KeepKey;

/// The format's version; bump on any change of it.
pub const IDS_VERSION: u32 = 1;

const FORMAT: Format = Format {
    magic: b"DPCANDID",
    version: IDS_VERSION,
    flags: 0,
    // One entry can pass a block by a whole id or key (a string field of
    // a record's size).
    max_payload: 256 << 20,
    what: "a run of candidates' ids",
};

/// Names of the runs this module writes start and end so (not `.sorted`:
/// pass 1's sorted runs are removed by that suffix).
const PREFIX: &str = "dedup-verify-ids-";
const SUFFIX: &str = ".ids";

/// The run of the clustered records' ids and keys, written when pass 2
/// ends; a pass resumed from a checkpoint (which never names it) removes
/// it.
pub const CLUSTERED_NAME: &str = "dedup-verify-clustered.ids";

/// A segment takes at most this many bytes in memory, and at least.
const MAX_SEGMENT: u64 = 8 << 20;
const MIN_SEGMENT: u64 = 64 << 10;
/// The segment without a budget (a resumed run whose checkpoint named
/// runs of ids goes on writing them).
const UNBOUNDED_SEGMENT: u64 = 4 << 20;

/// Tag bit: the entry has an id.
const HAS_ID: u8 = 1;

/// One entry: a record, its id (JSON value text) and its `--keep` key.
pub type IdEntry<'a> = (u32, Option<&'a str>, Option<&'a KeepKey>);

/// An entry read back.
pub type OwnedIdEntry = (u32, Option<String>, Option<KeepKey>);

/// The runs of candidates' ids pass 2 wrote, and the size of the segment
/// it holds before writing the next one.
#[derive(Debug)]
pub struct IdsSpill {
    temp: Arc<TempSpace>,
    segment: u64,
    runs: Vec<RunInfo>,
    /// The last record this process wrote (the next must come after it).
    last: Option<u32>,
}

impl IdsSpill {
    /// Runs in `temp` for ids whose share of the budget is `share` bytes
    /// (`None`: no budget, when a resumed run goes on with runs its
    /// checkpoint named): a segment of a quarter of it.
    pub fn new(temp: Arc<TempSpace>, share: Option<u64>) -> Self {
        let segment = share.map_or(UNBOUNDED_SEGMENT, |s| {
            (s / 4).clamp(MIN_SEGMENT, MAX_SEGMENT)
        });
        IdsSpill {
            temp,
            segment,
            runs: Vec::new(),
            last: None,
        }
    }

    /// Bytes the ids and keys held in memory may take before they are
    /// written as the next run.
    pub fn segment_bytes(&self) -> u64 {
        self.segment
    }

    /// The runs written so far, in record order.
    pub fn runs(&self) -> &[RunInfo] {
        &self.runs
    }

    /// Bytes of every run written.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.bytes).sum()
    }

    fn path(&self, name: &str) -> Result<PathBuf, RunError> {
        self.temp.path(name).map_err(|cause| RunError::Io {
            path: self.temp.folder().join(name),
            cause,
        })
    }

    /// Writes `entries` (in strictly increasing record order, after those
    /// of every earlier run; `bytes`: about what they hold in memory) as
    /// the next run, durable: a checkpoint may name it next.
    pub fn write<'a>(
        &mut self,
        entries: impl IntoIterator<Item = IdEntry<'a>>,
        bytes: u64,
    ) -> Result<(), RunError> {
        let seq = self.runs.len();
        let name = format!("{PREFIX}{seq:06}{SUFFIX}");
        let path = self.path(&name)?;
        self.temp
            .ensure_room(bytes + 64)
            .map_err(RunError::io(self.temp.folder()))?;
        if seq == 0 {
            log::info!(
                "dedup pass 2: the candidates' ids pass their share of the memory budget; \
                 written to disk in record order from here on ({})",
                self.temp.folder().display()
            );
        }
        let written = (|| {
            let mut writer = IdsRunWriter::create(path, self.last)?;
            for (record, id, key) in entries {
                writer.push(record, id, key)?;
            }
            let last = writer.last;
            Ok((writer.finish()?, last))
        })();
        let (info, last) = written.inspect_err(|_| self.discard(&name))?;
        self.temp.wrote(info.bytes);
        self.last = last;
        self.runs.push(info);
        Ok(())
    }

    /// Reads every run once, front to back, and writes the id and key of
    /// each record `wanted` is true for (the clustered records), then
    /// those of `tail` (the segment in memory, after the runs' records),
    /// to the run [`CLUSTERED_NAME`] in record order: a merge join, one
    /// block in memory. Returns the run and the bytes its entries would
    /// hold in memory.
    pub fn join<'a>(
        &self,
        wanted: impl Fn(u32) -> bool,
        tail: impl IntoIterator<Item = IdEntry<'a>>,
    ) -> Result<RunInfo, RunError> {
        let path = self.path(CLUSTERED_NAME)?;
        self.temp
            .ensure_room(self.bytes() + 64)
            .map_err(RunError::io(self.temp.folder()))?;
        let written = (|| {
            let mut writer = IdsRunWriter::create(path, None)?;
            for info in &self.runs {
                let mut reader = IdsRunReader::open(&self.temp, info)?;
                while let Some((record, id, key)) = reader.next_entry()? {
                    if wanted(record) {
                        writer.push(record, id.as_deref(), key.as_ref())?;
                    }
                }
            }
            for (record, id, key) in tail {
                writer.push(record, id, key)?;
            }
            writer.finish()
        })();
        let info = written.inspect_err(|_| self.discard(CLUSTERED_NAME))?;
        self.temp.wrote(info.bytes);
        Ok(info)
    }

    /// Takes up the runs a checkpoint names (none: the ids were in memory
    /// then); runs of ids it does not name were written after it, and are
    /// removed.
    pub fn restore(&mut self, runs: Vec<RunInfo>) -> Result<(), RunError> {
        remove_unnamed_runs(&self.temp, &runs)?;
        self.temp.holds(runs.iter().map(|r| r.bytes).sum());
        self.runs = runs;
        self.last = None;
        Ok(())
    }

    /// Removes the run `name` whose write failed (never counted, never
    /// named by a checkpoint): the run ends with the write's error.
    fn discard(&self, name: &str) {
        if let Err(e) = self.temp.remove(name, 0) {
            log::warn!("dedup pass 2: removing {name}: {e} (removed with the temporary folder)");
        }
    }

    /// Removes every run written (the pass's result is safe elsewhere).
    pub fn remove_all(&mut self) -> io::Result<()> {
        for info in std::mem::take(&mut self.runs) {
            self.temp.remove(&info.name, info.bytes)?;
        }
        Ok(())
    }
}

/// Writes one run of ids: entries in strictly increasing record order.
#[derive(Debug)]
pub struct IdsRunWriter {
    blocks: BlockWriter,
    path: PathBuf,
    /// The last record written, or the one the entries must come after.
    last: Option<u32>,
    previous: u32,
}

impl IdsRunWriter {
    /// A run at `path` whose records come after `after`.
    fn create(path: PathBuf, after: Option<u32>) -> Result<Self, RunError> {
        let file = fs::File::create(&path).map_err(RunError::io(&path))?;
        let blocks = BlockWriter::new(file, path.clone(), &FORMAT, 0)?;
        Ok(IdsRunWriter {
            blocks,
            path,
            last: after,
            previous: 0,
        })
    }

    /// Appends `record`'s id and key.
    fn push(
        &mut self,
        record: u32,
        id: Option<&str>,
        key: Option<&KeepKey>,
    ) -> Result<(), RunError> {
        if self.last.is_some_and(|l| l >= record) {
            return Err(RunError::damaged(
                &self.path,
                format!("record {record} written out of order (a bug)"),
            ));
        }
        self.last = Some(record);
        let previous = &mut self.previous;
        self.blocks.push(|payload, first| {
            let from = if first { 0 } else { *previous };
            put_varint(payload, u64::from(record - from));
            encode(payload, id, key);
            *previous = record;
        })
    }

    /// Writes the end, durable: a checkpoint or a result may name it next.
    fn finish(self) -> Result<RunInfo, RunError> {
        self.blocks.finish(true)
    }
}

/// Streams a run of ids back in record order, one block in memory.
#[derive(Debug)]
pub struct IdsRunReader {
    blocks: BlockReader,
    previous: u32,
}

impl IdsRunReader {
    /// Opens the run `info` names in `temp`, checked against it.
    pub fn open(temp: &TempSpace, info: &RunInfo) -> Result<Self, RunError> {
        let path = temp.path(&info.name).map_err(|cause| RunError::Io {
            path: temp.folder().join(&info.name),
            cause,
        })?;
        let file = fs::File::open(&path).map_err(RunError::io(&path))?;
        let (blocks, _) = BlockReader::new(file, path, &FORMAT, Some(info))?;
        Ok(IdsRunReader {
            blocks,
            previous: 0,
        })
    }

    /// The next `(record, id, key)`, `None` at the run's end.
    pub fn next_entry(&mut self) -> Result<Option<OwnedIdEntry>, RunError> {
        let Some(first) = self.blocks.next_entry()? else {
            return Ok(None);
        };
        let blocks = &mut self.blocks;
        let from = if first { 0 } else { self.previous };
        let record = u32::try_from(blocks.varint()?)
            .ok()
            .and_then(|gap| from.checked_add(gap))
            .ok_or_else(|| blocks.damaged("a record past 2^32"))?;
        if !first && record <= self.previous {
            return Err(blocks.damaged("records out of order"));
        }
        self.previous = record;
        let (id, key) = decode(blocks)?;
        Ok(Some((record, id, key)))
    }
}

/// Removes the run of the clustered records' ids a stopped pass 2 may
/// have left (a checkpoint never names it).
pub fn remove_clustered_run(temp: &TempSpace) -> Result<(), RunError> {
    if !temp.folder().is_dir() {
        return Ok(());
    }
    remove_unnamed(temp, CLUSTERED_NAME, "", &[])
}

/// Removes the runs of ids in `temp` that `named` does not name (written
/// after the checkpoint a pass resumes from); nothing when the temporary
/// folder was never made.
pub fn remove_unnamed_runs(temp: &TempSpace, named: &[RunInfo]) -> Result<(), RunError> {
    if named.is_empty() && !temp.folder().is_dir() {
        return Ok(());
    }
    remove_unnamed(temp, PREFIX, SUFFIX, named)
}

/// Codes an entry's tag, id and key.
fn encode(payload: &mut Vec<u8>, id: Option<&str>, key: Option<&KeepKey>) {
    let kind: u8 = match key {
        None => 0,
        Some(KeepKey::Length(_)) => 1,
        Some(KeepKey::Int(_)) => 2,
        Some(KeepKey::UInt(_)) => 3,
        Some(KeepKey::Float(_)) => 4,
        Some(KeepKey::Text(_)) => 5,
        Some(KeepKey::Missing) => 6,
    };
    payload.push(kind << 1 | u8::from(id.is_some()));
    if let Some(id) = id {
        put_varint(payload, id.len() as u64);
        payload.extend_from_slice(id.as_bytes());
    }
    match key {
        Some(KeepKey::Length(n) | KeepKey::UInt(n)) => put_varint(payload, *n),
        Some(KeepKey::Int(i)) => put_varint(payload, ((i << 1) ^ (i >> 63)) as u64),
        Some(KeepKey::Float(f)) => payload.extend_from_slice(&f.to_bits().to_le_bytes()),
        Some(KeepKey::Text(t)) => {
            put_varint(payload, t.len() as u64);
            payload.extend_from_slice(t.as_bytes());
        }
        Some(KeepKey::Missing) | None => {}
    }
}

/// The id and key of the entry whose record was just read.
fn decode(blocks: &mut BlockReader) -> Result<(Option<String>, Option<KeepKey>), RunError> {
    let tag = blocks.take(1)?[0];
    let text = |blocks: &mut BlockReader| -> Result<String, RunError> {
        let len = usize::try_from(blocks.varint()?).unwrap_or(usize::MAX);
        let bytes = blocks.take(len)?.to_vec();
        String::from_utf8(bytes).map_err(|_| blocks.damaged("an id or key is not UTF-8"))
    };
    let id = if tag & HAS_ID != 0 {
        Some(text(blocks)?)
    } else {
        None
    };
    let key = match tag >> 1 {
        0 => None,
        1 => Some(KeepKey::Length(blocks.varint()?)),
        2 => {
            let z = blocks.varint()?;
            Some(KeepKey::Int((z >> 1) as i64 ^ -((z & 1) as i64)))
        }
        3 => Some(KeepKey::UInt(blocks.varint()?)),
        4 => {
            let bytes: [u8; 8] = blocks.take(8)?.try_into().expect("8 bytes");
            Some(KeepKey::Float(f64::from_bits(u64::from_le_bytes(bytes))))
        }
        5 => Some(KeepKey::Text(text(blocks)?.into_boxed_str())),
        6 => Some(KeepKey::Missing),
        kind => return Err(blocks.damaged(format!("a key of unknown kind {kind}"))),
    };
    Ok((id, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(record: u32) -> Option<KeepKey> {
        match record % 7 {
            0 => None,
            1 => Some(KeepKey::Length(u64::from(record) * 1_000)),
            2 => Some(KeepKey::Int(-i64::from(record))),
            3 => Some(KeepKey::UInt(u64::MAX - u64::from(record))),
            4 => Some(KeepKey::Float(f64::from(record) / 3.0)),
            5 => Some(KeepKey::Text(format!("é{record}").into_boxed_str())),
            _ => Some(KeepKey::Missing),
        }
    }

    fn id_of(record: u32) -> Option<String> {
        (record % 11 != 4)
            .then(|| format!("\"doc-{record:08}-{}\"", "x".repeat(record as usize % 40)))
    }

    fn read_run(temp: &TempSpace, info: &RunInfo) -> Vec<OwnedIdEntry> {
        let mut reader = IdsRunReader::open(temp, info).unwrap();
        let mut all = Vec::new();
        while let Some(entry) = reader.next_entry().unwrap() {
            all.push(entry);
        }
        all
    }

    #[test]
    fn the_join_writes_the_ids_and_keys_of_the_records_asked_for_to_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut spill = IdsSpill::new(Arc::clone(&temp), Some(1));
        assert_eq!(spill.segment_bytes(), MIN_SEGMENT);
        let records: Vec<u32> = (0..30_000).map(|i| i * 3 + i % 2).collect();
        for part in records.chunks(7_000) {
            let entries: Vec<(u32, Option<String>, Option<KeepKey>)> =
                part.iter().map(|&r| (r, id_of(r), key_of(r))).collect();
            spill
                .write(
                    entries
                        .iter()
                        .map(|(r, i, k)| (*r, i.as_deref(), k.as_ref())),
                    1 << 20,
                )
                .unwrap();
        }
        assert_eq!(spill.runs().len(), 5);
        assert!(spill.bytes() > 0 && temp.bytes_spilled() == spill.bytes());
        // Every fifth record, some not written at all (between them).
        // The segment in memory follows.
        let tail_key = KeepKey::Length(3);
        let tail = [
            (200_000, Some("\"t\""), Some(&tail_key)),
            (200_001, None, None),
        ];
        let clustered = spill.join(|r| r % 5 == 0, tail).unwrap();
        assert_eq!(clustered.name, CLUSTERED_NAME);
        let mut expected: Vec<_> = records
            .iter()
            .filter(|r| *r % 5 == 0)
            .map(|&r| (r, id_of(r), key_of(r)))
            .collect();
        expected.push((200_000, Some("\"t\"".into()), Some(tail_key.clone())));
        expected.push((200_001, None, None));
        assert_eq!(read_run(&temp, &clustered), expected);
        remove_clustered_run(&temp).unwrap();
        assert!(!temp.path(CLUSTERED_NAME).unwrap().exists());
        // Out of order: refused.
        let before = spill.runs().len();
        assert!(spill.write([(3, Some("\"a\""), None)], 10).is_err());
        let _ = fs::remove_file(temp.path(&format!("{PREFIX}{before:06}{SUFFIX}")).unwrap());
        let names: Vec<String> = spill.runs().iter().map(|r| r.name.clone()).collect();
        spill.remove_all().unwrap();
        assert!(names.iter().all(|n| !temp.path(n).unwrap().exists()));
    }

    #[test]
    fn a_restore_removes_the_runs_it_does_not_name_and_a_damaged_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut spill = IdsSpill::new(Arc::clone(&temp), None);
        for start in [0u32, 100, 200] {
            let ids: Vec<String> = (start..start + 50).map(|r| format!("{r}")).collect();
            let entries = (start..start + 50)
                .zip(&ids)
                .map(|(r, i)| (r, Some(i.as_str()), None));
            spill.write(entries, 1_000).unwrap();
        }
        let named = spill.runs()[..2].to_vec();
        let files = || fs::read_dir(temp.folder()).unwrap().count();
        assert_eq!(files(), 3);
        let mut resumed = IdsSpill::new(Arc::clone(&temp), None);
        resumed.restore(named.clone()).unwrap();
        assert_eq!(files(), 2);
        let wanted = |r| [5, 120, 150, 210].contains(&r);
        let clustered = resumed.join(wanted, []).unwrap();
        let got: Vec<_> = read_run(&temp, &clustered)
            .into_iter()
            .map(|(r, id, _)| (r, id.unwrap()))
            .collect();
        assert_eq!(got, [(5, "5".to_owned()), (120, "120".to_owned())]);
        // A byte changed in the first run's last block.
        let path = temp.path(&named[0].name).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 30;
        bytes[at] ^= 0x20;
        fs::write(&path, bytes).unwrap();
        let e = resumed.join(|r| r == 5, []).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
