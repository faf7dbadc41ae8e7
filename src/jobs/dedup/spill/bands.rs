//! Pass 1's band lists and id keys under a memory budget: held in memory,
//! in record order, for as long as they fit, so that a run whose state
//! fits its budget spills nothing and ends as a run with no budget does
//! (the lists sorted in memory). Past that, only the oldest records go:
//! sorted and written to the run's temporary space as sorted runs (one
//! per band, one of id keys), a chunk at a time on a thread of its own
//! while the lists go on filling, and merged band by band when the pass
//! ends. The latest records are not written: they are kept in memory and
//! merged from there beside the runs ([`Spiller::keep_last`]); no
//! checkpoint is taken once the pass ends, so none names them. A larger
//! budget keeps more of them, and so spills less.
//!
//! # The budget's shares
//!
//! (Set in [`crate::jobs::dedup::budget`], with those of the other passes.)
//!
//! Of `--max-memory` (the budget for the run's state, the fixed overhead
//! of batch buffers, threads and program being on top), pass 1's
//! Integrator state takes half ([`Budget::state`]); the other half covers
//! what grows beside the lists counted below and is not counted (the
//! allocator's slack, the candidate pairs as they are made, the merge's
//! buffers). Of the state's half, the records' places take a quarter
//! ([`Budget::places_bytes`], 12 bytes a record: past it they go to
//! disk), and the lists the rest ([`Shares::unspilled`]), at each stage
//! (bytes a record: [`per_record`]):
//!
//! - **until they first spill**, the lists of every record so far
//!   ([`Budget::hold_records`]), as many as the sort in memory holds when
//!   the pass ends (8 bytes per band and 8 for the id key, then 8 for the
//!   twin fingerprint, 8 per sorting thread for its room and 16 for the
//!   id key sorted), and as leave room for the first chunk written beside
//!   them;
//! - **when they pass that**, the oldest records go, in chunks of equal
//!   size of at most [`Budget::chunk_records`] (the size the two chunks
//!   that took turns had, so a budget writes as many runs as it did): a
//!   chunk being written takes, besides its lists, 8 bytes a record for
//!   the fingerprints (computed from the lists on the writer's thread,
//!   [`writer::prints_of`]), 32 for the sort's room (one band at a time,
//!   each entry with its fingerprint, twice) and 16 while its id keys are
//!   sorted; the lists keep the latest [`Budget::keep_records`] less a
//!   chunk;
//! - **after**, each time the lists span [`Budget::keep_records`], their
//!   oldest chunk is handed over to be written (once the one before is),
//!   and taken out of them;
//! - **when the pass ends**, the latest records (at most
//!   [`Budget::keep_records`]) are kept in record order within
//!   [`Shares::chunks`], each band's list sorted, with its fingerprints,
//!   only when its merge opens it (16 bytes an entry and as much for the
//!   sort's room, per merging thread), beside the merge's read buffers
//!   ([`super::levels::READER_BYTES`], a block, a read buffer and a batch
//!   of entries, per run of each band being merged; past
//!   [`Budget::merge_bytes`], runs merge in levels first,
//!   [`super::levels`]).
//!
//! Taking the oldest records out of the lists moves the rest to their
//! front: a record is moved `keep / chunk - 1` times on average (about
//! half a time with the default banding), a copy made faster than the
//! disk takes the runs.
//!
//! # Why the merge gives the same pairs
//!
//! Chunks are consecutive ranges of records, each band's run sorted by
//! `(key, record)`, so the merge of a band's runs is the band's list as
//! the one sort in memory makes it: the same buckets, records in input
//! order. A bucket's twins are told by fingerprints computed from each
//! record's keys ([`writer::prints_of`], the value
//! [`crate::jobs::dedup::buckets::Fingerprints::of`] gives), and written
//! with every entry, so no table by record is needed while merging.
//!
//! # Progress
//!
//! The merge runs in pass 1's finish, and takes longer the larger the
//! input: it beats the finish's heartbeat ([`Spiller::runs`]) once a list
//! merged in levels or a band opened, and every merge as it reads
//! ([`Merge::beating`]), so the run's deadline for the finish
//! (`--drain-timeout`) counts from the last beat, not from the start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use drainpipe_actors::{Heartbeat, TempSpace};
use serde::{Deserialize, Serialize};

use super::leftovers::remove_unnamed;
use super::levels;
use super::merge::{EntrySource, Merge};
use super::pair_files::CandidatePairs;
use super::pairs::{PairSpill, PairsMade};
use super::repeats::{RepeatedIds, RepeatsMaker};
use super::runs::{self, Entry, RunError, RunInfo};
use super::writer::{self, Background, Chunk, Scratch, Written, PREFIX, SUFFIX};
use crate::jobs::dedup::budget::Shares;
use crate::jobs::dedup::ids::{repeats_in, repeats_into, IdKeys};
use crate::jobs::dedup::lsh::{merged_candidate_pairs, merged_candidate_pairs_spilling};
use crate::jobs::dedup::threads::on_threads;

/// A chunk spans at least this many records, however small the budget
/// (so a tiny budget makes many runs, not one per record).
const MIN_CHUNK: usize = 4096;

/// Grows `list` for one more item: doubles its room, but never past
/// `limit` items (unless it holds that many already).
fn grow_within<T>(list: &mut Vec<T>, limit: usize) {
    if list.len() == list.capacity() {
        let target = (list.capacity() * 2)
            .max(1024)
            .min(limit)
            .max(list.len() + 1);
        list.reserve_exact(target - list.len());
    }
}

/// Records of `per_record` bytes each that `bytes` holds, at least
/// [`MIN_CHUNK`].
fn records_in(bytes: u64, per_record: u64) -> usize {
    usize::try_from(bytes / per_record.max(1))
        .unwrap_or(usize::MAX)
        .max(MIN_CHUNK)
}

