//! The files of an index and their frames, all through the codec (magic,
//! version, checksum per frame):
//!
//! - a band run: the sorted-run format of the spills
//!   ([`crate::jobs::dedup::spill::runs`]: magic, version, a CRC-32 per
//!   block), each entry `(key, record, twin fingerprint)`, so that it
//!   streams into pass 1's merge as one more run ([`band_name`]);
//! - the roots: one frame per [`ROOT_BLOCK`] records, each record's
//!   cluster root as `record - root` (0 for most records: one byte each),
//!   written and read in record order ([`RootsWriter`], [`RootsReader`]);
//! - a segment's words and ids: one frame per block of [`BLOCK_RECORDS`]
//!   records (the words zstd-compressed), so a reader of some records
//!   decodes only their blocks, in order, skipping forward
//!   ([`read_blocks`]): sequential reads, never one per record.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use drainpipe_actors::codec;
use serde::{Deserialize, Serialize};

use super::manifest::{FileRef, Segment, INDEX_VERSION};
use super::IndexError;

/// Records per block of words and ids.
pub const BLOCK_RECORDS: u64 = 1024;

/// zstd level of the words' blocks (level 3: most of the gain, fast).
const ZSTD_LEVEL: i32 = 3;

fn frame<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    codec::encode(value, INDEX_VERSION).map_err(std::io::Error::other)
}

/// The file name of band `band`'s run.
pub fn band_name(band: usize) -> String {
    format!("band-{band:03}.bin")
}

/// Records per frame of the roots.
pub const ROOT_BLOCK: usize = 1 << 16;

/// The roots' file.
pub const ROOTS_FILE: &str = "roots.bin";

/// Writes each record's cluster root, in record order, as its distance
/// back from the record (wrapping: under a `--keep` policy other than
/// `first` a cluster's kept record, its root, may come after some of its
/// records), one frame per [`ROOT_BLOCK`] records: nothing of the index
/// is held whole while it is written.
#[derive(Debug)]
pub struct RootsWriter {
    out: BufWriter<File>,
    block: Vec<u32>,
    next: u32,
    bytes: u64,
}

impl RootsWriter {
    /// [`ROOTS_FILE`] in `dir`, created empty.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        let out = BufWriter::new(File::create(dir.join(ROOTS_FILE))?);
        Ok(RootsWriter {
            out,
            block: Vec::with_capacity(ROOT_BLOCK),
            next: 0,
            bytes: 0,
        })
    }

    /// The next record's root.
    pub fn push(&mut self, root: u32) -> std::io::Result<()> {
        self.block.push(self.next.wrapping_sub(root));
        self.next = self.next.wrapping_add(1);
        if self.block.len() == ROOT_BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let bytes = frame(&self.block)?;
        self.out.write_all(&bytes)?;
        self.bytes += bytes.len() as u64;
        self.block.clear();
        Ok(())
    }

    /// Writes the last frame and makes the file durable.
    pub fn finish(mut self) -> std::io::Result<FileRef> {
        self.flush_block()?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(FileRef {
            name: ROOTS_FILE.to_owned(),
            bytes: self.bytes,
        })
    }
}

/// Reads the roots back in record order, a frame at a time; refuses a
/// root past the records, and a file that holds another number of them.
#[derive(Debug)]
pub struct RootsReader {
    dir: std::path::PathBuf,
    name: String,
    input: std::io::BufReader<File>,
    block: std::vec::IntoIter<u32>,
    next: u64,
    records: u64,
}

/// A codec frame's header: magic, version, payload length, checksum.
const FRAME_HEAD: usize = 24;

impl RootsReader {
    /// The roots `file` of the index in `dir`, which numbers `records`.
    pub fn open(dir: &Path, file: &FileRef, records: u64) -> Result<Self, IndexError> {
        let input =
            File::open(dir.join(&file.name)).map_err(|e| IndexError::read(dir, &file.name, e))?;
        Ok(RootsReader {
            dir: dir.to_path_buf(),
            name: file.name.clone(),
            input: std::io::BufReader::new(input),
            block: Vec::new().into_iter(),
            next: 0,
            records,
        })
    }

