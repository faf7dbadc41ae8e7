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
//! waiting for a partner, never the corpus. Under a memory budget, once
//! those sets pass their share ([`held_share`]) they go to disk as sorted
//! runs keyed by the later partner, and come back by a merge as it
//! arrives ([`crate::jobs::dedup::spill::held`]). Past their own share,
//! the candidate pairs and each earlier record's last partner are read
//! from disk front to back ([`Partners`]); the candidates' ids, kept for
//! the clusters, stay within their share too, on disk past it (`ids.rs`,
//! [`crate::jobs::dedup::spill::ids`]), and the verified pairs past
//! theirs go to sorted runs ([`crate::jobs::dedup::spill::verified`]),
//! as do the clustered records' ids when the ids were on disk: what the
//! pass hands on stays within the budget too. Its state is checkpointed
//! ([`VerifierForm`]); when the pass completes it writes what it verified
//! ([`Verified`]) for a resumed run ([`ResultFile`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use drainpipe_actors::{
    codec, Failure, FinishContext, Integrate, Job, RawRecord, RecordError, RunHandle, TempSpace,
};

use crate::input::{parse_text_record, TextFields, TextRecord, FORMAT_JSONL};
use crate::jobs::dedup::budget::Shares;
use crate::jobs::dedup::chain::{CandidateIds, ClusteredIds, RecordHook, Verified};
use crate::jobs::dedup::fates::Fates;
use crate::jobs::dedup::keep::{KeepKey, KeepPolicy};
use crate::jobs::dedup::normalize::normalized_words;
use crate::jobs::dedup::records::{record_id, rejected_again};
use crate::jobs::dedup::resume::ResultFile;
use crate::jobs::dedup::shingle::shingle_set;
use crate::jobs::dedup::similarity::jaccard;
use crate::jobs::dedup::spill::held::HeldSpill;
use crate::jobs::dedup::spill::pair_files::{CandidatePairs, PairFiles};
use crate::jobs::dedup::spill::record_sets::RecordSet;
use crate::jobs::dedup::spill::runs::RunError;
use crate::jobs::dedup::spill::verified::{PairsSpill, VerifiedPair, VerifiedPairs};
use crate::jobs::dedup::state::{
    LoadedVerified, SavedVerified, VerifierForm, VerifierRuns, STATE_VERSION,
};

mod ids;
mod partners;
mod remote;
mod sets;

use ids::IdsHeld;
pub use partners::Partners;
pub use remote::{VerifyStep, REMOTE_NAME};
pub use sets::SetSpace;

/// A candidate record's id (JSON value text), shingle set, for an
/// index hook that wants them ([`RecordHook::wants_words`]) its
/// normalized words, and its key under a `--keep` policy other than
/// `first` ([`KeepKey`]).
pub type Member = (Box<str>, Vec<u64>, Option<Vec<u8>>, Option<KeepKey>);

/// Steps 1 and 2 of pass 2.
#[derive(Debug)]
pub struct VerifyJob {
    fields: TextFields,
    ngram: usize,
    threshold: f64,
    integrated: Arc<RecordSet>,
    candidates: Arc<RecordSet>,
    /// The candidate pairs, in memory or on disk ([`PairsIn`]).
    pairs: PairsIn,
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
    shingled: Option<Arc<RecordSet>>,
    /// The run's temporary space, the held sets' share of the memory
    /// budget (`None`: no budget) and the run's handle, when the pass may
    /// spill ([`VerifyJob::spilling_to`]).
    spill: Option<(Arc<TempSpace>, Option<Pass2Shares>, RunHandle)>,
    /// `--keep`: the key each candidate is ranked by ([`KeepPolicy::key`]).
    keep: KeepPolicy,
    /// Where the sets of records the pass makes go ([`SetSpace`]).
    sets: SetSpace,
    /// Bytes on disk of the candidates' set and the shingled one.
    sets_spilled: (u64, u64),
    /// The sets the pass made (not pass 1's integrated records): their
    /// runs are removed once it has ended ([`VerifyJob::remove_sets`]).
    made: Vec<Arc<RecordSet>>,
    slot: Arc<Mutex<Option<Verified>>>,
}