/// Bytes a record takes in pass 1's lists at each stage, with `bands`
/// bands (and `threads` threads sorting or merging them when the pass
/// ends): what [`Budget`] sizes the lists by.
pub mod per_record {
    /// While the lists fill: its entry in each band and its id key.
    pub fn filled(bands: usize) -> u64 {
        8 * bands as u64 + 8
    }

    /// In a chunk being written: its entries and id key, its fingerprint,
    /// the sort's room (its entry of the band being sorted with its
    /// fingerprint, twice) and its id key sorted.
    pub fn in_flight(bands: usize) -> u64 {
        filled(bands) + 8 + 32 + 16
    }

    /// Sorted in memory when nothing spilled (as with no budget): its
    /// entries and id key, its fingerprint, each sorting thread's room
    /// (an entry of the band it sorts) and its id key sorted.
    pub fn in_memory(bands: usize, threads: usize) -> u64 {
        filled(bands) + 8 + 8 * threads.clamp(1, bands.max(1)) as u64 + 16
    }

    /// Kept in memory and merged beside the runs when the pass ends: its
    /// entries and id key, its fingerprint, its id key sorted and, on
    /// each merging thread, its entry of the band merged there sorted
    /// with its fingerprint and the sort's room (16 bytes each).
    pub fn kept(bands: usize, threads: usize) -> u64 {
        filled(bands) + 8 + 16 + 32 * threads.clamp(1, bands.max(1)) as u64
    }
}

/// `--max-memory`, as pass 1 shares it (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The run's budget in bytes.
    pub max_memory: u64,
}

impl Budget {
    fn shares(self) -> Shares {
        Shares {
            max_memory: self.max_memory,
        }
    }

    /// Pass 1's Integrator state: half the budget ([`Shares::pass1_state`]).
    pub fn state(self) -> u64 {
        self.shares().pass1_state()
    }

    /// Records a chunk written at a time spans, with `bands` bands: two
    /// chunks' lists, fingerprints and id keys, and one sort's room, fit
    /// [`Shares::chunks`] (the size the chunks had when two took turns, so
    /// that a budget writes as many runs as it did); never more than
    /// [`Budget::keep_records`].
    pub fn chunk_records(self, bands: usize, threads: usize) -> usize {
        let per_record = 2 * (bands as u64 * 8 + 16) + 48;
        records_in(self.shares().chunks(), per_record).min(self.keep_records(bands, threads))
    }

    /// Records the lists span once they have spilled, with `bands` bands
    /// merged on `threads` threads: the latest ones, kept in memory and
    /// merged from there beside the runs when the pass ends, within
    /// [`Shares::chunks`] then ([`per_record::kept`]).
    pub fn keep_records(self, bands: usize, threads: usize) -> usize {
        records_in(self.shares().chunks(), per_record::kept(bands, threads))
    }

    /// Records the lists span before they spill at all: as many as the
    /// sort in memory when the pass ends holds within
    /// [`Shares::unspilled`] ([`per_record::in_memory`]), and as leave room
    /// there for the first chunk written beside them
    /// ([`per_record::in_flight`]); never fewer than
    /// [`Budget::keep_records`].
    pub fn hold_records(self, bands: usize, threads: usize) -> usize {
        let room = self.shares().unspilled();
        let chunk = self.chunk_records(bands, threads) as u64;
        let sorted = records_in(room, per_record::in_memory(bands, threads));
        let beside = records_in(
            room.saturating_sub(chunk * per_record::in_flight(bands)),
            per_record::filled(bands),
        );
        sorted.min(beside).max(self.keep_records(bands, threads))
    }

    /// Room for the merges' readers when the pass ends (the chunks are
    /// freed by then): a quarter of the state's share.
    pub fn merge_bytes(self) -> u64 {
        self.shares().merge()
    }

    /// The most bytes the records' places may hold.
    pub fn places_bytes(self) -> u64 {
        self.shares().places()
    }

    /// The most bytes a set of records with a bit a record may hold
    /// ([`Shares::record_set`]).
    pub fn record_set_bytes(self) -> u64 {
        self.shares().record_set()
    }

    /// The most bytes the candidate pairs may hold as the merge makes
    /// them ([`Shares::pairs`]).
    pub fn pairs_bytes(self) -> u64 {
        self.shares().pairs()
    }
}

/// The runs written so far, as a checkpoint names them (it does not copy
/// them), and the first record of the chunk still in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spilled {
    /// Per band, its runs in the order written.
    pub bands: Vec<Vec<RunInfo>>,
    /// The runs of id keys, one per spill.
    pub ids: Vec<RunInfo>,
    /// The first record of the chunk in memory.
    pub base: u64,
}

impl Spilled {
    fn all(&self) -> impl Iterator<Item = &RunInfo> {
        self.bands.iter().flatten().chain(&self.ids)
    }

    /// Spills so far (each wrote one run per band and one of id keys).
    pub fn spills(&self) -> usize {
        self.ids.len()
    }

    /// Bytes of every run written.
    pub fn bytes(&self) -> u64 {
        self.all().map(|r| r.bytes).sum()
    }
}

/// Writes full chunks to sorted runs, on a thread of their own
/// ([`super::writer`]), and merges them at the end.
#[derive(Debug)]
pub struct Spiller {
    temp: Arc<TempSpace>,
    /// Records a chunk written spans at most ([`Budget::chunk_records`]).
    chunk: usize,
    /// Records the lists span before they spill
    /// ([`Budget::hold_records`]), and once they have
    /// ([`Budget::keep_records`]).
    hold: usize,
    keep: usize,
    places: u64,
    /// The first record of the lists in memory.
    base: u64,
    /// Chunks handed to the writer so far.
    handed: usize,
    /// Bytes of the chunk handed over last, with its sorts' room.
    other_bytes: usize,
    /// Room for the merges' readers ([`Budget::merge_bytes`]).
    merge_bytes: u64,
    /// The budget: the candidate pairs' share as the merge makes them
    /// ([`Budget::pairs_bytes`]), and pass 2's, past which they are handed
    /// on disk ([`CandidatePairs::handed`]); `None`: no budget, held whole.
    budget: Option<Budget>,
    /// The pass's own runs merged in levels: on disk until the pass's
    /// result is written (a checkpoint names them).
    aside: Vec<RunInfo>,
    /// Bytes of the runs written by the merge in levels.
    in_levels: u64,
    /// The pass's latest records, kept in memory ([`Spiller::keep_last`]).
    kept: Option<Kept>,
    /// What is written and in flight; behind a lock only because a
    /// checkpoint (`&self`) waits for the chunk in flight.
    writes: Mutex<Writes>,
}

