//! Steps 1 and 2 of pass 2 ([`super`]): exact verification of the
//! candidate pairs.
//!
//! The processors compute the shingle set (sorted 64-bit shingle hashes)
//! of the records that are in some candidate pair ([`Member`]: what a
//! remote worker would send), and a `None` for every other record, without
//! even parsing it. The Integrator ([`Verifier`]) sees the records in input order and
//! computes the exact Jaccard similarity of each candidate pair when its
//! later record arrives; it holds a record's set only until its last
//! partner has arrived, so its memory is the sets of the candidates still
//! waiting for a partner, never the corpus. Its state is checkpointed
//! ([`VerifierForm`]); when the pass completes it writes what it verified
//! ([`Verified`]) for a resumed run ([`ResultFile`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use drainpipe_actors::{codec, FinishContext, Integrate, Job, RawRecord, RecordError};

use crate::input::{parse_text_record, TextFields, TextRecord};
use crate::jobs::dedup::bitset::BitSet;
use crate::jobs::dedup::chain::{RecordHook, Verified};
use crate::jobs::dedup::fates::Fates;
use crate::jobs::dedup::normalize::normalized_words;
use crate::jobs::dedup::records::{record_id, rejected_again};
use crate::jobs::dedup::resume::ResultFile;
use crate::jobs::dedup::shingle::shingle_set;
use crate::jobs::dedup::similarity::jaccard;
use crate::jobs::dedup::state::{VerifiedForm, VerifierForm, STATE_VERSION};

mod remote;

pub use remote::{VerifyStep, REMOTE_NAME};