/// The share of `--max-memory` pass 2's held shingle sets (with the
/// merge's buffers) may take before they go to disk: a quarter, beside
/// the candidate pairs, the ids, the last-partner list and the bits
/// (`docs/DEDUP.md`, "Under a memory budget").
pub fn held_share(max_memory: u64) -> u64 {
    Shares { max_memory }.held()
}

/// Pass 2's shares of the memory budget ([`Shares`]).
#[derive(Debug, Clone, Copy)]
struct Pass2Shares {
    /// The held shingle sets' ([`held_share`]).
    held: u64,
    /// The candidates' ids' and keys' ([`Shares::candidate_ids`]).
    ids: u64,
    /// The verified pairs' ([`Shares::verified_pairs`]).
    pairs: u64,
}

/// The candidate pairs pass 2 reads: held in memory, or in their files in
/// the run's temporary space, read front to back
/// ([`crate::jobs::dedup::spill::pair_files`]).
#[derive(Debug, Clone)]
pub enum PairsIn {
    /// Held whole.
    Memory(Arc<Vec<(u32, u32)>>),
    /// On disk.
    Disk(Arc<TempSpace>, PairFiles),
}

impl PairsIn {
    /// Pass 1's `pairs`, whose files (if on disk) are in `temp`.
    pub fn of(pairs: CandidatePairs, temp: &Arc<TempSpace>) -> Self {
        match pairs {
            CandidatePairs::Memory(pairs) => PairsIn::Memory(Arc::new(pairs)),
            CandidatePairs::Disk(files) => PairsIn::Disk(Arc::clone(temp), files),
        }
    }

    /// The pairs held in memory, if they are.
    pub fn in_memory(&self) -> Option<&[(u32, u32)]> {
        match self {
            PairsIn::Memory(pairs) => Some(pairs),
            PairsIn::Disk(..) => None,
        }
    }

    /// As pass 2's Integrator reads them.
    fn partners(&self) -> Partners {
        match self {
            PairsIn::Memory(pairs) => Partners::in_memory(Arc::clone(pairs)),
            PairsIn::Disk(temp, files) => Partners::on_disk(Arc::clone(temp), files.clone()),
        }
    }
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
    /// record), for the records pass 1 `integrated`; the sets of records
    /// it makes go to `sets`. Pairs on disk are read once here, front to
    /// back, for the candidates' set (`sets::candidates_of`).
    pub fn new(
        fields: TextFields,
        ngram: usize,
        threshold: f64,
        integrated: Arc<RecordSet>,
        (pairs, sets): (PairsIn, SetSpace),
    ) -> Result<Self, RunError> {
        let candidates = Arc::new(sets::candidates_of(&pairs, &sets)?);
        Ok(VerifyJob {
            fields,
            ngram,
            threshold,
            integrated,
            sets_spilled: (candidates.bytes_on_disk(), 0),
            made: vec![Arc::clone(&candidates)],
            candidates,
            sets,
            pairs,
            reread: None,
            result_file: None,
            fates: None,
            record_hook: None,
            words: false,
            shingled: None,
            spill: None,
            keep: KeepPolicy::First,
            slot: Arc::default(),
        })
    }

    /// Computes each candidate's key under `keep` in step 1 and hands it
    /// to [`Verified::ids`] (no key under `first`).
    pub fn keeping(mut self, keep: KeepPolicy) -> Self {
        self.keep = keep;
        self
    }

