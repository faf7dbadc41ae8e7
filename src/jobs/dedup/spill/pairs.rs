//! Pass 1's candidate pairs under a memory budget: an external sort that
//! drops the repeats across bands.
//!
//! The merge of the bands' runs makes every band's pairs, so a pair whose
//! records share several bands comes once a band: held whole, those
//! repeats grew with the pairs (at 20M short documents under 128M they
//! were most of the peak). Each thread of the merge appends its pairs to
//! a list of its own; past [`PairSpill::limit`] pairs the list is sorted
//! by `(later, earlier)` and its repeats dropped, and when that leaves it
//! more than half full it goes to a sorted run in the temporary space
//! ([`super::runs`]: the key is the later record, the record the earlier
//! one) and is emptied. When the merge ends, the runs (merged in levels
//! first when they are more than the budget has room for readers, as
//! [`super::levels`] does, but each pair once, since runs repeat pairs)
//! are merged once more, and each pair is kept once:
//! the pairs [`crate::jobs::dedup::lsh::candidate_pairs`] would give, in
//! the same order: into a list, or, past pass 2's share of the budget,
//! into the files pass 2 reads them from ([`super::pair_files`]), never
//! held whole.
//!
//! The runs live only while pass 1 finishes: no checkpoint names them.
//! Their names start as every pass 1 run's ([`super::writer::PREFIX`]),
//! so a run resumed from a checkpoint removes those a killed one left
//! ([`super::bands::Spiller::restore`]); they are removed as soon as the
//! pairs are merged.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use drainpipe_actors::{Heartbeat, TempSpace};

use crate::jobs::dedup::budget::Shares;

use super::across::{self, CrossPairs, CrossWriter};
use super::levels;
use super::merge::EntrySource;
use super::pair_files::{CandidatePairs, PairFilesWriter};
use super::runs::{Entry, RunError, RunInfo, RunWriter};
use super::writer::{write_run, PREFIX, SUFFIX};

/// A pair's bytes in a list.
const PAIR_BYTES: u64 = std::mem::size_of::<(u32, u32)>() as u64;

/// The fewest pairs a thread's list holds before it spills, however small
/// the budget (so that a tiny budget makes many runs, not one per pair).
pub const MIN_LIMIT: usize = 1024;

/// The candidate pairs' runs while pass 1's merge makes them.
#[derive(Debug)]
pub struct PairSpill<'a> {
    temp: &'a TempSpace,
    limit: usize,
    /// Room for the readers of the final merge ([`levels::fan_in`]).
    fan_in: usize,
    next: AtomicUsize,
    runs: Mutex<Vec<RunInfo>>,
    /// Bytes the threads' lists hold now, and at most.
    held: AtomicU64,
    peak: AtomicU64,
    /// Pairs made, repeats included.
    made: AtomicU64,
    /// What the merges of the runs beat as they read (pass 1's finish).
    heartbeat: Heartbeat,
    /// The budget the merged pairs are handed on under
    /// ([`CandidatePairs::handed`]; `None`: in memory).
    hand: Option<u64>,
}

/// What one thread's list was last counted at ([`PairSpill::check`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    room: u64,
    len: usize,
}

/// What the pairs took while pass 1's merge made them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PairsMade {
    /// Pairs made, each band's, repeats across bands included.
    pub made: u64,
    /// Most bytes the threads' lists held at once (their room).
    pub peak_bytes: u64,
    /// Bytes of the runs written (0: nothing spilled).
    pub bytes_spilled: u64,
}