/// The written runs and the chunk being written.
#[derive(Debug, Default)]
struct Writes {
    spilled: Spilled,
    background: Background,
    /// The lists of the chunk written last, emptied, to be filled next.
    spare: Option<Chunk>,
    scratch: Scratch,
    /// The runs synced to disk for a checkpoint ([`Spiller::spilled`]):
    /// runs are not synced as they are written.
    synced: HashSet<String>,
    /// The first write that failed (every later wait returns it again).
    failed: Option<(std::io::ErrorKind, String)>,
}

impl Writes {
    /// Waits for the chunk in flight and notes its runs.
    fn settle(&mut self) -> Result<(), RunError> {
        match self.background.wait() {
            Ok(Some(outcome)) => self.note(outcome),
            Ok(None) => {}
            // A write past its deadline: the run stops as for any failure.
            Err(e) => {
                let e = e.into_io();
                self.failed.get_or_insert((e.kind(), e.to_string()));
            }
        }
        self.failure()
    }

    /// Notes a written chunk's runs, or why it could not be written.
    fn note(&mut self, (chunk, scratch, result): (Chunk, Scratch, Result<Written, RunError>)) {
        (self.spare, self.scratch) = (Some(chunk), scratch);
        match result {
            Ok(written) => {
                for (runs, info) in self.spilled.bands.iter_mut().zip(written.bands) {
                    runs.push(info);
                }
                self.spilled.ids.push(written.ids);
                self.spilled.base = written.end;
            }
            Err(e) => {
                let e = e.into_io();
                self.failed = Some((e.kind(), e.to_string()));
            }
        }
    }