    /// Index hook: reads the records `hook` needs the shingle sets of
    /// besides the candidates (and, when it wants every record's words,
    /// every record, shingling only those), and tells it every record read
    /// ([`RecordHook`]). Fails when a set's run cannot be read.
    pub fn with_record_hook(mut self, hook: Option<Arc<dyn RecordHook>>) -> Result<Self, RunError> {
        if let Some(hook) = &hook {
            self.words = hook.wants_words();
            let union = sets::merged(hook.records().members(), self.candidates.members());
            let shingled = Arc::new(self.sets.set_of(sets::SHINGLED, union)?);
            // The candidates' set is in the union: no longer read.
            self.candidates.remove_runs()?;
            self.made = vec![Arc::clone(&shingled)];
            self.sets_spilled.1 = shingled.bytes_on_disk();
            if self.words {
                self.candidates = Arc::clone(&self.integrated);
                self.shingled = Some(shingled);
            } else {
                self.candidates = shingled;
            }
        }
        self.record_hook = hook;
        Ok(self)
    }

    /// The records of every candidate pair, in input order: what a source
    /// that reads the candidates only must yield ([`VerifyJob::reading_only`]).
    pub fn candidate_records(&self) -> Result<Vec<u32>, RunError> {
        self.candidates
            .members()
            .map(|r| r.map(|r| r as u32))
            .collect()
    }

    /// The records whose bytes the pass reads from a source of the whole
    /// input: the [`VerifyJob::candidate_records`], and those pass 1
    /// rejected (to reject them again with the same reason).
    pub fn needed(&self) -> drainpipe_actors::Needed {
        let integrated = Arc::clone(&self.integrated);
        let candidates = Arc::clone(&self.candidates);
        Arc::new(move |i| !integrated.contains(i) || candidates.contains(i))
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

    /// Sends the held shingle sets to sorted runs in `temp` when they
    /// would pass their share of `max_memory` ([`held_share`]; `None`:
    /// never, but a resumed run still merges the runs its checkpoint
    /// names); a spill that fails stops the run through `handle`.
    pub fn spilling_to(
        mut self,
        temp: Arc<TempSpace>,
        max_memory: Option<u64>,
        handle: RunHandle,
    ) -> Self {
        let shares = max_memory.map(|max_memory| Pass2Shares {
            held: held_share(max_memory),
            ids: Shares { max_memory }.candidate_ids(),
            pairs: Shares { max_memory }.verified_pairs(),
        });
        self.spill = Some((temp, shares, handle));
        self
    }

    /// A candidate `record` read from `raw`, with its `--keep` key when
    /// its shingle set is needed (only those records may be in a cluster).
    fn candidate<'a>(
        &self,
        raw: &RawRecord<'a>,
        record: TextRecord<'a>,
        shingle: bool,
    ) -> <Self as Job>::Parsed<'a> {
        let json = (raw.format == FORMAT_JSONL).then_some(raw.bytes);
        let key = shingle.then(|| self.keep.key(json, &record.text)).flatten();
        Some((record, shingle, key))
    }

    /// Where the Integrator holds the candidates' ids: under a budget,
    /// within their share. With a saved index the clusters also name
    /// records whose only partners are indexed ones (pairs outside
    /// `found.pairs`): none is pruned, and past the share all go to disk.
    fn ids_held(&self) -> IdsHeld {
        match &self.spill {
            Some((temp, Some(shares), _)) => IdsHeld::Pruned {
                share: shares.ids,
                temp: Arc::clone(temp),
                prune: self.record_hook.is_none(),
            },
            _ => IdsHeld::All,
        }
    }

    /// Fails with the first run of the record sets the pass read
    /// (integrated, candidates, shingled) that could not be read
    /// ([`RecordSet::check`]).
    pub fn check_sets(&self) -> Result<(), RunError> {
        self.integrated.check()?;
        self.candidates.check()?;
        self.shingled.as_ref().map_or(Ok(()), |s| s.check())
    }

    /// Removes the runs of the sets the pass made, once it has ended
    /// (made again when it resumes).
    pub fn remove_sets(&self) -> Result<(), RunError> {
        self.made.iter().try_for_each(|set| set.remove_runs())
    }

    /// Has `handle` stop the run, failed, at the first run of the
    /// candidates' or the shingled records' set that cannot be read
    /// ([`RecordSet::stop_on_failure`]).
    pub fn stop_on_set_failures(&self, handle: &RunHandle) {
        self.candidates.stop_on_failure(handle.clone());
        if let Some(shingled) = &self.shingled {
            shingled.stop_on_failure(handle.clone());
        }
    }

    /// What the Integrator found, once the pass has finished.
    pub fn take_result(&self) -> Option<Verified> {
        self.slot.lock().expect("result slot poisoned").take()
    }
}

