//! Pass 3 of `dedup` without reading the whole input: when every kept
//! record is a JSON Lines record of an uncompressed file whose place pass 1
//! noted ([`Spans`]), `kept.jsonl` is made of the kept records' bytes
//! copied from the input files, each run of consecutive kept lines as one
//! range. The output is that of the pipeline pass ([`super::pipeline`])
//! byte for byte: each record's bytes (a JSON Lines record keeps the `\r`
//! of its `\r\n`, [`crate::input`]) and a `\n`, so each kept line is as in
//! the input, terminator included, and a last line without one gets a `\n`.
//!
//! A long run is copied by the kernel ([`AtomicFile::copy_range`]: no pass
//! through user space) in pieces, with a look for a stop request between
//! them. Short runs are gathered: the span of input holding several of
//! them (up to `GATHER` bytes) is read at once, and their bytes are
//! written with one vectored write. Writing into the page cache costs
//! per call and per page more than per byte: with one kernel copy per run
//! (57 KB on average at 20k documents with 3% removed), a whole dedup of
//! those 20k documents spent 0.083 s in the kernel; gathered, 0.065 s.
//! Either way the bytes around each run are read first: a line must start
//! where the run starts and end where it ends, or the input changed since
//! pass 1 (an edit that kept its size and modification time) and the pass
//! fails rather than splice wrong bytes.
//! One input file is open at a time. Places on disk (past their share of
//! the memory budget) are read once, front to back, as the copy goes
//! ([`PlaceCursor`]).
//!
//! Which records are removed comes from a [`Removed`]: the final set of
//! pass 2, or, when the copy runs beside pass 2 ([`super::follow`]), the
//! decisions as pass 2 settles them.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drainpipe_actors::{AtomicFile, OutputDir, RunHandle, TempSpace};

use crate::input::{format_of, FORMAT_JSONL};
#[cfg(test)]
use crate::jobs::dedup::bitset::BitSet;
use crate::jobs::dedup::chain::{Written, KEPT_FILE};
use crate::jobs::dedup::spans::Spans;
use crate::jobs::dedup::spill::places::PlaceCursor;
use crate::jobs::dedup::spill::record_sets::RecordSet;
use crate::jobs::dedup::spill::runs::RunError;
use crate::jobs::pass::RunContext;

/// Runs shorter than this are gathered ([`copy_gathered`]); longer ones
/// are copied by the kernel.
const SMALL_RUN: u64 = 256 << 10;
/// The most bytes of input one gathered read spans.
const GATHER: u64 = 1 << 20;
/// The largest piece the kernel copies between two looks for a stop.
const PIECE: u64 = 64 << 20;
/// Runs written between two looks for a stop.
const RUNS_PER_LOOK: u64 = 1024;

const BOM: &[u8] = b"\xef\xbb\xbf";

/// True when [`copy_kept`] can write `kept.jsonl` for these inputs.
pub fn can_copy(spans: &Spans, inputs: &[PathBuf]) -> bool {
    spans.is_complete()
        && spans.inputs().all(|input| {
            inputs
                .get(input as usize)
                .is_some_and(|path| format_of(path) == FORMAT_JSONL)
        })
}

/// How [`copy_kept`] ended short of a file.
#[derive(Debug)]
pub enum NotCopied {
    /// A stop was requested (or pass 2, which the copy followed, did not
    /// complete).
    Stopped,
    /// An input could not be read, or changed since pass 1, or the output
    /// could not be written.
    Failed(String),
    /// The copy beside pass 2 cannot be used: it decided a record's fate
    /// otherwise than pass 2's final result (the input changed under the
    /// run, or a bug), or it panicked. The copy must be made again from
    /// that result.
    Redo(String),
}

/// Where [`copy_kept`] reads and writes, and how it hears a stop: owned,
/// so that the copy can run on a thread of its own.
#[derive(Debug, Clone)]
pub struct CopyTarget {
    /// The run's input files, by input number.
    pub inputs: Vec<PathBuf>,
    /// Where the records' places past their share of the memory budget
    /// are ([`PlaceCursor`]).
    pub temp: Arc<TempSpace>,
    /// Where `kept.jsonl` goes.
    pub output: OutputDir,
    /// Stop requests.
    pub handle: RunHandle,
}

