//! The files of an index and their frames, all through the codec (magic,
//! version, checksum per frame):
//!
//! - a band run: one frame, the band's entries `key << 32 | record`
//!   sorted, as `(key - previous key, record)`;
//! - the roots: one frame, each record's cluster root as `record - root`
//!   (0 for most records: one byte each);
//! - a segment's words and ids: one frame per block of [`BLOCK_RECORDS`]
//!   records (the words zstd-compressed), so a reader of some records
//!   decodes only their blocks, in order, skipping forward
//!   ([`read_blocks`]): sequential reads, never one per record.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use drainpipe_actors::codec;
use serde::{Deserialize, Serialize};

use super::manifest::{FileRef, Segment, INDEX_VERSION};
use super::IndexError;

/// Records per block of words and ids.
pub const BLOCK_RECORDS: u64 = 1024;

/// zstd level of the words' blocks (level 3: most of the gain, fast).
const ZSTD_LEVEL: i32 = 3;

fn written(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<FileRef> {
    let mut file = File::create(dir.join(name))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(FileRef {
        name: name.to_owned(),
        bytes: bytes.len() as u64,
    })
}

fn frame<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    codec::encode(value, INDEX_VERSION).map_err(std::io::Error::other)
}

fn read_frame<T: serde::de::DeserializeOwned>(dir: &Path, file: &FileRef) -> Result<T, IndexError> {
    let bytes =
        std::fs::read(dir.join(&file.name)).map_err(|e| IndexError::read(dir, &file.name, e))?;
    codec::decode(&bytes, INDEX_VERSION).map_err(|e| IndexError::undecodable(dir, &file.name, &e))
}

/// Writes band `band`'s run (entries sorted) into `dir`.
pub fn write_band(dir: &Path, band: usize, entries: &[u64]) -> std::io::Result<FileRef> {
    let mut previous = 0u32;
    let form: Vec<(u32, u32)> = entries
        .iter()
        .map(|&e| {
            let key = (e >> 32) as u32;
            let gap = key.wrapping_sub(previous);
            previous = key;
            (gap, e as u32)
        })
        .collect();
    written(dir, &format!("band-{band:03}.bin"), &frame(&form)?)
}

/// Appends band run `file`'s entries to `out`, each record plus
/// `offset`, in the run's order (sorted by key).
pub fn read_band(
    dir: &Path,
    file: &FileRef,
    offset: u32,
    out: &mut Vec<u64>,
) -> Result<(), IndexError> {
    let form: Vec<(u32, u32)> = read_frame(dir, file)?;
    out.reserve(form.len());
    let mut key = 0u32;
    for (gap, record) in form {
        key = key.wrapping_add(gap);
        let Some(record) = record.checked_add(offset) else {
            return Err(IndexError::damaged(
                dir,
                &file.name,
                "a record past 2^32".into(),
            ));
        };
        out.push(u64::from(key) << 32 | u64::from(record));
    }
    Ok(())
}

/// Writes each record's cluster root, as its distance back from the record
/// (wrapping: under a `--keep` policy other than `first` a cluster's kept
/// record, its root, may come after some of its records).
pub fn write_roots(dir: &Path, roots: &[u32]) -> std::io::Result<FileRef> {
    let form: Vec<u32> = roots
        .iter()
        .enumerate()
        .map(|(r, &root)| (r as u32).wrapping_sub(root))
        .collect();
    written(dir, "roots.bin", &frame(&form)?)
}

/// Each record's cluster root; refuses a root past the records, and one
/// that is not its own root (every cluster's root is its kept record).
pub fn read_roots(dir: &Path, file: &FileRef, records: u64) -> Result<Vec<u32>, IndexError> {
    let form: Vec<u32> = read_frame(dir, file)?;
    if form.len() as u64 != records {
        let why = format!("{} roots for {records} records", form.len());
        return Err(IndexError::damaged(dir, &file.name, why));
    }
    let damaged = |why: String| IndexError::damaged(dir, &file.name, why);
    let mut roots = Vec::with_capacity(form.len());
    for (r, back) in form.into_iter().enumerate() {
        let root = (r as u32).wrapping_sub(back);
        if u64::from(root) >= records {
            return Err(damaged(format!(
                "record {r}'s root {root} is past the {records} records"
            )));
        }
        roots.push(root);
    }
    if let Some(r) = (0..roots.len()).find(|&r| roots[roots[r] as usize] != roots[r]) {
        return Err(damaged(format!(
            "record {r}'s root {} is not a root",
            roots[r]
        )));
    }
    Ok(roots)
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
/// `--save-index` run's pass 2).
#[derive(Debug)]
pub struct SegmentWriter {
    records: u64,
    block: (Vec<Vec<u8>>, Vec<Option<Box<str>>>),
    to_files: Option<SyncSender<RecordsBlock>>,
    files: Option<JoinHandle<std::io::Result<Segment>>>,
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
        let thread = std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || {
                for block in blocks {
                    files.write(block)?;
                }
                files.finish()
            })?;
        Ok(SegmentWriter {
            records: 0,
            block: (Vec::new(), Vec::new()),
            to_files: Some(to_files),
            files: Some(thread),
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
        let written = match self.files.take().map(JoinHandle::join) {
            Some(Ok(written)) => written,
            Some(Err(_)) => Err(std::io::Error::other("the index's writing thread panicked")),
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
        if let Some(thread) = self.files.take() {
            let _ = thread.join();
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
/// read once, in file order.
pub fn read_blocks(
    dir: &Path,
    segment: &Segment,
    part: Part,
    wanted: &[u32],
    visit: &mut dyn FnMut(u32, &mut Block, usize),
) -> Result<(), IndexError> {
    let (file, starts) = match part {
        Part::Words => (&segment.words, &segment.word_blocks),
        Part::Ids => (&segment.ids, &segment.id_blocks),
    };
    let end = segment.first + segment.records;
    let from = wanted.partition_point(|&r| u64::from(r) < segment.first);
    let mut reader: Option<File> = None;
    let mut current: Option<(u64, Block)> = None;
    for &record in wanted[from..].iter().take_while(|&&r| u64::from(r) < end) {
        let at = u64::from(record) - segment.first;
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
            &wanted,
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
            &[105, 110, 2599],
            &mut |r, block, at| {
                let Block::Ids(list) = block else { panic!() };
                ids.push((r, list[at].clone()));
            },
        )
        .unwrap();
        assert_eq!(ids, [(105, None), (110, None), (2599, Some("2599".into()))]);
    }

    #[test]
    fn bands_and_roots_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![3u64 << 32 | 9, 3 << 32 | 11, u64::from(u32::MAX) << 32 | 2];
        let file = write_band(dir.path(), 4, &entries).unwrap();
        let mut back = Vec::new();
        read_band(dir.path(), &file, 10, &mut back).unwrap();
        let shifted: Vec<u64> = entries.iter().map(|e| e + 10).collect();
        assert_eq!(back, shifted);
        let roots = vec![0, 1, 0, 3, 1];
        let file = write_roots(dir.path(), &roots).unwrap();
        assert_eq!(read_roots(dir.path(), &file, 5).unwrap(), roots);
        assert!(read_roots(dir.path(), &file, 6).is_err());
    }
}