impl Job for VerifyJob {
    /// The record, when it is a candidate, whether its shingle set is
    /// needed, and its `--keep` key.
    type Parsed<'a> = Option<(TextRecord<'a>, bool, Option<KeepKey>)>;
    type Output = Option<Member>;
    type Integrator = Verifier;

    fn name(&self) -> &str {
        "dedup"
    }

    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<Self::Parsed<'a>, RecordError> {
        let index = original(self.reread.as_ref(), raw.index)?;
        if !self.integrated.contains(index) {
            return Err(rejected_again(raw, &self.fields));
        }
        if !self.candidates.contains(index) {
            // Not parsed at all: pass 1 parsed it without error.
            return Ok(None);
        }
        let shingle = self.shingled.as_ref().is_none_or(|s| s.contains(index));
        let record = parse_text_record(raw, &self.fields)?;
        Ok(self.candidate(raw, record, shingle))
    }

    fn process(&self, record: Self::Parsed<'_>) -> Result<Option<Member>, RecordError> {
        let Some((record, shingle, key)) = record else {
            return Ok(None);
        };
        let set = if shingle {
            shingle_set(&record.text, self.ngram)
        } else {
            Vec::new()
        };
        let words = self.words.then(|| normalized_words(&record.text));
        Ok(Some((
            record.id.into_owned().into_boxed_str(),
            set,
            words,
            key,
        )))
    }

    fn integrator(&self) -> Verifier {
        Verifier {
            threshold: self.threshold,
            partners: self.pairs.partners(),
            reread: self.reread.clone(),
            held: HashMap::new(),
            held_bytes: 0,
            peak_held_bytes: 0,
            found: Verified::default(),
            pairs: PairsSpill::new(
                self.spill.as_ref().map(|(temp, ..)| Arc::clone(temp)),
                self.spill
                    .as_ref()
                    .and_then(|(_, shares, _)| shares.map(|s| s.pairs)),
            ),
            fresh: Vec::new(),
            retell: false,
            held_ids: CandidateIds::default(),
            held_keys: HashMap::new(),
            result_file: self.result_file.clone(),
            fates: self.fates.clone(),
            record_hook: self.record_hook.clone(),
            temp: self.spill.as_ref().map(|(temp, ..)| Arc::clone(temp)),
            spill: self.spill.as_ref().and_then(|(temp, shares, _)| {
                shares.map(|s| HeldSpill::new(Arc::clone(temp), Some(s.held)))
            }),
            handle: self.spill.as_ref().map(|(.., handle)| handle.clone()),
            failed: None,
            candidates_bytes: self.candidates.held_bytes(),
            sets: self.sets.clone(),
            sets_spilled: self.sets_spilled,
            clustered_spilled: Default::default(),
            ids: self.ids_held(),
            peak_ids_bytes: 0,
            peak_pairs_bytes: 0,
            slot: Arc::clone(&self.slot),
        }
    }
}

/// Bytes a held set is counted for: its hashes and its table entry.
fn held_cost(set: &[u64]) -> u64 {
    set.len() as u64 * 8 + HELD_ENTRY_BYTES
}

/// A held set's entry in the table (record, vector, control byte, the
/// table's slack).
const HELD_ENTRY_BYTES: u64 = 40;

