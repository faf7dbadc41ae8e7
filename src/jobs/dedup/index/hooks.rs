//! What an index run hooks into passes 1 and 2 ([`BandsHook`],
//! [`RecordHook`]): the indexes' band runs merged before the run's, so
//! buckets, twins and windows are those of one run over the indexed
//! records followed by this run's; and, in pass 2, each record's exact
//! similarity with the indexed records it shares a bucket with, and its
//! words and id written into the index being saved.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use drainpipe_actors::TempSpace;

use crate::jobs::dedup::chain::CandidatePairs;
use crate::jobs::dedup::chain::{BandsHook, RecordHook};
use crate::jobs::dedup::lsh::{merged_candidate_pairs_across, merged_candidate_pairs_from};
use crate::jobs::dedup::similarity::jaccard;
use crate::jobs::dedup::spill::across::{self, CrossPairs, CrossReader};
use crate::jobs::dedup::spill::held::{HeldSpill, Pending};
use crate::jobs::dedup::spill::merge::{EntrySource, Merge};
use crate::jobs::dedup::spill::pairs::{PairSpill, PairsMade};
use crate::jobs::dedup::spill::record_sets::RecordSet;
use crate::jobs::dedup::spill::runs::{Entry, RunError, RunInfo, RunReader, RunWriter};
use crate::jobs::dedup::spill::verified::PairsSpill;

use super::files::{band_name, SegmentWriter};
use super::progress::{IndexProgress, ProgressFile};
use super::IndexError;

/// An index the run is against, as pass 1 reads its band runs.
#[derive(Debug, Clone)]
pub struct IndexBands {
    /// The index's folder.
    pub dir: PathBuf,
    /// Its band runs, by band.
    pub runs: Vec<RunInfo>,
    /// Its first record's number in the run's joined numbering.
    pub offset: u32,
}

/// Pass 1's hook: the indexes' band runs (records `0..offset`, each index
/// from its own offset) merged before the run's own (records shifted by
/// `offset`), band by band, as runs of one k-way merge
/// ([`Merge::add_with_offset`]): the index's bands are read one block at a
/// time, never held. With an index to save, each joined band is written
/// into it as it is merged.
#[derive(Debug)]
pub struct JoinedBands {
    indexes: Vec<IndexBands>,
    offset: u32,
    /// The folder of the index being saved.
    save_to: Option<PathBuf>,
    /// Where what it found is kept for `--resume`, before pass 1's result
    /// ([`super::progress`]).
    progress: Option<ProgressFile>,
    out: Mutex<Option<BandsOut>>,
    /// The first error reading an index's band run, said as the index's.
    damaged: Mutex<Option<IndexError>>,
}

/// What [`JoinedBands`] found besides the run's own pairs.
#[derive(Debug, Default)]
pub struct BandsOut {
    /// `(indexed record, record)`: pairs across, sorted by the record,
    /// then the indexed record; in memory, or on disk past their share.
    pub cross: CrossPairs,
    /// The joined bands' runs, written into the index being saved (none
    /// when no index is saved).
    pub bands: Vec<RunInfo>,
}

impl JoinedBands {
    /// Joins the `indexes`' band runs (none: no index to join) before the
    /// run's bands, whose first record is `offset`; writes the joined
    /// bands into `save_to` when an index is saved, and what it found into
    /// `progress`.
    pub fn new(
        indexes: Vec<IndexBands>,
        offset: u32,
        save_to: Option<PathBuf>,
        progress: Option<ProgressFile>,
    ) -> Self {
        JoinedBands {
            indexes,
            offset,
            save_to,
            progress,
            out: Mutex::default(),
            damaged: Mutex::default(),
        }
    }

    /// What it found, once pass 1 has made its pairs.
    pub fn take(&self) -> Option<BandsOut> {
        self.out.lock().expect("bands hook poisoned").take()
    }

    /// Why an index's band run could not be read, when pass 1 failed so.
    pub fn take_damage(&self) -> Option<IndexError> {
        self.damaged.lock().expect("bands hook poisoned").take()
    }

    /// Notes `e` as an index's (exit 65 or 74, naming the index and the
    /// file) when it is about a file of one.
    fn note_damage(&self, e: &RunError) {
        let path = match e {
            RunError::Damaged { path, .. } | RunError::Io { path, .. } => path,
            _ => return,
        };
        let Some(index) = self.indexes.iter().find(|i| path.starts_with(&i.dir)) else {
            return;
        };
        let file = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let error = match e {
            RunError::Damaged { what, .. } => IndexError::damaged(&index.dir, &file, what.clone()),
            RunError::Io { cause, .. } => IndexError::read(
                &index.dir,
                &file,
                std::io::Error::new(cause.kind(), cause.to_string()),
            ),
            _ => return,
        };
        let mut damaged = self.damaged.lock().expect("bands hook poisoned");
        damaged.get_or_insert(error);
    }

