//! The repeated ids past their share of the budget
//! ([`crate::jobs::dedup::budget::Shares::repeated_ids`]): the
//! `(first, later)` pairs of records with the same id key that pass 1's
//! merge makes, and their confirmation against the records' ids.
//!
//! Made in the order of the keys, the pairs are sorted by the later
//! record ([`RepeatsMaker`], an external sort within
//! [`crate::jobs::dedup::budget::Shares::repeated_ids_made`]); when the
//! sort wrote runs, they are merged into one sorted run,
//! `dedup-repeated-ids.sorted` (keyed by the later record, the first one
//! as the entry's record), which pass 1's result names
//! ([`RepeatedIds::Disk`]) and which is removed once the outputs are
//! committed. Its name starts as every pass 1 run's
//! ([`super::writer::PREFIX`]), so a pass 1 resumed from a checkpoint
//! removes one a killed run left.
//!
//! Confirming them ([`confirm_joined`]) holds what fits the share, never a
//! table of ids: the pairs sorted by first record (half the share, runs
//! past it), then one read of the input in record order beside them and
//! the pairs by later record, handing a second sort (the other half) each
//! pair's first record's id and place, keyed by its later record, and each
//! later record's own; that sort read back joins the two, and the ids are
//! compared. The count and the first repeats shown are those of
//! [`crate::jobs::dedup::ids::confirm`], which [`report`] keeps for runs
//! without a budget whose pairs are in memory. Sequential IO only.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use drainpipe_actors::{Heartbeat, RecordSource, TempSpace};

use super::merge::EntrySource;
use super::named;
use super::runs::{Entry, RunError, RunInfo, RunReader};
use super::sorter::{SortedStream, Sorter};
use super::writer::write_run;
use crate::input::{parse_text_record, TextFields};
use crate::jobs::dedup::budget::Shares;
use crate::jobs::dedup::ids::{canonical, confirm, each_record, Repeats};

/// The name of the run of repeated ids, without the prefix and suffix
/// every pass 1 run has.
const NAME: &str = "repeated-ids";

/// The record a later record's own entry has in the sort by later
/// record: after its first record's (a first record is always earlier).
const OWN: u32 = u32::MAX;

/// Entries written between two beats of the heartbeat.
const BEAT_EVERY: u64 = 1 << 16;

/// `(first, later)`: each record whose id key an earlier record has, with
/// the first record of that key, sorted by the later record; in memory,
/// or on disk past their share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepeatedIds {
    /// Held whole.
    Memory(Vec<(u32, u32)>),
    /// One sorted run in the run's temporary space, keyed by the later
    /// record.
    Disk(RunInfo),
}

impl Default for RepeatedIds {
    fn default() -> Self {
        RepeatedIds::Memory(Vec::new())
    }
}

impl RepeatedIds {
    /// How many pairs.
    pub fn len(&self) -> u64 {
        match self {
            RepeatedIds::Memory(pairs) => pairs.len() as u64,
            RepeatedIds::Disk(info) => info.entries,
        }
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of their run on disk (0 in memory).
    pub fn bytes_on_disk(&self) -> u64 {
        match self {
            RepeatedIds::Memory(_) => 0,
            RepeatedIds::Disk(info) => info.bytes,
        }
    }

    /// Removes their run from `temp`, if they are on disk.
    pub fn remove(&self, temp: &TempSpace) -> io::Result<()> {
        match self {
            RepeatedIds::Memory(_) => Ok(()),
            RepeatedIds::Disk(info) => temp.remove(&info.name, info.bytes),
        }
    }

    /// The pairs, front to back.
    pub fn read<'a>(&'a self, temp: &TempSpace) -> Result<PairsRead<'a>, RunError> {
        match self {
            RepeatedIds::Memory(pairs) => Ok(PairsRead::Memory(pairs.iter())),
            RepeatedIds::Disk(info) => {
                let reader = super::levels::open(temp, info)?;
                Ok(PairsRead::Disk(reader, temp.folder().join(&info.name)))
            }
        }
    }
}

/// A read of [`RepeatedIds`], `(first, later)` by later record.
#[derive(Debug)]
pub enum PairsRead<'a> {
    /// From memory.
    Memory(std::slice::Iter<'a, (u32, u32)>),
    /// From their run (its path, for a damaged entry).
    Disk(RunReader, PathBuf),
}

impl Iterator for PairsRead<'_> {
    type Item = Result<(u32, u32), RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            PairsRead::Memory(pairs) => pairs.next().copied().map(Ok),
            PairsRead::Disk(reader, path) => match reader.next_entry() {
                Ok(Some(e)) => Some(match u32::try_from(e.key) {
                    Ok(later) if e.record < later => Ok((e.record, later)),
                    _ => Err(RunError::damaged(
                        path,
                        "a repeat not after its first record",
                    )),
                }),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
        }
    }
}

