//! Steps 1 and 2 of pass 1 ([`super`]): MinHash signatures and LSH
//! banding.
//!
//! Step 1 (the processors) turns each record into its band keys and its
//! place ([`Signed`]: what a remote worker would send); step 2 (the
//! Integrator, [`BandIndex`]) appends every band key to its band's list,
//! and when the pass ends, sorts each list by key: records sharing a key
//! in a band are candidate pairs ([`crate::jobs::dedup::lsh`]).
//! Appending costs a few nanoseconds and sorting (a radix sort, linear in
//! the records) a few more, where a hash table of buckets cost a cache
//! miss per key, which grew with the index. Nothing of a record's text is
//! kept: the Integrator holds, per record, 8 bytes per band, its place in
//! the input, its id's key (8 bytes, to find repeated ids,
//! [`crate::jobs::dedup::ids`]) and one bit. Under a memory budget, once
//! the lists pass their share, the band lists and id keys of the oldest
//! records are sorted and written to sorted runs a chunk at a time, and
//! merged with the latest ones when the pass ends
//! ([`crate::jobs::dedup::spill::bands`]). Its state is checkpointed ([`BandIndexForm`]);
//! when the pass completes it writes what it found ([`Candidates`]) for a
//! resumed run ([`ResultFile`]).

use std::sync::{Arc, Mutex};

use drainpipe_actors::{
    codec, Failure, FinishContext, Heartbeat, Integrate, Job, RawRecord, RecordError, RunHandle,
    TempSpace,
};

use crate::input::{parse_text_record, TextFields, TextRecord};
use crate::jobs::dedup::chain::{BandsHook, CandidatePairs, Candidates};
use crate::jobs::dedup::ids::{id_key, IdKeys};
use crate::jobs::dedup::lsh::candidate_pairs;
use crate::jobs::dedup::minhash::{BandKeys, MinHasher};
use crate::jobs::dedup::params::Banding;
use crate::jobs::dedup::records::record_id;
use crate::jobs::dedup::resume::ResultFile;
use crate::jobs::dedup::shingle::with_scratch;
use crate::jobs::dedup::spans::Place;
use crate::jobs::dedup::spill::bands::{Budget, Spiller};
use crate::jobs::dedup::spill::pairs::PairsMade;
use crate::jobs::dedup::spill::places::{bytes_on_disk, PlacesSpill};
use crate::jobs::dedup::spill::record_sets::SetWriter;
use crate::jobs::dedup::spill::repeats::RepeatedIds;
use crate::jobs::dedup::spill::runs::RunError;
use crate::jobs::dedup::state::{BandIndexForm, CandidatesForm, STATE_VERSION};

mod remote;

pub use remote::REMOTE_NAME;

/// The set of the records pass 1 integrated, as its runs are named.
pub const INTEGRATED: &str = "integrated";

/// The seed of the MinHash permutations (fixed: signatures, and so the
/// candidates, are the same on every run and every machine).
pub const PERMUTATION_SEED: u64 = 0xD1CE_5EED_0F0D_D5E5;

/// Step 1 and 2 of pass 1.
#[derive(Debug)]
pub struct SignatureJob {
    fields: TextFields,
    ngram: usize,
    banding: Banding,
    hasher: MinHasher,
    result_file: Option<ResultFile>,
    slot: Arc<Mutex<Option<Candidates>>>,
    /// Threads that sort the bands when the pass ends.
    threads: usize,
    /// Where the bands spill, under which budget (`None`: no limit), and
    /// the run to stop when a spill fails.
    spill: Option<(Arc<TempSpace>, Option<Budget>, RunHandle)>,
    /// Hook for a saved index (`--against`, `--save-index`).
    bands_hook: Option<Arc<dyn BandsHook>>,
}

impl SignatureJob {
    /// Pass 1 with `ngram`-word shingles and `banding`.
    pub fn new(fields: TextFields, ngram: usize, banding: Banding) -> Self {
        SignatureJob {
            fields,
            ngram,
            banding,
            hasher: MinHasher::new(banding.signature_len(), PERMUTATION_SEED),
            result_file: None,
            slot: Arc::default(),
            threads: 1,
            spill: None,
            bands_hook: None,
        }
    }

    /// Spills the band lists to `temp` when they would pass their share
    /// of `max_memory` ([`Budget`]; `None`: never, but a resumed run still
    /// merges the runs its checkpoint names); a spill that fails stops the
    /// run through `handle`.
    pub fn spilling_to(
        mut self,
        temp: Arc<TempSpace>,
        max_memory: Option<u64>,
        handle: RunHandle,
    ) -> Self {
        let budget = max_memory.map(|max_memory| Budget { max_memory });
        self.spill = Some((temp, budget, handle));
        self
    }