    /// Band `band` joined: each index's run, then the run's own entries
    /// (`own`), written into the index being saved as they go by.
    fn joined<'a>(
        &self,
        band: usize,
        own: Merge,
        written: &'a Mutex<Option<RunInfo>>,
    ) -> Result<Tee<'a>, RunError> {
        let mut merge = Merge::new();
        // The indexes' runs may be most of what is read: the joined merge
        // beats the finish's heartbeat as the run's own does.
        if let Some(heartbeat) = own.heartbeat() {
            merge.beating(heartbeat);
        }
        for index in &self.indexes {
            let info = index.runs.get(band).ok_or_else(|| RunError::Damaged {
                path: index.dir.join(super::MANIFEST_FILE),
                what: format!("no run for band {band}"),
            })?;
            let reader = RunReader::open(&index.dir.join(&info.name), Some(info))?;
            merge.add_with_offset(reader, index.offset)?;
        }
        merge.add_with_offset(own, self.offset)?;
        let writer = match &self.save_to {
            Some(dir) => Some(RunWriter::create(&dir.join(band_name(band)), true)?),
            None => None,
        };
        Ok(Tee {
            source: merge,
            writer,
            written,
        })
    }
}

/// A merge's entries, written to a run as they are read (the saved
/// index's band); the run's account goes to `written` at the end.
struct Tee<'a> {
    source: Merge,
    writer: Option<RunWriter>,
    written: &'a Mutex<Option<RunInfo>>,
}

impl EntrySource for Tee<'_> {
    fn next_entry(&mut self) -> Result<Option<Entry>, RunError> {
        let entry = self.source.next_entry()?;
        match (entry, self.writer.take()) {
            (Some(e), Some(mut writer)) => {
                writer.push(e)?;
                self.writer = Some(writer);
            }
            (None, Some(writer)) => {
                let info = writer.finish()?;
                *self.written.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
            }
            _ => {}
        }
        Ok(entry)
    }
}

impl BandsHook for JoinedBands {
    fn candidate_pairs(
        &self,
        bands: usize,
        threads: usize,
        spill: Option<PairSpill<'_>>,
        open: &(dyn Fn(usize) -> Result<Merge, RunError> + Sync),
    ) -> Result<(CandidatePairs, PairsMade), RunError> {
        let offset = self.offset;
        let written: Vec<Mutex<Option<RunInfo>>> = (0..bands).map(|_| Mutex::default()).collect();
        let joined = |band| self.joined(band, open(band)?, &written[band]);
        // Pairs of two indexed records are left out: their clusters are
        // the index's. Under a budget, those across stay within the same
        // share as the run's own, and past pass 2's go to their run.
        let (own, cross, made) = match spill {
            Some(spill) => merged_candidate_pairs_across(bands, threads, offset, spill, joined),
            None => merged_candidate_pairs_from(bands, threads, offset, joined).map(|mut pairs| {
                let cross = across::split(&mut pairs, offset);
                let own = CandidatePairs::Memory(pairs);
                (own, CrossPairs::Memory(cross), PairsMade::default())
            }),
        }
        .inspect_err(|e| self.note_damage(e))?;
        let mut saved = Vec::new();
        if self.save_to.is_some() {
            for (band, info) in written.into_iter().enumerate() {
                let info = info.into_inner().unwrap_or_else(|p| p.into_inner());
                saved.push(info.ok_or_else(|| RunError::Failed {
                    kind: std::io::ErrorKind::Other,
                    message: format!("band {band} of the index being saved was not written"),
                })?);
            }
        }
        if let Some(progress) = &self.progress {
            progress.write(&IndexProgress {
                draft: self.save_to.clone(),
                cross: cross.clone(),
                bands: saved.clone(),
                verified: None,
            })?;
        }
        *self.out.lock().expect("bands hook poisoned") = Some(BandsOut {
            cross,
            bands: saved,
        });
        Ok((own, made))
    }
}

/// Pass 2's hook: verifies the pairs across, and writes each record's
/// words and id into the index being saved.
#[derive(Debug)]
pub struct Joiner {
    threshold: f64,
    /// The records in pairs across (past their share, on disk).
    reads: RecordSet,
    /// An index is saved: every record's words are written.
    saving: bool,
    state: Mutex<JoinerState>,
}

