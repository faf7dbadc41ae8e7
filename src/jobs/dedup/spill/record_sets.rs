//! Sets of records (those pass 1 integrated, pass 2's candidates, the
//! removed ones) past their share of the memory budget: a bit a record in
//! memory while they fit it ([`crate::jobs::dedup::budget::Shares::record_set`]), else written to disk
//! in record order and read back through a window that moves forward.
//!
//! A bit a record is 125 MB for 10^9 records, so a run of a billion
//! records held three such sets beside a budget of 128 MiB. Every reader
//! of a set asks for records in about increasing order (the Integrator
//! integrates in input order; processors work on batches side by side, a
//! few thousand records apart), so a set on disk is written once, front
//! to back, and read the same way.
//!
//! - [`SetWriter`] takes members in increasing order (a member below the
//!   words already written is a bug, refused). Past the share, the words
//!   before the last one go to a run, then to another each time a segment
//!   fills; the last word stays, since its next members may still come.
//! - [`RecordSet`] answers [`RecordSet::contains`] from memory, or from a
//!   window of words kept [`LAG_WORDS`] behind the furthest one asked for.
//!   A record asked for behind the window reads the runs again from their
//!   start: correct, only slower, and counted
//!   ([`RecordSet::rewinds`]). Readers that move apart (a copy following
//!   the pass) take a cursor of their own ([`RecordSet::apart`]).
//! - A checkpoint names the runs written and saves the words in memory
//!   ([`SetState`]); a restore removes the runs it does not name.
//!
//! # Format (version [`SETS_VERSION`])
//!
//! The framing of [`super::runs::blocks`] (magic `DPRECSET`, no flags),
//! one entry per word with a member, in increasing word order: the word's
//! index as its gap from the block's previous one (the first of a block:
//! the index itself), LEB128, then the word, 8 bytes little-endian. Dense
//! sets take 9 bytes for 64 records, sparse ones a few bytes a member.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use drainpipe_actors::{Failure, RunHandle, TempSpace};
use serde::{Deserialize, Serialize};

use super::leftovers::remove_unnamed;
use super::runs::blocks::{put_varint, BlockReader, BlockWriter, Format, BLOCK_BYTES};
use super::runs::{RunError, RunInfo};
use crate::jobs::dedup::bitset::BitSet;

/// The format's version; bump on any change of it.
pub const SETS_VERSION: u32 = 1;

const FORMAT: Format = Format {
    magic: b"DPRECSET",
    version: SETS_VERSION,
    flags: 0,
    // An entry is a 10-byte integer and a word past a block at most.
    max_payload: BLOCK_BYTES + 32,
    what: "a run of a record set",
};

const PREFIX: &str = "dedup-set-";
const SUFFIX: &str = ".bits";

/// Words a cursor keeps behind the furthest one asked for: 2^20 records,
/// far more than the batches in flight between the reader and the
/// processors.
pub const LAG_WORDS: u64 = 1 << 14;

/// Words of a segment once the set is on disk: at least 8 KiB, at most
/// 1 MiB, else a quarter of the share.
const MIN_SEGMENT: usize = 1 << 10;
const MAX_SEGMENT: usize = 1 << 17;

/// What a checkpoint saves of a set: the runs written, and the words held
/// in memory from word `base` on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetState {
    runs: Vec<RunInfo>,
    base: u64,
    words: Vec<u64>,
    count: u64,
}

impl SetState {
    /// Members in the set.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Bytes of its runs on disk.
    pub fn bytes_on_disk(&self) -> u64 {
        self.runs.iter().map(|r| r.bytes).sum()
    }

    fn on_disk(&self) -> bool {
        !self.runs.is_empty()
    }

    /// The word holding `record`'s bit in memory, if it is there.
    fn held_word(&self, word: u64) -> Option<u64> {
        let at = word.checked_sub(self.base)?;
        Some(
            usize::try_from(at)
                .ok()
                .and_then(|at| self.words.get(at).copied())
                .unwrap_or(0),
        )
    }
}

