//! [`Inputs`]: every input of a run, validated up front and read in order,
//! one record at a time, into batches.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use drainpipe_actors::{BatchBuilder, InputError, Needed, RecordSource, Span};

use super::dir::{self, Entry};
use super::lines::{read_line, Line};
use super::parquet::{self, ParquetInput, Row};
use super::record::TextFields;
use super::stream::{decode_ahead, kind_of, Compression, Container, CountingReader, Kind, Stream};
use super::wet::{Found, WetInput};
use super::{DirAs, InputOptions, UnusableInput, FORMAT_FILE, FORMAT_JSONL};

/// A UTF-8 byte order mark, dropped from the start of line inputs.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// One input named on the command line.
#[derive(Debug)]
enum Input {
    /// `-`.
    Stdin,
    /// A file of records: lines, Parquet rows or WET records.
    File {
        path: PathBuf,
        origin: Arc<str>,
        /// Its position among the inputs (the [`Span`]s' input number);
        /// `None` for a file of a directory (its records have no span).
        ordinal: Option<u32>,
        kind: Kind,
        /// Its size when the inputs were opened, if it is a regular file.
        size: Option<u64>,
    },
    /// A directory: one record per file.
    Dir { entries: Vec<Entry> },
    /// A file of a directory read as records that cannot be read as such:
    /// one rejected record.
    Rejected { origin: Arc<str>, reason: String },
}

/// The input being read.
enum Current {
    Lines(LineInput),
    Dir {
        entries: std::vec::IntoIter<Entry>,
    },
    Parquet(Box<ParquetInput>),
    Wet {
        reader: WetInput,
        /// Stored bytes read so far.
        read: Arc<AtomicU64>,
    },
    Rejected {
        origin: Arc<str>,
        reason: Option<String>,
    },
}

/// A line input being read: a file, or stdin.
struct LineInput {
    stream: Stream,
    origin: Arc<str>,
    format: u8,
    /// Lines read so far.
    line: u64,
    /// Stored bytes read so far.
    read: Arc<AtomicU64>,
    /// For an uncompressed regular file: its input number and the offset
    /// of the next line, so records carry their [`Span`].
    spans: Option<(u32, u64)>,
    /// For a regular file: its size when the inputs were opened, and a
    /// handle to check its size at the end. It must be read whole, or the
    /// file shrank while being read.
    size: Option<(u64, File)>,
}

/// What the input being read gave.
enum Step {
    /// A record (or a rejected one).
    Item(Item),
    /// The input ended, or broke (perhaps in the middle of a line).
    Ended(Result<(), InputError>),
}

/// A record read from the input, its bytes at the end of the buffer it was
/// read into (or in `Inputs::buf`, when held back for the next batch).
struct Item {
    origin: Arc<str>,
    line: u64,
    /// The format tag, or why the record is rejected (then it has no bytes).
    outcome: Result<u8, String>,
    span: Option<Span>,
}

/// Every input of a run, read in order: files (JSON Lines or text lines,
/// possibly compressed), directories (one record per file) and stdin. See
/// the [module documentation](super) for the rules.
pub struct Inputs {
    max_record_bytes: usize,
    fields: TextFields,
    /// [`InputOptions::columns`].
    columns: Arc<[String]>,
    queue: VecDeque<Input>,
    current: Option<Current>,
    /// Stored bytes of the inputs done with.
    done: u64,
    total: Option<u64>,
    /// The bytes of a record held back for the next batch, or of a file
    /// of a directory input being read.
    buf: Vec<u8>,
    /// A record read but left out of the last batch for lack of room.
    held: Option<Item>,
    /// An error met after records were added to a batch: returned by the
    /// next `fill`, so the records read before it are not lost.
    failed: Option<InputError>,
    /// Where the records skipped are counted.
    skipped: Arc<super::Skipped>,
    /// The records whose bytes are read, when not all are
    /// ([`RecordSource::only_needed`]): the others are handed on empty.
    needed: Option<Needed>,
    /// Records (and rejected records) read so far: the input index of the
    /// next one.
    produced: u64,
}

impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inputs")
            .field("pending", &self.queue.len())
            .field("position", &self.position())
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Inputs {
    /// Opens the inputs (`-` is stdin), in this order. Checks now that every
    /// path exists and is readable, and lists directories; the error names
    /// the first path that is not. Nothing is read yet.
    pub fn open(paths: &[PathBuf], options: InputOptions) -> Result<Inputs, InputError> {
        let mut queue = VecDeque::with_capacity(paths.len());
        let left_out = dir::LeftOut::of(&options.leave_out);
        let mut total = Some(0u64);
        let mut add = |size: Option<u64>| total = total.zip(size).map(|(t, s)| t + s);
        for (ordinal, path) in paths.iter().enumerate() {
            let ordinal = u32::try_from(ordinal)
                .map_err(|_| error(path, io::ErrorKind::InvalidInput, "more than 2^32 inputs"))?;
            let input = if path.as_os_str() == "-" {
                if queue.iter().any(|i| matches!(i, Input::Stdin)) {
                    return Err(error(
                        path,
                        io::ErrorKind::InvalidInput,
                        "stdin given twice",
                    ));
                }
                add(None);
                Input::Stdin
            } else {
                let meta = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
                if meta.is_dir() {
                    let entries = dir::list(path, &left_out).map_err(|e| open_error(path, e))?;
                    add(Some(entries.iter().map(Entry::size).sum()));
                    let records = match options.dir_as {
                        Some(how) => how == DirAs::Records,
                        None => dir::holds_records(path, &entries),
                    };
                    if records {
                        for shard in shards(path, entries) {
                            check(&shard, &options.fields, &options.columns)?;
                            queue.push_back(shard);
                        }
                        continue;
                    }
                    Input::Dir { entries }
                } else {
                    let size = if meta.is_file() {
                        File::open(path).map_err(|e| open_error(path, e))?;
                        Some(meta.len())
                    } else {
                        // A pipe or device: opening it now could consume it.
                        None
                    };
                    add(size);
                    let file = Input::File {
                        path: path.clone(),
                        origin: Arc::from(path.display().to_string()),
                        ordinal: Some(ordinal),
                        kind: kind_of(path),
                        size,
                    };
                    check(&file, &options.fields, &options.columns)?;
                    file
                }
            };
            queue.push_back(input);
        }
        Ok(Inputs {
            max_record_bytes: options.max_record_bytes,
            fields: options.fields,
            columns: options.columns.into(),
            queue,
            current: None,
            done: 0,
            total,
            buf: Vec::new(),
            held: None,
            failed: None,
            skipped: options.skipped,
            needed: None,
            produced: 0,
        })
    }

    /// The Parquet files among the inputs, in reading order, each with
    /// the origin its records carry (their [`RawRecord`](drainpipe_actors::RawRecord)'s
    /// `location.origin`); `None` when an input could hold a record that is
    /// not a Parquet row (stdin, a file of lines or WET records, a
    /// directory read as documents). A file of a directory read as records
    /// that is no record file at all is one rejected record and does not
    /// count. Asked before reading starts.
    pub fn parquet_files(&self) -> Option<Vec<(PathBuf, Arc<str>)>> {
        let mut files = Vec::new();
        for input in &self.queue {
            match input {
                Input::File {
                    path, origin, kind, ..
                } if kind.container == Container::Parquet => {
                    files.push((path.clone(), Arc::clone(origin)));
                }
                Input::Rejected { .. } => {}
                _ => return None,
            }
        }
        Some(files)
    }

    /// Starts reading `input`.
    fn start(input: Input, fields: &TextFields, columns: &[String]) -> Result<Current, InputError> {
        let lines = |reader,
                     origin: Arc<str>,
                     kind: Kind,
                     size: Option<(u64, File)>,
                     ordinal: Option<u32>| {
            let (counting, read) = CountingReader::new(reader);
            let stream =
                decode_ahead(counting, kind.compression, &origin).map_err(|e| InputError {
                    origin: origin.to_string(),
                    line: 0,
                    cause: e,
                })?;
            Ok(Current::Lines(LineInput {
                stream,
                origin,
                format: kind.format,
                line: 0,
                read,
                spans: ordinal
                    .filter(|_| kind.compression == Compression::None && size.is_some())
                    .map(|o| (o, 0)),
                size,
            }))
        };
        match input {
            Input::Stdin => {
                let kind = Kind {
                    format: FORMAT_JSONL,
                    compression: Compression::None,
                    container: Container::Lines,
                };
                lines(
                    Box::new(io::stdin()) as Box<dyn io::Read + Send>,
                    "-".into(),
                    kind,
                    None,
                    None,
                )
            }
            Input::File {
                path, origin, kind, ..
            } if kind.container == Container::Parquet => Ok(Current::Parquet(Box::new(
                ParquetInput::open(&path, origin, fields, columns)?,
            ))),
            Input::File {
                path, origin, kind, ..
            } if kind.container == Container::Wet => {
                let file = File::open(&path).map_err(|e| open_error(&path, e))?;
                let (counting, read) = CountingReader::new(file);
                let stream = decode_ahead(counting, kind.compression, &origin)
                    .map_err(|e| open_error(&path, e))?;
                Ok(Current::Wet {
                    reader: WetInput::new(stream, origin, fields),
                    read,
                })
            }
            Input::File {
                path,
                origin,
                ordinal,
                kind,
                size,
            } => {
                let file = File::open(&path).map_err(|e| open_error(&path, e))?;
                let size = match size {
                    Some(size) => Some((size, file.try_clone().map_err(|e| open_error(&path, e))?)),
                    None => None,
                };
                lines(Box::new(file), origin, kind, size, ordinal)
            }
            Input::Dir { entries } => Ok(Current::Dir {
                entries: entries.into_iter(),
            }),
            Input::Rejected { origin, reason } => Ok(Current::Rejected {
                origin,
                reason: Some(reason),
            }),
        }
    }

    /// Reads the next record, appending its bytes to `buf`, moving on to
    /// the next input as each ends. `None` when every input is exhausted.
    /// A rejected record, an error and the end leave `buf` as it was.
    fn next_item(&mut self, buf: &mut Vec<u8>) -> Result<Option<Item>, InputError> {
        let max = self.max_record_bytes;
        let start = buf.len();
        loop {
            let step = match &mut self.current {
                None => match self.queue.pop_front() {
                    Some(input) => {
                        let mut current = Self::start(input, &self.fields, &self.columns)?;
                        if let (Current::Parquet(rows), Some(needed)) = (&mut current, &self.needed)
                        {
                            rows.needing(Arc::clone(needed), self.produced);
                        }
                        self.current = Some(current);
                        continue;
                    }
                    None => return Ok(None),
                },
                Some(Current::Lines(lines)) => lines.next(buf, max),
                Some(Current::Dir { entries }) => match entries.next() {
                    Some(entry) => {
                        self.done += entry.size();
                        Step::Item(read_entry(entry, max, &mut self.buf, buf))
                    }
                    None => Step::Ended(Ok(())),
                },
                Some(Current::Parquet(rows)) => parquet_step(rows, buf, max),
                Some(Current::Wet { reader, .. }) => wet_step(reader, buf, max, &self.skipped),
                Some(Current::Rejected { origin, reason }) => match reason.take() {
                    Some(reason) => Step::Item(Item {
                        origin: Arc::clone(origin),
                        line: 1,
                        outcome: Err(reason),
                        span: None,
                    }),
                    None => Step::Ended(Ok(())),
                },
            };
            match step {
                Step::Item(item) => {
                    let index = self.produced;
                    self.produced += 1;
                    if item.outcome.is_ok() && self.needed.as_ref().is_some_and(|n| !n(index)) {
                        // Not needed: handed on with no bytes.
                        buf.truncate(start);
                    }
                    return Ok(Some(item));
                }
                Step::Ended(result) => {
                    self.done += self.current.as_ref().map_or(0, Current::read);
                    self.current = None;
                    result?;
                }
            }
        }
    }

    /// The next record for the batch: the one held back from the last
    /// batch (its bytes in `self.buf`; `true`), else one read straight into
    /// the batch's buffer (`false`).
    fn take_next(&mut self, batch: &mut BatchBuilder) -> Result<Option<(Item, bool)>, InputError> {
        if let Some(item) = self.held.take() {
            return Ok(Some((item, true)));
        }
        Ok(self.next_item(batch.buffer())?.map(|item| (item, false)))
    }

    /// Adds a record read whole, of `format`, whose bytes start at `start`
    /// of the batch's buffer (or are in `self.buf`, if `held`), unless it
    /// would take the batch over `max_bytes` and the batch is not empty:
    /// then it is held back for the next batch, and `false` is returned.
    fn push_record(
        &mut self,
        batch: &mut BatchBuilder,
        start: usize,
        (item, held): (Item, bool),
        format: u8,
        max_bytes: usize,
    ) -> bool {
        let len = if held {
            self.buf.len()
        } else {
            batch.data_bytes() - start
        };
        let fits = start.saturating_add(len) <= max_bytes;
        if !fits && !batch.is_empty() {
            if !held {
                self.buf.clear();
                self.buf.extend_from_slice(&batch.buffer()[start..]);
                batch.buffer().truncate(start);
            }
            self.held = Some(item);
            return false;
        }
        if held {
            batch.push_at(&item.origin, item.line, format, &self.buf, item.span);
        } else {
            batch.push_appended(start, &item.origin, item.line, format, item.span);
        }
        true
    }
}