/// Step 2 of pass 2: exact similarities of the candidate pairs.
#[derive(Debug)]
pub struct Verifier {
    threshold: f64,
    /// The candidate pairs from the first one whose later record has not
    /// arrived yet, and each earlier record's last partner.
    partners: Partners,
    reread: Option<Arc<Vec<u32>>>,
    held: HashMap<u32, Vec<u64>>,
    held_bytes: u64,
    peak_held_bytes: u64,
    /// The counts so far; the pairs and ids once the pass has ended.
    found: Verified,
    /// The verified pairs, in memory or past their share on disk.
    pairs: PairsSpill,
    /// The pairs verified for the record being integrated.
    fresh: Vec<VerifiedPair>,
    /// Restored from a checkpoint: `fates` is told every pair so far first.
    retell: bool,
    /// The candidates' ids held in memory ([`IdsHeld`]).
    held_ids: CandidateIds,
    /// The candidates' `--keep` keys held in memory (none under `first`).
    held_keys: HashMap<u32, KeepKey>,
    result_file: Option<ResultFile>,
    fates: Option<Arc<Fates>>,
    /// Index hook ([`VerifyJob::with_record_hook`]).
    record_hook: Option<Arc<dyn RecordHook>>,
    /// The run's temporary space, when the pass may spill.
    temp: Option<Arc<TempSpace>>,
    /// Under a memory budget, or with runs a checkpoint named: the held
    /// sets that went to disk, and their merge.
    spill: Option<HeldSpill>,
    /// Stopped by a spill that failed (how the run ends, once stopped).
    handle: Option<RunHandle>,
    /// The spill that failed: returned from `save` (no checkpoint) and
    /// `finish` (no output).
    failed: Option<(std::io::ErrorKind, String)>,
    /// Bytes of the job's candidate bits (counted in the peak).
    candidates_bytes: u64,
    /// Where the clustered records' sets go ([`Verifier::clustered_records`]).
    sets: SetSpace,
    /// Bytes on disk of the job's candidates' and shingled sets.
    sets_spilled: (u64, u64),
    /// Most bytes on disk of a clustered records' set.
    clustered_spilled: std::sync::atomic::AtomicU64,
    /// Where the candidates' ids and keys are held ([`IdsHeld`]).
    ids: IdsHeld,
    /// Most bytes the candidates' ids and keys held.
    peak_ids_bytes: u64,
    /// Most bytes the candidate pairs and last partners held.
    peak_pairs_bytes: u64,
    slot: Arc<Mutex<Option<Verified>>>,
}

impl Verifier {
    /// A spill that failed: kept, and the run asked to stop.
    fn fail(&mut self, e: RunError) {
        let e = e.into_io();
        log::error!("dedup pass 2: {e}; stopping the run");
        self.failed = Some((e.kind(), e.to_string()));
        if let Some(handle) = &self.handle {
            // The run's report gives this cause (exit 74), not a
            // signal's.
            handle.request_stop_failed(Failure::Io(format!("dedup pass 2: {e}")));
        }
    }

    /// The spill that failed, as the error `save` and `finish` return.
    fn failure(&self) -> Option<RecordError> {
        let (kind, message) = self.failed.as_ref()?;
        Some(std::io::Error::new(*kind, message.clone()).into())
    }

    /// The sets of `x`'s earlier partners that went to disk.
    fn spilled_for(&mut self, x: u32) -> Result<Vec<(u32, Vec<u64>)>, RunError> {
        let due = self.partners.peek()?.is_some_and(|p| p.1 == x);
        match &mut self.spill {
            Some(spill) if due => spill.take_for(x),
            _ => Ok(Vec::new()),
        }
    }

    /// Verifies the pairs whose later record is `x` (its shingle set
    /// `set`), dropping each earlier set after its last partner.
    fn verify_pairs_of(
        &mut self,
        x: u32,
        set: &[u64],
        spilled: &[(u32, Vec<u64>)],
    ) -> Result<(), RunError> {
        while let Some((y, later)) = self.partners.peek()? {
            if later != x {
                break;
            }
            self.partners.pass();
            let earlier = match self.held.get(&y) {
                Some(s) => Some(&s[..]),
                None => spilled
                    .binary_search_by_key(&y, |e| e.0)
                    .ok()
                    .map(|at| &spilled[at].1[..]),
            };
            let Some(earlier) = earlier else {
                self.found.unverifiable += 1;
                continue;
            };
            let j = jaccard(earlier, set);
            self.found.checked += 1;
            if j >= self.threshold {
                self.fresh.push((y, x, j));
            }
            if self.partners.ends(y, x) {
                if let Some(gone) = self.held.remove(&y) {
                    self.held_bytes -= held_cost(&gone);
                }
            }
        }
        Ok(())
    }