/// Bytes a hashbrown table with `capacity` entries of `entry` bytes
/// occupies (buckets are a power of two, at most 7/8 full, plus one control
/// byte each).
fn table_bytes(capacity: usize, entry: usize) -> usize {
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

/// A candidate record's id (JSON value text), shingle set and, for an
/// index hook that wants them ([`RecordHook::wants_words`]), its
/// normalized words.
pub type Member = (Box<str>, Vec<u64>, Option<Vec<u8>>);

/// Steps 1 and 2 of pass 2.
#[derive(Debug)]
pub struct VerifyJob {
    fields: TextFields,
    ngram: usize,
    threshold: f64,
    integrated: Arc<BitSet>,
    candidates: Arc<BitSet>,
    pairs: Arc<Vec<(u32, u32)>>,
    /// When the source reads the candidate records only: the record index
    /// of each record it yields, in order.
    reread: Option<Arc<Vec<u32>>>,
    result_file: Option<ResultFile>,
    fates: Option<Arc<Fates>>,
    /// Hook for a saved index (`--against`, `--save-index`).
    record_hook: Option<Arc<dyn RecordHook>>,
    /// Send each record's normalized words (for the hook).
    words: bool,
    /// When every record is read for its words: those whose shingle set
    /// is needed (the others send an empty one).
    shingled: Option<Arc<BitSet>>,
    slot: Arc<Mutex<Option<Verified>>>,
}

/// The index in the whole input of the `index`-th record the source
/// yielded: itself, unless the source reads some records only.
fn original(reread: Option<&Arc<Vec<u32>>>, index: u64) -> Result<u64, RecordError> {
    match reread {
        None => Ok(index),
        Some(records) => usize::try_from(index)
            .ok()
            .and_then(|i| records.get(i))
            .map(|&r| u64::from(r))
            .ok_or_else(|| format!("record {index} is past the {} to read", records.len()).into()),
    }
}

impl VerifyJob {
    /// Pass 2 over the candidate `pairs` of pass 1 (sorted by the later
    /// record), for the records pass 1 `integrated`.
    pub fn new(
        fields: TextFields,
        ngram: usize,
        threshold: f64,
        integrated: Arc<BitSet>,
        pairs: Arc<Vec<(u32, u32)>>,
    ) -> Self {
        let mut candidates = BitSet::new();
        for &(a, b) in pairs.iter() {
            candidates.insert(a.into());
            candidates.insert(b.into());
        }
        VerifyJob {
            fields,
            ngram,
            threshold,
            integrated,
            candidates: Arc::new(candidates),
            pairs,
            reread: None,
            result_file: None,
            fates: None,
            record_hook: None,
            words: false,
            shingled: None,
            slot: Arc::default(),
        }
    }

    /// Index hook: reads the records `hook` needs the shingle sets of
    /// besides the candidates (and, when it wants every record's words,
    /// every record, shingling only those), and tells it every record read
    /// ([`RecordHook`]).
    pub fn with_record_hook(mut self, hook: Option<Arc<dyn RecordHook>>) -> Self {
        if let Some(hook) = &hook {
            self.words = hook.wants_words();
            let mut shingled = hook.records();
            for r in self.candidates.iter() {
                shingled.insert(r);
            }
            let shingled = Arc::new(shingled);
            if self.words {
                self.candidates = Arc::clone(&self.integrated);
                self.shingled = Some(shingled);
            } else {
                self.candidates = shingled;
            }
        }
        self.record_hook = hook;
        self
    }

    /// The records of every candidate pair, in input order: what a source
    /// that reads the candidates only must yield ([`VerifyJob::reading_only`]).
    pub fn candidate_records(&self) -> Vec<u32> {
        self.candidates.iter().map(|r| r as u32).collect()
    }

    /// For a source that yields the [`VerifyJob::candidate_records`] only,
    /// in that order (the pass then reads a fraction of the input).
    pub fn reading_only(mut self, records: Arc<Vec<u32>>) -> Self {
        self.reread = Some(records);
        self
    }

    /// Writes what the pass verified into `file` when it completes, so
    /// that a resumed run skips the pass (`None`: keeps nothing).
    pub fn keeping_result(mut self, file: Option<ResultFile>) -> Self {
        self.result_file = file;
        self
    }

    /// Tells `fates`, after each candidate record, how far the pass has
    /// checked and what it verified (for the copy of `kept.jsonl` that
    /// runs beside it, [`crate::jobs::dedup::passes::kept::follow`]).
    pub fn telling(mut self, fates: Arc<Fates>) -> Self {
        self.fates = Some(fates);
        self
    }

    /// What the Integrator found, once the pass has finished.
    pub fn take_result(&self) -> Option<Verified> {
        self.slot.lock().expect("result slot poisoned").take()
    }
}

impl Job for VerifyJob {
    /// The record, when it is a candidate, and whether its shingle set is
    /// needed.
    type Parsed<'a> = Option<(TextRecord<'a>, bool)>;
    type Output = Option<Member>;
    type Integrator = Verifier;

    fn name(&self) -> &str {
        "dedup"
    }

    fn parse<'a>(
        &self,
        raw: &RawRecord<'a>,
    ) -> Result<Option<(TextRecord<'a>, bool)>, RecordError> {
        let index = original(self.reread.as_ref(), raw.index)?;
        if !self.integrated.contains(index) {
            return Err(rejected_again(raw, &self.fields));
        }
        if !self.candidates.contains(index) {
            // Not parsed at all: pass 1 parsed it without error.
            return Ok(None);
        }
        let shingle = self.shingled.as_ref().is_none_or(|s| s.contains(index));
        parse_text_record(raw, &self.fields).map(|record| Some((record, shingle)))
    }

    fn process(
        &self,
        record: Option<(TextRecord<'_>, bool)>,
    ) -> Result<Option<Member>, RecordError> {
        let Some((record, shingle)) = record else {
            return Ok(None);
        };
        let set = if shingle {
            shingle_set(&record.text, self.ngram)
        } else {
            Vec::new()
        };
        let words = self.words.then(|| normalized_words(&record.text));
        Ok(Some((record.id.into_owned().into_boxed_str(), set, words)))
    }

    fn integrator(&self) -> Verifier {
        let mut last_partner: HashMap<u32, u32> = HashMap::new();
        for &(a, b) in self.pairs.iter() {
            let last = last_partner.entry(a).or_insert(b);
            *last = (*last).max(b);
        }
        Verifier {
            threshold: self.threshold,
            pairs: Arc::clone(&self.pairs),
            reread: self.reread.clone(),
            cursor: 0,
            last_partner,
            held: HashMap::new(),
            held_bytes: 0,
            peak_held_bytes: 0,
            found: Verified::default(),
            result_file: self.result_file.clone(),
            fates: self.fates.clone(),
            record_hook: self.record_hook.clone(),
            told: 0,
            slot: Arc::clone(&self.slot),
        }
    }
}

/// Step 2 of pass 2: exact similarities of the candidate pairs.
#[derive(Debug)]
pub struct Verifier {
    threshold: f64,
    pairs: Arc<Vec<(u32, u32)>>,
    reread: Option<Arc<Vec<u32>>>,
    /// The first pair whose later record has not arrived yet.
    cursor: usize,
    /// For each record that is the earlier one of some pair: the latest
    /// partner, after which its set is dropped.
    last_partner: HashMap<u32, u32>,
    held: HashMap<u32, Vec<u64>>,
    held_bytes: u64,
    peak_held_bytes: u64,
    found: Verified,
    result_file: Option<ResultFile>,
    fates: Option<Arc<Fates>>,
    /// Index hook ([`VerifyJob::with_record_hook`]).
    record_hook: Option<Arc<dyn RecordHook>>,
    /// How many of `found.pairs` `fates` has been told.
    told: usize,
    slot: Arc<Mutex<Option<Verified>>>,
}