/// Builds a set from members given in increasing order, within `share`
/// bytes of memory (`None`: all in memory).
#[derive(Debug)]
pub struct SetWriter {
    /// `None`: held in memory whatever its size.
    temp: Option<Arc<TempSpace>>,
    /// What the set is, in its runs' names ("integrated").
    name: &'static str,
    share: u64,
    segment: usize,
    state: SetState,
    /// The runs go when the set is dropped ([`SetWriter::for_this_run`]).
    dropped_with_set: bool,
}

impl SetWriter {
    /// An empty set called `name`, whose runs go to `temp` past `share`
    /// bytes (without either, it is held in memory whatever its size).
    pub fn new(name: &'static str, temp: Option<Arc<TempSpace>>, share: Option<u64>) -> Self {
        let share = share.filter(|_| temp.is_some()).unwrap_or(u64::MAX);
        let quarter = usize::try_from(share / 8 / 4).unwrap_or(usize::MAX);
        SetWriter {
            temp,
            name,
            share,
            segment: quarter.clamp(MIN_SEGMENT, MAX_SEGMENT),
            state: SetState::default(),
            dropped_with_set: false,
        }
    }

    /// For a set no checkpoint or pass result names: its runs are removed
    /// when the set (its last reader) is dropped. Else they stay until
    /// [`RecordSet::remove_runs`] (or the temporary folder goes).
    pub fn for_this_run(mut self) -> Self {
        self.dropped_with_set = true;
        self
    }

    /// Takes up the set a checkpoint saved: the runs of this set it does
    /// not name were written after it, and are removed.
    pub fn resumed(mut self, state: SetState) -> Result<Self, RunError> {
        match &self.temp {
            Some(temp) if state.on_disk() || temp.folder().is_dir() => {
                remove_unnamed(temp, &self.prefix(), SUFFIX, &state.runs)?;
                temp.holds(state.bytes_on_disk());
            }
            None if state.on_disk() => {
                return Err(RunError::Failed {
                    kind: std::io::ErrorKind::NotFound,
                    message: format!(
                        "the {} records saved are on disk, and this run has no temporary space",
                        self.name
                    ),
                })
            }
            _ => {}
        }
        self.state = state;
        self.check_runs()?;
        Ok(self)
    }

    /// Reads the runs a checkpoint named front to back: a run damaged or
    /// gone since is found here, naming its file, before a pass relies on
    /// it (a bit a word's member counted: they must hold the members
    /// written).
    fn check_runs(&self) -> Result<(), RunError> {
        if !self.state.on_disk() {
            return Ok(());
        }
        let data = SetData {
            name: self.name,
            temp: self.temp.clone(),
            state: SetState {
                words: Vec::new(),
                ..self.state.clone()
            },
            dropped_with_set: false,
        };
        let (mut window, mut count) = (Window::default(), 0u64);
        while let Some((_, bits)) = window.next_word(&data)? {
            count += u64::from(bits.count_ones());
        }
        count += self
            .state
            .words
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        if count != self.state.count {
            return Err(RunError::Failed {
                kind: std::io::ErrorKind::InvalidData,
                message: format!(
                    "the {} records' runs and words hold {count} records, {} were written",
                    self.name, self.state.count
                ),
            });
        }
        Ok(())
    }

    fn prefix(&self) -> String {
        format!("{PREFIX}{}-", self.name)
    }

    /// Adds `record`: at or past the word of the last one added (members
    /// of one word may come in any order).
    pub fn insert(&mut self, record: u64) -> Result<(), RunError> {
        let word = record / 64;
        let state = &mut self.state;
        let Some(at) = word.checked_sub(state.base) else {
            return Err(RunError::Failed {
                kind: std::io::ErrorKind::InvalidInput,
                message: format!(
                    "record {record} added to the {} records after those of word {} were written (a bug)",
                    self.name, state.base
                ),
            });
        };
        let at = usize::try_from(at).expect("a word held in memory");
        if at >= state.words.len() {
            state.words.resize(at + 1, 0);
        }
        let bit = 1 << (record % 64);
        if state.words[at] & bit == 0 {
            state.words[at] |= bit;
            state.count += 1;
        }
        let full = if state.on_disk() {
            state.words.len() > self.segment
        } else {
            state.words.len() as u64 * 8 > self.share
        };
        if full {
            self.write()?;
        }
        Ok(())
    }

