//! Pass 1's band lists and id keys under a memory budget: kept in memory
//! one chunk of records at a time, each full chunk sorted and written to
//! the run's temporary space as sorted runs (one per band, one of id
//! keys), and merged band by band when the pass ends.
//!
//! # The budget's shares
//!
//! Of `--max-memory` (the budget for the run's state, the fixed overhead
//! of batch buffers, threads and program being on top), pass 1's
//! Integrator state takes half ([`Budget::state`]); the other half covers
//! what grows beside the lists counted below and is not counted (the
//! allocator's slack, the candidate pairs as they are made, the merge's
//! buffers). Of the state's half:
//!
//! - half for the chunk in memory ([`Budget::chunk_records`]): per record
//!   spanned, 8 bytes per band, 8 for the sort's scratch (one band at a
//!   time), 8 for its twin fingerprint, 8 for its id key and 16 while the
//!   id keys are sorted;
//! - a quarter for the records' places ([`Budget::places_bytes`], 12
//!   bytes a record): past it they are dropped, and passes 2 and 3 read
//!   the whole input instead of the candidate records only;
//! - a quarter for the rest: one bit a record, the candidate pairs, the
//!   merge's read buffers (two blocks of [`super::runs::BLOCK_BYTES`] per
//!   run of each band being merged).
//!
//! # Why the merge gives the same pairs
//!
//! Chunks are consecutive ranges of records, each band's run sorted by
//! `(key, record)`, so the merge of a band's runs is the band's list as
//! the one sort in memory makes it: the same buckets, records in input
//! order. A bucket's twins are told by fingerprints computed from each
//! record's keys as it is integrated ([`fingerprint`], the value
//! [`crate::jobs::dedup::buckets::Fingerprints::of`] gives), and written
//! with every entry, so no table by record is needed while merging.

use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use drainpipe_actors::TempSpace;
use serde::{Deserialize, Serialize};

use super::merge::{EntrySource, Merge};
use super::runs::{Entry, RunError, RunInfo, RunReader, RunWriter};
use crate::jobs::dedup::buckets::fingerprint;
use crate::jobs::dedup::ids::{repeats_in, IdKeys};
use crate::jobs::dedup::lsh::{merged_candidate_pairs, sort_by_key};

/// A chunk spans at least this many records, however small the budget
/// (so a tiny budget makes many runs, not one per record).
const MIN_CHUNK: usize = 4096;

/// Names of the files this module writes in the temporary space start
/// and end so; a resumed run removes those its checkpoint does not name.
const PREFIX: &str = "dedup-";
const SUFFIX: &str = ".sorted";

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

/// `--max-memory`, as pass 1 shares it (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The run's budget in bytes.
    pub max_memory: u64,
}

impl Budget {
    /// Pass 1's Integrator state: half the budget.
    pub fn state(self) -> u64 {
        self.max_memory / 2
    }

    /// Records a chunk spans before it spills, with `bands` bands.
    pub fn chunk_records(self, bands: usize) -> usize {
        let per_record = bands as u64 * 8 + 40;
        usize::try_from(self.state() / 2 / per_record)
            .unwrap_or(usize::MAX)
            .max(MIN_CHUNK)
    }

