//! Pass 1 of `dedup`: MinHash signatures and LSH banding.
//!
//! Step 1 (the processors) turns each record into its band keys; step 2
//! (the Integrator) appends every band key to its band's list, and when
//! the pass ends, sorts each list by key: records sharing a key in a band
//! are candidate pairs, each with the first record that had the key.
//! Appending costs a few nanoseconds and sorting (a radix sort, linear in
//! the records) a few more, where a hash table of buckets cost a cache
//! miss per key, which grew with the index. Nothing of a record's text is
//! kept: the Integrator holds, per record, 8 bytes per band, its place in
//! the input and one bit. Its state is checkpointed ([`BandIndexForm`]);
//! when the pass completes it writes what it found for a resumed run
//! ([`ResultFile`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use drainpipe_actors::{codec, FinishContext, Integrate, Job, RawRecord, RecordError};

use crate::input::{parse_text_record, TextFields, TextRecord};

use super::bitset::BitSet;
use super::minhash::{BandKeys, MinHasher};
use super::params::Banding;
use super::resume::ResultFile;
use super::shingle::with_scratch;
use super::spans::{Place, Spans};
use super::state::{BandIndexForm, CandidatesForm, STATE_VERSION};

/// The seed of the MinHash permutations (fixed: signatures, and so the
/// candidates, are the same on every run and every machine).
pub const PERMUTATION_SEED: u64 = 0xD1CE_5EED_0F0D_D5E5;

/// Bytes a hashbrown table with `capacity` entries of `entry` bytes
/// occupies (buckets are a power of two, at most 7/8 full, plus one control
/// byte each).
pub fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

/// What pass 1 found, handed to the next passes.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Candidate pairs `(earlier, later)` by record index, sorted by the
    /// later record, then the earlier one; no repeats.
    pub pairs: Vec<(u32, u32)>,
    /// The records pass 1 integrated (the others were rejected).
    pub integrated: BitSet,
    /// Records integrated.
    pub records: u64,
    /// Records rejected (known once the pass has finished).
    pub rejected: u64,
    /// Records without any shingle (no word at all).
    pub empty: u64,
    /// Peak bytes held by the Integrator (band lists, bits, pairs,
    /// places).
    pub integrator_bytes: u64,
    /// Where each integrated record is in the input, when every one came
    /// from an uncompressed file.
    pub spans: Spans,
}

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
        }
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

/// What step 1 of pass 1 produces for a record: its band keys and where
/// it is in the input.
pub type Signed = (BandKeys, Place);

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
        Ok((self.band_keys(&record.text), place))
    }

    fn integrator(&self) -> BandIndex {
        BandIndex {
            bands: vec![Vec::new(); self.banding.bands],
            threads: self.threads,
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
            + self.found.integrated.heap_bytes()
            + self.found.pairs.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

/// The candidate pairs of the `bands` (each sorted by key in place):
/// `(first record with the key, record)` for every later record with it,
/// sorted by the later record, then the earlier one, without repeats.
///
/// Bands are independent, and the processors are idle once the pass ends,
/// so up to `threads` threads (the calling one included) each take the
/// next band not yet taken until none is left. A thread the system refuses
/// to start only means fewer of them.
pub fn candidate_pairs(bands: &mut [Vec<u64>], threads: usize) -> Vec<(u32, u32)> {
    let bands: Vec<Mutex<&mut Vec<u64>>> = bands.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let take_bands = || {
        let (mut pairs, mut scratch) = (Vec::new(), Vec::new());
        while let Some(band) = bands.get(next.fetch_add(1, Ordering::Relaxed)) {
            // Each band is taken by one thread only: never contended.
            let mut band = band.lock().expect("a band's lock");
            add_pairs(&mut band, &mut scratch, &mut pairs);
        }
        pairs
    };
    let mut pairs = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(bands.len()))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, take_bands)
                    .map_err(|e| log::warn!("sorting LSH bands on fewer threads: {e}"))
                    .ok()
            })
            .collect();
        let mut pairs = take_bands();
        for helper in helpers {
            // A panic is the Integrator's, as if it had sorted alone.
            pairs.extend(
                helper
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        pairs
    });
    pairs.sort_unstable_by_key(|&(earlier, later)| (later, earlier));
    pairs.dedup();
    pairs
}