impl<'a> PairSpill<'a> {
    /// Pairs made on `threads` threads, spilled to `temp` past `share`
    /// bytes in all, with `merge_bytes` for the readers of the final
    /// merge. A list of `limit` pairs may take twice that room while it
    /// grows: the limit counts it.
    pub fn new(temp: &'a TempSpace, share: u64, threads: usize, merge_bytes: u64) -> Self {
        let per_thread = share / threads.max(1) as u64 / (2 * PAIR_BYTES);
        PairSpill {
            temp,
            limit: usize::try_from(per_thread)
                .unwrap_or(usize::MAX)
                .max(MIN_LIMIT),
            fan_in: levels::fan_in(merge_bytes, 1),
            next: AtomicUsize::new(0),
            runs: Mutex::default(),
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            made: AtomicU64::new(0),
            heartbeat: Heartbeat::default(),
            hand: None,
        }
    }

    /// The spill with its runs' merges beating `heartbeat`.
    pub fn beating(self, heartbeat: &Heartbeat) -> Self {
        PairSpill {
            heartbeat: heartbeat.clone(),
            ..self
        }
    }

    /// Hands the merged pairs on under `max_memory`: past pass 2's share
    /// they are written to disk as they are merged, never held whole
    /// ([`CandidatePairs::handed`]).
    pub fn handing(self, max_memory: u64) -> Self {
        PairSpill {
            hand: Some(max_memory),
            ..self
        }
    }

    /// Counts `pairs` (one thread's list, last counted at `tally`).
    fn count(&self, pairs: &[(u32, u32)], room: usize, tally: &mut Tally) {
        let room = room as u64 * PAIR_BYTES;
        if pairs.len() > tally.len {
            self.made
                .fetch_add((pairs.len() - tally.len) as u64, Ordering::Relaxed);
        }
        let held = if room >= tally.room {
            self.held.fetch_add(room - tally.room, Ordering::Relaxed) + room - tally.room
        } else {
            self.held.fetch_sub(tally.room - room, Ordering::Relaxed) - (tally.room - room)
        };
        self.peak.fetch_max(held, Ordering::Relaxed);
        *tally = Tally {
            room,
            len: pairs.len(),
        };
    }

    /// Pairs a thread's list holds before it is sorted (and spilled).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The runs written so far.
    pub fn runs(&self) -> Vec<RunInfo> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts `pairs` (one thread's list, last counted at `tally`), and
    /// once it reaches the limit: sorts it and drops its repeats, and
    /// when it is still more than half full, writes it as a run and
    /// empties it.
    pub fn check(&self, pairs: &mut Vec<(u32, u32)>, tally: &mut Tally) -> Result<(), RunError> {
        self.count(pairs, pairs.capacity(), tally);
        if pairs.len() < self.limit {
            return Ok(());
        }
        sort_pairs(pairs);
        if pairs.len() > self.limit / 2 {
            self.write(pairs)?;
            pairs.clear();
        }
        // Counted as made already: the list's length starts afresh.
        tally.len = pairs.len();
        Ok(())
    }

    /// Counts `pairs` again once their thread sorted them and dropped
    /// their repeats (counted as made already).
    /// `room`: the list's capacity.
    pub fn recount(&self, pairs: &[(u32, u32)], room: usize, tally: &mut Tally) {
        tally.len = pairs.len();
        self.count(pairs, room, tally);
    }

    /// Counts the list the threads' lists were joined into, `pairs` of
    /// `room`, in their place (each sorted first, the join is no larger
    /// than their sum).
    pub fn joined(&self, pairs: &[(u32, u32)], room: usize) {
        self.held.store(0, Ordering::Relaxed);
        let len = pairs.len();
        self.count(pairs, room, &mut Tally { room: 0, len });
    }

    /// Writes `pairs` (sorted, no repeats) as the next run.
    fn write(&self, pairs: &[(u32, u32)]) -> Result<(), RunError> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        if seq == 0 {
            log::info!(
                "dedup pass 1: the candidate pairs pass their share of the memory budget; \
                 writing them to sorted runs in {}",
                self.temp.folder().display()
            );
        }
        // Each entry takes at most 5 + 5 + 1 bytes (two varints, a block's
        // framing), and the file a header and an end.
        self.temp
            .ensure_room(pairs.len() as u64 * 11 + 64)
            .map_err(|cause| RunError::Io {
                path: self.temp.folder().to_owned(),
                cause,
            })?;
        let info = write_run(
            self.temp,
            &format!("pairs-run-{seq:06}"),
            false,
            pairs.iter().map(|&p| entry_of(p)),
        )?;
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(info);
        Ok(())
    }