impl CopyTarget {
    /// The run's inputs, output folder and stop requests.
    pub fn of(ctx: &RunContext) -> Self {
        CopyTarget {
            inputs: ctx.inputs.clone(),
            temp: Arc::clone(&ctx.temp),
            output: ctx.output.clone(),
            handle: ctx.handle.clone(),
        }
    }
}

/// Whether each record is removed, asked in input order.
pub trait Removed {
    /// Whether record `index`, which pass 1 integrated, is removed. Asked
    /// once for each integrated record, in increasing order.
    fn removed(&mut self, index: u64) -> Result<bool, NotCopied>;
}

/// The final removed set of pass 2: a run of it that cannot be read
/// fails the copy.
impl Removed for &RecordSet {
    fn removed(&mut self, index: u64) -> Result<bool, NotCopied> {
        self.try_contains(index).map_err(unread)
    }
}

/// A removed set held whole (tests).
#[cfg(test)]
impl Removed for &BitSet {
    fn removed(&mut self, index: u64) -> Result<bool, NotCopied> {
        Ok(self.contains(index))
    }
}

/// A removed set whose runs could not be read, as the copy's failure.
pub fn unread(e: RunError) -> NotCopied {
    NotCopied::Failed(format!("dedup pass 3: reading the removed records: {e}"))
}

/// Fails with the first of `sets` a run of which could not be read
/// ([`RecordSet::check`]): asked before the copy's file is used.
pub fn read_cleanly(sets: &[&RecordSet]) -> Result<(), NotCopied> {
    sets.iter().try_for_each(|set| set.check()).map_err(unread)
}

impl<R: Removed> Removed for &mut R {
    fn removed(&mut self, index: u64) -> Result<bool, NotCopied> {
        (**self).removed(index)
    }
}

/// A run of consecutive kept lines of one input: `[start, end)`.
#[derive(Debug, Clone, Copy)]
struct Run {
    input: u32,
    start: u64,
    end: u64,
}

/// The input being copied from.
struct Current<'a> {
    input: u32,
    path: &'a Path,
    file: File,
    len: u64,
}

/// Writes `kept.jsonl` (uncommitted): the records pass 1 `integrated`,
/// less the `removed` ones, copied from the inputs.
pub fn copy_kept(
    target: &CopyTarget,
    spans: &Spans,
    integrated: &RecordSet,
    mut removed: impl Removed,
) -> Result<Written, NotCopied> {
    let mut out = target
        .output
        .atomic(KEPT_FILE)
        .map_err(|e| NotCopied::Failed(e.to_string()))?;
    let mut copier = Copier {
        target,
        current: None,
        buf: Vec::new(),
        runs: 0,
        gathered: Vec::new(),
    };
    let mut run: Option<Run> = None;
    let mut kept = 0u64;
    let mut places = PlaceCursor::new(spans, &target.temp);
    for index in integrated.members() {
        let index = index.map_err(|e| {
            NotCopied::Failed(format!("dedup pass 3: the records pass 1 integrated: {e}"))
        })?;
        if removed.removed(index)? {
            continue;
        }
        let place = places
            .get(index)
            .map_err(|e| NotCopied::Failed(format!("dedup pass 3: the records' places: {e}")))?
            .ok_or_else(|| {
                NotCopied::Failed(format!("record {index} has no place in the input"))
            })?;
        kept += 1;
        let (start, end) = (place.offset, place.offset + u64::from(place.len));
        match &mut run {
            // The next line, after a one-byte terminator: a `\n`.
            Some(r) if r.input == place.input && r.end + 1 == start => r.end = end,
            _ => {
                if let Some(done) = run.take() {
                    copier.write(&mut out, done)?;
                }
                run = Some(Run {
                    input: place.input,
                    start,
                    end,
                });
            }
        }
    }
    if let Some(done) = run.take() {
        copier.write(&mut out, done)?;
    }
    copier.flush(&mut out)?;
    Ok(Written {
        file: out,
        name: KEPT_FILE,
        kept,
    })
}

struct Copier<'a> {
    target: &'a CopyTarget,
    current: Option<Current<'a>>,
    buf: Vec<u8>,
    runs: u64,
    /// Short runs of one input not written yet, in order.
    gathered: Vec<Run>,
}

impl<'a> Copier<'a> {
    fn stop_requested(&self) -> bool {
        self.target.handle.stop_requested()
    }