/// The indexed records' sets pass 2 verifies the pairs across with: in
/// memory within their share of the budget, past it in sorted runs of
/// `(record, indexed record, set)` read front to back as pass 2 reads the
/// records ([`IndexedSets::read`]).
#[derive(Debug, Default)]
pub struct IndexedSets {
    /// The sets kept in memory, by indexed record.
    pub memory: HashMap<u32, Vec<u64>>,
    /// The sets that went to disk (none without a budget).
    pub spill: Option<HeldSpill>,
    /// The most bytes of sets held in memory, counted as they were read
    /// (the set that passed the share included; pass 2 only frees them).
    /// The runs' read buffers beside them are at most half the share, or
    /// two runs' in a share smaller than that ([`crate::jobs::dedup::spill::held::fan_in`]).
    pub peak_bytes: u64,
}

impl IndexedSets {
    /// Reads the sets of `cross`'s indexed records (`(indexed record,
    /// record)`, sorted by the record, then the indexed record: in memory
    /// or read front to back from disk, [`CrossPairs::pending`]), handed
    /// by `read` in indexed record order, holding them within `share`
    /// bytes (`None`: no budget): past it, those held are written to a
    /// run in `temp`, once for each pair across they are in
    /// ([`HeldSpill::evict`]), and freed.
    pub fn read(
        cross: &(impl Pending + ?Sized),
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        read: impl FnOnce(&mut dyn FnMut(u32, Vec<u64>)) -> Result<(), IndexError>,
    ) -> Result<Self, IndexError> {
        let mut spill = HeldSpill::indexed(Arc::clone(temp), share);
        let mut memory = HashMap::new();
        let (mut held, mut peak, mut failed) = (0u64, 0u64, None);
        read(&mut |record, set| {
            if failed.is_some() {
                return;
            }
            held += set.len() as u64 * 8 + SET_ENTRY_BYTES;
            memory.insert(record, set);
            peak = peak.max(held);
            if spill.must_evict(held, spill.heap_bytes()) {
                match spill.evict(&mut memory, cross) {
                    Ok(()) => held = 0,
                    Err(e) => failed = Some(e),
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(IndexError::Spill(e.into_io()));
        }
        let spilled = spill.runs_written() > 0;
        Ok(IndexedSets {
            memory,
            peak_bytes: peak,
            spill: spilled.then_some(spill),
        })
    }

    /// Bytes of the runs the sets went to.
    pub fn spilled_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, HeldSpill::bytes)
    }
}

/// Bytes a set held in memory is counted for beside its hashes: its
/// table entry, as pass 2 counts its own held sets.
const SET_ENTRY_BYTES: u64 = 40;

/// [`Joiner`]'s state, changed by pass 2's Integrator only.
#[derive(Debug, Default)]
pub struct JoinerState {
    /// `(indexed record, record)`, sorted by the record, then the indexed
    /// record: read front to back as pass 2 reads the records.
    cross: CrossReader,
    /// Pairs across in all, and those passed so far.
    cross_pairs: u64,
    passed: u64,
    /// The indexed partners of the record being verified.
    partners: Vec<u32>,
    /// The indexed records' sets.
    pub sets: IndexedSets,
    /// `(indexed record, record, similarity)` at or above the threshold,
    /// in the order they are made (by the record, then the indexed
    /// record): in memory within their share, past it in runs
    /// ([`PairsSpill::across`]).
    pub verified: PairsSpill,
    /// Pairs across whose similarity was computed.
    pub checked: u64,
    /// Pairs across that could not be checked (a record pass 2 did not
    /// read: the input changed).
    pub unverifiable: u64,
    /// The index being saved: this run's records' words and ids.
    pub writer: Option<SegmentWriter>,
    /// The first error writing them.
    pub error: Option<std::io::Error>,
    /// The first error reading the pairs across or the spilled sets back.
    pub read_error: Option<RunError>,
    /// The first error writing the verified pairs across to disk.
    pub spill_error: Option<RunError>,
}

impl Joiner {
    /// Verifies `cross` (sorted by the record, then the indexed record;
    /// `reads`: the records in them) against the indexed records' `sets`,
    /// keeping the verified pairs in `verified`, and writes into `writer`
    /// when an index is saved (then pass 2 reads every record).
    pub fn new(
        threshold: f64,
        (cross, count, reads): (CrossReader, u64, RecordSet),
        (sets, verified): (IndexedSets, PairsSpill),
        writer: Option<SegmentWriter>,
    ) -> Self {
        Joiner {
            threshold,
            reads,
            saving: writer.is_some(),
            state: Mutex::new(JoinerState {
                cross,
                cross_pairs: count,
                sets,
                verified,
                writer,
                ..JoinerState::default()
            }),
        }
    }

