//! Pass 1 of `dedup`: MinHash signatures and LSH banding.
//!
//! Step 1 (the processors) turns each record into its band keys; step 2
//! (the Integrator) puts every band key into its band's bucket table and
//! emits a candidate pair whenever a key is already there. Nothing of a
//! record's text is kept: the Integrator holds, per record, one table
//! entry per band (or none when the key was already present) and one bit.
//! Its state is checkpointed ([`BandIndexForm`]); when the pass completes
//! it writes what it found for a resumed run ([`ResultFile`]).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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

/// A `Hasher` for band keys, which are already well-mixed 32-bit hashes:
/// no hashing, only a multiply that spreads the 32 bits over the 64 the
/// table uses (hashbrown picks the bucket from the low bits and a tag from
/// the top seven).
#[derive(Debug, Default, Clone, Copy)]
pub struct BandKeyHasher(u64);

impl Hasher for BandKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One band's bucket table: band key -> first record with it.
pub type BandTable = HashMap<u32, u32, BuildHasherDefault<BandKeyHasher>>;

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
    /// Peak bytes held by the Integrator (bucket tables, bits, pairs,
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
        }
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
            tables: (0..self.banding.bands)
                .map(|_| BandTable::default())
                .collect(),
            found: Candidates::default(),
            partners: Vec::new(),
            result_file: self.result_file.clone(),
            slot: Arc::clone(&self.slot),
        }
    }
}

/// Step 2 of pass 1: one bucket table per band, from band key to the
/// first record that had it.
#[derive(Debug)]
pub struct BandIndex {
    tables: Vec<BandTable>,
    found: Candidates,
    partners: Vec<u32>,
    result_file: Option<ResultFile>,
    slot: Arc<Mutex<Option<Candidates>>>,
}

impl BandIndex {
    fn heap_bytes(&self) -> usize {
        let tables: usize = self
            .tables
            .iter()
            .map(|t| table_bytes(t.capacity(), std::mem::size_of::<(u32, u32)>()))
            .sum();
        tables
            + self.found.spans.heap_bytes()
            + self.found.integrated.heap_bytes()
            + self.found.pairs.capacity() * std::mem::size_of::<(u32, u32)>()
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
        self.found.spans.record(index, place);
        self.found.records += 1;
        if keys.is_empty() {
            self.found.empty += 1;
            return Ok(());
        }
        self.partners.clear();
        for (table, &key) in self.tables.iter_mut().zip(keys.as_slice()) {
            match table.entry(key) {
                Entry::Occupied(first) => self.partners.push(*first.get()),
                Entry::Vacant(slot) => {
                    slot.insert(id);
                }
            }
        }
        self.partners.sort_unstable();
        self.partners.dedup();
        self.found
            .pairs
            .extend(self.partners.iter().map(|&first| (first, id)));
        Ok(())
    }

    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        let form = BandIndexForm::of(&self.tables, &self.found);
        Some(codec::encode(&form, STATE_VERSION).map_err(Into::into))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), RecordError> {
        let form: BandIndexForm = codec::decode(state, STATE_VERSION)?;
        if form.bands() != self.tables.len() {
            return Err(format!(
                "the checkpoint has {} LSH bands, this run {}",
                form.bands(),
                self.tables.len()
            )
            .into());
        }
        (self.tables, self.found) = form.into_parts();
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        self.found.integrator_bytes = self.heap_bytes() as u64;
        self.found.rejected = run.rejected;
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
        // The tables are no longer needed: free them before the next pass.
        self.tables = Vec::new();
        let found = std::mem::take(&mut self.found);
        *self.slot.lock().expect("result slot poisoned") = Some(found);
        Ok(summary)
    }
}