/// Sorts `band` by key (through `scratch`) and appends its candidate pairs,
/// unsorted, to `pairs`.
fn add_pairs(band: &mut Vec<u64>, scratch: &mut Vec<u64>, pairs: &mut Vec<(u32, u32)>) {
    sort_by_key(band, scratch);
    for group in band.chunk_by(|a, b| a >> 32 == b >> 32) {
        let first = group[0] as u32;
        pairs.extend(group[1..].iter().map(|&entry| (first, entry as u32)));
    }
}

/// Sorts `entries` by their high 32 bits (the key), keeping the order of
/// equal keys (records stay in input order): a least-significant-digit
/// radix sort through `scratch`, three passes of 11 bits, with the counts
/// of all three taken in one pass over the entries. Four passes of 8 bits,
/// each counted on its own, went over the entries eight times, not four
/// (pass 1's Finishing at 200k documents, sort included: 28-30 ms before,
/// 26-28 ms after).
fn sort_by_key(entries: &mut Vec<u64>, scratch: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const DIGITS: usize = 1 << BITS;
    const SHIFTS: [u32; 3] = [32, 32 + BITS, 32 + 2 * BITS];
    let digit = |entry: u64, shift: u32| ((entry >> shift) as usize) & (DIGITS - 1);
    let mut starts = vec![[0usize; DIGITS]; SHIFTS.len()];
    for &entry in entries.iter() {
        for (counts, &shift) in starts.iter_mut().zip(&SHIFTS) {
            counts[digit(entry, shift)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(entries.len(), 0);
    for (start, &shift) in starts.iter_mut().zip(&SHIFTS) {
        let mut sum = 0;
        for slot in start.iter_mut() {
            (*slot, sum) = (sum, sum + *slot);
        }
        for &entry in entries.iter() {
            let d = digit(entry, shift);
            scratch[start[d]] = entry;
            start[d] += 1;
        }
        std::mem::swap(entries, scratch);
    }
}

/// The record index as `u32`, the width the tables use.
pub fn record_id(index: u64) -> Result<u32, RecordError> {
    u32::try_from(index)
        .map_err(|_| "dedup handles at most 2^32 records per run (record index too large)".into())
}

impl Integrate for BandIndex {
    type Output = Signed;

    fn integrate(&mut self, index: u64, (keys, place): Signed) -> Result<(), RecordError> {
        let id = record_id(index)?;
        self.found.integrated.insert(index);
        self.found.records += 1;
        self.found.spans.record(index, place);
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
        self.found.integrator_bytes = self.heap_bytes() as u64;
        self.found.rejected = run.rejected;
        if !run.partial {
            self.found.pairs = candidate_pairs(&mut self.bands, self.threads);
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

#[cfg(test)]
mod tests {
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn sorted_bands_give_the_pairs_of_first_record_buckets() {
        let mut state = 1u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        // Keys from a small set, so that they repeat, spread over all four
        // bytes (every digit of the radix sort matters).
        let mut bands: Vec<Vec<u64>> = vec![Vec::new(); 5];
        let mut tables: Vec<HashMap<u32, u32>> = vec![HashMap::new(); 5];
        let mut expected = Vec::new();
        for id in 0..3000u32 {
            let mut partners = Vec::new();
            for (band, table) in bands.iter_mut().zip(&mut tables) {
                let key = (next() % 700).wrapping_mul(0x0101_0101);
                band.push(u64::from(key) << 32 | u64::from(id));
                // What a bucket table keeping each key's first record finds.
                match table.entry(key) {
                    Entry::Occupied(first) => partners.push(*first.get()),
                    Entry::Vacant(slot) => {
                        slot.insert(id);
                    }
                }
            }
            partners.sort_unstable();
            partners.dedup();
            expected.extend(partners.into_iter().map(|first| (first, id)));
        }
        assert!(expected.len() > 3000, "keys repeat: {}", expected.len());
        // Sorted by one thread or split among several, the same pairs.
        for threads in [1, 2, 3, 40] {
            let mut bands = bands.clone();
            assert_eq!(
                candidate_pairs(&mut bands, threads),
                expected,
                "{threads} threads"
            );
        }
    }
}