    /// Holds `x`'s set when a later record pairs with it, and sends the
    /// held sets to disk once they pass their share.
    fn hold(&mut self, x: u32, set: Vec<u64>) -> Result<(), RunError> {
        match self.partners.last_on_arrival(x)? {
            Some(last) if last > x => self.partners.held(x, last),
            _ => return Ok(()),
        }
        self.held_bytes += held_cost(&set);
        self.held.insert(x, set);
        self.peak_pairs_bytes = self.peak_pairs_bytes.max(self.partners.heap_bytes());
        let merge = self.spill.as_ref().map_or(0, HeldSpill::heap_bytes);
        self.peak_held_bytes = self.peak_held_bytes.max(self.held_bytes + merge);
        if let Some(spill) = &mut self.spill {
            if spill.must_evict(self.held_bytes, merge) {
                self.partners.evict(spill, &mut self.held)?;
                self.held_bytes = 0;
            }
        }
        Ok(())
    }

    /// Passes the pairs whose later record never arrived, verifies those
    /// of `x` and holds `x`'s set when a later record pairs with it.
    fn check_pairs_of(&mut self, x: u32, set: Vec<u64>) -> Result<(), RunError> {
        while let Some((_, later)) = self.partners.peek()? {
            if later >= x {
                break;
            }
            self.found.unverifiable += 1;
            self.partners.pass();
        }
        let spilled = self.spilled_for(x)?;
        self.verify_pairs_of(x, &set, &spilled)?;
        self.hold(x, set)
    }

    /// Drops the ids and keys of the candidates that no verified pair
    /// holds and whose every partner has come (up to record `x`): they
    /// can be in no cluster, and only the clusters' members' ids are
    /// written ([`crate::jobs::dedup::clusters::write_clusters`]). Those
    /// of the candidates still waiting for a later partner stay.
    fn prune_ids(&mut self, x: u32) {
        if let Err(e) = self.prune_ids_in_order(x) {
            // Nothing more pruned: the ids stay, the run stops.
            self.fail(e);
        }
    }

    /// [`Verifier::prune_ids`]: the clustered records' set is asked in
    /// increasing record order (the ids', then the keys' sorted), as its
    /// window on disk reads it.
    fn prune_ids_in_order(&mut self, x: u32) -> Result<(), RunError> {
        let members = self.clustered_records()?;
        let waiting = self.partners.waiting_after(x)?;
        let keep = |set: &RecordSet, r: u32| set.contains(r.into()) || waiting.contains(r);
        self.held_ids.retain(|r| keep(&members, r));
        let mut keyed: Vec<u32> = self.held_keys.keys().copied().collect();
        keyed.sort_unstable();
        let members_again = members.apart();
        keyed.retain(|&r| !keep(&members_again, r));
        for r in keyed {
            self.held_keys.remove(&r);
        }
        self.held_keys.shrink_to_fit();
        members.check()?;
        members_again.check()?;
        members.remove_runs()
    }

    /// The records of the verified pairs (the clusters' members), in a
    /// set of their own within its share ([`sets::clustered_of`]); the
    /// caller removes its runs once it has read it.
    fn clustered_records(&self) -> Result<RecordSet, RunError> {
        let set = sets::clustered_of(&self.pairs, &self.sets)?;
        self.clustered_spilled
            .fetch_max(set.bytes_on_disk(), std::sync::atomic::Ordering::Relaxed);
        Ok(set)
    }