    /// Every pair, sorted by `(later, earlier)` without repeats: `rest`
    /// (what the threads' lists held at the end) and the runs'. Nothing
    /// spilled: `rest` sorted. Else `rest` is written as a run too, the
    /// runs are merged (in levels first when they are too many, each pair
    /// once), counted, and merged again into a list of exactly the pairs'
    /// room, or, past pass 2's share, into the pairs' files; every run is
    /// removed.
    pub fn finish(self, rest: Vec<(u32, u32)>) -> Result<(CandidatePairs, PairsMade), RunError> {
        let (pairs, _, made) = self.finish_across(rest, 0)?;
        Ok((pairs, made))
    }

    /// [`PairSpill::finish`] of a run whose first `offset` records are a
    /// saved index's (none: 0): the pairs whose earlier record is indexed
    /// are the pairs across, `(indexed, record)` with the record numbered
    /// from 0, in the same order, handed apart: in memory when they fit
    /// beside the run's own held there ([`across::fit`]), else merged
    /// straight into their run ([`CrossWriter`]), never held whole. The
    /// run's own are renumbered from 0 and handed as [`PairSpill::finish`]
    /// hands them.
    pub fn finish_across(
        self,
        mut rest: Vec<(u32, u32)>,
        offset: u32,
    ) -> Result<(CandidatePairs, CrossPairs, PairsMade), RunError> {
        sort_pairs(&mut rest);
        let mut made = PairsMade {
            made: self.made.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
            bytes_spilled: 0,
        };
        let mut runs = self.runs.into_inner().unwrap_or_else(|p| p.into_inner());
        if runs.is_empty() {
            let before = self.temp.bytes_spilled();
            let cross = across::split(&mut rest, offset);
            let own = rest.len() as u64;
            let pairs = CandidatePairs::handed(rest, self.temp, self.hand, &self.heartbeat)?;
            let held = if matches!(pairs, CandidatePairs::Memory(_)) {
                own
            } else {
                0
            };
            let cross = across::handed(cross, held, self.temp, self.hand)?;
            made.bytes_spilled = self.temp.bytes_spilled() - before;
            return Ok((pairs, cross, made));
        }
        let spill = PairSpill {
            runs: Mutex::default(),
            next: AtomicUsize::new(self.next.into_inner()),
            ..self
        };
        spill.write(&rest)?;
        drop(rest);
        runs.extend(spill.runs());
        made.bytes_spilled = runs.iter().map(|r| r.bytes).sum();
        let (temp, beat, hand) = (spill.temp, &spill.heartbeat, spill.hand);
        let outcome = reduce(temp, &mut runs, spill.fan_in, beat).and_then(|written| {
            made.bytes_spilled += written;
            let (mut own, mut cross) = (0u64, 0u64);
            merged(temp, &runs, beat, |(earlier, _)| {
                *if earlier < offset {
                    &mut cross
                } else {
                    &mut own
                } += 1;
                Ok(())
            })?;
            let before = temp.bytes_spilled();
            let mut sinks = Sinks::new(temp, (own, cross), hand, beat)?;
            merged(temp, &runs, beat, |(a, b)| match a < offset {
                true => sinks.cross((a, b - offset)),
                false => sinks.own((a - offset, b - offset)),
            })?;
            let (pairs, cross) = sinks.finish(temp)?;
            made.bytes_spilled += temp.bytes_spilled() - before;
            Ok((pairs, cross, made))
        });
        remove(temp, &runs)?;
        outcome
    }
}