    /// The first write that failed, told again.
    fn failure(&self) -> Result<(), RunError> {
        match &self.failed {
            Some((kind, message)) => Err(RunError::Failed {
                kind: *kind,
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Spiller {
    /// Spills into `temp` under `budget` (`None`: only merges the runs a
    /// checkpoint names), for `bands` bands sorted and merged on
    /// `threads` threads when the pass ends.
    pub fn new(temp: Arc<TempSpace>, budget: Option<Budget>, bands: usize, threads: usize) -> Self {
        let records = |f: fn(Budget, usize, usize) -> usize| {
            budget.map_or(usize::MAX, |b| f(b, bands, threads))
        };
        Spiller {
            temp,
            chunk: records(Budget::chunk_records),
            hold: records(Budget::hold_records),
            keep: records(Budget::keep_records),
            places: budget.map_or(u64::MAX, Budget::places_bytes),
            base: 0,
            handed: 0,
            other_bytes: 0,
            merge_bytes: budget.map_or(u64::MAX, Budget::merge_bytes),
            budget,
            aside: Vec::new(),
            in_levels: 0,
            kept: None,
            writes: Mutex::new(Writes {
                spilled: Spilled {
                    bands: vec![Vec::new(); bands],
                    ..Spilled::default()
                },
                ..Writes::default()
            }),
        }
    }

    fn writes(&self) -> std::sync::MutexGuard<'_, Writes> {
        // A panic while it was held is resumed where it happened; the
        // lists are whole between calls.
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a chunk written spans at most (`usize::MAX`: no budget).
    pub fn chunk_records(&self) -> usize {
        self.chunk
    }

    /// Records the lists span at most: [`Budget::hold_records`] until they
    /// spill, [`Budget::keep_records`] after.
    fn limit(&self) -> usize {
        if self.handed == 0 {
            self.hold
        } else {
            self.keep
        }
    }

    /// Makes room in `bands` and `ids` for one more record as a doubling
    /// would, but never past the lists' limit: a list that doubled past
    /// it would pass the budget, and one reserved whole up front would
    /// hold a budget's worth of address space for any input.
    pub fn make_room(&mut self, bands: &mut [Vec<u64>], ids: &mut IdKeys) {
        if self.chunk == usize::MAX {
            return;
        }
        let limit = self.limit();
        for band in bands {
            grow_within(band, limit);
        }
        ids.grow_within(limit);
    }

    /// True while the places of the records up to `index` fit their share.
    pub fn keeps_places(&self, index: u64) -> bool {
        index.saturating_add(1).saturating_mul(12) <= self.places
    }

    /// True once the lists span as many records as they may, `next` being
    /// the record after the last one integrated: the oldest ones are to
    /// be written ([`Spiller::spill`]).
    pub fn is_full(&self, next: u64) -> bool {
        next - self.base >= self.limit() as u64
    }

    /// True once a chunk was handed over to be written.
    pub fn has_spilled(&self) -> bool {
        self.handed > 0
    }

    /// Spills so far (each wrote one run per band and one of id keys).
    pub fn spills(&self) -> usize {
        self.handed
    }

    /// Bytes of every run written, the spills' (complete ones) and the
    /// merge in levels'.
    pub fn bytes_written(&self) -> u64 {
        let writes = self.writes();
        let own = writes.spilled.all().filter(|r| !levels::is_intermediate(r));
        own.chain(&self.aside).map(|r| r.bytes).sum::<u64>() + self.in_levels
    }

    /// What was spilled so far, once the chunk in flight is written and
    /// every run is synced to disk (a checkpoint names complete, durable
    /// runs only), or the write that failed.
    pub fn spilled(&self) -> Result<Spilled, RunError> {
        let mut writes = self.writes();
        writes.settle()?;
        let Writes {
            spilled, synced, ..
        } = &mut *writes;
        for info in spilled.all() {
            if synced.contains(&info.name) {
                continue;
            }
            let path = self.temp.path(&info.name).map_err(|cause| RunError::Io {
                path: self.temp.folder().join(&info.name),
                cause,
            })?;
            runs::sync(&path)?;
            synced.insert(info.name.clone());
        }
        Ok(spilled.clone())
    }

    /// Heap bytes held (the lists are counted by their owner): the chunk
    /// being written, with its sorts' room.
    pub fn heap_bytes(&self) -> usize {
        self.other_bytes
    }

    /// Hands the oldest records of the lists (`bands`, `ids`, up to the
    /// record before `next`) over to be sorted and written as sorted runs,
    /// a chunk at a time (each once the one before is written), until the
    /// lists span [`Budget::keep_records`] less a chunk: room for the next
    /// chunk to fill. The first time, when the lists span
    /// [`Budget::hold_records`], that is several chunks; after, one. The
    /// error is an earlier chunk's, that could not be written.
    pub fn spill(
        &mut self,
        bands: &mut [Vec<u64>],
        ids: &mut IdKeys,
        next: u64,
    ) -> Result<(), RunError> {
        let stay = self.keep.saturating_sub(self.chunk) as u64;
        let end = next.saturating_sub(stay).max(self.base);
        let over = end - self.base;
        // Chunks of equal size, none past `chunk`.
        let chunks = over.div_ceil(self.chunk as u64).max(1);
        let each = over.div_ceil(chunks).max(1);
        while self.base < end {
            let upto = (self.base + each).min(end);
            self.hand_over(bands, ids, upto)?;
        }
        // The room the lists took before they spilled is given back.
        for band in bands.iter_mut() {
            band.shrink_to(self.keep);
        }
        ids.shrink_to(self.keep);
        Ok(())
    }

    /// Keeps the pass's latest records (`bands`, `ids`, up to the record
    /// before `next`) in memory, once the chunk in flight is written, to
    /// be merged beside the runs: writing them only to read them back
    /// took their share of the merge's time. They stay in record order,
    /// within [`Shares::chunks`], each band's list sorted (with its
    /// fingerprints) only when its merge opens it ([`Runs::band`]); no
    /// checkpoint is taken once the pass ends, so none needs them on disk.
    /// The error is an earlier chunk's, that could not be written.
    pub fn keep_last(
        &mut self,
        bands: &mut [Vec<u64>],
        ids: &mut IdKeys,
        next: u64,
    ) -> Result<(), RunError> {
        let writes = self.writes.get_mut().unwrap_or_else(|p| p.into_inner());
        writes.settle()?;
        (writes.spare, writes.scratch) = (None, Scratch::default());
        let bands: Vec<Vec<u64>> = bands.iter_mut().map(std::mem::take).collect();
        self.kept = Some(Kept {
            prints: writer::prints_of(&bands, self.base),
            base: self.base,
            bands,
            ids: std::mem::take(ids),
        });
        self.base = next;
        Ok(())
    }

    /// Hands the records of the lists before `end` over to be written (once
    /// the chunk before is), and takes them out of the lists.
    fn hand_over(
        &mut self,
        bands: &mut [Vec<u64>],
        ids: &mut IdKeys,
        end: u64,
    ) -> Result<(), RunError> {
        let writes = self.writes.get_mut().unwrap_or_else(|p| p.into_inner());
        writes.settle()?;
        if self.handed == 0 && self.chunk != usize::MAX {
            let dir = self
                .temp
                .dir()
                .unwrap_or_else(|_| self.temp.folder().to_owned());
            log::info!(
                "dedup pass 1: the band lists pass their share of the memory budget; \
                 spilling them to sorted runs in {}, the oldest records {} at a time, \
                 the latest {} kept in memory",
                dir.display(),
                self.chunk,
                self.keep.saturating_sub(self.chunk)
            );
        }
        let mut chunk = writes.spare.take().unwrap_or_default();
        chunk.bands.resize_with(bands.len(), Vec::new);
        // Entry `i` of every band is the same record: as many entries of
        // records before `end` in each.
        let entries = bands
            .first()
            .map_or(0, |b| b.partition_point(|&e| u64::from(e as u32) < end));
        for (mine, theirs) in bands.iter_mut().zip(&mut chunk.bands) {
            theirs.clear();
            // The room of a larger chunk written before is given back, and
            // a smaller one's grown to this one's only.
            theirs.shrink_to(entries);
            theirs.reserve_exact(entries);
            theirs.extend_from_slice(&mine[..entries]);
            mine.drain(..entries);
        }
        chunk.ids = ids.take_front(end);
        chunk.prints = Vec::new();
        (chunk.seq, chunk.base, chunk.end) = (self.handed, self.base, end);
        // The sorts' room: one band's, 16 bytes an id key; and the
        // fingerprints the writer computes.
        self.other_bytes = chunk.heap_bytes()
            + Scratch::bytes_for(entries)
            + chunk.ids.len() * 16
            + (end - self.base) as usize * 8;
        let scratch = std::mem::take(&mut writes.scratch);
        self.handed += 1;
        self.base = end;
        writes.background.start(&self.temp, chunk, scratch);
        Ok(())
    }

    /// Waits for the chunk in flight to be written.
    pub fn settle(&mut self) -> Result<(), RunError> {
        let writes = self.writes.get_mut().unwrap_or_else(|p| p.into_inner());
        writes.settle()
    }

    /// Every run written, once the chunk in flight is (or the write that
    /// failed), to be merged on up to `threads` threads: a list with more
    /// runs than the budget has room for readers is merged in levels
    /// first ([`levels`]), on as many threads. The merges beat `heartbeat`
    /// as they go.
    pub fn runs<'a>(
        &'a mut self,
        threads: usize,
        heartbeat: &'a Heartbeat,
    ) -> Result<Runs<'a>, RunError> {
        let writes = self.writes.get_mut().unwrap_or_else(|p| p.into_inner());
        writes.settle()?;
        // No chunk is filled any more: its room is freed for the merge.
        (writes.spare, writes.scratch) = (None, Scratch::default());
        // The bands' merges, and the ids' beside them.
        let fan_in = levels::fan_in(self.merge_bytes, threads + 1);
        let spilled = &mut writes.spilled;
        let lists: Vec<Mutex<Level<'_>>> = (spilled.bands.iter_mut())
            .enumerate()
            .map(|(b, runs)| (runs, format!("band-{b:03}"), true))
            .chain([(&mut spilled.ids, "ids".to_owned(), false)])
            .filter(|(runs, ..)| runs.len() > fan_in)
            .map(|(runs, name, with_prints)| {
                Mutex::new(Level {
                    runs,
                    name,
                    with_prints,
                    aside: Vec::new(),
                    written: 0,
                })
            })
            .collect();
        if !lists.is_empty() {
            let started = std::time::Instant::now();
            let temp = &*self.temp;
            on_threads(
                lists.len(),
                threads,
                "merging runs in levels",
                || (),
                |(), i| {
                    let mut list = lists[i].lock().unwrap_or_else(|p| p.into_inner());
                    let Level {
                        runs,
                        name,
                        with_prints,
                        aside,
                        written,
                    } = &mut *list;
                    let level = (&**name, *with_prints);
                    *written = levels::reduce(temp, runs, fan_in, level, aside, heartbeat)?;
                    heartbeat.beat();
                    Ok(())
                },
            )?;
            log::info!(
                "dedup pass 1: {} lists of runs merged in levels to {fan_in} runs each \
                 (the budget's room for readers) in {:.2} s",
                lists.len(),
                started.elapsed().as_secs_f64()
            );
            for list in lists {
                let list = list.into_inner().unwrap_or_else(|p| p.into_inner());
                self.in_levels += list.written;
                self.aside.extend(list.aside);
            }
        }
        Ok(Runs {
            temp: &self.temp,
            spilled: &writes.spilled,
            budget: self.budget,
            kept: self.kept.as_ref(),
            heartbeat,
        })
    }

    /// Removes every run written (the pass's result is safe elsewhere).
    pub fn remove_all(&mut self) -> std::io::Result<()> {
        let writes = self.writes.get_mut().unwrap_or_else(|p| p.into_inner());
        // A chunk in flight (a stop, a failure) is waited for first, so
        // that no file is written after; its error was told already.
        let _ = writes.settle();
        for info in writes.spilled.all().chain(&self.aside) {
            self.temp.remove(&info.name, info.bytes)?;
        }
        self.aside.clear();
        self.kept = None;
        writes.synced.clear();
        writes.spilled = Spilled {
            bands: vec![Vec::new(); writes.spilled.bands.len()],
            ..Spilled::default()
        };
        Ok(())
    }

    /// Takes up the runs a checkpoint names: each must be there with its
    /// length (its checksum is checked when it is merged); runs of the
    /// temporary space it does not name were written after it, and are
    /// removed. The lists it held are the records from its `base` on.
    pub fn restore(&mut self, spilled: Spilled) -> Result<(), RunError> {
        for info in spilled.all() {
            levels::open(&self.temp, info)?;
        }
        remove_unnamed(&self.temp, PREFIX, SUFFIX, spilled.all())?;
        (self.base, self.handed) = (spilled.base, spilled.spills());
        // Runs of the resumed run are held as this run's are: the peak
        // counts them.
        self.temp.holds(spilled.bytes());
        let writes = self.writes.get_mut().unwrap_or_else(|p| p.into_inner());
        // Synced when the checkpoint was written.
        writes.synced = spilled.all().map(|i| i.name.clone()).collect();
        writes.spilled = spilled;
        Ok(())
    }
}

/// A list of runs being merged in levels ([`Spiller::runs`]).
struct Level<'a> {
    runs: &'a mut Vec<RunInfo>,
    name: String,
    with_prints: bool,
    aside: Vec<RunInfo>,
    written: u64,
}

/// The runs of a pass, complete, to be merged ([`Spiller::runs`]), with
/// its last chunk when it is held in memory ([`Spiller::keep_last`]).
#[derive(Debug, Clone, Copy)]
pub struct Runs<'a> {
    temp: &'a Arc<TempSpace>,
    spilled: &'a Spilled,
    /// Under a budget: the candidate pairs' share and the room for the
    /// readers of their runs' merge ([`PairSpill`]), and pass 2's share.
    budget: Option<Budget>,
    kept: Option<&'a Kept>,
    /// What every merge beats as it reads.
    heartbeat: &'a Heartbeat,
}

/// The pass's latest records, kept in memory when it ends
/// ([`Spiller::keep_last`]): its lists in record order, from the record
/// `base` on, with their fingerprints.
#[derive(Debug)]
struct Kept {
    base: u64,
    bands: Vec<Vec<u64>>,
    /// By `record - base` ([`writer::prints_of`]).
    prints: Vec<u64>,
    ids: IdKeys,
}

/// A band of the latest records, sorted in memory (with each entry's
/// fingerprint) when its merge opens it, as an [`EntrySource`].
struct KeptBand {
    sorted: Vec<(u64, u64)>,
    at: usize,
}

impl EntrySource for KeptBand {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        let mut one = Vec::with_capacity(1);
        Ok(if self.next_entries(&mut one, 1)? {
            one.pop()
        } else {
            None
        })
    }