    /// Index hook: makes the candidate pairs through `hook` (a saved
    /// index's band runs merged with the run's, [`BandsHook`]). The run's
    /// bands then always end as sorted runs (the last chunk is spilled
    /// even when nothing else was), so that the index's runs join them in
    /// one merge, under the budget like any spill.
    pub fn with_bands_hook(mut self, hook: Option<Arc<dyn BandsHook>>) -> Self {
        self.bands_hook = hook;
        self
    }

    /// Sorts the bands on up to `threads` threads when the pass ends (the
    /// run's `--workers`: the processors are idle by then).
    pub fn sorting_on(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Writes what the pass found into `file` when it completes, so that a
    /// resumed run skips the pass (`None`: keeps nothing).
    pub fn keeping_result(mut self, file: Option<ResultFile>) -> Self {
        self.result_file = file;
        self
    }

    /// What the Integrator found, once the pass has finished.
    pub fn take_result(&self) -> Option<Candidates> {
        self.slot.lock().expect("result slot poisoned").take()
    }

    /// The set of the records integrated, empty: on disk past its share
    /// of the budget, when the pass may spill.
    pub fn integrated_writer(&self) -> SetWriter {
        let temp = self.spill.as_ref().map(|(temp, ..)| Arc::clone(temp));
        let share = self
            .spill
            .as_ref()
            .and_then(|(_, budget, _)| budget.map(Budget::record_set_bytes));
        SetWriter::new(INTEGRATED, temp, share)
    }

    /// The band keys of one text (what step 1 computes).
    pub fn band_keys(&self, text: &str) -> BandKeys {
        with_scratch(|s| {
            s.shingle(text, self.ngram);
            if s.shingles.is_empty() {
                return BandKeys::empty();
            }
            self.hasher.signature(&s.shingles, &mut s.signature);
            BandKeys::of_signature(&s.signature, self.banding)
        })
    }
}

/// What step 1 of pass 1 produces for a record: its band keys, where it
/// is in the input, and its id's key ([`id_key`]).
pub type Signed = (BandKeys, Place, u64);

impl Job for SignatureJob {
    type Parsed<'a> = (TextRecord<'a>, Place);
    type Output = Signed;
    type Integrator = BandIndex;

    fn name(&self) -> &str {
        "dedup"
    }

    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<(TextRecord<'a>, Place), RecordError> {
        let place = Place {
            span: raw.span,
            len: raw.bytes.len(),
            line: raw.location.line,
        };
        Ok((parse_text_record(raw, &self.fields)?, place))
    }