    /// Members so far.
    pub fn count(&self) -> u64 {
        self.state.count
    }

    /// The first record past the words written or held: past every
    /// member.
    pub fn end(&self) -> u64 {
        (self.state.base + self.state.words.len() as u64) * 64
    }

    /// Bytes held in memory.
    pub fn held_bytes(&self) -> u64 {
        self.state.words.capacity() as u64 * 8
    }

    /// What a checkpoint saves, once [`SetWriter::sync`] made its runs
    /// durable.
    pub fn state(&self) -> &SetState {
        &self.state
    }

    /// Makes the runs named by [`SetWriter::state`] durable.
    pub fn sync(&self) -> Result<(), RunError> {
        let Some(temp) = &self.temp else {
            return Ok(());
        };
        for run in &self.state.runs {
            let path = temp.folder().join(&run.name);
            let file = fs::File::open(&path).map_err(RunError::io(&path))?;
            file.sync_all().map_err(RunError::io(&path))?;
        }
        Ok(())
    }

    /// The set, its runs durable.
    pub fn finish(self) -> Result<RecordSet, RunError> {
        self.sync()?;
        Ok(self.into_set())
    }

    /// The set as it is (its runs made durable before, by
    /// [`SetWriter::sync`], when something names them).
    pub fn into_set(self) -> RecordSet {
        RecordSet::on(Arc::new(SetData {
            name: self.name,
            temp: self.temp,
            state: self.state,
            dropped_with_set: self.dropped_with_set,
        }))
    }

    /// Writes the words held but the last (the next members may still
    /// fall in it) as the next run.
    fn write(&mut self) -> Result<(), RunError> {
        let Some(temp) = &self.temp else {
            return Ok(());
        };
        let state = &mut self.state;
        let Some(last) = state.words.len().checked_sub(1) else {
            return Ok(());
        };
        if !state.on_disk() {
            log::info!(
                "dedup: the {} records pass their share of the memory budget at record {}: \
                 written to disk in record order from here on ({})",
                self.name,
                (state.base + last as u64) * 64,
                temp.folder().display()
            );
        }
        let name = format!("{PREFIX}{}-{:06}{SUFFIX}", self.name, state.runs.len());
        let path = temp.path(&name).map_err(|cause| RunError::Io {
            path: temp.folder().join(&name),
            cause,
        })?;
        temp.ensure_room(last as u64 * 10 + 64)
            .map_err(RunError::io(temp.folder()))?;
        let file = fs::File::create(&path).map_err(RunError::io(&path))?;
        let mut blocks = BlockWriter::new(file, path, &FORMAT, 0)?;
        let mut previous = 0;
        for (at, &bits) in state.words[..last].iter().enumerate() {
            if bits == 0 {
                continue;
            }
            let word = state.base + at as u64;
            blocks.push(|payload, first| {
                put_varint(payload, word - if first { 0 } else { previous });
                payload.extend_from_slice(&bits.to_le_bytes());
                previous = word;
            })?;
        }
        // Synced by a checkpoint, or when the set is finished.
        let info = blocks.finish(false)?;
        temp.wrote(info.bytes);
        state.runs.push(info);
        state.words.drain(..last);
        state.base += last as u64;
        Ok(())
    }
}

impl Default for SetWriter {
    /// An empty set held in memory.
    fn default() -> Self {
        SetWriter::new("records", None, None)
    }
}