    fn damaged(&self, why: String) -> IndexError {
        IndexError::damaged(&self.dir, &self.name, why)
    }

    /// Reads the next frame; false at the file's end.
    fn next_block(&mut self) -> Result<bool, IndexError> {
        let mut frame = vec![0u8; FRAME_HEAD];
        let mut got = 0;
        while got < FRAME_HEAD {
            match self.input.read(&mut frame[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(self.damaged("truncated inside a frame's header".into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(IndexError::read(&self.dir, &self.name, e)),
            }
        }
        let len = u64::from_le_bytes(frame[12..20].try_into().expect("8 bytes"));
        // A frame of ROOT_BLOCK roots of at most 5 bytes each, and its count.
        if len > (ROOT_BLOCK as u64) * 5 + 16 {
            return Err(self.damaged(format!("a frame of {len} bytes")));
        }
        frame.resize(FRAME_HEAD + len as usize, 0);
        self.input
            .read_exact(&mut frame[FRAME_HEAD..])
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    self.damaged("truncated inside a frame".into())
                }
                _ => IndexError::read(&self.dir, &self.name, e),
            })?;
        let block: Vec<u32> = codec::decode(&frame, INDEX_VERSION)
            .map_err(|e| IndexError::undecodable(&self.dir, &self.name, &e))?;
        self.block = block.into_iter();
        Ok(true)
    }

    /// The next record's root, `None` after the last record.
    pub fn next_root(&mut self) -> Result<Option<u32>, IndexError> {
        let back = match self.block.next() {
            Some(back) => back,
            None => {
                if !self.next_block()? {
                    if self.next != self.records {
                        let (found, records) = (self.next, self.records);
                        return Err(self.damaged(format!("{found} roots for {records} records")));
                    }
                    return Ok(None);
                }
                match self.block.next() {
                    Some(back) => back,
                    None => return Err(self.damaged("an empty frame".into())),
                }
            }
        };
        let (r, records) = (self.next, self.records);
        if r >= records {
            return Err(self.damaged(format!("more roots than the {records} records")));
        }
        let root = (r as u32).wrapping_sub(back);
        if u64::from(root) >= records {
            return Err(self.damaged(format!(
                "record {r}'s root {root} is past the {records} records"
            )));
        }
        self.next += 1;
        Ok(Some(root))
    }
}

/// One block of records' words ([`crate::jobs::dedup::normalize::normalized_words`]):
/// each record's length in bytes, then all their bytes, zstd.
#[derive(Debug, Serialize, Deserialize)]
struct WordsBlock {
    lens: Vec<u32>,
    packed: Bytes,
}

/// Bytes serialized in one piece: serde's `Vec<u8>` goes a byte at a
/// time, which was 15% of a run's time reading an index.
#[derive(Debug)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

impl WordsBlock {
    fn of(records: &[Vec<u8>]) -> std::io::Result<Self> {
        let raw = records.concat();
        Ok(WordsBlock {
            lens: records.iter().map(|w| w.len() as u32).collect(),
            packed: Bytes(zstd::bulk::compress(&raw, ZSTD_LEVEL)?),
        })
    }

    fn records(self) -> Result<Words, String> {
        let total: usize = self.lens.iter().map(|&n| n as usize).sum();
        let raw = zstd::bulk::decompress(&self.packed.0, total).map_err(|e| e.to_string())?;
        if raw.len() != total {
            let found = raw.len();
            return Err(format!("{found} bytes of words, the lengths say {total}"));
        }
        let mut ends = Vec::with_capacity(self.lens.len());
        let mut at = 0;
        for &n in &self.lens {
            at += n as usize;
            ends.push(at);
        }
        Ok(Words { raw, ends })
    }
}

/// The words of a block's records, side by side.
#[derive(Debug)]
pub struct Words {
    raw: Vec<u8>,
    ends: Vec<usize>,
}

impl Words {
    /// Records in the block.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the block holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `at`'s words.
    pub fn get(&self, at: usize) -> &[u8] {
        let start = at.checked_sub(1).map_or(0, |i| self.ends[i]);
        &self.raw[start..self.ends[at]]
    }
}