    /// Tells `fates` how far the pass has checked and the pairs verified
    /// since (all of them first, once restored from a checkpoint).
    fn tell(&mut self, fates: &Fates) -> Result<(), RunError> {
        // Pairs are sorted by their later record: every pair before the
        // cursor is checked (the copy beside runs with the pairs in
        // memory only).
        let next = self.partners.peek().ok().flatten();
        let below = next.map_or(u64::MAX, |p| p.1.into());
        if std::mem::take(&mut self.retell) {
            let earlier = self.pairs.reader().collect::<Result<Vec<_>, _>>()?;
            fates.checked(0, &earlier);
        }
        fates.checked(below, &self.fresh);
        Ok(())
    }

    /// Appends the pairs verified for the record just integrated.
    fn keep_fresh(&mut self) -> Result<(), RunError> {
        for i in 0..self.fresh.len() {
            self.pairs.push(self.fresh[i])?;
        }
        self.fresh.clear();
        Ok(())
    }

    /// Bytes of the tables the Integrator holds besides the held sets.
    fn tables_bytes(&self) -> u64 {
        self.pairs.peak_bytes()
            + self.peak_pairs_bytes.max(self.partners.heap_bytes())
            + self.candidates_bytes
            + self.peak_ids_bytes.max(self.ids_bytes())
    }
}

impl Integrate for Verifier {
    type Output = Option<Member>;