    /// The input `input`, opened (the one before it closed).
    fn open(&mut self, input: u32) -> Result<&Current<'a>, NotCopied> {
        if self.current.as_ref().map(|c| c.input) != Some(input) {
            self.current = None;
            let path = self.target.inputs.get(input as usize).ok_or_else(|| {
                NotCopied::Failed(format!("input {input} is not one of this run's"))
            })?;
            let failed = |e: io::Error| NotCopied::Failed(format!("{}: {e}", path.display()));
            let file = File::open(path).map_err(failed)?;
            let len = file.metadata().map_err(failed)?.len();
            self.current = Some(Current {
                input,
                path,
                file,
                len,
            });
        }
        Ok(self.current.as_ref().expect("just opened"))
    }

    fn write(&mut self, out: &mut AtomicFile, run: Run) -> Result<(), NotCopied> {
        self.runs += 1;
        if self.runs.is_multiple_of(RUNS_PER_LOOK) && self.stop_requested() {
            return Err(NotCopied::Stopped);
        }
        if run.end - run.start < SMALL_RUN {
            if let Some(first) = self.gathered.first() {
                if first.input != run.input || run.end - first.start > GATHER {
                    self.flush(out)?;
                }
            }
            self.gathered.push(run);
            return Ok(());
        }
        self.flush(out)?;
        let stop = || self.target.handle.stop_requested();
        let mut buf = std::mem::take(&mut self.buf);
        let current = self.open(run.input)?;
        let result = copy_run(current, run, out, &mut buf, &stop);
        self.buf = buf;
        result
    }

    /// Writes the gathered runs.
    fn flush(&mut self, out: &mut AtomicFile) -> Result<(), NotCopied> {
        let Some(first) = self.gathered.first() else {
            return Ok(());
        };
        let input = first.input;
        let runs = std::mem::take(&mut self.gathered);
        let mut buf = std::mem::take(&mut self.buf);
        let result = self
            .open(input)
            .and_then(|current| copy_gathered(current, &runs, out, &mut buf));
        self.buf = buf;
        self.gathered = runs;
        self.gathered.clear();
        result
    }
}

/// Where the bytes checked before `run` start: the byte before it, or the
/// file's start for a run that may follow a byte order mark.
fn checked_from(run: &Run) -> u64 {
    if run.start <= BOM.len() as u64 {
        0
    } else {
        run.start - 1
    }
}

/// Whether a line starts after `head` (the bytes before a run starting at
/// `start`) and ends before `tail` (up to two bytes after it): records end
/// where their `\n` is (a `\r` before it is the record's), or at the end
/// of the file.
fn on_line_edges(start: u64, head: &[u8], tail: &[u8]) -> (bool, bool) {
    let starts_line =
        start == 0 || (start == BOM.len() as u64 && head == BOM) || head.last() == Some(&b'\n');
    let ends_line = tail.is_empty() || tail[0] == b'\n';
    (starts_line, ends_line)
}

/// Writes the `runs` (short, of one input, in order) with their `\n`s:
/// one read of the input from before the first to after the last, the
/// edges of each checked there, then one vectored write of them all.
fn copy_gathered(
    input: &Current<'_>,
    runs: &[Run],
    out: &mut AtomicFile,
    buf: &mut Vec<u8>,
) -> Result<(), NotCopied> {
    let last = runs.last().expect("runs were gathered");
    if last.end > input.len {
        return Err(changed(input.path, last.end));
    }
    let from = checked_from(&runs[0]);
    let to = (last.end + 2).min(input.len);
    buf.clear();
    buf.resize((to - from) as usize, 0);
    input
        .file
        .read_exact_at(buf, from)
        .map_err(|e| match e.kind() {
            // Shorter than when the copy opened it: truncated meanwhile.
            io::ErrorKind::UnexpectedEof => changed(input.path, last.end),
            _ => NotCopied::Failed(format!("{}: {e}", input.path.display())),
        })?;
    let at = |offset: u64| (offset - from) as usize;
    let mut slices = Vec::with_capacity(runs.len() + 1);
    for run in runs {
        let head = &buf[at(checked_from(run))..at(run.start)];
        let tail = &buf[at(run.end)..at((run.end + 2).min(to))];
        let (starts_line, ends_line) = on_line_edges(run.start, head, tail);
        if !starts_line {
            return Err(changed(input.path, run.start));
        }
        if !ends_line {
            return Err(changed(input.path, run.end));
        }
        // A `\n` terminator is written with the run; none (at the end of
        // the file) is written as `\n`.
        if tail.first() == Some(&b'\n') {
            slices.push(IoSlice::new(&buf[at(run.start)..at(run.end) + 1]));
        } else {
            slices.push(IoSlice::new(&buf[at(run.start)..at(run.end)]));
            slices.push(IoSlice::new(b"\n"));
        }
    }
    write_all_vectored(out, &mut slices)
        .map_err(|e| NotCopied::Failed(format!("{}: {e}", out.target().display())))
}

