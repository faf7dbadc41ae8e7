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
//! [`crate::jobs::dedup::ids`]) and one bit. Its state is checkpointed ([`BandIndexForm`]);
//! when the pass completes it writes what it found ([`Candidates`]) for a
//! resumed run ([`ResultFile`]).

use std::sync::{Arc, Mutex};

use drainpipe_actors::{codec, FinishContext, Integrate, Job, RawRecord, RecordError};

use crate::input::{parse_text_record, TextFields, TextRecord};
use crate::jobs::dedup::chain::{BandsHook, Candidates};
use crate::jobs::dedup::ids::{id_key, IdKeys};
use crate::jobs::dedup::lsh::candidate_pairs;
use crate::jobs::dedup::minhash::{BandKeys, MinHasher};
use crate::jobs::dedup::params::Banding;
use crate::jobs::dedup::records::record_id;
use crate::jobs::dedup::resume::ResultFile;
use crate::jobs::dedup::shingle::with_scratch;
use crate::jobs::dedup::spans::Place;
use crate::jobs::dedup::state::{BandIndexForm, CandidatesForm, STATE_VERSION};

mod remote;

pub use remote::REMOTE_NAME;

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
            bands_hook: None,
        }
    }

    /// Index hook: makes the candidate pairs through `hook` (a saved
    /// index's bands joined to the run's, [`BandsHook`]).
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
        BandIndex {
            bands: vec![Vec::new(); self.banding.bands],
            threads: self.threads,
            bands_hook: self.bands_hook.clone(),
            found: Candidates::default(),
            result_file: self.result_file.clone(),
            slot: Arc::clone(&self.slot),
        }
    }
}

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
            + self.found.integrated.heap_bytes()
            // The records' fingerprints while pairs are made, 8 bytes each
            // (`buckets::Fingerprints`).
            + self.bands.first().map_or(0, Vec::len) * 8
            + self.found.pairs.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

impl Integrate for BandIndex {
    type Output = Signed;

    fn integrate(&mut self, index: u64, (keys, place, key): Signed) -> Result<(), RecordError> {
        let id = record_id(index)?;
        self.found.integrated.insert(index);
        self.found.records += 1;
        self.found.spans.record(index, place);
        self.found.ids.record(index, key);
        if keys.is_empty() {
            self.found.empty += 1;
            return Ok(());
        }
        for (band, &key) in self.bands.iter_mut().zip(keys.as_slice()) {
            band.push(u64::from(key) << 32 | u64::from(id));
        }
        Ok(())
    }

    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        let form = BandIndexForm::of(&self.bands, &self.found);
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
        (self.bands, self.found) = form.into_parts();
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        // The pass's rejects first, before the pass result (a resumed run
        // loads that and finds them in place); the run commits them as
        // `rejects.jsonl` with its outputs.
        run.commit_rejects()?;
        self.found.integrator_bytes = self.heap_bytes() as u64;
        self.found.rejected = run.rejected;
        if !run.partial {
            let ids = &self.found.ids;
            let (pairs, repeated) = std::thread::scope(|scope| {
                // Beside the sort of the bands: a thread refused sorts after.
                let repeats = std::thread::Builder::new()
                    .spawn_scoped(scope, || ids.repeats())
                    .map_err(|e| log::warn!("finding repeated ids after the bands: {e}"));
                // Index hook: a saved index's bands join the run's.
                let pairs = match &self.bands_hook {
                    Some(hook) => hook.candidate_pairs(&mut self.bands, self.threads),
                    None => Ok(candidate_pairs(&mut self.bands, self.threads)),
                };
                let repeated = match repeats {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    Err(()) => ids.repeats(),
                };
                (pairs, repeated)
            });
            self.found.pairs = pairs?;
            self.found.repeated_ids = repeated;
            // Only the repeats are needed from here on.
            self.found.ids = IdKeys::default();
        }
        if !run.partial {
            if let Some(file) = &self.result_file {
                file.write(run.output, &CandidatesForm::of(&self.found))?;
            }
        }
        let summary = serde_json::json!({
            "pass": "signatures",
            "partial": run.partial,
            "records": self.found.records,
            "candidate_pairs": self.found.pairs.len(),
            "integrator_bytes": self.found.integrator_bytes,
        });
        // The bands are no longer needed: free them before the next pass.
        self.bands = Vec::new();
        let found = std::mem::take(&mut self.found);
        *self.slot.lock().expect("result slot poisoned") = Some(found);
        Ok(summary)
    }
}