    fn integrate(&mut self, index: u64, output: Option<Member>) -> Result<(), RecordError> {
        let Some((id, set, words, key)) = output else {
            return Ok(());
        };
        if self.failed.is_some() {
            // A spill failed: the run is stopping and will end failed.
            return Ok(());
        }
        let x = record_id(original(self.reread.as_ref(), index)?)?;
        if let Some(hook) = &self.record_hook {
            hook.record(x, &id, &set, words.as_deref());
        }
        let set_was_empty = set.is_empty();
        if let Err(e) = self.check_pairs_of(x, set) {
            self.fail(e);
            return Ok(());
        }
        if let Some(fates) = self.fates.clone() {
            if let Err(e) = self.tell(&fates) {
                self.fail(e);
                return Ok(());
            }
        }
        if let Err(e) = self.keep_fresh() {
            self.fail(e);
            return Ok(());
        }
        // Noted once `x`'s pairs are verified: making room for it may drop
        // the ids of the candidates whose last partner was `x`. Records
        // sent for the hook's words only (an empty set: neither a
        // candidate nor in a pair across) are in no cluster: their ids,
        // every record's when an index is saved, are not kept.
        let id = (!set_was_empty).then_some(&*id);
        if let Err(e) = self.note_id(x, id, key) {
            self.fail(e);
        }
        Ok(())
    }

    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        // The index hook's state (the pairs across verified so far, the
        // saved index's words and ids) is not checkpointed: with an index,
        // a stop in pass 2 resumes it from its start.
        if self.record_hook.is_some() {
            return None;
        }
        if let Some(e) = self.failure() {
            return Some(Err(e));
        }
        let spilled = self.spill.as_ref().map_or(&[][..], HeldSpill::runs);
        let runs = VerifierRuns {
            held: spilled,
            ids: self.ids.runs(),
            pairs: self.pairs.runs(),
        };
        let found = SavedVerified::so_far(
            &self.found,
            self.pairs.held(),
            &self.held_ids,
            &self.held_keys,
        );
        let form = VerifierForm::of(
            self.partners.position(),
            &self.held,
            self.peak_held_bytes,
            runs,
            found,
        );
        Some(codec::encode(&form, STATE_VERSION).map_err(Into::into))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), RecordError> {
        let mut form: VerifierForm<Vec<u64>, LoadedVerified> = codec::decode(state, STATE_VERSION)?;
        let held = form.take_held();
        let mut held_records: Vec<u32> = held.keys().copied().collect();
        held_records.sort_unstable();
        self.partners.restore(form.cursor, &held_records)?;
        if !form.spilled.is_empty() && self.spill.is_none() {
            // Resumed without a budget: the named runs are merged still.
            let temp = self
                .temp
                .clone()
                .ok_or("the checkpoint names spilled runs, and this run has no temporary space")?;
            self.spill = Some(HeldSpill::new(temp, None));
        }
        if let Some(spill) = &mut self.spill {
            spill
                .restore(std::mem::take(&mut form.spilled))
                .map_err(RunError::into_io)?;
        }
        self.held = held;
        self.held_bytes = self.held.values().map(|s| held_cost(s)).sum();
        self.peak_held_bytes = form.peak_held_bytes.max(self.held_bytes);
        self.restore_ids(std::mem::take(&mut form.ids_spilled))
            .map_err(RunError::into_io)?;
        let pairs_spilled = std::mem::take(&mut form.pairs_spilled);
        let found = form.found.into_verified();
        let (VerifiedPairs::Memory(pairs), ClusteredIds::Memory { ids, keys }) =
            (found.pairs, found.ids)
        else {
            return Err("a checkpoint of pass 2 names its pairs and ids in memory only".into());
        };
        self.pairs
            .restore(pairs_spilled, pairs)
            .map_err(RunError::into_io)?;
        (self.held_ids, self.held_keys) = (ids, keys);
        self.found = Verified {
            pairs: VerifiedPairs::default(),
            ids: ClusteredIds::default(),
            ..found
        };
        self.retell = true;
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
        crate::jobs::dedup::crash::here("dedup::pass2_finishing");
        self.found.unverifiable += self.partners.count() - self.partners.position();
        let verified = self.pairs.len();
        if !run.partial {
            // Every partner has come: only the clusters' ids are left (a
            // stopped pass keeps them all for its checkpoint), and the
            // pairs are handed on (the last ones written after the
            // others, past their share).
            self.keep_clustered_ids().map_err(RunError::into_io)?;
            self.found.pairs = self.pairs.finish().map_err(RunError::into_io)?;
        }
        self.found.peak_bytes = self.peak_held_bytes + self.tables_bytes();
        run.progress();
        self.held = HashMap::new();
        self.found.rejected = run.rejected;
        let (runs, spilled) = self
            .spill
            .as_ref()
            .map_or((0, 0), |s| (s.runs_written(), s.bytes()));
        let ids_spilled = self.ids.bytes();
        let pairs_spilled = match &self.found.pairs {
            VerifiedPairs::Disk(run) => run.bytes(),
            VerifiedPairs::Memory(_) => self.pairs.bytes(),
        };
        if !run.partial {
            if let Some(file) = &self.result_file {
                file.write(run.output, &SavedVerified::of(&self.found))?;
                run.progress();
            }
            // The result is safe: the runs are no longer needed (a stopped
            // pass keeps them for its checkpoint). Those of the verified
            // pairs and clustered ids are named by the result, and
            // removed once the outputs are committed.
            if let Some(spill) = &mut self.spill {
                spill.remove_all()?;
            }
            self.remove_id_runs()?;
        }
        let summary = serde_json::json!({
            "pass": "verify",
            "partial": run.partial,
            "checked": self.found.checked,
            "verified": verified,
            "spill_runs": runs,
            "bytes_spilled": spilled,
            "candidate_ids_peak_bytes": self.peak_ids_bytes.max(self.ids_bytes()),
            "candidate_pairs_peak_bytes": self.peak_pairs_bytes.max(self.partners.heap_bytes()),
            "candidate_pairs_on_disk": matches!(self.partners, Partners::Disk(_)),
            "candidate_ids_spilled_bytes": ids_spilled,
            "verified_pairs_peak_bytes": self.pairs.peak_bytes(),
            "verified_pairs_on_disk": matches!(self.found.pairs, VerifiedPairs::Disk(_)),
            "verified_pairs_spilled_bytes": pairs_spilled,
            "clustered_ids_on_disk": matches!(self.found.ids, ClusteredIds::Disk(_)),
            "candidate_records_spilled_bytes": self.sets_spilled.0,
            "shingled_records_spilled_bytes": self.sets_spilled.1,
            "clustered_records_spilled_bytes": self.clustered_spilled.load(std::sync::atomic::Ordering::Relaxed),
        });
        let found = std::mem::take(&mut self.found);
        *self.slot.lock().expect("result slot poisoned") = Some(found);
        Ok(summary)
    }
}