/// Where [`PairSpill::finish_across`] merges the pairs into: the run's
/// own into a list or, past pass 2's share, the pairs' files; those
/// across into a list or, past what is left of it, their run.
struct Sinks<'a> {
    own: Sink<Vec<(u32, u32)>, PairFilesWriter<'a>>,
    cross: Sink<Vec<(u32, u32)>, CrossWriter>,
}

/// In memory, or on disk.
enum Sink<M, D> {
    Memory(M),
    Disk(D),
}

impl<'a> Sinks<'a> {
    /// Sinks for `own` and `cross` pairs, handed on under `hand`.
    fn new(
        temp: &'a TempSpace,
        (own, cross): (u64, u64),
        hand: Option<u64>,
        beat: &Heartbeat,
    ) -> Result<Self, RunError> {
        let capacity = |n: u64| usize::try_from(n).unwrap_or(0);
        let own_sink = match (CandidatePairs::fit(own, hand), hand) {
            (false, Some(max_memory)) => {
                let shares = Shares { max_memory };
                Sink::Disk(PairFilesWriter::new(temp, own, shares, beat)?)
            }
            _ => Sink::Memory(Vec::with_capacity(capacity(own))),
        };
        let held = if matches!(own_sink, Sink::Memory(_)) {
            own
        } else {
            0
        };
        let cross_sink = if across::fit(cross, held, hand) {
            Sink::Memory(Vec::with_capacity(capacity(cross)))
        } else {
            Sink::Disk(CrossWriter::create(temp, cross)?)
        };
        Ok(Sinks {
            own: own_sink,
            cross: cross_sink,
        })
    }

    fn own(&mut self, pair: (u32, u32)) -> Result<(), RunError> {
        match &mut self.own {
            Sink::Memory(pairs) => pairs.push(pair),
            Sink::Disk(files) => files.push(pair)?,
        }
        Ok(())
    }

    fn cross(&mut self, pair: (u32, u32)) -> Result<(), RunError> {
        match &mut self.cross {
            Sink::Memory(pairs) => pairs.push(pair),
            Sink::Disk(writer) => writer.push(pair)?,
        }
        Ok(())
    }

    fn finish(self, temp: &TempSpace) -> Result<(CandidatePairs, CrossPairs), RunError> {
        let Sinks { own, cross } = self;
        let own = match own {
            Sink::Memory(pairs) => CandidatePairs::Memory(pairs),
            Sink::Disk(files) => CandidatePairs::Disk(files.finish()?),
        };
        let cross = match cross {
            Sink::Memory(pairs) => CrossPairs::Memory(pairs),
            Sink::Disk(writer) => writer.finish(temp)?,
        };
        Ok((own, cross))
    }
}

/// Merges the first `fan_in` of `runs` (fewer, when fewer suffice) into
/// one, each pair once, put at the end, until at most `fan_in` are left
/// (as [`levels::reduce`] does, which keeps repeats); returns the bytes
/// written. The runs merged are removed. Beats `heartbeat` as it goes.
fn reduce(
    temp: &TempSpace,
    runs: &mut Vec<RunInfo>,
    fan_in: usize,
    heartbeat: &Heartbeat,
) -> Result<u64, RunError> {
    let (fan_in, mut written) = (fan_in.max(2), 0);
    let mut level = 0usize;
    while runs.len() > fan_in {
        let take = fan_in.min(runs.len() - fan_in + 1);
        let group: Vec<RunInfo> = runs.drain(..take).collect();
        let name = format!("pairs-level-{level:06}");
        let path = temp
            .path(&format!("{PREFIX}{name}{SUFFIX}"))
            .map_err(|cause| RunError::Io {
                path: temp.folder().to_owned(),
                cause,
            })?;
        let mut writer = RunWriter::create(&path, false)?;
        let outcome = merged(temp, &group, heartbeat, |p| writer.push(entry_of(p)));
        remove(temp, &group)?;
        outcome?;
        let info = writer.finish()?;
        temp.wrote(info.bytes);
        written += info.bytes;
        runs.push(info);
        level += 1;
        heartbeat.beat();
    }
    Ok(written)
}