/// A finished set: in memory, or on disk with the words past its runs in
/// memory. Its members are read through a cursor of its own
/// ([`RecordSet::apart`] gives another).
#[derive(Debug)]
pub struct RecordSet {
    data: Arc<SetData>,
    cursor: Mutex<Window>,
    rewinds: AtomicU64,
    failure: Mutex<Option<String>>,
    /// Asked to stop the run, failed, when a run cannot be read
    /// ([`RecordSet::stop_on_failure`]).
    stop: OnceLock<RunHandle>,
}

#[derive(Debug)]
struct SetData {
    name: &'static str,
    temp: Option<Arc<TempSpace>>,
    state: SetState,
    dropped_with_set: bool,
}

impl SetData {
    fn remove_runs(&self) -> Result<(), RunError> {
        let Some(temp) = &self.temp else {
            return Ok(());
        };
        for run in &self.state.runs {
            temp.remove(&run.name, run.bytes)
                .map_err(|cause| RunError::Io {
                    path: temp.folder().join(&run.name),
                    cause,
                })?;
        }
        Ok(())
    }
}

impl Drop for SetData {
    fn drop(&mut self) {
        if self.dropped_with_set {
            if let Err(e) = self.remove_runs() {
                log::warn!("dedup: removing the runs of the {} records: {e}", self.name);
            }
        }
    }
}

impl Default for RecordSet {
    /// An empty set.
    fn default() -> Self {
        SetWriter::default().into_set()
    }
}

impl RecordSet {
    fn on(data: Arc<SetData>) -> Self {
        RecordSet {
            data,
            cursor: Mutex::new(Window::default()),
            rewinds: AtomicU64::new(0),
            failure: Mutex::new(None),
            stop: OnceLock::new(),
        }
    }

    /// Has `handle` stop the run, failed (exit 74), at the first run of
    /// the set that cannot be read, so that the pass ends there rather
    /// than go on with records it cannot tell; kept by
    /// [`RecordSet::apart`]'s cursors made after.
    pub fn stop_on_failure(&self, handle: RunHandle) {
        let _ = self.stop.set(handle);
    }

    /// A set held in memory whole (tests; sets of a run without a budget
    /// are made so by a [`SetWriter`] without a share).
    pub fn in_memory(bits: &BitSet) -> Self {
        let state = SetState {
            runs: Vec::new(),
            base: 0,
            words: bits.words().to_vec(),
            count: bits.count(),
        };
        SetWriter {
            state,
            ..SetWriter::default()
        }
        .into_set()
    }

    /// The same set, read through a cursor of its own (for a reader that
    /// moves apart from the others).
    pub fn apart(&self) -> Self {
        let apart = Self::on(Arc::clone(&self.data));
        if let Some(handle) = self.stop.get() {
            apart.stop_on_failure(handle.clone());
        }
        apart
    }

    /// Members in the set.
    pub fn count(&self) -> u64 {
        self.data.state.count
    }

    /// Removes its runs, once nothing will read them again (the outputs
    /// are committed; for a set made for one pass, once it has ended).
    pub fn remove_runs(&self) -> Result<(), RunError> {
        self.data.remove_runs()
    }

    /// Bytes of its runs on disk.
    pub fn bytes_on_disk(&self) -> u64 {
        self.data.state.bytes_on_disk()
    }

    /// Bytes it holds in memory: its words past the runs, and its
    /// cursor's window when it has runs (at most 2 * [`LAG_WORDS`] words).
    pub fn held_bytes(&self) -> u64 {
        let window = if self.data.state.on_disk() {
            2 * LAG_WORDS * 8
        } else {
            0
        };
        self.data.state.words.len() as u64 * 8 + window
    }

    /// What a checkpoint or a pass's result saves of it.
    pub fn state(&self) -> &SetState {
        &self.data.state
    }

    /// Times a record was asked for behind the window, and the runs were
    /// read again from their start.
    pub fn rewinds(&self) -> u64 {
        self.rewinds.load(Ordering::Relaxed)
    }