    fn process(&self, (record, place): (TextRecord<'_>, Place)) -> Result<Signed, RecordError> {
        Ok((self.band_keys(&record.text), place, id_key(&record.id)))
    }

    fn integrator(&self) -> BandIndex {
        let mut index = BandIndex {
            bands: vec![Vec::new(); self.banding.bands],
            threads: self.threads,
            bands_hook: self.bands_hook.clone(),
            found: Candidates {
                integrated: self.integrated_writer(),
                ..Candidates::default()
            },
            result_file: self.result_file.clone(),
            slot: Arc::clone(&self.slot),
            temp: self.spill.as_ref().map(|(temp, ..)| Arc::clone(temp)),
            handle: self.spill.as_ref().map(|(.., handle)| handle.clone()),
            spiller: None,
            places: self.spill.as_ref().map(|(temp, budget, _)| {
                PlacesSpill::new(Arc::clone(temp), budget.map(Budget::places_bytes))
            }),
            failed: None,
            pairs_made: PairsMade::default(),
            max_memory: self
                .spill
                .as_ref()
                .and_then(|(_, budget, _)| budget.map(|b| b.max_memory)),
        };
        // With an index hook the bands end merged with the index's runs
        // whatever the budget: the spiller keeps them (with no budget, it
        // never spills before the pass ends).
        if let Some((temp, budget, _)) = &self.spill {
            if budget.is_some() || self.bands_hook.is_some() {
                let bands = self.banding.bands;
                let spiller = Spiller::new(Arc::clone(temp), *budget, bands, self.threads);
                index.spiller = Some(spiller);
            }
        }
        index
    }
}

/// Pairs of records `(earlier, later)`: candidate pairs, repeated ids.
type Pairs = Vec<(u32, u32)>;

/// Step 2 of pass 1: per band, every record's key in record order, as
/// `key << 32 | record`.
#[derive(Debug)]
pub struct BandIndex {
    bands: Vec<Vec<u64>>,
    /// Threads that sort the bands when the pass ends.
    threads: usize,
    /// Index hook ([`SignatureJob::with_bands_hook`]).
    bands_hook: Option<Arc<dyn BandsHook>>,
    found: Candidates,
    result_file: Option<ResultFile>,
    slot: Arc<Mutex<Option<Candidates>>>,
    /// The run's temporary space, when the pass may spill.
    temp: Option<Arc<TempSpace>>,
    /// Under a memory budget, or with runs a checkpoint named: writes
    /// full chunks of the bands to sorted runs, and merges them.
    spiller: Option<Spiller>,
    /// Writes the records' places to disk past their share.
    places: Option<PlacesSpill>,
    /// Stopped by a spill that failed (how the run ends, once stopped).
    handle: Option<RunHandle>,
    /// The spill that failed: returned from `save` (no checkpoint) and
    /// `finish` (no output), not from `integrate`, where the batches behind
    /// it would be refused and the run would exit 70, not 74.
    failed: Option<(std::io::ErrorKind, String)>,
    /// What the candidate pairs took as the runs' merge made them.
    pairs_made: PairsMade,
    /// The run's budget (`None`: none): past pass 2's share of it the
    /// candidate pairs are handed on disk ([`CandidatePairs::handed`]).
    max_memory: Option<u64>,
}

impl BandIndex {
    fn heap_bytes(&self) -> usize {
        let bands: usize = self.bands.iter().map(|b| b.capacity() * 8).sum();
        // The sort's scratch space, as large as the largest band (counted
        // once: each sorting thread has its own for a moment, but the
        // figure is the state's, and must not depend on `--workers`).
        let scratch = self.bands.iter().map(Vec::len).max().unwrap_or(0) * 8;
        bands
            + scratch
            + self.found.spans.heap_bytes()
            + self.found.ids.heap_bytes()
            + self.found.integrated.held_bytes() as usize
            // The records' fingerprints while pairs are made, 8 bytes each
            // (`buckets::Fingerprints`).
            + self.bands.first().map_or(0, Vec::len) * 8
            + self.found.pairs.heap_bytes()
            + self.spiller.as_ref().map_or(0, Spiller::heap_bytes)
    }

    /// Under a budget: makes room for one more record in the lists.
    fn make_room(&mut self) {
        if let Some(spiller) = &mut self.spiller {
            spiller.make_room(&mut self.bands, &mut self.found.ids);
        }
    }

    /// Notes the `place` of the record at `index`: past their share, the
    /// places go to disk.
    fn note_place(&mut self, index: u64, place: Place) {
        self.found.spans.record(index, place);
        if let Some(places) = &self.places {
            if let Err(e) = places.after_record(&mut self.found.spans) {
                self.fail(e);
            }
        }
    }

    /// Spills the chunk once it is full, `next` being the record after
    /// the last one integrated.
    /// A spill that fails is kept, and the run asked to stop.
    fn spill_if_full(&mut self, next: u64) {
        let Some(spiller) = &mut self.spiller else {
            return;
        };
        if !spiller.is_full(next) {
            return;
        }
        if let Err(e) = spiller.spill(&mut self.bands, &mut self.found.ids, next) {
            self.fail(e);
        }
    }

    /// A write to disk failed: kept, and the run asked to stop.
    fn fail(&mut self, e: RunError) {
        let e = e.into_io();
        log::error!("dedup pass 1: {e}; stopping the run");
        self.failed = Some((e.kind(), e.to_string()));
        if let Some(handle) = &self.handle {
            // The run's report gives this cause (exit 74), not a
            // signal's.
            handle.request_stop_failed(Failure::Io(format!("dedup pass 1: {e}")));
        }
    }

    /// The spill that failed, as the error `save` and `finish` return.
    fn failure(&self) -> Option<RecordError> {
        let (kind, message) = self.failed.as_ref()?;
        Some(std::io::Error::new(*kind, message.clone()).into())
    }