impl LineInput {
    /// Reads the next line into `buf` (see [`Inputs::next_item`]).
    fn next(&mut self, buf: &mut Vec<u8>, max: usize) -> Step {
        let start = buf.len();
        let (found, mut span) = self.read_line(buf, max);
        let outcome = match found {
            Ok(Some((Line::Record, _))) => self.accept(buf, start, span.as_mut()),
            Ok(Some((Line::TooLong(len), _))) => Err(format!(
                "record of {len} bytes exceeds --max-record-bytes {max}"
            )),
            Ok(None) => {
                buf.truncate(start);
                return Step::Ended(Ok(()));
            }
            Err(cause) => {
                buf.truncate(start);
                return Step::Ended(Err(InputError {
                    origin: self.origin.to_string(),
                    line: self.line,
                    cause,
                }));
            }
        };
        self.line += 1;
        Step::Item(Item {
            origin: Arc::clone(&self.origin),
            line: self.line,
            outcome,
            span,
        })
    }

    /// Reads the next line, noting where it starts (when records carry
    /// their place); at the end of a regular file, checks that the file
    /// did not shrink.
    fn read_line(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> (io::Result<Option<(Line, u64)>>, Option<Span>) {
        // A JSON Lines record keeps the `\r` of its `\r\n` (JSON takes it
        // for whitespace), so that it is written back byte for byte.
        let keep_cr = self.format == FORMAT_JSONL;
        let mut found = read_line(&mut self.stream, buf, max, keep_cr);
        let mut span = None;
        if let (Ok(Some((_, consumed))), Some((input, next))) = (&found, self.spans.as_mut()) {
            span = Some(Span {
                input: *input,
                offset: *next,
            });
            *next += consumed;
        }
        if let (Ok(None), Some((size, file))) = (&found, &self.size) {
            found = shrank(*size, self.read.load(Ordering::Relaxed), file);
        }
        (found, span)
    }

    /// The format of a line read whole (from `start` of `buf`), after its
    /// first line's byte order mark is dropped; an empty JSON Lines line is
    /// rejected (and its bytes removed).
    fn accept(
        &self,
        buf: &mut Vec<u8>,
        start: usize,
        span: Option<&mut Span>,
    ) -> Result<u8, String> {
        if self.line == 0 && buf[start..].starts_with(BOM) {
            buf.drain(start..start + BOM.len());
            if let Some(span) = span {
                span.offset += BOM.len() as u64;
            }
        }
        if self.format == FORMAT_JSONL && buf[start..].trim_ascii().is_empty() {
            buf.truncate(start);
            Err("empty line".to_owned())
        } else {
            Ok(self.format)
        }
    }
}

impl Current {
    /// Stored bytes read of this input (a directory's files are counted as
    /// they are read, in `Inputs::done`).
    fn read(&self) -> u64 {
        match self {
            Current::Lines(lines) => lines.read.load(Ordering::Relaxed),
            Current::Parquet(rows) => rows.read(),
            Current::Wet { read, .. } => read.load(Ordering::Relaxed),
            Current::Dir { .. } | Current::Rejected { .. } => 0,
        }
    }
}

/// The next row of a Parquet file.
fn parquet_step(rows: &mut ParquetInput, buf: &mut Vec<u8>, max: usize) -> Step {
    match rows.next(buf, max) {
        Ok(Row::Record(outcome, line)) => Step::Item(Item {
            origin: Arc::clone(rows.origin()),
            line,
            outcome: outcome.map(|()| FORMAT_JSONL),
            span: None,
        }),
        Ok(Row::End) => Step::Ended(Ok(())),
        Err(e) => Step::Ended(Err(e)),
    }
}

/// The next conversion record of a WET file; at its end, the records of
/// other types it skipped are logged (once per file and process: a run
/// may read its inputs several times).
fn wet_step(
    reader: &mut WetInput,
    buf: &mut Vec<u8>,
    max: usize,
    counted: &super::Skipped,
) -> Step {
    match reader.next(buf, max) {
        Ok(Found::Record(outcome, line)) => Step::Item(Item {
            origin: Arc::clone(reader.origin()),
            line,
            outcome: outcome.map(|()| FORMAT_JSONL),
            span: None,
        }),
        Ok(Found::End(skipped)) => {
            counted.record(reader.origin(), skipped.clone());
            if !skipped.is_empty() {
                let counts: Vec<String> = skipped
                    .iter()
                    .map(|(kind, n)| format!("{kind}: {n}"))
                    .collect();
                dir::info_once(
                    Path::new(&**reader.origin()),
                    &format!(
                        "WARC records other than conversions skipped ({})",
                        counts.join(", ")
                    ),
                );
            }
            Step::Ended(Ok(()))
        }
        Err(e) => Step::Ended(Err(e)),
    }
}

/// The files of a directory read as records, as inputs of their own (in
/// path order): hidden files are left out (and logged), files that are not
/// record files and files that cannot be listed are rejected records.
fn shards(dir: &Path, entries: Vec<Entry>) -> Vec<Input> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if dir::is_hidden(dir, &entry) {
            dir::info_once(Path::new(&**entry.origin()), "hidden, not read as records");
            continue;
        }
        out.push(match entry {
            Entry::File { path, origin, size } => {
                let kind = kind_of(&path);
                if kind.is_records() {
                    Input::File {
                        path,
                        origin,
                        ordinal: None,
                        kind,
                        size: Some(size),
                    }
                } else {
                    Input::Rejected {
                        origin,
                        reason: "not a record file (.jsonl, .ndjson, .json, .parquet, \
                                 .warc.wet, optionally .gz or .zst) in a directory read as records"
                            .into(),
                    }
                }
            }
            Entry::Unreadable { origin, reason } => Input::Rejected { origin, reason },
        });
    }
    out
}