    /// Whether `record` is in the set. A run that cannot be read answers
    /// false; the failure is kept for [`RecordSet::check`], which the
    /// pass reading the set calls before it completes.
    pub fn contains(&self, record: u64) -> bool {
        match self.try_contains(record) {
            Ok(found) => found,
            Err(e) => {
                let mut failure = self.failure.lock().expect("failure poisoned");
                if failure.is_none() {
                    let message = format!("dedup: reading the {} records: {e}", self.data.name);
                    log::error!("{message}");
                    if let Some(handle) = self.stop.get() {
                        handle.request_stop_failed(Failure::Io(message));
                    }
                    *failure = Some(e.to_string());
                }
                false
            }
        }
    }

    /// Whether `record` is in the set, or why its runs could not be read.
    pub fn try_contains(&self, record: u64) -> Result<bool, RunError> {
        let (word, bit) = (record / 64, 1 << (record % 64));
        let state = &self.data.state;
        if let Some(bits) = state.held_word(word) {
            return Ok(bits & bit != 0);
        }
        let mut cursor = self.cursor.lock().expect("set cursor poisoned");
        if word < cursor.base && cursor.failed.is_none() {
            self.rewinds.fetch_add(1, Ordering::Relaxed);
            *cursor = Window::default();
        }
        Ok(cursor.word(&self.data, word)? & bit != 0)
    }

    /// Fails with the first run of the set that could not be read (and
    /// logs the rewinds, if any: a reader fell behind the window).
    pub fn check(&self) -> Result<(), RunError> {
        let rewinds = self.rewinds();
        if rewinds > 0 {
            log::info!(
                "dedup: the {} records' runs were read again from their start {rewinds} times",
                self.data.name
            );
        }
        match self.failure.lock().expect("failure poisoned").take() {
            None => Ok(()),
            Some(message) => Err(RunError::Failed {
                kind: std::io::ErrorKind::Other,
                message,
            }),
        }
    }

    /// The members in increasing order, read from the runs front to back.
    pub fn members(&self) -> Members {
        Members {
            window: Window::default(),
            data: Arc::clone(&self.data),
            word: 0,
            bits: 0,
            held: None,
            ended: false,
        }
    }
}

/// [`RecordSet::members`].
#[derive(Debug)]
pub struct Members {
    window: Window,
    data: Arc<SetData>,
    /// The word being read, and its bits not yet given.
    word: u64,
    bits: u64,
    /// The next word held in memory, once the runs were read.
    held: Option<usize>,
    /// A run could not be read: told once, then the end.
    ended: bool,
}

impl Iterator for Members {
    type Item = Result<u64, RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.bits != 0 {
                let bit = self.bits.trailing_zeros();
                self.bits &= self.bits - 1;
                return Some(Ok(self.word * 64 + u64::from(bit)));
            }
            let state = &self.data.state;
            match self.held {
                None if self.ended => return None,
                None => match self.window.next_word(&self.data) {
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(e));
                    }
                    Ok(Some(next)) => (self.word, self.bits) = next,
                    Ok(None) => self.held = Some(0),
                },
                Some(at) => {
                    let bits = *state.words.get(at)?;
                    (self.word, self.bits) = (state.base + at as u64, bits);
                    self.held = Some(at + 1);
                }
            }
        }
    }
}

/// Words of the runs from word `base` on, read front to back.
#[derive(Debug, Default)]
struct Window {
    base: u64,
    words: VecDeque<u64>,
    reader: Option<BlockReader>,
    next_run: usize,
    /// The previous entry's word, as its gap needs it.
    previous: u64,
    /// The next entry read but not yet in the window.
    head: Option<(u64, u64)>,
    /// Every run was read.
    done: bool,
    /// A run could not be read: every later look-up fails so.
    failed: Option<String>,
}

impl Window {
    fn end(&self) -> u64 {
        self.base + self.words.len() as u64
    }