    /// What it found, once pass 2 has ended.
    pub fn take(&self) -> JoinerState {
        let mut state = std::mem::take(&mut *self.state.lock().expect("joiner poisoned"));
        state.unverifiable += state.cross_pairs - state.passed;
        state.cross = CrossReader::default();
        state
    }
}

impl JoinerState {
    /// Pushes empty entries (records pass 2 did not read: rejected) up to
    /// `record`.
    pub fn fill_to(&mut self, record: u64) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        while self.error.is_none() && writer.records() < record {
            if let Err(e) = writer.push(Vec::new(), None) {
                self.error = Some(e);
            }
        }
    }

    /// Reads the indexed partners of `record` into `partners`, passing
    /// (as unverifiable) the pairs of records before it.
    fn partners_of(&mut self, record: u32) {
        self.partners.clear();
        while self.read_error.is_none() {
            match self.cross.peek() {
                Ok(Some((indexed, r))) if r <= record => {
                    if r < record {
                        self.unverifiable += 1;
                    } else {
                        self.partners.push(indexed);
                    }
                    self.cross.pass();
                    self.passed += 1;
                }
                Ok(_) => break,
                Err(e) => self.read_error = Some(e),
            }
        }
    }
}

impl RecordHook for Joiner {
    fn records(&self) -> &RecordSet {
        &self.reads
    }

    fn wants_words(&self) -> bool {
        self.saving
    }