/// `Write::write_all` for several slices, in as few writes as the system
/// takes.
fn write_all_vectored(out: &mut AtomicFile, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the run's bytes and a `\n` into `out`, after checking that a
/// line starts where it starts and one ends where it ends.
fn copy_run(
    input: &Current<'_>,
    run: Run,
    out: &mut AtomicFile,
    buf: &mut Vec<u8>,
    stop: &dyn Fn() -> bool,
) -> Result<(), NotCopied> {
    let read_failed = |e: io::Error| match e.kind() {
        // Shorter than when the copy opened it: truncated meanwhile.
        io::ErrorKind::UnexpectedEof => changed(input.path, run.end),
        _ => NotCopied::Failed(format!("{}: {e}", input.path.display())),
    };
    let target = out.target().to_owned();
    let write_failed = |e: io::Error| NotCopied::Failed(format!("{}: {e}", target.display()));
    if run.end > input.len {
        return Err(changed(input.path, run.end));
    }
    let read = |buf: &mut Vec<u8>, at: u64, until: u64| {
        buf.clear();
        buf.resize((until - at) as usize, 0);
        input.file.read_exact_at(buf, at).map_err(read_failed)
    };
    // The edges only: the bytes before the run, then those after it.
    let mut tail = Vec::new();
    read(buf, checked_from(&run), run.start)?;
    read(&mut tail, run.end, (run.end + 2).min(input.len))?;
    let (starts_line, ends_line) = on_line_edges(run.start, buf, &tail);
    if !starts_line {
        return Err(changed(input.path, run.start));
    }
    if !ends_line {
        return Err(changed(input.path, run.end));
    }
    // A `\n` terminator is copied with the run: one write, not two (the
    // second of one byte, and a flush of it before the kernel's copy).
    let newline = tail.first() == Some(&b'\n');
    let end = run.end + u64::from(newline);
    let mut at = run.start;
    while at < end {
        if stop() {
            return Err(NotCopied::Stopped);
        }
        let piece = (end - at).min(PIECE);
        out.copy_range(&input.file, at, piece)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => changed(input.path, at + piece),
                // Reading the input or writing the output: both named.
                _ => NotCopied::Failed(format!(
                    "copying from {} to {}: {e}",
                    input.path.display(),
                    target.display()
                )),
            })?;
        at += piece;
    }
    if newline {
        return Ok(());
    }
    out.write_all(b"\n").map_err(write_failed)
}