    /// The bits of `word` (below the set's words in memory), reading on.
    fn word(&mut self, data: &SetData, word: u64) -> Result<u64, RunError> {
        if let Some(message) = &self.failed {
            return Err(RunError::Failed {
                kind: std::io::ErrorKind::InvalidData,
                message: message.clone(),
            });
        }
        self.reach(data, word)
            .inspect_err(|e| self.failed = Some(e.to_string()))
    }

    /// [`Window::word`], reading the runs on as far as `word`.
    fn reach(&mut self, data: &SetData, word: u64) -> Result<u64, RunError> {
        while self.end() <= word {
            let next = self.peek(data)?;
            let target = next.map_or(word + 1, |(at, _)| at.min(word + 1));
            let zeros = target.saturating_sub(self.end());
            if zeros > LAG_WORDS {
                self.words.clear();
                self.base = target;
            } else {
                self.words.extend(std::iter::repeat_n(0, zeros as usize));
            }
            if let Some((at, bits)) = next.filter(|&(at, _)| at == self.end()) {
                self.words.push_back(bits);
                self.head = None;
                debug_assert_eq!(self.end(), at + 1);
            }
        }
        let keep = word.saturating_sub(LAG_WORDS);
        if self.words.len() as u64 > 2 * LAG_WORDS && keep > self.base {
            let drop = (keep - self.base) as usize;
            self.words.drain(..drop);
            self.base = keep;
        }
        Ok(self.words[(word - self.base) as usize])
    }

    /// The next word with members in the runs, taken (for [`Members`]).
    fn next_word(&mut self, data: &SetData) -> Result<Option<(u64, u64)>, RunError> {
        let next = self.peek(data)?;
        self.head = None;
        Ok(next)
    }

    /// The next entry of the runs, read if needed; `None` past the last.
    fn peek(&mut self, data: &SetData) -> Result<Option<(u64, u64)>, RunError> {
        while self.head.is_none() && !self.done {
            let Some(reader) = &mut self.reader else {
                let Some(info) = data.state.runs.get(self.next_run) else {
                    self.done = true;
                    break;
                };
                self.next_run += 1;
                let folder = data.temp.as_ref().map_or(Path::new(""), |t| t.folder());
                let path = folder.join(&info.name);
                let file = fs::File::open(&path).map_err(RunError::io(&path))?;
                self.reader = Some(BlockReader::new(file, path, &FORMAT, Some(info))?.0);
                continue;
            };
            let Some(first) = reader.next_entry()? else {
                self.reader = None;
                continue;
            };
            let word = if first { 0 } else { self.previous } + reader.varint()?;
            let bits = u64::from_le_bytes(reader.take(8)?.try_into().expect("8 bytes"));
            self.previous = word;
            self.head = Some((word, bits));
        }
        Ok(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members dense at first, sparse after, with a gap of no member at
    /// all longer than the window.
    fn members(records: u64) -> Vec<u64> {
        (0..records)
            .filter(|&i| match i {
                i if i < records / 3 => i % 5 != 2,
                i if i < records / 2 => i % 997 == 1,
                i if i < records / 2 + 64 * 3 * LAG_WORDS => false,
                i => i % 13 == 0,
            })
            .collect()
    }

    fn written(temp: &Arc<TempSpace>, share: Option<u64>, members: &[u64]) -> RecordSet {
        let mut writer = SetWriter::new("test", Some(Arc::clone(temp)), share);
        for &m in members {
            writer.insert(m).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn a_set_past_its_share_is_read_back_from_disk_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let records = 4_000_000;
        let all = members(records);
        let held = written(&temp, None, &all);
        assert_eq!(held.bytes_on_disk(), 0);
        let set = written(&temp, Some(4096), &all);
        assert!(set.state().runs.len() > 10, "{}", set.state().runs.len());
        assert_eq!(
            (set.count(), held.count()),
            (all.len() as u64, all.len() as u64)
        );
        let got: Vec<u64> = set.members().map(Result::unwrap).collect();
        assert_eq!(got, all);
        let got: Vec<u64> = held.members().map(Result::unwrap).collect();
        assert_eq!(got, all);
        let expected: std::collections::HashSet<u64> = all.iter().copied().collect();
        for step in [1, 7, 64 * 1000 + 3] {
            let set = set.apart();
            for record in (0..records + 200).step_by(step) {
                let want = expected.contains(&record);
                assert_eq!(set.contains(record), want, "record {record}, step {step}");
                assert_eq!(held.contains(record), want, "record {record}, step {step}");
            }
            assert_eq!(set.rewinds(), 0);
            set.check().unwrap();
        }
    }

    #[test]
    fn records_asked_for_behind_the_window_read_the_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let all: Vec<u64> = (0..3_000_000).filter(|i| i % 3 == 0).collect();
        let set = written(&temp, Some(1024), &all);
        // Processors side by side: a little back is within the window.
        assert!(set.contains(2_899_998) && set.contains(2_000_001));
        assert_eq!(set.rewinds(), 0);
        // Far back: read again, still right.
        assert!(set.contains(3) && !set.contains(4));
        assert_eq!(set.rewinds(), 1);
        assert!(set.contains(2_999_997));
    }

    #[test]
    fn a_set_for_this_run_takes_its_runs_with_it_and_another_keeps_them_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let files = || fs::read_dir(temp.folder()).unwrap().count();
        let all: Vec<u64> = (0..200_000).collect();
        let kept = written(&temp, Some(64), &all);
        let runs = files();
        assert!(runs > 0);
        let mut writer = SetWriter::new("own", Some(Arc::clone(&temp)), Some(64)).for_this_run();
        all.iter().for_each(|&m| writer.insert(m).unwrap());
        let own = writer.finish().unwrap();
        let reader = own.apart();
        assert!(files() > runs);
        drop(own);
        assert!(
            files() > runs && reader.contains(150_000),
            "the last reader holds them"
        );
        drop(reader);
        assert_eq!(files(), runs);
        kept.remove_runs().unwrap();
        assert_eq!(files(), 0);
    }

    #[test]
    fn a_member_below_the_words_written_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut writer = SetWriter::new("test", Some(Arc::clone(&temp)), Some(64));
        for record in (0..100_000).step_by(2) {
            writer.insert(record).unwrap();
        }
        // Within the last word: fine, in any order.
        writer.insert(99_999).unwrap();
        writer.insert(99_969).unwrap();
        assert!(writer.insert(10).is_err());
    }

