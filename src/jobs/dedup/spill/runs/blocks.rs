//! The framing every spill file shares: a header, entries in checksummed
//! blocks, and an end that counts them. Sorted runs ([`super`]) and runs
//! of held shingle sets ([`crate::jobs::dedup::spill::held`]) differ only
//! in their magic, flags and entries, so each codes its entries and this
//! module does the rest: cutting blocks, checksums, the end, the
//! whole-file checks.
//!
//! # Format
//!
//! All integers little-endian.
//!
//! | part | bytes | content |
//! |---|---|---|
//! | header | 16 | magic (8), version `u32`, flags `u32` |
//! | block, repeated | 12 + n | payload length `u32` (> 0), entries `u32`, CRC-32 of the payload `u32`, payload |
//! | end | 20 | `0u32`, `0u32`, CRC-32 of the next 8 bytes `u32`, total entries `u64` |
//!
//! A block's payload is its entries one after the other, cut once it
//! reaches [`BLOCK_BYTES`], so a reader holds one block, not the file, and
//! a damaged byte is found in the block it is in. An entry may be coded as
//! a gap from the one before it in its block, never across blocks: the
//! writer and the reader tell the format which entry starts a block.
//!
//! Whole-file checks: the writer returns the file's length and the CRC-32
//! of all its bytes ([`RunInfo`]); a reader given them refuses a file of
//! another length at once and one of another checksum at its end. Every
//! error names the file ([`RunError`]).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{RunError, RunInfo};

/// A block's payload is cut once it reaches this many bytes.
pub const BLOCK_BYTES: usize = 64 << 10;

/// A reader's buffer under its block: a block's header and the start of
/// its payload come through it, the rest of the payload is read straight
/// into the block (a buffer of a whole block would double a reader's
/// bytes, and so halve the runs a merge has room to read at once).
pub const READ_BUFFER: usize = 8 << 10;

/// Bytes of a file's header.
pub const HEADER_LEN: usize = 16;
/// Bytes of a block's header (and of the end's first part).
pub const BLOCK_HEAD: usize = 12;

/// What tells one format of blocks from another.
#[derive(Debug)]
pub struct Format {
    /// The magic number that starts its files.
    pub magic: &'static [u8; 8],
    /// Its version; bump on any change of it.
    pub version: u32,
    /// The flags its readers know; a file with another is refused.
    pub flags: u32,
    /// The largest payload a reader accepts: a block passes
    /// [`BLOCK_BYTES`] by its last entry at most.
    pub max_payload: usize,
    /// What its files are, for a file of another magic ("a sorted run").
    pub what: &'static str,
}

/// Appends `value` as a LEB128 variable-length integer (sorted runs
/// write theirs into an array instead: see [`super::RunWriter::push`]).
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes one file of blocks; its format codes the entries.
#[derive(Debug)]
pub struct BlockWriter {
    out: BufWriter<File>,
    path: PathBuf,
    payload: Vec<u8>,
    in_block: u32,
    entries: u64,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl BlockWriter {
    /// A file of `format` with `flags` written to `file` (created empty),
    /// known as `path` in errors.
    pub fn new(file: File, path: PathBuf, format: &Format, flags: u32) -> Result<Self, RunError> {
        let mut writer = BlockWriter {
            out: BufWriter::with_capacity(BLOCK_BYTES, file),
            path,
            // Room for a block and its last entry: the largest payload,
            // or 1 KiB past a block where an entry can be larger.
            payload: Vec::with_capacity(format.max_payload.min(BLOCK_BYTES + 1024)),
            in_block: 0,
            entries: 0,
            bytes: 0,
            crc: crc32fast::Hasher::new(),
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(format.magic);
        header.extend_from_slice(&format.version.to_le_bytes());
        header.extend_from_slice(&flags.to_le_bytes());
        writer.write(&header)?;
        Ok(writer)
    }

    /// The file, as errors name it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RunError> {
        // Tests fail the writes to the files whose name holds NAME as a
        // failing disk would (EIO; feature `failpoints`):
        // `dedup::run_write=return(NAME)`.
        #[cfg(feature = "failpoints")]
        if let Some(Some(name)) = fail::eval("dedup::run_write", |name| name) {
            let file = self.path.file_name().unwrap_or_default();
            if file.to_string_lossy().contains(&name) {
                return Err(RunError::io(&self.path)(std::io::Error::from_raw_os_error(
                    5,
                )));
            }
        }
        self.out
            .write_all(bytes)
            .map_err(RunError::io(&self.path))?;
        self.crc.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Appends one entry, which `encode` codes into the block being
    /// filled (told whether it is the block's first); the block is written
    /// once it reaches [`BLOCK_BYTES`].
    #[inline]
    pub fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>, bool)) -> Result<(), RunError> {
        encode(&mut self.payload, self.in_block == 0);
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
        self.in_block = 0;
        Ok(())
    }