    fn next_entries(&mut self, out: &mut Vec<Entry>, most: usize) -> Result<bool, RunError> {
        let end = self.sorted.len().min(self.at + most.max(1));
        out.extend(self.sorted[self.at..end].iter().map(|&(e, print)| Entry {
            key: e >> 32,
            record: e as u32,
            print,
        }));
        let more = end > self.at;
        self.at = end;
        Ok(more)
    }
}

/// The id keys of the latest records, sorted in memory, as an
/// [`EntrySource`].
struct KeptIds {
    sorted: Vec<(u64, u32)>,
    at: usize,
}

impl EntrySource for KeptIds {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        let entry = self.sorted.get(self.at).map(|&(key, record)| Entry {
            key,
            record,
            print: 0,
        });
        self.at += usize::from(entry.is_some());
        Ok(entry)
    }
}

impl Runs<'_> {
    /// Spills written (each wrote one run per band and one of id keys).
    pub fn spills(&self) -> usize {
        self.spilled.spills()
    }

    /// True when the last chunk is held in memory, not written.
    pub fn keeps_last(&self) -> bool {
        self.kept.is_some()
    }

    /// The temporary space the runs are in.
    pub fn temp(&self) -> &TempSpace {
        self.temp
    }

    /// Bands.
    pub fn bands(&self) -> usize {
        self.spilled.bands.len()
    }

    /// Band `band`'s runs, merged (and its list of the last chunk, held in
    /// memory): its entries in `(key, record)` order.
    pub fn band(&self, band: usize) -> Result<Merge, RunError> {
        // Tests slow the merge band by band (feature `failpoints`).
        fail::fail_point!("dedup::merge_band");
        self.heartbeat.beat();
        let mut merge = levels::merge(self.temp, &self.spilled.bands[band], self.heartbeat)?;
        if let Some(kept) = self.kept {
            merge.add(KeptBand {
                sorted: writer::sorted_band(kept.base, &kept.prints, &kept.bands[band]),
                at: 0,
            })?;
        }
        Ok(merge)
    }

    /// The candidate pairs of every band's runs, merged on up to
    /// `threads` threads: [`crate::jobs::dedup::lsh::candidate_pairs`] of
    /// the same lists. Under a budget, the pairs as they are made stay
    /// within their share, and go to sorted runs past it ([`PairSpill`]);
    /// past pass 2's share they are handed on disk
    /// ([`CandidatePairs::handed`]).
    pub fn pairs(&self, threads: usize) -> Result<(CandidatePairs, PairsMade), RunError> {
        let open = |b: usize| self.band(b);
        match self.pair_spill(threads) {
            Some(spill) => merged_candidate_pairs_spilling(self.bands(), threads, spill, open),
            None => Ok((
                CandidatePairs::Memory(merged_candidate_pairs(self.bands(), threads, open)?),
                PairsMade::default(),
            )),
        }
    }

    /// Under a budget, where the candidate pairs made on `threads`
    /// threads go past their share, handed on under pass 2's
    /// ([`PairSpill`]); `None` without one.
    pub fn pair_spill(&self, threads: usize) -> Option<PairSpill<'_>> {
        self.budget.map(|budget| {
            let (share, readers) = (budget.pairs_bytes(), budget.merge_bytes());
            PairSpill::new(self.temp, share, threads, readers)
                .beating(self.heartbeat)
                .handing(budget.max_memory)
        })
    }

    /// The repeated id keys of the runs of id keys (and of the last
    /// chunk's, held in memory), merged: [`IdKeys::repeats`] of the same
    /// keys.
    pub fn repeats(&self) -> Result<Vec<(u32, u32)>, RunError> {
        repeats_in(self.id_keys()?)
    }

    /// [`Runs::repeats`], within their share of the budget
    /// ([`Shares::repeated_ids_made`]) when there is one: past it, on
    /// disk ([`RepeatsMaker`]).
    pub fn repeated_ids(&self) -> Result<RepeatedIds, RunError> {
        let Some(budget) = self.budget else {
            return self.repeats().map(RepeatedIds::Memory);
        };
        let share = budget.shares().repeated_ids_made();
        let mut maker = RepeatsMaker::new(self.temp, share, self.heartbeat);
        repeats_into(self.id_keys()?, |pair| maker.push(pair))?;
        maker.finish()
    }

    /// `(key, record)` of every record, sorted: the runs of id keys (and
    /// the last chunk's, held in memory), merged.
    fn id_keys(&self) -> Result<impl Iterator<Item = Result<(u64, u32), RunError>>, RunError> {
        let mut merge = levels::merge(self.temp, &self.spilled.ids, self.heartbeat)?;
        if let Some(kept) = self.kept {
            merge.add(KeptIds {
                sorted: kept.ids.sorted(),
                at: 0,
            })?;
        }
        Ok(std::iter::from_fn(move || {
            merge
                .next_entry()
                .map(|e| e.map(|e| (e.key, e.record)))
                .transpose()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::dedup::lsh::candidate_pairs;

    /// `records` records of `bands` keys each: records with the same
    /// `r % 7` in 0..3 are twins (the same keys everywhere) half the time,
    /// the rest draw keys from a small set (buckets of up to ~100
    /// distinct signatures); every 13th record is empty (no keys), every
    /// 29th rejected (not integrated at all).
    fn keys_of(records: u32, bands: usize) -> Vec<Option<Vec<u32>>> {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        (0..records)
            .map(|r| {
                if r % 29 == 5 {
                    return None;
                }
                let keys = (0..bands)
                    .map(|b| match r % 7 {
                        _ if r % 13 == 0 => 0,
                        f @ 0..3 if r % 2 == 0 => 1000 + f * 10 + b as u32,
                        _ => (next() % 90).wrapping_mul(0x0101_0101),
                    })
                    .collect();
                Some(keys)
            })
            .collect()
    }

    #[test]
    fn a_checkpoint_syncs_every_run_it_names_and_a_spill_syncs_none() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut spiller = Spiller::new(Arc::clone(&temp), Some(Budget { max_memory: 1 }), 2, 2);
        let mut bands: Vec<Vec<u64>> = vec![Vec::new(); 2];
        let mut ids = IdKeys::default();
        for r in 0..3 * MIN_CHUNK as u64 {
            spiller.make_room(&mut bands, &mut ids);
            ids.record(r, r % 17);
            bands[0].push((r % 5) << 32 | r);
            bands[1].push(7 << 32 | r);
            if spiller.is_full(r + 1) {
                spiller.spill(&mut bands, &mut ids, r + 1).unwrap();
            }
        }
        spiller.settle().unwrap();
        assert!(spiller.writes().synced.is_empty());
        let named = spiller.spilled().unwrap();
        assert_eq!(named.spills(), 3);
        let synced = spiller.writes().synced.clone();
        let names: HashSet<String> = named.all().map(|i| i.name.clone()).collect();
        assert_eq!(synced, names);
        assert_eq!(synced.len(), 3 * 3);
    }

    /// Integrates `keys` (see [`keys_of`]) into `spiller` as pass 1 does,
    /// spilling each full chunk; returns the band lists and id keys of
    /// every record as they would be held in memory, and the last chunk's
    /// lists, not spilled.
    fn integrate(
        spiller: &mut Spiller,
        keys: &[Option<Vec<u32>>],
        nbands: usize,
    ) -> (Vec<Vec<u64>>, IdKeys, Vec<Vec<u64>>, IdKeys) {
        let mut in_memory: Vec<Vec<u64>> = vec![Vec::new(); nbands];
        let mut bands: Vec<Vec<u64>> = vec![Vec::new(); nbands];
        let (mut ids, mut all_ids) = (IdKeys::default(), IdKeys::default());
        for (r, keys) in keys.iter().enumerate() {
            let Some(keys) = keys else { continue };
            let index = r as u64;
            spiller.make_room(&mut bands, &mut ids);
            let id = u64::from(r as u32 % 1_000 + 1);
            ids.record(index, id);
            all_ids.record(index, id);
            let empty = keys.iter().all(|&k| k == 0);
            let keys: &[u32] = if empty { &[] } else { keys };
            for (b, &k) in keys.iter().enumerate() {
                bands[b].push(u64::from(k) << 32 | index);
                in_memory[b].push(u64::from(k) << 32 | index);
            }
            if spiller.is_full(index + 1) {
                spiller.spill(&mut bands, &mut ids, index + 1).unwrap();
            }
        }
        (in_memory, all_ids, bands, ids)
    }

    #[test]
    fn a_last_chunk_held_in_memory_gives_the_pairs_and_repeats_of_the_lists_in_memory() {
        let (records, nbands) = (20_000u32, 5);
        let keys = keys_of(records, nbands);
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        // The smallest chunks: MIN_CHUNK records, 2 readers a merge.
        let mut spiller =
            Spiller::new(Arc::clone(&temp), Some(Budget { max_memory: 1 }), nbands, 2);
        let (mut in_memory, all_ids, mut bands, mut ids) = integrate(&mut spiller, &keys, nbands);
        spiller
            .keep_last(&mut bands, &mut ids, u64::from(records))
            .unwrap();
        assert!(bands.iter().all(Vec::is_empty) && ids.is_empty());
        // Four full chunks written; the fifth is not.
        assert_eq!(spiller.spills(), 4);
        let files = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(files, 4 * (nbands + 1));
        let expected = candidate_pairs(&mut in_memory, 2);
        assert!(expected.len() > 20 * records as usize, "{}", expected.len());
        let heartbeat = Heartbeat::default();
        for threads in [1, 3] {
            let runs = spiller.runs(threads, &heartbeat).unwrap();
            assert!(runs.keeps_last());
            let (pairs, _) = runs.pairs(threads).unwrap();
            assert!(
                pairs.read(&temp) == expected,
                "{threads} threads: other pairs"
            );
            pairs.remove(&temp).unwrap();
            assert_eq!(runs.repeats().unwrap(), all_ids.repeats());
        }
        spiller.remove_all().unwrap();
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0);
    }

    #[test]
    fn spilled_bands_give_the_pairs_and_repeats_of_the_lists_in_memory() {
        let (records, nbands) = (20_000u32, 5);
        let keys = keys_of(records, nbands);
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let budget = Budget {
            // The smallest chunks: MIN_CHUNK records.
            max_memory: 1,
        };
        let mut spiller = Spiller::new(Arc::clone(&temp), Some(budget), nbands, 2);
        let (mut in_memory, all_ids, mut bands, mut ids) = integrate(&mut spiller, &keys, nbands);
        spiller
            .spill(&mut bands, &mut ids, u64::from(records))
            .unwrap();
        // What a checkpoint would name: the spills' own runs.
        let spilled = spiller.spilled().unwrap();
        assert_eq!(spilled.spills(), 5);
        let expected = candidate_pairs(&mut in_memory, 2);
        // Large buckets of twins and of distinct signatures both occur.
        assert!(expected.len() > 20 * records as usize, "{}", expected.len());
        // The smallest budget has room for 2 readers a merge: the 5 runs
        // of each list are merged in levels first.
        // The pairs as made pass their share of the smallest budget: they
        // go to runs of their own too.
        let mut pairs_spilled = 0;
        for threads in [1, 3] {
            // The merge says it moves on: once a band at least, besides
            // its lists merged in levels (the first time).
            let heartbeat = Heartbeat::default();
            let runs = spiller.runs(threads, &heartbeat).unwrap();
            let (pairs, made) = runs.pairs(threads).unwrap();
            assert!(heartbeat.beats() >= nbands as u64, "{}", heartbeat.beats());
            assert!(
                pairs.read(&temp) == expected,
                "{threads} threads: other pairs"
            );
            pairs.remove(&temp).unwrap();
            assert!(made.bytes_spilled > 0);
            pairs_spilled += made.bytes_spilled;
        }
        let heartbeat = Heartbeat::default();
        let runs = spiller.runs(2, &heartbeat).unwrap();
        assert_eq!(runs.repeats().unwrap(), all_ids.repeats());
        assert!(runs.spilled.ids.len() <= 2 && runs.spilled.bands.iter().all(|b| b.len() <= 2));
        assert_eq!(spiller.spills(), 5);
        assert!(spiller.bytes_written() > spilled.bytes() + spilled.bytes() / 2);
        assert!(temp.bytes_spilled() == spiller.bytes_written() + pairs_spilled);
        // A checkpoint's names restore, counted in the peak of the resumed
        // run's temporary space; a run written after it is removed.
        let stray = temp.path("dedup-ids-run-000099.sorted").unwrap();
        std::fs::write(&stray, b"later").unwrap();
        let resumed = Arc::new(TempSpace::new(dir.path()));
        let mut again = Spiller::new(Arc::clone(&resumed), None, nbands, 2);
        again.restore(spilled.clone()).unwrap();
        assert!(!stray.exists());
        assert_eq!(resumed.peak_bytes(), spilled.bytes());
        let pairs = again
            .runs(2, &Heartbeat::default())
            .unwrap()
            .pairs(2)
            .unwrap()
            .0;
        assert!(pairs.read(&temp) == expected, "restored: other pairs");
        pairs.remove(&temp).unwrap();
        // A named run that is gone is refused, naming it.
        std::fs::remove_file(temp.path(&spilled.ids[2].name).unwrap()).unwrap();
        let err = Spiller::new(Arc::clone(&temp), None, nbands, 2)
            .restore(spilled)
            .unwrap_err();
        assert!(err.to_string().contains("dedup-ids-run-000002"), "{err}");
        spiller.remove_all().unwrap();
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0);
    }

    #[test]
    fn the_lists_stay_within_their_shares_at_every_stage() {
        let mut last: Option<(usize, usize)> = None;
        for max_memory in [64u64 << 20, 128 << 20, 1 << 30, 4 << 30, 64 << 30] {
            let budget = Budget { max_memory };
            let shares = budget.shares();
            for bands in [1, 9, 18, 32, 128] {
                for threads in [1, 2, 4, 16] {
                    let chunk = budget.chunk_records(bands, threads) as u64;
                    let keep = budget.keep_records(bands, threads) as u64;
                    let hold = budget.hold_records(bands, threads) as u64;
                    let case = format!("{max_memory} B, {bands} bands, {threads} threads");
                    assert!(chunk <= keep && keep <= hold, "{case}");
                    let filled = per_record::filled(bands);
                    let in_flight = chunk * per_record::in_flight(bands);
                    // Before the first spill, and sorted in memory at the end.
                    assert!(hold * filled + in_flight <= shares.unspilled(), "{case}");
                    let in_memory = hold * per_record::in_memory(bands, threads);
                    assert!(in_memory <= shares.unspilled(), "{case}");
                    // After: the lists beside the chunk being written, and
                    // kept at the end.
                    assert!(keep * filled + in_flight <= shares.unspilled(), "{case}");
                    let kept = keep * per_record::kept(bands, threads);
                    assert!(kept <= shares.chunks(), "{case}");
                    if (bands, threads) == (18, 2) {
                        // A larger budget holds more, before and after.
                        if let Some((held, kept)) = last {
                            assert!(hold as usize > held && keep as usize > kept, "{case}");
                        }
                        last = Some((hold as usize, keep as usize));
                    }
                }
            }
        }
        // 1 GiB, the default banding: a million short documents fit.
        let budget = Budget {
            max_memory: 1 << 30,
        };
        assert!(budget.hold_records(18, 2) > 1_500_000);
    }

    #[test]
    fn lists_that_pass_their_hold_keep_the_latest_records_and_give_the_pairs_of_the_lists_in_memory(
    ) {
        let nbands = 5;
        // Chunks of 13107 records, 15420 kept, 34953 held before a spill.
        let budget = Budget {
            max_memory: 8 << 20,
        };
        let (chunk, keep, hold) = (
            budget.chunk_records(nbands, 2),
            budget.keep_records(nbands, 2),
            budget.hold_records(nbands, 2),
        );
        assert!(
            MIN_CHUNK < chunk && chunk < keep && 2 * keep < hold,
            "{chunk} {keep} {hold}"
        );
        let dir = tempfile::tempdir().unwrap();
        // Up to `hold` records: nothing spills.
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut spiller = Spiller::new(Arc::clone(&temp), Some(budget), nbands, 2);
        let keys = keys_of(hold as u32 - 1, nbands);
        let (_, _, bands, _) = integrate(&mut spiller, &keys, nbands);
        assert!(!spiller.has_spilled());
        assert!(bands.iter().all(|b| b.capacity() <= hold));
        // Past it: the first spill writes the records past `keep - chunk`,
        // in chunks of equal size, and each later one a chunk.
        let records = 100_000u32;
        let keys = keys_of(records, nbands);
        let mut spiller = Spiller::new(Arc::clone(&temp), Some(budget), nbands, 2);
        let (mut in_memory, all_ids, mut bands, mut ids) = integrate(&mut spiller, &keys, nbands);
        let first = (hold - (keep - chunk)).div_ceil(chunk);
        let later = (records as usize - hold).div_ceil(chunk);
        let spills = spiller.spills();
        assert!(
            (first + later - 1..=first + later + 1).contains(&spills),
            "{spills}"
        );
        assert!(bands.iter().all(|b| b.capacity() <= keep));
        let kept = u64::from(records) - spiller.base;
        assert!(
            (keep - chunk) as u64 <= kept && kept < keep as u64,
            "{kept}"
        );
        spiller
            .keep_last(&mut bands, &mut ids, u64::from(records))
            .unwrap();
        let expected = candidate_pairs(&mut in_memory, 2);
        // Runs are merged once a pass (a merge in levels names its runs
        // by list and level).
        let heartbeat = Heartbeat::default();
        let runs = spiller.runs(3, &heartbeat).unwrap();
        assert!(runs.keeps_last());
        let (pairs, _) = runs.pairs(3).unwrap();
        assert!(pairs.read(&temp) == expected, "other pairs");
        pairs.remove(&temp).unwrap();
        assert_eq!(runs.repeats().unwrap(), all_ids.repeats());
        spiller.remove_all().unwrap();
    }
}