    #[test]
    fn a_restore_removes_the_runs_its_checkpoint_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut writer = SetWriter::new("test", Some(Arc::clone(&temp)), Some(64));
        for record in 0..200_000 {
            writer.insert(record * 3).unwrap();
        }
        writer.sync().unwrap();
        let saved = writer.state().clone();
        for record in 200_000..400_000 {
            writer.insert(record * 3).unwrap();
        }
        let files = || fs::read_dir(temp.folder()).unwrap().count();
        assert!(files() > saved.runs.len());
        let mut writer = SetWriter::new("test", Some(Arc::clone(&temp)), Some(64))
            .resumed(saved.clone())
            .unwrap();
        assert_eq!(files(), saved.runs.len());
        for record in 200_000..400_000 {
            writer.insert(record * 3).unwrap();
        }
        let set = writer.finish().unwrap();
        let got: Vec<u64> = set.members().map(Result::unwrap).collect();
        assert_eq!(got, (0..400_000).map(|r| r * 3).collect::<Vec<_>>());
    }

    #[test]
    fn a_damaged_run_fails_the_pass_that_reads_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let all: Vec<u64> = (0..1_000_000).collect();
        let set = written(&temp, Some(1024), &all);
        let first = temp.folder().join(&set.state().runs[0].name);
        let mut bytes = fs::read(&first).unwrap();
        bytes[100] ^= 1;
        fs::write(&first, bytes).unwrap();
        assert!(!set.contains(5));
        let e = set.check().unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains(".bits"), "{e}");
        assert!(set.check().is_ok(), "told once");
        assert!(set.members().any(|m| m.is_err()));
    }
}
