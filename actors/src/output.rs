//! The output folder and atomic writes: every output file is written to a
//! temporary file in the same folder and renamed into place only when it is
//! complete, so a crash never leaves a half-written file under its real name.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::OutputError;

/// Writeback of an output file to its disk is started every this many
/// bytes written, so that by the time [`AtomicFile::commit`] syncs the file
/// most of it is already there. Without it the sync waits for the whole
/// file: 14 ms of a 36 MB file's 26 ms, against 2 ms with it.
const WRITEBACK_EVERY: u64 = 4 << 20;

/// The random letters and digits in a temporary file's name.
const RANDOM_CHARS: usize = 6;

/// Whether `name` is that of a temporary file [`OutputDir::atomic`] makes
/// (`.NAME.XXXXXX.tmp`, six random letters or digits): one that is not
/// committed yet, or that a killed run left behind. Exactly that shape, as
/// the folder may hold a user's own hidden files (`-o .`), and those of
/// this shape are removed ([`OutputDir::remove_temporaries`]).
pub fn is_temporary(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    inner.rsplit_once('.').is_some_and(|(output, random)| {
        !output.is_empty()
            && random.len() == RANDOM_CHARS
            && random.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The folder a run writes its outputs into.
#[derive(Debug, Clone)]
pub struct OutputDir {
    path: PathBuf,
}

impl OutputDir {
    /// Creates the folder (and its parents) if needed and checks that it is
    /// writable by creating and removing a temporary file in it.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, OutputError> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| OutputError::new(&path, e))?;
        tempfile::NamedTempFile::new_in(&path).map_err(|e| OutputError::new(&path, e))?;
        Ok(OutputDir { path })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of an output file called `name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Starts writing the output file `name`; nothing appears under that
    /// name until [`AtomicFile::commit`].
    pub fn atomic(&self, name: &str) -> Result<AtomicFile, OutputError> {
        let target = self.file(name);
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder
            .prefix(&prefix)
            .suffix(".tmp")
            .rand_bytes(RANDOM_CHARS);
        // Temporary files are private (0600) by default; outputs are not.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let temp = builder
            .tempfile_in(&self.path)
            .map_err(|e| OutputError::new(&target, e))?;
        Ok(AtomicFile {
            writer: BufWriter::with_capacity(1 << 16, temp),
            target,
            bytes_written: 0,
            writeback_at: 0,
        })
    }

    /// Writes the whole file `name` from `bytes`, atomically.
    pub fn write_all(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, OutputError> {
        let mut file = self.atomic(name)?;
        file.write_all(bytes)
            .map_err(|e| OutputError::new(&file.target, e))?;
        file.commit()
    }

    /// Removes `name` if it exists (an output a previous run left and this
    /// run does not produce).
    pub fn remove_stale(&self, name: &str) -> Result<(), OutputError> {
        let path = self.file(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(OutputError::new(&path, e)),
            _ => Ok(()),
        }
    }
}

/// An output file being written. Dropping it without [`commit`] removes the
/// temporary file and leaves any previous file of that name untouched.
///
/// [`commit`]: AtomicFile::commit
#[derive(Debug)]
pub struct AtomicFile {
    writer: BufWriter<tempfile::NamedTempFile>,
    target: PathBuf,
    /// Bytes written so far.
    bytes_written: u64,
    /// `bytes_written` when writeback was last started.
    writeback_at: u64,
}

impl AtomicFile {
    /// The final path of the file.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Everything written so far (flushes first); for checkpoints.
    pub fn written(&mut self) -> io::Result<Vec<u8>> {
        use std::io::Read;
        self.writer.flush()?;
        let mut bytes = Vec::new();
        self.writer.get_ref().reopen()?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Appends `len` bytes of `source` from `offset`. On Linux the kernel
    /// copies them (`copy_file_range`), with no pass through user space;
    /// elsewhere, or where the file systems do not allow it, std falls back
    /// to a plain copy. Fails if `source` has fewer bytes there.
    pub fn copy_range(&mut self, source: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        self.writer.flush()?;
        if injected("output::copy", &self.target) {
            let full = io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (failpoint output::copy)",
            );
            return Err(full);
        }
        let mut source = source;
        source.seek(SeekFrom::Start(offset))?;
        // `File` to `File`, so std's copy can use the kernel's.
        let copied = io::copy(&mut source.take(len), self.writer.get_mut().as_file_mut())?;
        self.wrote(copied);
        if copied < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the source ended {} bytes short of byte {}",
                    len - copied,
                    offset + len
                ),
            ));
        }
        Ok(())
    }

    /// Counts `n` more bytes written, and starts the writeback of what is
    /// written every [`WRITEBACK_EVERY`] bytes. A failed flush skips the
    /// writeback: the error comes back from the next write or `commit`.
    fn wrote(&mut self, n: u64) {
        self.bytes_written += n;
        if self.bytes_written - self.writeback_at >= WRITEBACK_EVERY && self.writer.flush().is_ok()
        {
            start_writeback(self.writer.get_ref().as_file());
            self.writeback_at = self.bytes_written;
        }
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        let Synced { temp, target } = self.sync()?;
        temp.persist(&target)
            .map_err(|e| OutputError::new(&target, e.error))?;
        sync_parent(&target).map_err(|e| OutputError::new(&target, e))?;
        Ok(target)
    }

    /// Flushes and syncs the file, leaving it under its temporary name
    /// (removed if the result is dropped): the first step of a commit.
    pub(crate) fn sync(self) -> Result<Synced, OutputError> {
        let target = self.target;
        let temp = self
            .writer
            .into_inner()
            .map_err(|e| OutputError::new(&target, e.into_error()))?;
        if injected("output::sync", &target) {
            let full = io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (failpoint output::sync)",
            );
            return Err(OutputError::new(&target, full));
        }
        temp.as_file()
            .sync_all()
            .map_err(|e| OutputError::new(&target, e))?;
        Ok(Synced {
            temp: temp.into_temp_path(),
            target,
        })
    }
}

/// A file written and synced under its temporary name, not yet renamed.
pub(crate) struct Synced {
    /// The temporary file; removed when dropped, unless kept.
    pub(crate) temp: tempfile::TempPath,
    /// Its final path.
    pub(crate) target: PathBuf,
}

/// Syncs the folder holding `path`, so the rename that put it there
/// survives a power loss too (not only a crash of the process). Folders
/// whose file system cannot sync them (it says the operation is invalid or
/// unsupported) are left as they are.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    match std::fs::File::open(parent).and_then(|dir| dir.sync_all()) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Starts writing `file`'s dirty pages to its disk, without waiting for
/// them (Linux's `sync_file_range` with `SYNC_FILE_RANGE_WRITE`, which
/// PostgreSQL uses the same way before its checkpoints' fsyncs).
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: the call takes a descriptor and integers, no pointer, so it
    // touches no memory of ours; the descriptor is `file`'s, borrowed, so
    // it stays open (and is not reused) for the call. The result is a
    // hint's and is ignored: a write error surfaces in `commit`'s
    // `sync_all`, which waits for every page.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere the sync in [`AtomicFile::commit`] does all the waiting.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File) {}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.wrote(n as u64);
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)?;
        self.wrote(buf.len() as u64);
        Ok(())
    }
    /// One `writev` of the slices when they are more than the buffer
    /// holds (the temporary file's own `Write` writes one slice a call).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let n = if total >= self.writer.capacity() {
            self.writer.flush()?;
            self.writer.get_mut().as_file_mut().write_vectored(bufs)?
        } else {
            self.writer.write_vectored(bufs)?
        };
        self.wrote(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Whether the failpoint `point` names the file at `target`
/// (`output::sync=return(clusters.jsonl)` acts on that file only).
#[cfg(feature = "failpoints")]
pub(crate) fn injected(point: &str, target: &std::path::Path) -> bool {
    let name = target.file_name().and_then(|n| n.to_str());
    fail::eval(point, |arg| arg.is_some() && arg.as_deref() == name).unwrap_or(false)
}

/// Without the `failpoints` feature nothing is injected.
#[cfg(not(feature = "failpoints"))]
pub(crate) fn injected(_point: &str, _target: &std::path::Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_ranges_and_writes_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        let source_path = dir.path().join("source");
        std::fs::write(&source_path, b"0123456789").unwrap();
        let source = std::fs::File::open(&source_path).unwrap();
        let mut file = out.atomic("copy").unwrap();
        file.write_all(b"<").unwrap();
        file.copy_range(&source, 2, 3).unwrap();
        file.write_all(b"|").unwrap();
        file.copy_range(&source, 0, 10).unwrap();
        file.copy_range(&source, 9, 1).unwrap();
        let short = file.copy_range(&source, 8, 5).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        file.write_all(b">").unwrap();
        let path = file.commit().unwrap();
        // The short copy appended what there was (its error fails the run).
        assert_eq!(std::fs::read(path).unwrap(), b"<234|0123456789989>");
    }

    #[test]
    fn writes_and_copies_past_the_writeback_interval_keep_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        let source_path = dir.path().join("source");
        let block: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source_path, &block).unwrap();
        let source = std::fs::File::open(&source_path).unwrap();
        let mut file = out.atomic("big").unwrap();
        let mut expected = Vec::new();
        // More than two writeback intervals, crossed by writes of any size
        // and by kernel copies.
        for round in 0..7u64 {
            let cut = (round as usize * 99_991) % block.len();
            file.write_all(&block[..cut]).unwrap();
            expected.extend_from_slice(&block[..cut]);
            for b in &block[cut..cut + 10] {
                assert_eq!(file.write(std::slice::from_ref(b)).unwrap(), 1);
            }
            expected.extend_from_slice(&block[cut..cut + 10]);
            file.copy_range(&source, round, block.len() as u64 - round)
                .unwrap();
            expected.extend_from_slice(&block[round as usize..]);
            // Vectored writes, smaller and larger than the buffer.
            let (a, b) = (&block[..cut / 7], &block[cut..cut + 300]);
            let mut slices = [
                io::IoSlice::new(a),
                io::IoSlice::new(b"|"),
                io::IoSlice::new(b),
            ];
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                let n = file.write_vectored(slices).unwrap();
                io::IoSlice::advance_slices(&mut slices, n);
            }
            expected.extend_from_slice(a);
            expected.push(b'|');
            expected.extend_from_slice(b);
        }
        assert!(
            file.bytes_written > 2 * WRITEBACK_EVERY,
            "{}",
            file.bytes_written
        );
        assert_eq!(file.bytes_written, expected.len() as u64);
        assert!(file.writeback_at > 0, "writeback was started");
        let path = file.commit().unwrap();
        assert!(std::fs::read(path).unwrap() == expected);
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        out.write_all("kept.txt", b"old").unwrap();
        let mut f = out.atomic("kept.txt").unwrap();
        f.write_all(b"half-written").unwrap();
        drop(f);
        assert_eq!(std::fs::read(out.file("kept.txt")).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file was not removed");
    }

    #[test]
    fn temporaries_are_told_apart_from_other_hidden_files() {
        let f = out_name_of_a_real_temporary();
        assert!(is_temporary(&f), "{f}");
        for other in [
            ".tmp",
            ".x",
            "a.tmp",
            ".drainpipe.lock",
            "kept.jsonl",
            // A user's own hidden files, in a folder given as -o.
            ".cache.tmp",
            ".backup.tmp",
            ".notes.v1.tmp",
            ".kept.jsonl.abc.tmp",
            ".kept.jsonl.ab-def.tmp",
            ".abcdef.tmp",
        ] {
            assert!(!is_temporary(other), "{other}");
        }
    }

    fn out_name_of_a_real_temporary() -> String {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        let file = out.atomic("kept.jsonl").unwrap();
        let names = names(dir.path());
        drop(file);
        names.into_iter().next().unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}