/// Checks, before any work, that a Parquet input can be read as records:
/// a file whose footer cannot be read is an IO error (exit 74); one that
/// lacks the text column, or is compressed as a whole, is
/// [`UnusableInput`] (exit 65).
fn check(input: &Input, fields: &TextFields, columns: &[String]) -> Result<(), InputError> {
    let Input::File {
        path, origin, kind, ..
    } = input
    else {
        return Ok(());
    };
    if kind.container != Container::Parquet {
        return Ok(());
    }
    if kind.compression != Compression::None {
        return Err(InputError {
            origin: origin.to_string(),
            line: 0,
            cause: io::Error::new(
                io::ErrorKind::InvalidData,
                UnusableInput(
                    "a Parquet file compressed as a whole cannot be read (Parquet compresses \
                     its pages itself): decompress it"
                        .into(),
                ),
            ),
        });
    }
    parquet::check_with(path, origin, fields, columns)
}

/// Reads a directory's `entry` whole into `scratch` (so a file too large is
/// found out before anything is appended), then, if it is a record, onto
/// `buf`.
fn read_entry(entry: Entry, max: usize, scratch: &mut Vec<u8>, buf: &mut Vec<u8>) -> Item {
    let (origin, outcome) = match entry {
        Entry::File { path, origin, .. } => {
            let read = dir::read_file(&path, max, scratch);
            if read.is_ok() {
                buf.extend_from_slice(scratch);
            }
            (origin, read.map(|()| FORMAT_FILE))
        }
        Entry::Unreadable { origin, reason } => (origin, Err(reason)),
    };
    Item {
        origin,
        line: 1,
        outcome,
        span: None,
    }
}

