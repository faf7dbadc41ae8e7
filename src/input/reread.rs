//! [`Reread`]: some records of uncompressed input files, read again at the
//! places an earlier pass found them ([`drainpipe_actors::Span`]), without
//! reading anything else. A later pass of a multi-pass job that needs a
//! few records (dedup's candidates) reads those, not the whole input.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use drainpipe_actors::{BatchBuilder, InputError, RecordSource, Span};

use super::stream::{kind_of, Compression};

/// One record to read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Where it starts.
    pub span: Span,
    /// Its length in bytes.
    pub len: u32,
    /// Its 1-based line, for messages.
    pub line: u64,
}

struct Opened {
    input: u32,
    file: File,
    origin: Arc<str>,
    format: u8,
}

/// Serves the `wanted` records in the order given, each read at its place.
/// Its records are numbered from 0 by the pipeline like any source's; the
/// job maps that number back to the record's index in the whole input.
/// Wanted records in input order (as an earlier pass found them) keep one
/// file open at a time.
pub struct Reread {
    paths: Vec<PathBuf>,
    current: Option<Opened>,
    wanted: Arc<Vec<Wanted>>,
    next: usize,
    read: u64,
    total: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Reread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reread")
            .field("records", &self.wanted.len())
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Reread {
    /// A source of the `wanted` records of `paths` (the run's inputs, as
    /// numbered by [`crate::input::Inputs`]). Fails, naming the input, if a
    /// wanted record is in none of them or in a compressed one; the files
    /// are opened as their records come.
    pub fn open(paths: &[PathBuf], wanted: Arc<Vec<Wanted>>) -> Result<Reread, InputError> {
        // Each input is checked once (wanted records come input by input).
        let mut checked = None;
        for w in wanted.iter() {
            if checked == Some(w.span.input) {
                continue;
            }
            checked = Some(w.span.input);
            let at = w.span.input as usize;
            let fail = |origin: String, kind, message: &str| InputError {
                origin,
                line: w.line,
                cause: io::Error::new(kind, message),
            };
            let Some(path) = paths.get(at) else {
                return Err(fail(
                    format!("input {at}"),
                    io::ErrorKind::NotFound,
                    "no such input in this run",
                ));
            };
            if kind_of(path).compression != Compression::None {
                return Err(fail(
                    path.display().to_string(),
                    io::ErrorKind::InvalidInput,
                    "a compressed file cannot be read at an offset",
                ));
            }
        }
        let total = wanted.iter().map(|w| u64::from(w.len)).sum();
        Ok(Reread {
            paths: paths.to_vec(),
            current: None,
            wanted,
            next: 0,
            read: 0,
            total,
            buf: Vec::new(),
        })
    }

    /// The file of `input`, opened (closing the one before).
    fn input(&mut self, input: u32, line: u64) -> Result<&Opened, InputError> {
        if self.current.as_ref().map(|c| c.input) != Some(input) {
            self.current = None;
            let path = &self.paths[input as usize];
            let origin: Arc<str> = Arc::from(path.display().to_string());
            let file = File::open(path).map_err(|cause| InputError {
                origin: origin.to_string(),
                line,
                cause,
            })?;
            self.current = Some(Opened {
                input,
                file,
                origin,
                format: kind_of(path).format,
            });
        }
        Ok(self.current.as_ref().expect("just opened"))
    }
}

impl RecordSource for Reread {
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        let before = batch.len();
        while self.next < self.wanted.len()
            && batch.len() < max_records
            && (batch.is_empty() || batch.data_bytes() < max_bytes)
        {
            let w = self.wanted[self.next];
            let mut buf = std::mem::take(&mut self.buf);
            buf.resize(w.len as usize, 0);
            let input = self.input(w.span.input, w.line)?;
            let read = input.file.read_exact_at(&mut buf, w.span.offset);
            let (origin, format) = (Arc::clone(&input.origin), input.format);
            self.buf = buf;
            read.map_err(|e| InputError {
                origin: origin.to_string(),
                line: w.line,
                cause: if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(
                        e.kind(),
                        "the file is shorter than when it was first read: it changed",
                    )
                } else {
                    e
                },
            })?;
            batch.push_at(&origin, w.line, format, &self.buf, Some(w.span));
            self.next += 1;
            self.read += u64::from(w.len);
        }
        Ok(batch.len() > before)
    }

    /// Bytes of the wanted records read so far.
    fn position(&self) -> u64 {
        self.read
    }

    /// Bytes of every wanted record.
    fn total(&self) -> Option<u64> {
        Some(self.total)
    }

    fn skip(&mut self, records: u64) -> Result<u64, InputError> {
        let left = (self.wanted.len() - self.next) as u64;
        let skipped = records.min(left);
        for w in &self.wanted[self.next..self.next + skipped as usize] {
            self.read += u64::from(w.len);
        }
        self.next += skipped as usize;
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::testutil::{drain, gz, write};
    use crate::input::FORMAT_JSONL;

    fn wanted(input: u32, offset: u64, len: u32, line: u64) -> Wanted {
        Wanted {
            span: Span { input, offset },
            len,
            line,
        }
    }

    #[test]
    fn the_wanted_records_are_read_at_their_places() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write(
            tmp.path(),
            "a.jsonl",
            b"{\"text\":\"a\"}\r\n{\"text\":\"bb\"}\n",
        );
        let b = write(tmp.path(), "b.txt", b"one\ntwo\n");
        let paths = vec![a.clone(), b.clone()];
        let list = vec![
            wanted(0, 14, 13, 2),
            wanted(1, 4, 3, 2),
            wanted(0, 0, 12, 1),
        ];
        let mut source = Reread::open(&paths, Arc::new(list.clone())).unwrap();
        assert_eq!(source.total(), Some(28));
        assert_eq!(
            drain(&mut source),
            [
                format!("{}:2 {FORMAT_JSONL} {{\"text\":\"bb\"}}", a.display()),
                format!("{}:2 2 two", b.display()),
                format!("{}:1 {FORMAT_JSONL} {{\"text\":\"a\"}}", a.display()),
            ]
        );
        let mut source = Reread::open(&paths, Arc::new(list)).unwrap();
        assert_eq!(source.skip(2).unwrap(), 2);
        assert_eq!(source.position(), 16);
        assert_eq!(drain(&mut source).len(), 1);
        assert_eq!(source.skip(5).unwrap(), 0);
    }

    #[test]
    fn a_shortened_or_compressed_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write(tmp.path(), "a.jsonl", b"{}\n");
        let z = write(tmp.path(), "z.jsonl.gz", &gz(b"{}\n"));
        let mut source =
            Reread::open(std::slice::from_ref(&a), Arc::new(vec![wanted(0, 1, 9, 4)])).unwrap();
        let e = source
            .fill(&mut BatchBuilder::default(), 10, usize::MAX)
            .unwrap_err();
        assert_eq!((e.origin.as_str(), e.line), (&*a.to_string_lossy(), 4));
        assert!(e.to_string().contains("changed"), "{e}");
        let e = Reread::open(&[z], Arc::new(vec![wanted(0, 0, 2, 1)])).unwrap_err();
        assert!(e.to_string().contains("compressed"), "{e}");
    }
}