    /// The candidate pairs and repeated id keys of the whole pass: sorted
    /// in memory, or, once anything was spilled (always, with an index
    /// hook), the last chunk spilled too and every band's runs merged,
    /// the merges beating `heartbeat` (the finish's) as they go.
    fn pairs_and_repeats(
        &mut self,
        heartbeat: &Heartbeat,
    ) -> Result<(CandidatePairs, RepeatedIds), RecordError> {
        // Past the last record integrated (where a next chunk would start).
        let next = self.found.integrated.end();
        if self.bands_hook.is_some() && self.spiller.is_none() {
            return Err("a saved index is joined, and this run has no temporary space".into());
        }
        let hook = self.bands_hook.clone();
        match &mut self.spiller {
            Some(spiller) if spiller.has_spilled() || hook.is_some() => {
                // The latest records are kept by the spiller, their
                // lists here emptied.
                spiller
                    .keep_last(&mut self.bands, &mut self.found.ids, next)
                    .map_err(RunError::into_io)?;
                heartbeat.beat();
                let runs = spiller
                    .runs(self.threads, heartbeat)
                    .map_err(RunError::into_io)?;
                crate::jobs::dedup::crash::here("dedup::pass1_merging");
                let (threads, started) = (self.threads, std::time::Instant::now());
                let mut pairs_made = PairsMade::default();
                let merged = std::thread::scope(|scope| {
                    let repeats = std::thread::Builder::new()
                        .spawn_scoped(scope, || runs.repeated_ids())
                        .map_err(|e| log::warn!("finding repeated ids after the bands: {e}"));
                    let pairs = match &hook {
                        Some(hook) => {
                            let spill = runs.pair_spill(threads);
                            let open = |b: usize| runs.band(b);
                            let (pairs, made) =
                                hook.candidate_pairs(runs.bands(), threads, spill, &open)?;
                            pairs_made = made;
                            pairs
                        }
                        None => {
                            let (pairs, made) = runs.pairs(threads)?;
                            pairs_made = made;
                            pairs
                        }
                    };
                    let repeated = match repeats {
                        Ok(handle) => handle
                            .join()
                            .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
                        Err(()) => runs.repeated_ids()?,
                    };
                    Ok((pairs, repeated))
                });
                log::info!(
                    "dedup pass 1: the runs of {} spills merged{} in {:.2} s",
                    runs.spills(),
                    if runs.keeps_last() {
                        " with the last chunk, held in memory,"
                    } else {
                        ""
                    },
                    started.elapsed().as_secs_f64()
                );
                self.pairs_made = pairs_made;
                merged.map_err(|e: RunError| e.into_io().into())
            }
            _ => {
                let (pairs, repeated) = self.sorted_in_memory();
                let pairs = match &self.temp {
                    Some(temp) => {
                        let before = temp.bytes_spilled();
                        let pairs = CandidatePairs::handed(pairs, temp, self.max_memory, heartbeat)
                            .map_err(RunError::into_io)?;
                        self.pairs_made.bytes_spilled = temp.bytes_spilled() - before;
                        pairs
                    }
                    None => CandidatePairs::Memory(pairs),
                };
                // Fewer than the records, whose lists fit with no spill:
                // within their share too.
                Ok((pairs, RepeatedIds::Memory(repeated)))
            }
        }
    }

    /// [`BandIndex::pairs_and_repeats`] when nothing was spilled.
    fn sorted_in_memory(&mut self) -> (Pairs, Pairs) {
        let ids = &self.found.ids;
        std::thread::scope(|scope| {
            // Beside the sort of the bands: a thread refused sorts after.
            let repeats = std::thread::Builder::new()
                .spawn_scoped(scope, || ids.repeats())
                .map_err(|e| log::warn!("finding repeated ids after the bands: {e}"));
            let pairs = candidate_pairs(&mut self.bands, self.threads);
            let repeated = match repeats {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(()) => ids.repeats(),
            };
            (pairs, repeated)
        })
    }
}

impl Integrate for BandIndex {
    type Output = Signed;