/// Removes `runs` from `temp`.
fn remove(temp: &TempSpace, runs: &[RunInfo]) -> Result<(), RunError> {
    for info in runs {
        temp.remove(&info.name, info.bytes)
            .map_err(|cause| RunError::Io {
                path: temp.folder().join(&info.name),
                cause,
            })?;
    }
    Ok(())
}

/// Sorts `pairs` by `(later, earlier)` and drops the repeats.
pub fn sort_pairs(pairs: &mut Vec<(u32, u32)>) {
    pairs.sort_unstable_by_key(|&(earlier, later)| (later, earlier));
    pairs.dedup();
}

/// A pair as an entry of a sorted run: keyed by the later record.
fn entry_of((earlier, later): (u32, u32)) -> Entry {
    Entry {
        key: u64::from(later),
        record: earlier,
        print: 0,
    }
}

/// Gives `each` the pairs of the merge of `runs` once each, in order, and
/// returns how many; the merge beats `heartbeat`.
fn merged(
    temp: &TempSpace,
    runs: &[RunInfo],
    heartbeat: &Heartbeat,
    mut each: impl FnMut((u32, u32)) -> Result<(), RunError>,
) -> Result<usize, RunError> {
    let mut merge = levels::merge(temp, runs, heartbeat)?;
    let (mut last, mut count) = (None, 0);
    while let Some(entry) = merge.next_entry()? {
        let pair = (entry.record, entry.key as u32);
        if last != Some(pair) {
            each(pair)?;
            (last, count) = (Some(pair), count + 1);
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs as the bands of a merge make them: many repeats, no order.
    fn pairs_with_repeats(count: u32) -> Vec<(u32, u32)> {
        let mut pairs = Vec::new();
        for band in 0..5u32 {
            for i in 0..count {
                let later = (i.wrapping_mul(2_654_435_761) >> 8) % 50_000 + 1;
                let earlier = (i + band) % later;
                if (i + band) % 3 != 0 {
                    pairs.push((earlier, later));
                }
            }
        }
        pairs
    }

    fn temp() -> (tempfile::TempDir, TempSpace) {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        (dir, temp)
    }

    /// The pairs fed through `spill` in lists of up to `step`, checked
    /// after each one, as one thread of a merge would.
    fn through(spill: PairSpill<'_>, pairs: &[(u32, u32)], step: usize) -> Vec<(u32, u32)> {
        let (mut list, mut tally) = (Vec::new(), Tally::default());
        let limit = spill.limit() as u64;
        for bucket in pairs.chunks(step) {
            list.extend_from_slice(bucket);
            spill.check(&mut list, &mut tally).unwrap();
        }
        let (got, made) = spill.finish(list).unwrap();
        let CandidatePairs::Memory(got) = got else {
            panic!("no budget to hand them on under: held in memory");
        };
        assert_eq!(made.made, pairs.len() as u64, "every pair made is counted");
        // A list within its limit, with the room doubling leaves it.
        assert!(made.peak_bytes <= 2 * (limit + step as u64) * PAIR_BYTES);
        got
    }

    #[test]
    fn the_external_sort_gives_the_pairs_sorted_by_later_record_without_repeats() {
        let pairs = pairs_with_repeats(30_000);
        let mut expected = pairs.clone();
        sort_pairs(&mut expected);
        assert!(expected.len() < pairs.len(), "the input has repeats");
        let (_dir, temp) = temp();
        // A share of a few lists' room: many runs, repeats across them.
        let spill = PairSpill::new(&temp, 40 << 10, 1, 64 << 20);
        assert_eq!(spill.limit(), MIN_LIMIT.max(40 << 10 >> 4));
        let got = through(spill, &pairs, 7);
        assert_eq!(got, expected);
        assert!(temp.bytes_spilled() > 0, "the pairs went to disk");
        // Every run is removed once the pairs are merged.
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0);
    }

    #[test]
    fn runs_past_the_readers_room_merge_in_levels_to_the_same_pairs() {
        let pairs = pairs_with_repeats(20_000);
        let mut expected = pairs.clone();
        sort_pairs(&mut expected);
        let (_dir, temp) = temp();
        // The least room for readers: two runs at a time.
        let spill = PairSpill::new(&temp, 0, 2, 0);
        assert_eq!(spill.limit(), MIN_LIMIT);
        let got = through(spill, &pairs, 100);
        assert_eq!(got, expected);
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0);
    }

    #[test]
    fn pairs_within_the_limit_stay_in_memory() {
        let pairs = pairs_with_repeats(100);
        let mut expected = pairs.clone();
        sort_pairs(&mut expected);
        let (_dir, temp) = temp();
        let spill = PairSpill::new(&temp, 1 << 30, 1, 1 << 20);
        assert_eq!(through(spill, &pairs, 10), expected);
        assert_eq!(temp.bytes_spilled(), 0);
    }

    #[test]
    fn a_list_of_many_repeats_is_sorted_in_place_not_spilled() {
        let (_dir, temp) = temp();
        let spill = PairSpill::new(&temp, 0, 1, 1 << 20);
        let (mut list, mut tally) = (vec![(1, 2); MIN_LIMIT], Tally::default());
        spill.check(&mut list, &mut tally).unwrap();
        assert_eq!(list, [(1, 2)]);
        assert!(spill.runs().is_empty());
        list.extend((0..MIN_LIMIT as u32).map(|a| (a, MIN_LIMIT as u32)));
        spill.check(&mut list, &mut tally).unwrap();
        assert!(list.is_empty());
        assert_eq!(spill.runs().len(), 1);
        assert_eq!(spill.runs()[0].entries, MIN_LIMIT as u64 + 1);
    }

    #[test]
    fn the_pairs_across_are_handed_apart_in_memory_or_in_their_run_with_the_runs_own() {
        // Pairs of two indexed records are never made (left out as the
        // merge makes them).
        let offset = 9_000;
        let mut pairs = pairs_with_repeats(30_000);
        pairs.retain(|&(_, later)| later >= offset);
        let mut joined = pairs.clone();
        sort_pairs(&mut joined);
        let mut own = joined.clone();
        let cross = across::split(&mut own, offset);
        assert!(cross.len() > 1000 && own.len() > 1000, "both kinds of pair");
        assert!(cross
            .windows(2)
            .all(|w| (w[0].1, w[0].0) < (w[1].1, w[1].0)));
        // No budget to hand them under, a tiny one (everything on disk,
        // the pair runs merged in levels), and one they fit.
        for (share, hand) in [
            (1 << 30, None),
            (0, Some(64 << 10)),
            (40 << 10, Some(1 << 30)),
        ] {
            let (_dir, temp) = temp();
            let spill = PairSpill::new(&temp, share, 1, 0);
            let spill = match hand {
                Some(max_memory) => spill.handing(max_memory),
                None => spill,
            };
            let (mut list, mut tally) = (Vec::new(), Tally::default());
            for bucket in pairs.chunks(13) {
                list.extend_from_slice(bucket);
                spill.check(&mut list, &mut tally).unwrap();
            }
            let (got_own, got_cross, made) = spill.finish_across(list, offset).unwrap();
            assert_eq!(made.made, pairs.len() as u64);
            assert_eq!(got_own.read(&temp), own, "{hand:?}");
            let mut read = Vec::new();
            got_cross
                .each(&temp, &mut |p| {
                    read.push(p);
                    Ok(())
                })
                .unwrap();
            assert_eq!(read, cross, "{hand:?}");
            let on_disk = matches!(got_cross, CrossPairs::Disk(_));
            assert_eq!(on_disk, hand == Some(64 << 10), "{hand:?}");
            got_own.remove(&temp).unwrap();
            got_cross.remove(&temp).unwrap();
            let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
            assert_eq!(left, 0, "{hand:?}: every run is removed");
        }
    }
}