    fn record(&self, record: u32, id: &str, set: &[u64], words: Option<&[u8]>) {
        let mut state = self.state.lock().expect("joiner poisoned");
        let s = &mut *state;
        s.partners_of(record);
        // The spilled sets of this record's indexed partners, by indexed
        // record (the runs hold them in the order the records come).
        let wanted = s.read_error.is_none() && !s.partners.is_empty();
        let spilled = match &mut s.sets.spill {
            Some(spill) if wanted => spill.take_for(record),
            _ => Ok(Vec::new()),
        };
        let spilled = spilled.unwrap_or_else(|e| {
            s.read_error = Some(e);
            Vec::new()
        });
        for &indexed in &s.partners {
            let theirs = s.sets.memory.get(&indexed).map(Vec::as_slice).or_else(|| {
                (spilled.binary_search_by_key(&indexed, |x| x.0).ok()).map(|at| &*spilled[at].1)
            });
            let Some(theirs) = theirs else {
                s.unverifiable += 1;
                continue;
            };
            let j = jaccard(theirs, set);
            s.checked += 1;
            if j >= self.threshold && s.spill_error.is_none() {
                if let Err(e) = s.verified.push((indexed, record, j)) {
                    s.spill_error = Some(e);
                }
            }
        }
        s.fill_to(record.into());
        if let (Some(writer), None) = (&mut s.writer, &s.error) {
            let words = words.map(<[u8]>::to_vec).unwrap_or_default();
            if let Err(e) = writer.push(words, Some(id.into())) {
                s.error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::jobs::dedup::spill::merge::Sorted;
    use crate::jobs::dedup::spill::verified::VerifiedPairs;

    fn entry(key: u64, record: u32) -> Entry {
        Entry {
            key,
            record,
            print: u64::from(record) * 7 + 1,
        }
    }

    fn own(entries: Vec<Entry>) -> Result<Merge, RunError> {
        let mut merge = Merge::new();
        merge.add(Sorted::new(entries))?;
        Ok(merge)
    }

    #[test]
    fn joined_bands_give_the_runs_own_pairs_and_the_pairs_across() {
        // One band. Indexed records 0, 1, 2 (keys 7, 7, 9), read from a
        // run on disk; this run's records 0, 1 (keys 7, 9), numbered 3 and
        // 4 when joined.
        let dir = tempfile::tempdir().unwrap();
        let index_dir = dir.path().join("IDX");
        std::fs::create_dir(&index_dir).unwrap();
        let mut writer = RunWriter::create(&index_dir.join(band_name(0)), true).unwrap();
        for e in [entry(7, 0), entry(7, 1), entry(9, 2)] {
            writer.push(e).unwrap();
        }
        let info = writer.finish().unwrap();
        let index = IndexBands {
            dir: index_dir.clone(),
            runs: vec![info],
            offset: 0,
        };
        let saved = dir.path().join("NEW");
        std::fs::create_dir(&saved).unwrap();
        let hook = JoinedBands::new(vec![index.clone()], 3, Some(saved.clone()), None);
        let open = |_: usize| own(vec![entry(9, 1), entry(7, 0)]);
        let (pairs, _) = hook.candidate_pairs(1, 1, None, &open).unwrap();
        assert!(pairs.is_empty(), "{pairs:?}");
        let out = hook.take().unwrap();
        assert_eq!(out.cross, CrossPairs::Memory(vec![(0, 0), (1, 0), (2, 1)]));
        // The saved band: the joined entries, the run's records shifted.
        let mut reader = RunReader::open(&saved.join(band_name(0)), Some(&out.bands[0])).unwrap();
        let mut joined = Vec::new();
        while let Some(e) = reader.next_entry().unwrap() {
            joined.push((e.key, e.record));
        }
        assert_eq!(joined, [(7, 0), (7, 1), (7, 3), (9, 2), (9, 4)]);
        // Without an index: the run's own pairs, numbered as the run's.
        let hook = JoinedBands::new(Vec::new(), 0, None, None);
        let open = |_: usize| own(vec![entry(7, 0), entry(7, 1)]);
        let (pairs, _) = hook.candidate_pairs(1, 1, None, &open).unwrap();
        assert_eq!(pairs, CandidatePairs::Memory(vec![(0, 1)]));
        assert!(hook.take().unwrap().bands.is_empty());
        // A damaged band run is the index's damage, naming the file.
        let path = index_dir.join(band_name(0));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        let hook = JoinedBands::new(vec![index], 3, None, None);
        let open = |_: usize| own(vec![entry(7, 0)]);
        assert!(hook.candidate_pairs(1, 1, None, &open).is_err());
        let damage = hook.take_damage().unwrap().to_string();
        assert!(
            damage.contains("is damaged") && damage.contains("band-000.bin"),
            "{damage}"
        );
    }

    #[test]
    fn the_joiner_verifies_pairs_across_read_from_disk_and_spills_the_verified_ones_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        // Indexed record i's set: {i, i + 1, ..., i + 9}; record r's the
        // set of indexed record r % 50 (a duplicate of it), paired with it
        // and with indexed record r % 50 + 20 (far from it).
        let set_of = |i: u32| (u64::from(i)..u64::from(i) + 10).collect::<Vec<u64>>();
        let records = 3000u32;
        let mut pairs = Vec::new();
        for r in 0..records {
            pairs.push((r % 50, r));
            pairs.push((r % 50 + 20, r));
        }
        pairs.sort_unstable_by_key(|&(a, b)| (b, a));
        let mut writer = across::CrossWriter::create(&temp, pairs.len() as u64).unwrap();
        for &p in &pairs {
            writer.push(p).unwrap();
        }
        let cross = writer.finish(&temp).unwrap();
        let sets = IndexedSets {
            memory: (0..70).map(|i| (i, set_of(i))).collect(),
            ..IndexedSets::default()
        };
        let mut reads = crate::jobs::dedup::spill::record_sets::SetWriter::default();
        cross
            .each(&temp, &mut |(_, r)| reads.insert(r.into()))
            .unwrap();
        let reads = reads.into_set();
        let count = cross.len();
        // A share of a few hundred verified pairs: they go to runs.
        let verified = PairsSpill::across(Arc::clone(&temp), Some(4 << 10));
        let reader = cross.clone().reader(&temp).unwrap();
        let joiner = Joiner::new(0.5, (reader, count, reads), (sets, verified), None);
        // Record 7 is not read (as if rejected): its pairs are unverifiable.
        for r in (0..records).filter(|&r| r != 7) {
            joiner.record(r, "id", &set_of(r % 50), None);
        }
        let mut state = joiner.take();
        assert_eq!(state.checked, count - 2);
        assert_eq!(state.unverifiable, 2);
        assert!(state.read_error.is_none() && state.spill_error.is_none());
        let verified = state.verified.finish().unwrap();
        assert!(
            matches!(verified, VerifiedPairs::Disk(_)),
            "spilled past its share"
        );
        let got: Vec<(u32, u32, f64)> = verified.to_vec(&temp).unwrap();
        let want: Vec<(u32, u32, f64)> = (0..records)
            .filter(|&r| r != 7)
            .map(|r| (r % 50, r, 1.0))
            .collect();
        assert_eq!(got, want);
        verified.remove(&temp).unwrap();
        cross.remove(&temp).unwrap();
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0, "nothing left");
    }
}