/// Writes one segment's words and ids, a block at a time, as records come
/// in record order: the blocks are compressed and written on a thread of
/// their own, so that pass 2's Integrator, which pushes the records, only
/// hands over full blocks (compressing in it took a third of a
/// `--save-index` run's pass 2). The wait for that thread at the end has a
/// deadline ([`FINISH_DEADLINE`]): past it the run fails saying so, and
/// the thread is left behind, rather than waiting for a disk that stopped
/// answering.
#[derive(Debug)]
pub struct SegmentWriter {
    records: u64,
    block: (Vec<Vec<u8>>, Vec<Option<Box<str>>>),
    to_files: Option<SyncSender<RecordsBlock>>,
    files: Option<(JoinHandle<()>, Receiver<std::io::Result<Segment>>)>,
}

/// How long the end of a segment (its last two blocks and the files'
/// sync) may take before the run fails.
pub const FINISH_DEADLINE: Duration = Duration::from_secs(300);

/// Waits for `thread` to tell its outcome on `done`, at most `deadline`.
fn wait_for<T>(
    thread: JoinHandle<()>,
    done: &Receiver<std::io::Result<T>>,
    deadline: Duration,
) -> std::io::Result<T> {
    match done.recv_timeout(deadline) {
        Ok(written) => {
            let _ = thread.join();
            written
        }
        Err(RecvTimeoutError::Disconnected) => {
            let _ = thread.join();
            Err(std::io::Error::other("the index's writing thread panicked"))
        }
        // Not joined: the join would wait as long as the write.
        Err(RecvTimeoutError::Timeout) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the index's writing thread (index-writer) did not finish within {:.0} s \
                 (a disk that stopped answering?)",
                deadline.as_secs_f64()
            ),
        )),
    }
}

/// A block of records' words and ids, on its way to the files.
type RecordsBlock = (Vec<Vec<u8>>, Vec<Option<Box<str>>>);