impl RecordSource for Inputs {
    /// Appends records until `max_records` or `max_bytes` is reached (a
    /// record that would overflow `max_bytes` is kept for the next batch,
    /// unless the batch is empty) or the inputs end. An IO error after some
    /// records were appended ends the batch; the next call returns it.
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let before = batch.len();
        while batch.len() < max_records && (batch.is_empty() || batch.data_bytes() < max_bytes) {
            let start = batch.data_bytes();
            let (item, held) = match self.take_next(batch) {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(batch.len() > before),
                Err(e) if batch.len() == before => return Err(e),
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            };
            match item.outcome {
                Ok(format) => {
                    if !self.push_record(batch, start, (item, held), format, max_bytes) {
                        break;
                    }
                }
                Err(reason) => {
                    push_rejected(batch, start, max_bytes, (&item.origin, item.line), reason)
                }
            }
        }
        Ok(true)
    }

    /// Stored (compressed) bytes read so far; a record held back for the
    /// next batch counts as read.
    fn position(&self) -> u64 {
        self.done + self.current.as_ref().map_or(0, Current::read)
    }

    /// The size of every input file and of every file in input directories,
    /// or `None` if stdin or a pipe is among the inputs.
    fn total(&self) -> Option<u64> {
        self.total
    }

    /// Records `needed` rejects are handed on with no bytes; a Parquet
    /// file skips their pages where it can. Said before reading starts.
    fn only_needed(&mut self, needed: Needed) {
        self.needed = Some(needed);
    }
}

/// Adds a rejected record: a line too long was read into the batch's
/// buffer up to the record size limit before it was given up, so that
/// memory is given back rather than carried with the batch.
fn push_rejected(
    batch: &mut BatchBuilder,
    start: usize,
    max_bytes: usize,
    (origin, line): (&Arc<str>, u64),
    reason: String,
) {
    let buffer = batch.buffer();
    let room = max_bytes.max(start);
    if buffer.capacity() > room.saturating_mul(2) {
        buffer.shrink_to(room);
    }
    batch.push_rejected(origin, line, reason);
}