    fn integrate(&mut self, index: u64, (keys, place, key): Signed) -> Result<(), RecordError> {
        if self.failed.is_some() {
            // A spill failed: the run is stopping and will end failed, with
            // no output; nothing more is held.
            return Ok(());
        }
        let id = record_id(index)?;
        if let Err(e) = self.found.integrated.insert(index) {
            self.fail(e);
        }
        self.found.records += 1;
        self.make_room();
        self.note_place(index, place);
        self.found.ids.record(index, key);
        if keys.is_empty() {
            self.found.empty += 1;
        } else {
            for (band, &key) in self.bands.iter_mut().zip(keys.as_slice()) {
                band.push(u64::from(key) << 32 | u64::from(id));
            }
        }
        self.spill_if_full(index + 1);
        Ok(())
    }

    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        if let Some(e) = self.failure() {
            return Some(Err(e));
        }
        // A checkpoint names complete runs only: the chunk in flight is
        // waited for.
        let spilled = match self.spiller.as_ref().map(Spiller::spilled).transpose() {
            Ok(spilled) => spilled,
            Err(e) => return Some(Err(e.into_io().into())),
        };
        if let Some(Err(e)) = self.places.as_ref().map(|p| p.sync(&self.found.spans)) {
            return Some(Err(e.into_io().into()));
        }
        if let Err(e) = self.found.integrated.sync() {
            return Some(Err(e.into_io().into()));
        }
        let form = BandIndexForm::of(&self.bands, &self.found, spilled.as_ref());
        Some(codec::encode(&form, STATE_VERSION).map_err(Into::into))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), RecordError> {
        let form: BandIndexForm = codec::decode(state, STATE_VERSION)?;
        if form.bands() != self.bands.len() {
            return Err(format!(
                "the checkpoint has {} LSH bands, this run {}",
                form.bands(),
                self.bands.len()
            )
            .into());
        }
        let integrated = std::mem::take(&mut self.found.integrated);
        let (bands, found, spilled) = form.into_parts(integrated)?;
        (self.bands, self.found) = (bands, found);
        if spilled.spills() > 0 && self.spiller.is_none() {
            // Resumed without a budget: the named runs are merged still.
            let temp = self
                .temp
                .clone()
                .ok_or("the checkpoint names spilled runs, and this run has no temporary space")?;
            let bands = self.bands.len();
            self.spiller = Some(Spiller::new(temp, None, bands, self.threads));
        }
        if let Some(spiller) = &mut self.spiller {
            spiller.restore(spilled)?;
        }
        match &self.places {
            Some(places) => places.restore(&self.found.spans)?,
            None if self.found.spans.on_disk() => {
                return Err(
                    "the checkpoint names places on disk, and this run has no temporary space"
                        .into(),
                )
            }
            None => {}
        }
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        // The pass's rejects first, before the pass result (a resumed run
        // loads that and finds them in place); the run commits them as
        // `rejects.jsonl` with its outputs.
        run.commit_rejects()?;
        self.found.integrator_bytes = self.heap_bytes() as u64;
        self.found.rejected = run.rejected;
        if !run.partial {
            if let Some(places) = &self.places {
                places
                    .finish(&mut self.found.spans)
                    .map_err(RunError::into_io)?;
            }
            // Each step below says it moved on, and the merge as it goes:
            // the run's deadline for the finish counts from the last sign.
            run.progress();
            let (pairs, repeated) = self.pairs_and_repeats(run.heartbeat())?;
            run.progress();
            self.found.pairs = pairs;
            self.found.repeated_ids = repeated;
            // Only the repeats are needed from here on.
            self.found.ids = IdKeys::default();
        }
        if let Some(spiller) = &mut self.spiller {
            // A stopped pass: its last chunk is written before it is told.
            spiller.settle().map_err(RunError::into_io)?;
        }
        let spiller = self.spiller.as_ref();
        let spills = spiller.map_or(0, Spiller::spills);
        let spilled_bytes =
            spiller.map_or(0, Spiller::bytes_written) + self.pairs_made.bytes_spilled;
        if !run.partial {
            self.found.integrated.sync().map_err(RunError::into_io)?;
            if let Some(file) = &self.result_file {
                file.write(run.output, &CandidatesForm::of(&self.found))?;
                run.progress();
            }
            // The result is safe: the runs are no longer needed (a stopped
            // pass keeps them for its checkpoint).
            if let Some(spiller) = &mut self.spiller {
                spiller.remove_all()?;
            }
        }
        let mut summary = serde_json::json!({
            "pass": "signatures",
            "partial": run.partial,
            "records": self.found.records,
            "candidate_pairs": self.found.pairs.len(),
            "candidate_pairs_on_disk": matches!(self.found.pairs, CandidatePairs::Disk(_)),
            "integrator_bytes": self.found.integrator_bytes,
            "spill_runs": spills,
            "bytes_spilled": spilled_bytes,
            "places_spilled_bytes": bytes_on_disk(&self.found.spans),
            "integrated_records_spilled_bytes": self.found.integrated.state().bytes_on_disk(),
            "repeated_ids_spilled_bytes": self.found.repeated_ids.bytes_on_disk(),
        });
        let made = self.pairs_made;
        if let (true, Some(summary)) = (made.made > 0, summary.as_object_mut()) {
            // The pairs were made under their share of the budget.
            summary.insert("candidate_pairs_made".into(), made.made.into());
            summary.insert("candidate_pairs_peak_bytes".into(), made.peak_bytes.into());
            summary.insert(
                "candidate_pairs_bytes_spilled".into(),
                made.bytes_spilled.into(),
            );
        }
        // The bands are no longer needed: free them before the next pass.
        self.bands = Vec::new();
        let found = std::mem::take(&mut self.found);
        *self.slot.lock().expect("result slot poisoned") = Some(found);
        Ok(summary)
    }
}