impl SegmentWriter {
    /// A segment `number` in `dir` whose first record is `first`.
    pub fn create(dir: &Path, number: usize, first: u64) -> std::io::Result<Self> {
        let names = (
            format!("words-{number:03}.bin"),
            format!("ids-{number:03}.bin"),
        );
        let open = |name: &str| File::create(dir.join(name)).map(BufWriter::new);
        let mut files = SegmentFiles {
            first,
            records: 0,
            files: (open(&names.0)?, open(&names.1)?),
            names,
            starts: (Vec::new(), Vec::new()),
            ends: (0, 0),
        };
        // Two blocks queued at most: the Integrator waits past that.
        let (to_files, blocks) = sync_channel::<RecordsBlock>(2);
        let (tell, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || {
                let write = move || {
                    for block in blocks {
                        files.write(block)?;
                    }
                    files.finish()
                };
                let _ = tell.send(write());
            })?;
        Ok(SegmentWriter {
            records: 0,
            block: (Vec::new(), Vec::new()),
            to_files: Some(to_files),
            files: Some((thread, done)),
        })
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The next record's words and id (`None`: a record the run
    /// rejected). An error means the writing thread stopped: [`Self::finish`]
    /// says why.
    pub fn push(&mut self, words: Vec<u8>, id: Option<Box<str>>) -> std::io::Result<()> {
        self.block.0.push(words);
        self.block.1.push(id);
        self.records += 1;
        if self.block.0.len() as u64 == BLOCK_RECORDS {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> std::io::Result<()> {
        let block = std::mem::take(&mut self.block);
        match &self.to_files {
            Some(to) if !block.0.is_empty() => to
                .send(block)
                .map_err(|_| std::io::Error::other("the index's writing thread stopped")),
            _ => Ok(()),
        }
    }

    /// Writes the last block, syncs the files and returns the segment (or
    /// the first error writing it).
    pub fn finish(mut self) -> std::io::Result<Segment> {
        let sent = self.send();
        drop(self.to_files.take());
        let written = match self.files.take() {
            Some((thread, done)) => wait_for(thread, &done, FINISH_DEADLINE),
            None => Err(std::io::Error::other("the index's writing thread is gone")),
        };
        let segment = written?;
        sent?;
        Ok(segment)
    }
}

impl Drop for SegmentWriter {
    /// A writer dropped unfinished (the run stopped) ends its thread
    /// before the run goes on: no thread outlives the run.
    fn drop(&mut self) {
        drop(self.to_files.take());
        if let Some((thread, done)) = self.files.take() {
            if let Err(e) = wait_for(thread, &done, FINISH_DEADLINE) {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    log::error!("{e}; left behind");
                }
            }
        }
    }
}

/// The files of a segment, written by [`SegmentWriter`]'s thread.
struct SegmentFiles {
    first: u64,
    records: u64,
    names: (String, String),
    files: (BufWriter<File>, BufWriter<File>),
    starts: (Vec<u64>, Vec<u64>),
    ends: (u64, u64),
}

impl SegmentFiles {
    fn write(&mut self, (words, ids): RecordsBlock) -> std::io::Result<()> {
        self.records += words.len() as u64;
        let words = frame(&WordsBlock::of(&words)?)?;
        let ids = frame(&ids)?;
        self.starts.0.push(self.ends.0);
        self.starts.1.push(self.ends.1);
        self.files.0.write_all(&words)?;
        self.files.1.write_all(&ids)?;
        self.ends.0 += words.len() as u64;
        self.ends.1 += ids.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<Segment> {
        for file in [&mut self.files.0, &mut self.files.1] {
            file.flush()?;
            file.get_ref().sync_all()?;
        }
        let (mut word_blocks, mut id_blocks) = self.starts;
        word_blocks.push(self.ends.0);
        id_blocks.push(self.ends.1);
        Ok(Segment {
            first: self.first,
            records: self.records,
            words: FileRef {
                name: self.names.0,
                bytes: self.ends.0,
            },
            ids: FileRef {
                name: self.names.1,
                bytes: self.ends.1,
            },
            word_blocks,
            id_blocks,
        })
    }
}

/// Which of a segment's files [`read_blocks`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// The words.
    Words,
    /// The ids.
    Ids,
}

/// What a block holds, by [`Part`].
#[derive(Debug)]
pub enum Block {
    /// Words, by record in the block.
    Words(Words),
    /// Ids (`None`: a rejected record), by record in the block.
    Ids(Vec<Option<Box<str>>>),
}

/// Calls `visit(record, block, at)` for each of the `wanted` records
/// (sorted, without repeats, index numbers) that `segment` holds, with
/// the decoded block it is in and its place there: each needed block is
/// read once, in file order. Takes from `wanted` the records below the
/// segment's end (those below its start are in no segment of it: skipped),
/// and leaves the rest for the next segment.
pub fn read_blocks<I: Iterator<Item = u32>>(
    dir: &Path,
    segment: &Segment,
    part: Part,
    wanted: &mut std::iter::Peekable<I>,
    visit: &mut dyn FnMut(u32, &mut Block, usize),
) -> Result<(), IndexError> {
    let (file, starts) = match part {
        Part::Words => (&segment.words, &segment.word_blocks),
        Part::Ids => (&segment.ids, &segment.id_blocks),
    };
    let end = segment.first + segment.records;
    let mut reader: Option<File> = None;
    let mut current: Option<(u64, Block)> = None;
    while let Some(record) = wanted.next_if(|&r| u64::from(r) < end) {
        let Some(at) = u64::from(record).checked_sub(segment.first) else {
            continue;
        };
        let number = at / BLOCK_RECORDS;
        if current.as_ref().map(|c| c.0) != Some(number) {
            let reader = match &mut reader {
                Some(r) => r,
                None => reader.insert(
                    File::open(dir.join(&file.name))
                        .map_err(|e| IndexError::read(dir, &file.name, e))?,
                ),
            };
            let block = read_block(dir, file, starts, number, reader, part)?;
            current = Some((number, block));
        }
        let (_, block) = current.as_mut().expect("just read");
        let place = (at % BLOCK_RECORDS) as usize;
        let len = match block {
            Block::Words(w) => w.len(),
            Block::Ids(i) => i.len(),
        };
        if place >= len {
            let why = format!("block {number} holds {len} records, not record {record}");
            return Err(IndexError::damaged(dir, &file.name, why));
        }
        visit(record, block, place);
    }
    Ok(())
}

/// The ids of one index's records, asked for in increasing order (the
/// same one again too): each block of ids read once, when its first
/// record is asked for, in file order, never a read per record. What
/// [`read_blocks`] does for a list known up front, for a stream.
#[derive(Debug)]
pub struct IdsReader<'a> {
    dir: &'a Path,
    segments: &'a [Segment],
    /// The segment's file being read, by the segment's place.
    file: Option<(usize, File)>,
    /// The block held: its segment's place, its number, its ids.
    block: Option<(usize, u64, Ids)>,
}

/// A block's ids (`None`: a rejected record).
type Ids = Vec<Option<Box<str>>>;

impl<'a> IdsReader<'a> {
    /// The ids of the index in `dir` whose records `segments` hold.
    pub fn new(dir: &'a Path, segments: &'a [Segment]) -> Self {
        IdsReader {
            dir,
            segments,
            file: None,
            block: None,
        }
    }