fn changed(path: &Path, at: u64) -> NotCopied {
    NotCopied::Failed(format!(
        "{}: the input changed since pass 1 read it: no line starts or ends at byte {at} any more",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use drainpipe_actors::Span;

    use super::*;
    use crate::jobs::dedup::spans::Place;

    /// An input of `count` records of varied sizes, after `head`, record
    /// `i` ended by `terminators[i % len]` but the last (`ends`: that one
    /// too); the records as the reader gives them (a `\r` of a `\r\n`
    /// kept) and their places.
    fn input(
        path: &Path,
        count: u64,
        head: &[u8],
        terminators: &[&[u8]],
        ends: bool,
    ) -> (Vec<Vec<u8>>, Spans) {
        let (mut bytes, mut records, mut spans) = (head.to_vec(), Vec::new(), Spans::default());
        for i in 0..count {
            let pad = "x".repeat(400 + (i as usize * 937) % 3000);
            let mut record = format!(r#"{{"id":{i},"text":"{pad}"}}"#).into_bytes();
            let terminator = terminators[i as usize % terminators.len()];
            if terminator == b"\r\n" && (ends || i + 1 < count) {
                record.push(b'\r');
            }
            let offset = bytes.len() as u64;
            bytes.extend_from_slice(&record);
            if ends || i + 1 < count {
                bytes.push(b'\n');
            }
            let span = Some(Span { input: 0, offset });
            let (len, line) = (record.len(), i + 1);
            spans.record(i, Place { span, len, line });
            records.push(record);
        }
        std::fs::write(path, bytes).unwrap();
        (records, spans)
    }

    /// Copies have one kernel copy for a run of many lines, gathered reads
    /// and writes for short runs, windows split at `GATHER`, and `\r\n`,
    /// mixed line ends, a byte order mark or a missing last terminator
    /// around them; whatever the path, `kept.jsonl` is the kept lines as in
    /// the input (a `\r\n` kept), each with a `\n`.
    #[test]
    fn runs_of_any_length_copy_the_kept_lines_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let (lf, crlf): (&[u8], &[u8]) = (b"\n", b"\r\n");
        // (bytes before line 1, each line's terminator in turn, whether
        // the last line has one).
        type Layout<'a> = (&'a [u8], &'a [&'a [u8]], bool);
        let layouts: [Layout; 5] = [
            (b"", &[lf], true),
            (BOM, &[crlf], false),
            (b"", &[lf], false),
            (b"", &[crlf], true),
            (BOM, &[lf, crlf, crlf, lf, lf], true),
        ];
        for (head, terminators, ends) in layouts {
            let count = 2_000;
            let (records, spans) = input(&path, count, head, terminators, ends);
            let mut integrated = BitSet::new();
            (0..count).for_each(|i| integrated.insert(i));
            // None removed: one run of 3.8 MB. Every 400th: runs of ~700 KB,
            // copied by the kernel. Every 30th, and a stretch of every
            // other: runs of ~50 KB and of one line, gathered.
            for every in [0, 400, 30, 2] {
                let mut removed = BitSet::new();
                for i in 0..count {
                    let stretch = every == 2 && !(500..700).contains(&i);
                    if every > 0 && i % every == every - 1 && !stretch {
                        removed.insert(i);
                    }
                }
                let out = OutputDir::create(dir.path().join(format!("out{every}"))).unwrap();
                let target = CopyTarget {
                    inputs: vec![path.clone()],
                    temp: std::sync::Arc::new(drainpipe_actors::TempSpace::new(dir.path())),
                    output: out,
                    handle: RunHandle::new(),
                };
                let integrated = RecordSet::in_memory(&integrated);
                let written = copy_kept(&target, &spans, &integrated, &removed).unwrap();
                let mut expected = Vec::new();
                for (i, record) in records.iter().enumerate() {
                    if !removed.contains(i as u64) {
                        expected.extend_from_slice(record);
                        expected.push(b'\n');
                    }
                }
                assert_eq!(written.kept, count - removed.count());
                let kept = std::fs::read(written.file.commit().unwrap()).unwrap();
                assert!(
                    kept == expected,
                    "every {every}, terminators {terminators:?}"
                );
            }
        }
    }

    /// A line edge at the end of a run that moved since pass 1 fails the
    /// copy, in a gathered window as in a run copied by the kernel.
    #[test]
    fn a_moved_line_edge_fails_the_copy_on_either_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        // Record 300 removed, with every 30th (runs of ~50 KB, gathered)
        // or alone (runs of ~600 KB, copied by the kernel).
        for every in [30, 600] {
            let (_, spans) = input(&path, 600, b"", &[b"\n"], true);
            // Same size: the terminator before record 300 moved by a byte.
            let mut bytes = std::fs::read(&path).unwrap();
            let at = spans.get(300).unwrap().offset as usize - 1;
            bytes.swap(at, at + 1);
            std::fs::write(&path, bytes).unwrap();
            let mut integrated = BitSet::new();
            (0..600).for_each(|i| integrated.insert(i));
            let mut removed = BitSet::new();
            (0..600)
                .filter(|i| i % every == 300 % every)
                .for_each(|i| removed.insert(i));
            let target = CopyTarget {
                inputs: vec![path.clone()],
                temp: std::sync::Arc::new(drainpipe_actors::TempSpace::new(dir.path())),
                output: OutputDir::create(dir.path().join(format!("o{every}"))).unwrap(),
                handle: RunHandle::new(),
            };
            match copy_kept(
                &target,
                &spans,
                &RecordSet::in_memory(&integrated),
                &removed,
            ) {
                Err(NotCopied::Failed(message)) => {
                    assert!(message.contains("changed since pass 1"), "{message}")
                }
                other => panic!("every {every}: {:?}", other.map(|w| w.kept)),
            }
        }
    }
}