/// The repeated ids as pass 1's merge makes them, sorted by later record
/// within a share: in memory while they fit, else runs merged into one.
#[derive(Debug)]
pub struct RepeatsMaker<'a> {
    temp: &'a Arc<TempSpace>,
    sorter: Sorter,
    heartbeat: &'a Heartbeat,
}

impl<'a> RepeatsMaker<'a> {
    /// A sort of the pairs into `temp` within `share` bytes
    /// ([`crate::jobs::dedup::budget::Shares::repeated_ids_made`]), its
    /// run beating `heartbeat` as it is written.
    pub fn new(temp: &'a Arc<TempSpace>, share: u64, heartbeat: &'a Heartbeat) -> Self {
        RepeatsMaker {
            temp,
            sorter: Sorter::new(temp, NAME, share),
            heartbeat,
        }
    }

    /// Adds `(first, later)`, in any order.
    pub fn push(&mut self, (first, later): (u32, u32)) -> Result<(), RunError> {
        self.sorter.push(Entry {
            key: u64::from(later),
            record: first,
            print: 0,
        })
    }

    /// Every pair, sorted by later record: in memory when the sort wrote
    /// nothing, else one run (the sort's runs removed).
    pub fn finish(self) -> Result<RepeatedIds, RunError> {
        let mut sorted = match self.sorter.finish()? {
            SortedStream::Memory(entries) => {
                let pairs = entries.map(|e| (e.record, e.key as u32)).collect();
                return Ok(RepeatedIds::Memory(pairs));
            }
            disk => disk,
        };
        let (mut failed, mut written) = (None, 0u64);
        let entries = std::iter::from_fn(|| match sorted.next_entry() {
            Ok(entry) => {
                written += 1;
                if written.is_multiple_of(BEAT_EVERY) {
                    self.heartbeat.beat();
                }
                entry
            }
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        let info = write_run(self.temp, NAME, false, entries);
        if let Some(e) = failed {
            if let Ok(info) = &info {
                let _ = self.temp.remove(&info.name, info.bytes);
            }
            return Err(e);
        }
        log::info!(
            "dedup pass 1: the repeated ids pass their share of the memory budget; \
             written to a sorted run in {}",
            self.temp.folder().display()
        );
        info.map(RepeatedIds::Disk)
    }
}

/// The repeated ids among the `pairs` pass 1 found (see [`crate::jobs::dedup::ids::confirm`]),
/// logged; the input is opened (`open`) only if there is a pair. With no
/// `room` (no budget) and the pairs in memory, as [`crate::jobs::dedup::ids::confirm`] does; else
/// within it ([`confirm_joined`]; pairs on disk and no budget: as if the
/// share were unbounded).
pub fn report(
    pairs: &RepeatedIds,
    open: impl FnOnce() -> anyhow::Result<Box<dyn RecordSource>>,
    fields: &TextFields,
    stop: &dyn Fn() -> bool,
    (temp, max_memory): (&Arc<TempSpace>, Option<u64>),
) -> anyhow::Result<Repeats> {
    if pairs.is_empty() {
        return Ok(Repeats::default());
    }
    let source = &mut *open()?;
    let repeats = match (pairs, max_memory) {
        (RepeatedIds::Memory(pairs), None) => confirm(pairs, source, fields, stop)?,
        (pairs, max_memory) => {
            let share =
                max_memory.map_or(u64::MAX, |max_memory| Shares { max_memory }.repeated_ids());
            confirm_joined(pairs, source, fields, stop, (temp, share))?
        }
    };
    for r in &repeats.shown {
        log::warn!(
            "repeated id {} at {}: first at {} (both records are in the outputs under the same id)",
            r.id,
            r.again,
            r.first
        );
    }
    if repeats.count > repeats.shown.len() as u64 {
        log::warn!(
            "{} more repeated ids (summary.json: result.repeated_ids)",
            repeats.count - repeats.shown.len() as u64
        );
    }
    Ok(repeats)
}

/// [`crate::jobs::dedup::ids::confirm`] of `pairs` within `share` bytes
/// in `temp`: the same count and repeats shown, from sorts and joins
/// (see the module's docs). A run that cannot be written or read ends it
/// with an IO error naming its file.
pub fn confirm_joined(
    pairs: &RepeatedIds,
    source: &mut dyn RecordSource,
    fields: &TextFields,
    stop: &dyn Fn() -> bool,
    (temp, share): (&Arc<TempSpace>, u64),
) -> anyhow::Result<Repeats> {
    let io = |e: RunError| anyhow::Error::from(e.into_io());
    let context = "dedup: confirming the repeated ids";
    let half = (share / 2).max(1);
    let mut by_first = Sorter::new(temp, "repeats-by-first", half);
    for pair in pairs.read(temp).map_err(io).context(context)? {
        let (first, later) = pair.map_err(io).context(context)?;
        let entry = Entry {
            key: u64::from(first),
            record: later,
            print: 0,
        };
        by_first.push(entry).map_err(io).context(context)?;
    }
    let mut firsts = by_first.finish().map_err(io).context(context)?;
    let laters = pairs.read(temp).map_err(io).context(context)?;
    let mut by_later = named::Sorter::new(temp, "repeats", half);
    let sides = read_sides(&mut firsts, laters, source, fields, stop, &mut by_later);
    sides
        .map_err(|e| match e.downcast::<RunError>() {
            Ok(e) => io(e),
            Err(e) => e,
        })
        .context(context)?;
    drop(firsts);
    let joined = join(by_later.finish().map_err(io).context(context)?);
    joined.map_err(io).context(context)
}

/// Reads `source` in record order as far as the last later record,
/// pushing into `by_later`, keyed by each pair's later record, its first
/// record's place and id (the first record as the entry's other), and
/// each later record's own (with [`OWN`]): `firsts` are the pairs by
/// first record, `laters` by later record.
fn read_sides(
    firsts: &mut SortedStream,
    laters: PairsRead<'_>,
    source: &mut dyn RecordSource,
    fields: &TextFields,
    stop: &dyn Fn() -> bool,
    by_later: &mut named::Sorter<'_>,
) -> anyhow::Result<()> {
    let mut first = firsts.next_entry()?;
    let laters = std::cell::RefCell::new(laters.peekable());
    let more = || laters.borrow_mut().peek().is_some();
    let mut text = String::new();
    each_record(source, stop, more, |at, raw| {
        let mut laters = laters.borrow_mut();
        let is_first = first.is_some_and(|e| e.key == u64::from(at));
        let later = match laters.peek() {
            Some(Ok((_, later))) => *later == at,
            Some(Err(_)) => match laters.next() {
                Some(Err(e)) => return Err(e.into()),
                _ => unreachable!("an error peeked"),
            },
            None => false,
        };
        if !is_first && !later {
            return Ok(());
        }
        let parsed = raw.and_then(|raw| Some((raw, parse_text_record(raw, fields).ok()?)));
        if let Some((raw, parsed)) = &parsed {
            // The place, then the id as the record gave it: the place's
            // length says where one ends.
            text.clear();
            text.push_str(&raw.location.to_string());
            text.push_str(&parsed.id);
        }
        let split = (text.len() - parsed.as_ref().map_or(0, |(_, p)| p.id.len())) as f64;
        while let Some(e) = first.filter(|e| e.key == u64::from(at)) {
            if parsed.is_some() {
                by_later.push(e.record, at, split, &text)?;
            }
            first = firsts.next_entry()?;
        }
        if later {
            laters.next();
            if parsed.is_some() {
                by_later.push(at, OWN, split, &text)?;
            }
        }
        Ok(())
    })
}

/// Joins each later record's own entry with its first record's, in
/// `sorted` (by later record, then the first record's entry before the
/// later's own), and counts those of the same id.
fn join(mut sorted: named::Sorted<'_>) -> Result<Repeats, RunError> {
    let mut repeats = Repeats::default();
    // The first record's entry of the later record `.0`: its text and
    // where its place ends.
    let mut first: Option<(u32, String, usize)> = None;
    while let Some(r) = sorted.next()? {
        if r.other != OWN {
            let mut text = first.take().map(|(_, t, _)| t).unwrap_or_default();
            text.clear();
            text.push_str(r.id);
            first = Some((r.key, text, r.similarity as usize));
            continue;
        }
        let Some((_, text, split)) = first.as_ref().filter(|(key, ..)| *key == r.key) else {
            continue;
        };
        let (Some((first_at, first_id)), Some((again, id))) = (
            text.split_at_checked(*split),
            r.id.split_at_checked(r.similarity as usize),
        ) else {
            return Err(RunError::Failed {
                kind: io::ErrorKind::InvalidData,
                message: "a run of repeated ids is damaged: a place past its entry".into(),
            });
        };
        if canonical(first_id) == canonical(id) {
            repeats.note(id, first_at, again);
        }
    }
    sorted.close()?;
    Ok(repeats)
}