/// The end of a regular file: an error if it ended before `size`, the size
/// it had when the inputs were opened, and is now smaller than that (it was
/// truncated while being read). Files whose stated size is not their
/// content's (in `/sys`, say) keep their stated size, and pass.
fn shrank(size: u64, read: u64, file: &File) -> io::Result<Option<(Line, u64)>> {
    if read < size && file.metadata()?.len() < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file shrank while being read: {size} bytes at open, ended after {read}"),
        ));
    }
    Ok(None)
}

fn open_error(path: &Path, source: io::Error) -> InputError {
    InputError {
        origin: path.display().to_string(),
        line: 0,
        cause: source,
    }
}

fn error(path: &Path, kind: io::ErrorKind, message: &str) -> InputError {
    open_error(path, io::Error::new(kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::testutil::{batches, drain, gz, write, zst};
    use crate::input::{InputOptions, FORMAT_TEXT};

    fn open(paths: &[&Path], max_record_bytes: usize) -> Inputs {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        let options = InputOptions {
            max_record_bytes,
            ..InputOptions::default()
        };
        Inputs::open(&paths, options).unwrap()
    }

    #[test]
    fn files_are_read_in_order_with_per_file_line_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write(
            tmp.path(),
            "a.jsonl",
            b"{\"text\":\"a1\"}\r\n{\"text\":\"a2\"}",
        );
        let b = write(tmp.path(), "b.txt", b"\xef\xbb\xbfb1\n\nb3\n");
        let c = write(tmp.path(), "c.data", b"c1\n");
        let mut inputs = open(&[&a, &b, &c], 100);
        let (a, b, c) = (a.display(), b.display(), c.display());
        assert_eq!(
            drain(&mut inputs),
            [
                format!("{a}:1 {FORMAT_JSONL} {{\"text\":\"a1\"}}\r"),
                format!("{a}:2 {FORMAT_JSONL} {{\"text\":\"a2\"}}"),
                format!("{b}:1 {FORMAT_TEXT} b1"),
                format!("{b}:2 {FORMAT_TEXT} "),
                format!("{b}:3 {FORMAT_TEXT} b3"),
                format!("{c}:1 {FORMAT_TEXT} c1"),
            ]
        );
    }

    #[test]
    fn a_line_too_long_leaves_no_large_buffer_in_the_batch() {
        let tmp = tempfile::tempdir().unwrap();
        let mut content = Vec::new();
        for _ in 0..3 {
            content.extend(vec![b'x'; 3 << 20]);
            content.extend_from_slice(b"\nshort\n");
        }
        let path = write(tmp.path(), "a.txt", &content);
        // Lines up to 1 MiB, batches of 4 KiB: each long line is read into
        // the batch's buffer up to 1 MiB before it is given up.
        let mut inputs = open(&[&path], 1 << 20);
        let (mut records, mut rejected) = (0, 0);
        loop {
            let mut batch = BatchBuilder::with_capacity(16, 4096);
            if !inputs.fill(&mut batch, 16, 4096).unwrap() {
                break;
            }
            let capacity = batch.buffer().capacity();
            assert!(
                capacity <= 2 * 4096,
                "a batch carries {capacity} bytes of buffer"
            );
            for record in batch.finish().records() {
                match record {
                    Ok(r) => {
                        assert_eq!(r.bytes, b"short");
                        records += 1;
                    }
                    Err(_) => rejected += 1,
                }
            }
        }
        assert_eq!((records, rejected), (3, 3));
    }

    #[test]
    fn empty_json_lines_and_long_lines_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let mut content = b"{\"text\":\"a\"}\n\n  \n".to_vec();
        content.extend(vec![b'x'; 3 << 20]);
        content.extend_from_slice(b"\n{\"text\":\"b\"}\n");
        let path = write(tmp.path(), "a.ndjson", &content);
        let mut inputs = open(&[&path], 64);
        let p = path.display();
        assert_eq!(
            drain(&mut inputs),
            [
                format!("{p}:1 1 {{\"text\":\"a\"}}"),
                format!("{p}:2 rejected: empty line"),
                format!("{p}:3 rejected: empty line"),
                format!(
                    "{p}:4 rejected: record of {} bytes exceeds --max-record-bytes 64",
                    3 << 20
                ),
                format!("{p}:5 1 {{\"text\":\"b\"}}"),
            ]
        );
        assert!(inputs.buf.capacity() <= 1024, "{}", inputs.buf.capacity());
    }

    #[test]
    fn compressed_files_are_decompressed_and_counted_as_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let text = b"one\ntwo\n".repeat(500);
        // Two gzip members: read as one stream.
        let mut two = gz(&text);
        two.extend(gz(b"three\n"));
        let g = write(tmp.path(), "a.txt.gz", &two);
        let z = write(tmp.path(), "b.jsonl.zst", &zst(b"{\"text\":\"z\"}\n"));
        let mut inputs = open(&[&g, &z], 100);
        let stored = (two.len() + std::fs::metadata(&z).unwrap().len() as usize) as u64;
        assert_eq!(inputs.total(), Some(stored));
        assert_eq!(inputs.position(), 0);
        let got = drain(&mut inputs);
        assert_eq!(got.len(), 1002);
        assert_eq!(got[1000], format!("{}:1001 2 three", g.display()));
        assert_eq!(got[1001], format!("{}:1 1 {{\"text\":\"z\"}}", z.display()));
        assert_eq!(inputs.position(), stored);
    }

    #[test]
    fn truncated_compressed_files_are_errors_naming_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        // Not too compressible, so that zstd has many blocks.
        let lines = 200_000u64;
        let text: Vec<u8> = (0..lines)
            .flat_map(|i| {
                format!("line {}\n", i.wrapping_mul(2_654_435_761) % 1_000_003).into_bytes()
            })
            .collect();
        for (name, stored) in [("t.txt.gz", gz(&text)), ("t.txt.zst", zst(&text))] {
            let path = write(tmp.path(), name, &stored[..stored.len() / 2]);
            let mut inputs = open(&[&path], 100);
            let mut read = 0;
            let err = loop {
                let mut batch = BatchBuilder::default();
                match inputs.fill(&mut batch, 1000, usize::MAX) {
                    Ok(true) => read += batch.len() as u64,
                    Ok(false) => panic!("{name}: truncation not detected"),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.origin, path.display().to_string());
            assert_eq!(err.line, read, "{name}: {err}");
            assert!(read > 0 && read < lines, "{name}: {read}");
            assert!(err
                .to_string()
                .starts_with(&format!("cannot read {}", path.display())));
        }
    }

    #[test]
    fn a_file_that_shrinks_while_being_read_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "a.txt", b"one\ntwo\nthree\n");
        let mut inputs = open(&[&path], 100);
        std::fs::write(&path, b"one\n").unwrap();
        let mut batch = BatchBuilder::default();
        let err = inputs
            .fill(&mut batch, 100, usize::MAX)
            .and_then(|_| inputs.fill(&mut BatchBuilder::default(), 100, usize::MAX));
        assert_eq!(batch.len(), 1, "the line before the end is kept");
        let err = err.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {} after line 1: file shrank while being read: 14 bytes at open, ended after 4",
                path.display()
            )
        );
        // Growing is fine: the file is read to its end.
        let path = write(tmp.path(), "b.txt", b"one\n");
        let mut inputs = open(&[&path], 100);
        std::fs::write(&path, b"one\ntwo\n").unwrap();
        assert_eq!(drain(&mut inputs).len(), 2);
    }

    #[test]
    fn directories_give_one_record_per_file_in_path_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("corpus");
        write(&root, "b.txt", b"bee");
        write(&root, "a/x.jsonl", b"{\"not\":\"parsed\"}\n");
        write(&root, "a/y.txt.gz", &gz(b"gzipped"));
        write(&root, "big.txt", &[b'x'; 100]);
        write(&root, "bin", b"\x00\xff");
        let mut inputs = open(&[&root], 50);
        let r = root.display();
        assert_eq!(
            drain(&mut inputs),
            [
                format!("{r}/a/x.jsonl:1 3 {{\"not\":\"parsed\"}}\n"),
                format!("{r}/a/y.txt.gz:1 3 gzipped"),
                format!("{r}/b.txt:1 3 bee"),
                format!("{r}/big.txt:1 rejected: file of 100 bytes exceeds --max-record-bytes 50"),
                format!("{r}/bin:1 3 \u{0}\u{fffd}"),
            ]
        );
        assert_eq!(inputs.position(), inputs.total().unwrap());
    }

    #[test]
    fn files_vanished_from_a_directory_are_rejected_records() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        let gone = write(&root, "gone.txt", b"g");
        write(&root, "z.txt", b"z");
        let mut inputs = open(&[&root], 50);
        std::fs::remove_file(&gone).unwrap();
        let got = drain(&mut inputs);
        assert!(
            got[0].starts_with(&format!("{}:1 rejected: cannot read: ", gone.display())),
            "{got:?}"
        );
        assert_eq!(got[1], format!("{}/z.txt:1 3 z", root.display()));
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_files_in_a_directory_are_rejected_records() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        let secret = write(&root, "secret.txt", b"s");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
        if File::open(&secret).is_ok() {
            return; // Running as root: permissions are not enforced.
        }
        let got = drain(&mut open(&[&root], 50));
        assert!(got[0].starts_with(&format!("{}:1 rejected: cannot read: ", secret.display())));
    }

    #[test]
    fn batches_respect_max_records_and_max_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "a.txt", b"aa\nbb\ncc\ndddddddd\ne\n\nf\n");
        let p = path.display();
        let by_records = batches(&mut open(&[&path], 100), 3, usize::MAX);
        let sizes: Vec<usize> = by_records.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let by_bytes = batches(&mut open(&[&path], 100), 100, 5);
        assert_eq!(
            by_bytes,
            [
                vec![format!("{p}:1 2 aa"), format!("{p}:2 2 bb")],
                vec![format!("{p}:3 2 cc")],
                // Larger than max_bytes: alone.
                vec![format!("{p}:4 2 dddddddd")],
                vec![
                    format!("{p}:5 2 e"),
                    format!("{p}:6 2 "),
                    format!("{p}:7 2 f")
                ],
            ]
        );
    }

    #[test]
    fn fill_reads_no_more_than_it_needs() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write(tmp.path(), "a.txt", b"a\n");
        let b = write(tmp.path(), "b.txt", b"b\n");
        let mut inputs = open(&[&a, &b], 100);
        let mut batch = BatchBuilder::default();
        assert!(inputs.fill(&mut batch, 1, usize::MAX).unwrap());
        assert_eq!(inputs.position(), 2);
        assert_eq!(inputs.queue.len(), 1, "b.txt is not opened yet");
    }

    #[test]
    fn missing_and_repeated_inputs_are_errors_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.jsonl");
        let err =
            Inputs::open(std::slice::from_ref(&missing), InputOptions::default()).unwrap_err();
        assert_eq!(err.origin, missing.display().to_string());
        assert_eq!(err.cause.kind(), io::ErrorKind::NotFound);
        let stdin = PathBuf::from("-");
        let err = Inputs::open(&[stdin.clone(), stdin], InputOptions::default()).unwrap_err();
        assert!(err.to_string().contains("stdin given twice"), "{err}");
    }

    #[test]
    fn stdin_has_no_known_total() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write(tmp.path(), "a.txt", b"a\n");
        assert_eq!(open(&[&a], 10).total(), Some(2));
        assert_eq!(open(&[&a, Path::new("-")], 10).total(), None);
    }

    #[test]
    fn records_of_uncompressed_files_say_where_their_bytes_are() {
        let tmp = tempfile::tempdir().unwrap();
        let mut long = b"\xef\xbb\xbf{\"text\":\"a\"}\r\n\n\r\n".to_vec();
        long.extend(vec![b'x'; 300]);
        long.extend_from_slice(b"\r\n{\"text\":\"b\"}\n{\"text\":\"c\"}");
        let a = write(tmp.path(), "a.jsonl", &long);
        let b = write(tmp.path(), "b.txt", b"one\rline\n\ntwo\n");
        let c = write(tmp.path(), "c.jsonl.gz", &gz(b"{\"text\":\"z\"}\n"));
        let d = write(tmp.path(), "d", b"");
        let e = write(tmp.path(), "e.jsonl", b"{}");
        let mut inputs = open(&[&a, &b, &c, &d, &e], 100);
        let files = [&a, &b, &c, &d, &e].map(|p| std::fs::read(p).unwrap());
        let mut seen = Vec::new();
        loop {
            let mut builder = BatchBuilder::default();
            if !inputs.fill(&mut builder, 3, usize::MAX).unwrap() {
                break;
            }
            for record in builder.finish().records() {
                let Ok(raw) = record else {
                    seen.push("rejected".to_owned());
                    continue;
                };
                let Some(span) = raw.span else {
                    seen.push(format!("{} no span", raw.location.line));
                    continue;
                };
                let at = span.offset as usize;
                let file = &files[span.input as usize];
                assert_eq!(&file[at..at + raw.bytes.len()], raw.bytes);
                seen.push(format!("{} {} at {at}", span.input, raw.location.line));
            }
        }
        assert_eq!(
            seen,
            [
                "0 1 at 3",
                "rejected",
                "rejected",
                "rejected",
                "0 5 at 322",
                "0 6 at 335",
                "1 1 at 0",
                "1 2 at 9",
                "1 3 at 10",
                "1 no span",
                "4 1 at 0",
            ]
        );
    }
}