    /// `record`'s id (index numbering; `None`: a record its run
    /// rejected).
    pub fn id(&mut self, record: u32) -> Result<Option<&str>, IndexError> {
        let at = u64::from(record);
        let place = self.segments.partition_point(|s| s.first + s.records <= at);
        let Some(segment) = self.segments.get(place).filter(|s| s.first <= at) else {
            let why = format!("no segment holds record {record}");
            return Err(IndexError::damaged(self.dir, super::MANIFEST_FILE, why));
        };
        let number = (at - segment.first) / BLOCK_RECORDS;
        let held = self.block.as_ref().map(|(p, n, _)| (*p, *n));
        if held != Some((place, number)) {
            if self.file.as_ref().map(|(p, _)| *p) != Some(place) {
                let name = &segment.ids.name;
                let file = File::open(self.dir.join(name))
                    .map_err(|e| IndexError::read(self.dir, name, e))?;
                self.file = Some((place, file));
            }
            let (_, reader) = self.file.as_mut().expect("just opened");
            let block = read_block(
                self.dir,
                &segment.ids,
                &segment.id_blocks,
                number,
                reader,
                Part::Ids,
            )?;
            let Block::Ids(list) = block else {
                unreachable!("ids read as ids")
            };
            self.block = Some((place, number, list));
        }
        let (_, _, list) = self.block.as_ref().expect("just read");
        let within = ((at - segment.first) % BLOCK_RECORDS) as usize;
        match list.get(within) {
            Some(id) => Ok(id.as_deref()),
            None => {
                let why = format!(
                    "block {number} holds {} records, not record {record}",
                    list.len()
                );
                Err(IndexError::damaged(self.dir, &segment.ids.name, why))
            }
        }
    }
}

fn read_block(
    dir: &Path,
    file: &FileRef,
    starts: &[u64],
    number: u64,
    reader: &mut File,
    part: Part,
) -> Result<Block, IndexError> {
    let damaged = |why: String| IndexError::damaged(dir, &file.name, why);
    let n = number as usize;
    let (Some(&start), Some(&end)) = (starts.get(n), starts.get(n + 1)) else {
        return Err(damaged(format!("no block {number}")));
    };
    if end < start || end > file.bytes {
        return Err(damaged(format!("block {number} at {start}..{end}")));
    }
    let mut bytes = vec![0u8; (end - start) as usize];
    reader
        .seek(SeekFrom::Start(start))
        .and_then(|_| reader.read_exact(&mut bytes))
        .map_err(|e| IndexError::read(dir, &file.name, e))?;
    Ok(match part {
        Part::Words => {
            let block: WordsBlock = codec::decode(&bytes, INDEX_VERSION)
                .map_err(|e| IndexError::undecodable(dir, &file.name, &e))?;
            Block::Words(block.records().map_err(damaged)?)
        }
        Part::Ids => Block::Ids(
            codec::decode(&bytes, INDEX_VERSION)
                .map_err(|e| IndexError::undecodable(dir, &file.name, &e))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_ids_round_trip_through_blocks_read_in_part() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SegmentWriter::create(dir.path(), 0, 100).unwrap();
        let set = |r: u64| -> Vec<u8> {
            (0..r % 7)
                .map(|i| format!("w{i}x{r} "))
                .collect::<String>()
                .into_bytes()
        };
        for r in 100..100 + 2500 {
            let id = (r % 5 != 0).then(|| r.to_string().into_boxed_str());
            writer.push(set(r), id).unwrap();
        }
        let segment = writer.finish().unwrap();
        assert_eq!(segment.word_blocks.len(), 4);
        let wanted = [7u32, 105, 106, 1500, 2599, 2600];
        let mut seen = Vec::new();
        read_blocks(
            dir.path(),
            &segment,
            Part::Words,
            &mut wanted.iter().copied().peekable(),
            &mut |r, block, at| {
                let Block::Words(words) = block else { panic!() };
                seen.push((r, words.get(at).to_vec()));
            },
        )
        .unwrap();
        let expected: Vec<_> = [105u32, 106, 1500, 2599]
            .iter()
            .map(|&r| (r, set(r.into())))
            .collect();
        assert_eq!(seen, expected);
        let mut ids = Vec::new();
        read_blocks(
            dir.path(),
            &segment,
            Part::Ids,
            &mut [105, 110, 2599].into_iter().peekable(),
            &mut |r, block, at| {
                let Block::Ids(list) = block else { panic!() };
                ids.push((r, list[at].clone()));
            },
        )
        .unwrap();
        assert_eq!(ids, [(105, None), (110, None), (2599, Some("2599".into()))]);
        // The same ids streamed, a root asked for again, and a record no
        // segment holds refused naming it.
        let segments = [segment];
        let mut reader = IdsReader::new(dir.path(), &segments);
        let mut streamed = Vec::new();
        for r in [105u32, 106, 106, 1123, 1124, 2599] {
            streamed.push(reader.id(r).unwrap().map(str::to_owned));
        }
        let want = |r: u32| (!r.is_multiple_of(5)).then(|| r.to_string());
        let want: Vec<_> = [105u32, 106, 106, 1123, 1124, 2599].map(want).into();
        assert_eq!(streamed, want);
        let e = reader.id(2600).unwrap_err().to_string();
        assert!(e.contains("no segment holds record 2600"), "{e}");
    }

    #[test]
    fn a_writing_thread_that_does_not_finish_by_its_deadline_fails_the_wait() {
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (tell, done) = sync_channel::<std::io::Result<u32>>(1);
        let thread = std::thread::spawn(move || {
            let _ = blocked.recv();
            let _ = tell.send(Ok(7));
        });
        let err = wait_for(thread, &done, Duration::from_millis(20)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("did not finish within"), "{err}");
        release.send(()).unwrap();
        // One that finishes gives its outcome.
        let (tell, done) = sync_channel::<std::io::Result<u32>>(1);
        let thread = std::thread::spawn(move || {
            let _ = tell.send(Ok(7));
        });
        assert_eq!(wait_for(thread, &done, FINISH_DEADLINE).unwrap(), 7);
    }

    #[test]
    fn roots_round_trip_in_frames_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let records = ROOT_BLOCK * 2 + 5;
        let root = |r: usize| if r % 3 == 2 { r as u32 - 2 } else { r as u32 };
        let mut writer = RootsWriter::create(dir.path()).unwrap();
        for r in 0..records {
            writer.push(root(r)).unwrap();
        }
        let file = writer.finish().unwrap();
        let read = |records: u64| -> Result<Vec<u32>, IndexError> {
            let mut reader = RootsReader::open(dir.path(), &file, records)?;
            let mut out = Vec::new();
            while let Some(root) = reader.next_root()? {
                out.push(root);
            }
            Ok(out)
        };
        let expected: Vec<u32> = (0..records).map(root).collect();
        assert_eq!(read(records as u64).unwrap(), expected);
        // Another count of records, a root past them, a damaged frame.
        assert!(read(records as u64 + 1).is_err());
        assert!(read(records as u64 - 1).is_err());
        let path = dir.path().join(ROOTS_FILE);
        let good = std::fs::read(&path).unwrap();
        let mut bytes = good.clone();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let text = read(records as u64).unwrap_err().to_string();
        assert!(
            text.contains("is damaged") && text.contains(ROOTS_FILE),
            "{text}"
        );
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(read(records as u64).is_err());
    }
}