    /// Writes the last block and the end; with `durable`, makes the file
    /// durable too (a checkpoint may name it next). Without, the format
    /// syncs it when a checkpoint names it: most sorted runs are merged
    /// and removed before any does, and a sync per run made every spill
    /// wait for the disk.
    pub fn finish(mut self, durable: bool) -> Result<RunInfo, RunError> {
        self.flush_block()?;
        let total = self.entries.to_le_bytes();
        let mut end = [0u8; BLOCK_HEAD];
        end[8..].copy_from_slice(&crc32fast::hash(&total).to_le_bytes());
        self.write(&end)?;
        self.write(&total)?;
        // Flushed, and closed as it drops.
        let file = self
            .out
            .into_inner()
            .map_err(|e| RunError::io(&self.path)(e.into_error()))?;
        if durable {
            file.sync_all().map_err(RunError::io(&self.path))?;
        }
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

/// Streams a file of blocks back, one block in memory at a time, checking
/// every block's checksum, the count of entries and (given the writer's
/// [`RunInfo`]) the file's length and checksum; its format decodes the
/// entries from the block.
#[derive(Debug)]
pub struct BlockReader {
    input: BufReader<File>,
    path: PathBuf,
    max_payload: usize,
    payload: Vec<u8>,
    at: usize,
    left_in_block: u32,
    entries: u64,
    crc: crc32fast::Hasher,
    checksum: Option<u32>,
    ended: bool,
}

impl BlockReader {
    /// Reads the file of `format` in `file`, known as `path` in errors;
    /// gives its flags too. With `expected` (what the writer returned), a
    /// file of another length is refused here, one of another checksum at
    /// its end.
    pub fn new(
        file: File,
        path: PathBuf,
        format: &Format,
        expected: Option<&RunInfo>,
    ) -> Result<(Self, u32), RunError> {
        if let Some(info) = expected {
            let len = file.metadata().map_err(RunError::io(&path))?.len();
            if len != info.bytes {
                return Err(RunError::damaged(
                    &path,
                    format!("{len} bytes, {} written", info.bytes),
                ));
            }
        }
        let mut reader = BlockReader {
            input: BufReader::with_capacity(READ_BUFFER, file),
            path,
            max_payload: format.max_payload,
            payload: Vec::new(),
            at: 0,
            left_in_block: 0,
            entries: 0,
            crc: crc32fast::Hasher::new(),
            checksum: expected.map(|i| i.checksum),
            ended: false,
        };
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header, "its header")?;
        if &header[..8] != format.magic {
            return Err(reader.damaged(format!("not {} (bad magic number)", format.what)));
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (version, flags) = (word(8), word(12));
        if version != format.version {
            return Err(reader.damaged(format!(
                "format version {version}, this build reads version {}",
                format.version
            )));
        }
        if flags & !format.flags != 0 {
            return Err(reader.damaged(format!("unknown flags {flags:#x}")));
        }
        Ok((reader, flags))
    }

    /// The file is damaged: `what`, naming it.
    pub fn damaged(&self, what: impl Into<String>) -> RunError {
        RunError::damaged(&self.path, what)
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), RunError> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.crc.update(buf);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.damaged(format!("truncated: the file ends inside {what}")))
            }
            Err(e) => Err(RunError::io(&self.path)(e)),
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
        if len > self.max_payload || count == 0 {
            return Err(self.damaged(format!("a block of {len} bytes and {count} entries")));
        }
        let mut payload = std::mem::take(&mut self.payload);
        payload.resize(len, 0);
        let read = self.read_exact(&mut payload, "a block");
        self.payload = payload;
        read?;
        if crc32fast::hash(&self.payload) != crc {
            return Err(self.damaged("a block's checksum does not match"));
        }
        (self.at, self.left_in_block) = (0, count);
        Ok(true)
    }

    fn read_end(&mut self, zero: u32, crc: u32) -> Result<(), RunError> {
        let mut total = [0u8; 8];
        self.read_exact(&mut total, "its end")?;
        if zero != 0 || crc32fast::hash(&total) != crc {
            return Err(self.damaged("its end is damaged"));
        }
        let total = u64::from_le_bytes(total);
        if total != self.entries {
            return Err(self.damaged(format!("{} entries read, {total} written", self.entries)));
        }
        let mut rest = [0u8; 1];
        match self.input.read(&mut rest) {
            Ok(0) => {}
            Ok(_) => return Err(self.damaged("bytes after its end")),
            Err(e) => return Err(RunError::io(&self.path)(e)),
        }
        if self
            .checksum
            .is_some_and(|c| self.crc.clone().finalize() != c)
        {
            return Err(self.damaged("its checksum does not match"));
        }
        self.ended = true;
        Ok(())
    }

    /// Makes sure the block has entries left, reading the next block when
    /// this one is done: `None` at the file's end (once its end and checks
    /// were read), else whether the block was just read (its next entry is
    /// its first).
    #[inline]
    pub fn fill(&mut self) -> Result<Option<bool>, RunError> {
        if self.left_in_block != 0 {
            return Ok(Some(false));
        }
        if self.at != self.payload.len() {
            return Err(self.damaged("a block has bytes past its entries"));
        }
        if self.ended || !self.next_block()? {
            return Ok(None);
        }
        Ok(Some(true))
    }

    /// The block's payload, where its next entry starts, and how many
    /// entries it has left: a format decodes a batch of them in one loop,
    /// then tells [`BlockReader::consumed`].
    #[inline]
    pub fn rest(&self) -> (&[u8], usize, u32) {
        (&self.payload, self.at, self.left_in_block)
    }

    /// `count` entries of the block were decoded, ending at `at`.
    #[inline]
    pub fn consumed(&mut self, at: usize, count: u32) {
        debug_assert!(count <= self.left_in_block && at <= self.payload.len());
        self.at = at;
        self.left_in_block -= count;
        self.entries += u64::from(count);
    }

    /// Starts the next entry, reading the next block when this one is
    /// done: `None` at the file's end (once its end and checks were read),
    /// else whether the entry is its block's first. The format then
    /// decodes it with [`BlockReader::varint`] and [`BlockReader::take`].
    #[inline]
    pub fn next_entry(&mut self) -> Result<Option<bool>, RunError> {
        let first = self.fill()?;
        if first.is_some() {
            self.left_in_block -= 1;
            self.entries += 1;
        }
        Ok(first)
    }

    /// The entry's next LEB128 integer.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, RunError> {
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
        Err(self.damaged("an entry runs past its block"))
    }

    /// The entry's next `len` bytes.
    #[inline]
    pub fn take(&mut self, len: usize) -> Result<&[u8], RunError> {
        let end = self.at.saturating_add(len);
        match self.payload.get(self.at..end) {
            Some(bytes) => {
                self.at = end;
                Ok(bytes)
            }
            None => Err(RunError::damaged(
                &self.path,
                "an entry runs past its block",
            )),
        }
    }
}