impl Integrate for Verifier {
    type Output = Option<Member>;

    fn integrate(&mut self, index: u64, output: Option<Member>) -> Result<(), RecordError> {
        let Some((id, set, words)) = output else {
            return Ok(());
        };
        let x = record_id(original(self.reread.as_ref(), index)?)?;
        if let Some(hook) = &self.record_hook {
            hook.record(x, &id, &set, words.as_deref());
        }
        self.found.ids.insert(x, id);
        let pairs = &self.pairs;
        while self.cursor < pairs.len() && pairs[self.cursor].1 < x {
            self.found.unverifiable += 1;
            self.cursor += 1;
        }
        while self.cursor < pairs.len() && pairs[self.cursor].1 == x {
            let y = pairs[self.cursor].0;
            self.cursor += 1;
            let Some(earlier) = self.held.get(&y) else {
                self.found.unverifiable += 1;
                continue;
            };
            let j = jaccard(earlier, &set);
            self.found.checked += 1;
            if j >= self.threshold {
                self.found.pairs.push((y, x, j));
            }
            if self.last_partner.get(&y) == Some(&x) {
                if let Some(gone) = self.held.remove(&y) {
                    self.held_bytes -= (gone.capacity() * 8) as u64;
                }
            }
        }
        if self.last_partner.get(&x).is_some_and(|&last| last > x) {
            self.held_bytes += (set.capacity() * 8) as u64;
            self.peak_held_bytes = self.peak_held_bytes.max(self.held_bytes);
            self.held.insert(x, set);
        }
        if let Some(fates) = &self.fates {
            // Pairs are sorted by their later record: every pair before
            // the cursor is checked.
            let below = pairs.get(self.cursor).map_or(u64::MAX, |p| p.1.into());
            fates.checked(below, &self.found.pairs[self.told..]);
            self.told = self.found.pairs.len();
        }
        Ok(())
    }

    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        let form = VerifierForm::of(self.cursor, &self.held, self.peak_held_bytes, &self.found);
        Some(codec::encode(&form, STATE_VERSION).map_err(Into::into))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), RecordError> {
        let mut form: VerifierForm<Box<str>, Vec<u64>> = codec::decode(state, STATE_VERSION)?;
        let cursor = usize::try_from(form.cursor).unwrap_or(usize::MAX);
        if cursor > self.pairs.len() {
            return Err(format!(
                "the checkpoint is past candidate pair {cursor}, this run has {}",
                self.pairs.len()
            )
            .into());
        }
        self.cursor = cursor;
        self.held = form.take_held();
        self.held_bytes = self.held.values().map(|s| (s.capacity() * 8) as u64).sum();
        self.peak_held_bytes = form.peak_held_bytes.max(self.held_bytes);
        self.found = form.found.into_verified();
        self.told = 0;
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        // The pass's rejects first, before the pass result (a resumed run
        // loads that and finds them in place); the run commits them as
        // `rejects.jsonl` with its outputs.
        run.commit_rejects()?;
        self.found.unverifiable += (self.pairs.len() - self.cursor) as u64;
        let ids: usize = self.found.ids.values().map(|id| id.len()).sum();
        let tables = table_bytes(self.last_partner.capacity(), 8)
            + table_bytes(self.held.capacity(), 4 + std::mem::size_of::<Vec<u64>>())
            + table_bytes(
                self.found.ids.capacity(),
                4 + std::mem::size_of::<Box<str>>(),
            )
            + ids
            + self.pairs.len() * std::mem::size_of::<(u32, u32)>()
            + self.found.pairs.capacity() * std::mem::size_of::<(u32, u32, f64)>();
        self.found.peak_bytes = self.peak_held_bytes + tables as u64;
        self.held = HashMap::new();
        self.found.rejected = run.rejected;
        if !run.partial {
            if let Some(file) = &self.result_file {
                file.write(run.output, &VerifiedForm::of(&self.found))?;
            }
        }
        let summary = serde_json::json!({
            "pass": "verify",
            "partial": run.partial,
            "checked": self.found.checked,
            "verified": self.found.pairs.len(),
        });
        let found = std::mem::take(&mut self.found);
        *self.slot.lock().expect("result slot poisoned") = Some(found);
        Ok(summary)
    }
}