    /// The most bytes the records' places may hold.
    pub fn places_bytes(self) -> u64 {
        self.state() / 4
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

/// Writes full chunks to sorted runs and merges them at the end.
#[derive(Debug)]
pub struct Spiller {
    temp: Arc<TempSpace>,
    chunk: usize,
    places: u64,
    /// Twin fingerprints of the chunk's records, by `record - base`.
    prints: Vec<u64>,
    scratch: Vec<u64>,
    spilled: Spilled,
}

impl Spiller {
    /// Spills into `temp` under `budget` (`None`: only merges the runs a
    /// checkpoint names), for `bands` bands.
    pub fn new(temp: Arc<TempSpace>, budget: Option<Budget>, bands: usize) -> Self {
        Spiller {
            temp,
            chunk: budget.map_or(usize::MAX, |b| b.chunk_records(bands)),
            places: budget.map_or(u64::MAX, Budget::places_bytes),
            prints: Vec::new(),
            scratch: Vec::new(),
            spilled: Spilled {
                bands: vec![Vec::new(); bands],
                ..Spilled::default()
            },
        }
    }

    /// Records a chunk spans before it spills (`usize::MAX`: no budget).
    pub fn chunk_records(&self) -> usize {
        self.chunk
    }

    /// Makes room in `bands`, `ids` and the fingerprints for one more
    /// record as a doubling would, but never past the chunk: a list that
    /// doubled past it would pass the budget, and one reserved whole up
    /// front would hold a budget's worth of address space for any input.
    pub fn make_room(&mut self, bands: &mut [Vec<u64>], ids: &mut IdKeys) {
        if self.chunk == usize::MAX {
            return;
        }
        for band in bands {
            grow_within(band, self.chunk);
        }
        ids.grow_within(self.chunk);
        grow_within(&mut self.prints, self.chunk);
    }

    /// True while the places of the records up to `index` fit their share.
    pub fn keeps_places(&self, index: u64) -> bool {
        index.saturating_add(1).saturating_mul(12) <= self.places
    }

    /// Notes the band `keys` of the record at `index` (none: an empty
    /// record).
    pub fn note(&mut self, index: u64, keys: &[u32]) {
        self.note_print(index, fingerprint(keys));
    }

    fn note_print(&mut self, index: u64, print: u64) {
        // Records come in input order, from the chunk's first on.
        let Some(at) = index.checked_sub(self.spilled.base) else {
            return;
        };
        self.prints.resize(at as usize, 0);
        self.prints.push(print);
    }

    /// True once the chunk spans its records, `next` being the record
    /// after the last one integrated.
    pub fn is_full(&self, next: u64) -> bool {
        next - self.spilled.base >= self.chunk as u64
    }

    /// What was spilled so far.
    pub fn spilled(&self) -> &Spilled {
        &self.spilled
    }

    /// Heap bytes held (the chunk's lists are counted by their owner).
    pub fn heap_bytes(&self) -> usize {
        (self.prints.capacity() + self.scratch.capacity()) * 8
    }

    /// Sorts the chunk's `bands` and `ids` and writes them as sorted runs,
    /// then empties them; `next` is the record after the chunk's last.
    pub fn spill(
        &mut self,
        bands: &mut [Vec<u64>],
        ids: &mut IdKeys,
        next: u64,
    ) -> Result<(), RunError> {
        let seq = self.spilled.spills();
        // At most 18 bytes a band entry (two variable-length integers and
        // a fingerprint), 15 an id key, and each file's framing.
        let entries: usize = bands.iter().map(Vec::len).sum();
        let estimate = entries as u64 * 18 + ids.len() as u64 * 15 + (bands.len() as u64 + 1) * 64;
        self.temp
            .ensure_room(estimate)
            .map_err(|cause| RunError::Io {
                path: self.temp.folder().to_owned(),
                cause,
            })?;
        if seq == 0 {
            let dir = self
                .temp
                .dir()
                .unwrap_or_else(|_| self.temp.folder().to_owned());
            log::info!(
                "dedup pass 1: the band lists pass their share of the memory budget; \
                 spilling them to sorted runs in {} every {} records",
                dir.display(),
                self.chunk
            );
        }
        for (b, band) in bands.iter_mut().enumerate() {
            sort_by_key(band, &mut self.scratch);
            let base = self.spilled.base;
            let prints = &self.prints;
            let entries = band.iter().map(|&e| Entry {
                key: e >> 32,
                record: e as u32,
                print: u64::from(e as u32)
                    .checked_sub(base)
                    .and_then(|at| prints.get(at as usize))
                    .copied()
                    .unwrap_or(0),
            });
            let info = self.write(&format!("band-{b:03}-run-{seq:06}"), true, entries)?;
            self.spilled.bands[b].push(info);
            band.clear();
        }
        let entries = ids.sorted().into_iter().map(|(key, record)| Entry {
            key,
            record,
            print: 0,
        });
        let info = self.write(&format!("ids-run-{seq:06}"), false, entries)?;
        self.spilled.ids.push(info);
        ids.spill(next);
        self.prints.clear();
        self.spilled.base = next;
        Ok(())
    }

    fn write(
        &self,
        name: &str,
        with_prints: bool,
        entries: impl Iterator<Item = Entry>,
    ) -> Result<RunInfo, RunError> {
        let name = format!("{PREFIX}{name}{SUFFIX}");
        let path = self.temp.path(&name).map_err(|cause| RunError::Io {
            path: self.temp.folder().join(&name),
            cause,
        })?;
        let mut writer = RunWriter::create(&path, with_prints)?;
        for entry in entries {
            writer.push(entry)?;
        }
        let info = writer.finish()?;
        self.temp.wrote(info.bytes);
        Ok(info)
    }

    fn open(&self, info: &RunInfo) -> Result<RunReader, RunError> {
        let path = self.temp.path(&info.name).map_err(|cause| RunError::Io {
            path: self.temp.folder().join(&info.name),
            cause,
        })?;
        RunReader::open(&path, Some(info))
    }

    fn merge(&self, runs: &[RunInfo]) -> Result<Merge, RunError> {
        let mut merge = Merge::new();
        for info in runs {
            merge.add(self.open(info)?)?;
        }
        Ok(merge)
    }

    /// The candidate pairs of every band's runs, merged on up to
    /// `threads` threads: [`crate::jobs::dedup::lsh::candidate_pairs`] of
    /// the same lists.
    pub fn pairs(&self, threads: usize) -> Result<Vec<(u32, u32)>, RunError> {
        let bands = &self.spilled.bands;
        merged_candidate_pairs(bands.len(), threads, |b| self.merge(&bands[b]))
    }

    /// The repeated id keys of the runs of id keys, merged:
    /// [`IdKeys::repeats`] of the same keys.
    pub fn repeats(&self) -> Result<Vec<(u32, u32)>, RunError> {
        let mut merge = self.merge(&self.spilled.ids)?;
        repeats_in(std::iter::from_fn(|| {
            merge
                .next_entry()
                .map(|e| e.map(|e| (e.key, e.record)))
                .transpose()
        }))
    }

    /// Removes every run written (the pass's result is safe elsewhere).
    pub fn remove_all(&mut self) -> std::io::Result<()> {
        for info in self.spilled.all() {
            self.temp.remove(&info.name, info.bytes)?;
        }
        self.spilled = Spilled {
            bands: vec![Vec::new(); self.spilled.bands.len()],
            ..Spilled::default()
        };
        Ok(())
    }

    /// Takes up the runs a checkpoint names, with the chunk it held in
    /// memory (`bands`): each run must be there with its length (its
    /// checksum is checked when it is merged); runs of the temporary
    /// space it does not name were written after it, and are removed.
    pub fn restore(&mut self, spilled: Spilled, bands: &[Vec<u64>]) -> Result<(), RunError> {
        for info in spilled.all() {
            self.open(info)?;
        }
        let named: HashSet<&str> = spilled.all().map(|i| i.name.as_str()).collect();
        let dir = self.temp.dir().map_err(|cause| RunError::Io {
            path: self.temp.folder().to_owned(),
            cause,
        })?;
        let io = |cause| RunError::Io {
            path: dir.clone(),
            cause,
        };
        for item in fs::read_dir(&dir).map_err(io)? {
            let name = item.map_err(io)?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(PREFIX) && name.ends_with(SUFFIX) && !named.contains(&*name) {
                let path = dir.join(&*name);
                fs::remove_file(&path).map_err(|cause| RunError::Io { path, cause })?;
            }
        }
        self.spilled = spilled;
        // The chunk's fingerprints, from its lists (entry `i` of every
        // band is the same record).
        self.prints.clear();
        if let Some(first) = bands.first() {
            let mut keys = Vec::with_capacity(bands.len());
            for (i, &entry) in first.iter().enumerate() {
                keys.clear();
                keys.extend(
                    bands
                        .iter()
                        .filter_map(|b| b.get(i))
                        .map(|&e| (e >> 32) as u32),
                );
                self.note_print(u64::from(entry as u32), fingerprint(&keys));
            }
        }
        Ok(())
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
    fn spilled_bands_give_the_pairs_and_repeats_of_the_lists_in_memory() {
        let (records, nbands) = (20_000u32, 5);
        let keys = keys_of(records, nbands);
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let budget = Budget {
            // The smallest chunks: MIN_CHUNK records.
            max_memory: 1,
        };
        let mut spiller = Spiller::new(Arc::clone(&temp), Some(budget), nbands);
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
            spiller.note(index, keys);
            for (b, &k) in keys.iter().enumerate() {
                bands[b].push(u64::from(k) << 32 | index);
                in_memory[b].push(u64::from(k) << 32 | index);
            }
            if spiller.is_full(index + 1) {
                spiller.spill(&mut bands, &mut ids, index + 1).unwrap();
            }
        }
        spiller
            .spill(&mut bands, &mut ids, u64::from(records))
            .unwrap();
        assert_eq!(spiller.spilled().spills(), 5);
        let expected = candidate_pairs(&mut in_memory, 2);
        // Large buckets of twins and of distinct signatures both occur.
        assert!(expected.len() > 20 * records as usize, "{}", expected.len());
        for threads in [1, 3] {
            let pairs = spiller.pairs(threads).unwrap();
            assert!(pairs == expected, "{threads} threads: other pairs");
        }
        assert_eq!(spiller.repeats().unwrap(), all_ids.repeats());
        assert!(temp.bytes_spilled() == spiller.spilled().bytes());
        // A checkpoint's names restore; a run written after it is removed.
        let spilled = spiller.spilled().clone();
        let stray = temp.path("dedup-ids-run-000099.sorted").unwrap();
        std::fs::write(&stray, b"later").unwrap();
        let mut again = Spiller::new(Arc::clone(&temp), None, nbands);
        again.restore(spilled.clone(), &[]).unwrap();
        assert!(!stray.exists());
        assert!(again.pairs(2).unwrap() == expected, "restored: other pairs");
        // A named run that is gone is refused, naming it.
        std::fs::remove_file(temp.path(&spilled.ids[2].name).unwrap()).unwrap();
        let err = Spiller::new(Arc::clone(&temp), None, nbands)
            .restore(spilled, &[])
            .unwrap_err();
        assert!(err.to_string().contains("dedup-ids-run-000002"), "{err}");
        spiller.remove_all().unwrap();
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0);
    }
}
