//! The serialized forms of dedup's Integrator states (in checkpoints) and
//! of its pass results (kept between passes, [`super::resume`]), all
//! written through the codec, all here, under one version: the one place
//! to look when a state's bytes must change, and what a spill file, a
//! saved index or a remote worker will hold. The states themselves are in
//! [`super::chain`].
//!
//! Deterministic: tables and maps are written in record order, never in
//! hash order, so one state always gives the same bytes. Compact: nothing
//! derived is written (the verify pass rebuilds its last-partner table from
//! the candidate pairs), and record ids in increasing order are written as
//! gaps from the previous one, which the codec's variable-length integers
//! store in one byte when records are close. Gaps wrap, so any sequence
//! round-trips exactly and a hand-made state cannot cause an overflow.

use std::collections::HashMap;

use serde::{Deserialize, Serialize, Serializer};

use super::chain::{CandidateIds, Candidates, ClusteredIds, Verified, VerifiedPairs};
use super::ids::IdKeys;
use super::keep::KeepKey;
use super::spans::Spans;
use super::spill::bands::Spilled;
use super::spill::pair_files::{CandidatePairs, PairFiles};
use super::spill::record_sets::{SetState, SetWriter};
use super::spill::repeats::RepeatedIds;
use super::spill::runs::{RunError, RunInfo};
use super::spill::verified::{VerifiedPair, VerifiedRun};

/// Version of every form below; bump on any change of them (2: 32-bit band
/// keys; 3: the records' places in the input; 4: every record's band
/// keys, not only each key's first record; 5: id keys and repeated ids;
/// 6: the sorted runs pass 1 spilled under a memory budget, and the first
/// record of the id keys held; 7: the runs of held shingle sets pass 2
/// spilled; 8: the candidates' `--keep` keys; 9: the records' places on
/// disk past their share of the budget, named; 10: the candidate pairs on
/// disk past pass 2's share, and the runs of candidates' ids pass 2 wrote
/// past their share, named; 11: pass 2's verified pairs and clustered ids
/// on disk past their shares, named; 13: the repeated ids on disk past
/// their share, named).
pub const STATE_VERSION: u32 = 13;

/// `(id, value)` pairs, each id as its gap from the previous id.
fn gapped<T>(items: impl IntoIterator<Item = (u32, T)>) -> Vec<(u32, T)> {
    gaps(items).collect()
}

/// [`gapped`], as the items are read (the form of a list is written
/// without a second copy of it: [`SeqOf`]).
fn gaps<T, I: IntoIterator<Item = (u32, T)>>(items: I) -> impl Iterator<Item = (u32, T)> {
    let mut previous = 0u32;
    items.into_iter().map(move |(id, value)| {
        let gap = id.wrapping_sub(previous);
        previous = id;
        (gap, value)
    })
}

/// Serializes as a sequence of what its iterator gives, with the bytes of
/// the `Vec` of them: a form that does not copy the list it writes. The
/// iterator must know its length (the codec writes it first).
pub struct SeqOf<I>(std::cell::RefCell<Option<I>>);

impl<I> SeqOf<I> {
    fn new(items: I) -> Self {
        SeqOf(std::cell::RefCell::new(Some(items)))
    }
}

impl<I> Serialize for SeqOf<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let items = self.0.borrow_mut().take();
        match items {
            Some(items) => serializer.collect_seq(items),
            None => Err(serde::ser::Error::custom("a streamed list is written once")),
        }
    }
}

/// The inverse of [`gapped`].
fn ungapped<T>(items: Vec<(u32, T)>) -> impl Iterator<Item = (u32, T)> {
    let mut id = 0u32;
    items.into_iter().map(move |(gap, value)| {
        id = id.wrapping_add(gap);
        (id, value)
    })
}

/// Candidate pairs `(earlier, later)`, sorted by the later record, as
/// `(gap of the later record, later - earlier)`.
fn pairs_form(pairs: &[(u32, u32)]) -> Vec<(u32, u32)> {
    gapped(pairs.iter().map(|&(a, b)| (b, b.wrapping_sub(a))))
}

fn pairs_of(form: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ungapped(form)
        .map(|(b, d)| (b.wrapping_sub(d), b))
        .collect()
}

/// The candidate pairs: in memory as [`pairs_form`], or the files on
/// disk that hold them, named (not copied).
#[derive(Debug, Serialize, Deserialize)]
enum PairsForm {
    Memory(Vec<(u32, u32)>),
    Disk(PairFiles),
}

impl PairsForm {
    fn of(pairs: &CandidatePairs) -> Self {
        match pairs {
            CandidatePairs::Memory(pairs) => PairsForm::Memory(pairs_form(pairs)),
            CandidatePairs::Disk(files) => PairsForm::Disk(files.clone()),
        }
    }

    fn into_pairs(self) -> CandidatePairs {
        match self {
            PairsForm::Memory(form) => CandidatePairs::Memory(pairs_of(form)),
            PairsForm::Disk(files) => CandidatePairs::Disk(files),
        }
    }
}

/// The repeated ids `(first, later)`, sorted by the later record: in
/// memory as [`pairs_form`], or their run on disk, named (not copied).
#[derive(Debug, Serialize, Deserialize)]
enum RepeatsForm {
    Memory(Vec<(u32, u32)>),
    Disk(RunInfo),
}

impl RepeatsForm {
    fn of(repeats: &RepeatedIds) -> Self {
        match repeats {
            RepeatedIds::Memory(pairs) => RepeatsForm::Memory(pairs_form(pairs)),
            RepeatedIds::Disk(info) => RepeatsForm::Disk(info.clone()),
        }
    }

    fn into_repeats(self) -> RepeatedIds {
        match self {
            RepeatsForm::Memory(form) => RepeatedIds::Memory(pairs_of(form)),
            RepeatsForm::Disk(info) => RepeatedIds::Disk(info),
        }
    }
}

/// What pass 1 found ([`Candidates`]): its result, and part of its state.
#[derive(Debug, Serialize, Deserialize)]
pub struct CandidatesForm {
    pairs: PairsForm,
    integrated: SetState,
    records: u64,
    rejected: u64,
    empty: u64,
    integrator_bytes: u64,
    spans: Spans,
    ids: IdKeys,
    repeated_ids: RepeatsForm,
}

impl CandidatesForm {
    /// The form of `found`.
    pub fn of(found: &Candidates) -> Self {
        CandidatesForm {
            pairs: PairsForm::of(&found.pairs),
            integrated: found.integrated.state().clone(),
            records: found.records,
            rejected: found.rejected,
            empty: found.empty,
            integrator_bytes: found.integrator_bytes,
            spans: found.spans.clone(),
            ids: found.ids.clone(),
            repeated_ids: RepeatsForm::of(&found.repeated_ids),
        }
    }

    /// Back to what pass 1 found, the integrated records taken up by
    /// `integrated` (empty: where their runs are, and their share).
    pub fn into_candidates(self, integrated: SetWriter) -> Result<Candidates, RunError> {
        Ok(Candidates {
            pairs: self.pairs.into_pairs(),
            integrated: integrated.resumed(self.integrated)?,
            records: self.records,
            rejected: self.rejected,
            empty: self.empty,
            integrator_bytes: self.integrator_bytes,
            spans: self.spans.checked(),
            ids: self.ids,
            repeated_ids: self.repeated_ids.into_repeats(),
            confirmed_repeats: 0,
        })
    }
}

/// Pass 1's Integrator state: per band, `(record, band key)` in record
/// order, records as gaps (a record has one key per band, so the gaps are
/// small), what it found so far, and the sorted runs it spilled (named,
/// not copied: the band lists above are the chunk still in memory).
#[derive(Debug, Serialize, Deserialize)]
pub struct BandIndexForm {
    bands: Vec<Vec<(u32, u32)>>,
    found: CandidatesForm,
    spilled: Spilled,
}

impl BandIndexForm {
    /// The form of the `bands` (`key << 32 | record`, in record order), of
    /// what was `found` and of the runs `spilled` (`None`: none).
    pub fn of(bands: &[Vec<u64>], found: &Candidates, spilled: Option<&Spilled>) -> Self {
        let bands = bands
            .iter()
            .map(|band| gapped(band.iter().map(|&e| (e as u32, (e >> 32) as u32))))
            .collect();
        BandIndexForm {
            bands,
            found: CandidatesForm::of(found),
            spilled: spilled.cloned().unwrap_or_default(),
        }
    }

    /// Number of bands it was saved with.
    pub fn bands(&self) -> usize {
        self.bands.len()
    }

    /// Back to the bands, what was found (the integrated records taken up
    /// by `integrated`) and the runs spilled.
    pub fn into_parts(
        self,
        integrated: SetWriter,
    ) -> Result<(Vec<Vec<u64>>, Candidates, Spilled), RunError> {
        let bands = self
            .bands
            .into_iter()
            .map(|entries| {
                ungapped(entries)
                    .map(|(id, key)| u64::from(key) << 32 | u64::from(id))
                    .collect()
            })
            .collect();
        Ok((bands, self.found.into_candidates(integrated)?, self.spilled))
    }
}

/// Verified pairs: in memory as `(gap of the later record, later -
/// earlier, similarity)`, or the runs on disk that hold them, named (not
/// copied). Generic over how the list in memory is held: saving streams
/// it ([`SeqOf`]), restoring owns it, with the same bytes.
#[derive(Debug, Serialize, Deserialize)]
pub enum VerifiedPairsForm<M> {
    /// In memory.
    Memory(M),
    /// On disk.
    Disk(VerifiedRun),
}

/// The clustered records' ids and `--keep` keys in record order (ids as
/// gaps, like the keys), or the run on disk that holds them, named.
/// Generic like [`VerifiedPairsForm`].
#[derive(Debug, Serialize, Deserialize)]
pub enum IdsForm<I, K> {
    /// In memory.
    Memory {
        /// `(gap, id)`.
        ids: I,
        /// `(gap, key)`.
        keys: K,
    },
    /// On disk.
    Disk(RunInfo),
}

/// What pass 2 found ([`Verified`]): its pairs and ids (or the runs that
/// hold them) and its counts. Generic over how the lists are held (see
/// [`SavedVerified`] and [`LoadedVerified`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct VerifiedForm<P, I> {
    /// The verified pairs.
    pairs: P,
    /// The clustered records' ids and keys.
    ids: I,
    checked: u64,
    rejected: u64,
    unverifiable: u64,
    peak_bytes: u64,
}

/// The verified pairs held in memory, streamed as their form.
pub type PairsSeq<'a> = SeqOf<Box<dyn Iterator<Item = (u32, (u32, f64))> + 'a>>;
/// The clustered ids held in memory, streamed as their form.
pub type IdsSeq<'a> = SeqOf<Box<dyn Iterator<Item = (u32, &'a str)> + 'a>>;
/// The clustered keys held in memory, by reference, as their form.
pub type KeysSeq<'a> = SeqOf<std::vec::IntoIter<(u32, &'a KeepKey)>>;

/// [`VerifiedForm`] as it is saved: the lists in memory read as they are
/// written, never copied.
pub type SavedVerified<'a> =
    VerifiedForm<VerifiedPairsForm<PairsSeq<'a>>, IdsForm<IdsSeq<'a>, KeysSeq<'a>>>;

/// [`VerifiedForm`] as it is loaded.
pub type LoadedVerified = VerifiedForm<
    VerifiedPairsForm<Vec<(u32, (u32, f64))>>,
    IdsForm<Vec<(u32, Box<str>)>, Vec<(u32, KeepKey)>>,
>;

fn pairs_seq(pairs: &[VerifiedPair]) -> PairsSeq<'_> {
    SeqOf::new(Box::new(gaps(
        pairs.iter().map(|&(a, b, j)| (b, (b.wrapping_sub(a), j))),
    )))
}

fn ids_form<'a>(
    ids: &'a CandidateIds,
    keys: &'a HashMap<u32, KeepKey>,
) -> IdsForm<IdsSeq<'a>, KeysSeq<'a>> {
    // The keys by record: a list of references, not of keys.
    let mut keyed: Vec<(u32, &KeepKey)> = keys.iter().map(|(&r, k)| (r, k)).collect();
    keyed.sort_unstable_by_key(|&(r, _)| r);
    let keyed: Vec<(u32, &KeepKey)> = gaps(keyed).collect();
    IdsForm::Memory {
        ids: SeqOf::new(Box::new(gaps(ids.iter()))),
        keys: SeqOf::new(keyed.into_iter()),
    }
}

impl<'a> SavedVerified<'a> {
    /// The form of `found`: its lists in memory streamed, those on disk
    /// named.
    pub fn of(found: &'a Verified) -> Self {
        let pairs = match &found.pairs {
            VerifiedPairs::Memory(pairs) => VerifiedPairsForm::Memory(pairs_seq(pairs)),
            VerifiedPairs::Disk(run) => VerifiedPairsForm::Disk(run.clone()),
        };
        let ids = match &found.ids {
            ClusteredIds::Memory { ids, keys } => ids_form(ids, keys),
            ClusteredIds::Disk(info) => IdsForm::Disk(info.clone()),
        };
        VerifiedForm {
            pairs,
            ids,
            checked: found.checked,
            rejected: found.rejected,
            unverifiable: found.unverifiable,
            peak_bytes: found.peak_bytes,
        }
    }

    /// The form of what pass 2 verified so far (its counts in `found`):
    /// the verified `pairs` held in memory, and the candidates' `ids` and
    /// `keys` held in memory.
    pub fn so_far(
        found: &'a Verified,
        pairs: &'a [VerifiedPair],
        ids: &'a CandidateIds,
        keys: &'a HashMap<u32, KeepKey>,
    ) -> Self {
        VerifiedForm {
            pairs: VerifiedPairsForm::Memory(pairs_seq(pairs)),
            ids: ids_form(ids, keys),
            checked: found.checked,
            rejected: found.rejected,
            unverifiable: found.unverifiable,
            peak_bytes: found.peak_bytes,
        }
    }
}

impl LoadedVerified {
    /// Back to what pass 2 found.
    pub fn into_verified(self) -> Verified {
        let pairs = match self.pairs {
            VerifiedPairsForm::Memory(form) => VerifiedPairs::Memory(
                ungapped(form)
                    .map(|(b, (d, j))| (b.wrapping_sub(d), b, j))
                    .collect(),
            ),
            VerifiedPairsForm::Disk(run) => VerifiedPairs::Disk(run),
        };
        let ids = match self.ids {
            IdsForm::Memory { ids: list, keys } => {
                let mut ids = CandidateIds::default();
                for (record, id) in ungapped(list) {
                    ids.insert(record, &id);
                }
                ClusteredIds::Memory {
                    ids,
                    keys: ungapped(keys).collect(),
                }
            }
            IdsForm::Disk(info) => ClusteredIds::Disk(info),
        };
        Verified {
            pairs,
            ids,
            checked: self.checked,
            rejected: self.rejected,
            unverifiable: self.unverifiable,
            peak_bytes: self.peak_bytes,
        }
    }
}

/// Pass 2's Integrator state: the next candidate pair, the shingle sets
/// waiting for a later partner (in record order) in memory, the runs
/// holding those that went to disk under a memory budget (named, not
/// copied: [`super::spill::held`]), the peak the held sets reached, the
/// runs holding the candidates' ids and keys that went to disk (named:
/// [`super::spill::ids`]; those in memory are in `found`), the runs
/// holding the verified pairs that went to disk (named:
/// [`super::spill::verified`]; those in memory are in `found`) and what
/// was verified so far. Generic over how lists are held: `H` a held set,
/// `F` the form of `found` ([`SavedVerified`] or [`LoadedVerified`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct VerifierForm<H, F> {
    /// Index of the first pair whose later record has not arrived.
    pub cursor: u64,
    /// The held shingle sets.
    pub held: Vec<(u32, H)>,
    /// Most bytes of shingle sets held at once so far.
    pub peak_held_bytes: u64,
    /// The runs of held sets written so far, in order.
    pub spilled: Vec<RunInfo>,
    /// The runs of candidates' ids and keys written so far, in record
    /// order.
    pub ids_spilled: Vec<RunInfo>,
    /// The runs of verified pairs written so far, in order.
    pub pairs_spilled: Vec<RunInfo>,
    /// What was verified so far.
    pub found: F,
}

/// The runs a Verifier's state names besides its held sets: the held
/// sets', the candidates' ids' and the verified pairs'.
#[derive(Debug, Clone, Copy)]
pub struct VerifierRuns<'a> {
    /// Runs of held shingle sets.
    pub held: &'a [RunInfo],
    /// Runs of candidates' ids and keys.
    pub ids: &'a [RunInfo],
    /// Runs of verified pairs.
    pub pairs: &'a [RunInfo],
}

impl<'a> VerifierForm<&'a [u64], SavedVerified<'a>> {
    /// The form of a Verifier's state.
    pub fn of(
        cursor: u64,
        held: &'a HashMap<u32, Vec<u64>>,
        peak_held_bytes: u64,
        runs: VerifierRuns<'_>,
        found: SavedVerified<'a>,
    ) -> Self {
        let mut sets: Vec<(u32, &[u64])> = held.iter().map(|(&r, s)| (r, &s[..])).collect();
        sets.sort_unstable_by_key(|&(r, _)| r);
        VerifierForm {
            cursor,
            held: gapped(sets),
            peak_held_bytes,
            spilled: runs.held.to_vec(),
            ids_spilled: runs.ids.to_vec(),
            pairs_spilled: runs.pairs.to_vec(),
            found,
        }
    }
}

impl VerifierForm<Vec<u64>, LoadedVerified> {
    /// The held shingle sets, by record.
    pub fn take_held(&mut self) -> HashMap<u32, Vec<u64>> {
        ungapped(std::mem::take(&mut self.held)).collect()
    }
}

#[cfg(test)]
mod tests {
    use drainpipe_actors::codec;

    use super::*;

    #[test]
    fn candidates_round_trip_with_the_same_bytes() {
        let mut integrated = SetWriter::default();
        let mut spans = Spans::default();
        for i in [0, 3, 64, 900] {
            integrated.insert(i).unwrap();
            let span = drainpipe_actors::Span {
                input: u32::from(i > 3),
                offset: i * 7,
            };
            let line = if i > 3 { i - 63 } else { i + 1 };
            spans.record(
                i,
                crate::jobs::dedup::spans::Place {
                    span: Some(span),
                    len: 5,
                    line,
                },
            );
        }
        let found = Candidates {
            pairs: CandidatePairs::Memory(vec![(0, 3), (3, 64), (0, 900), (64, 900)]),
            integrated,
            records: 4,
            rejected: 2,
            empty: 1,
            integrator_bytes: 99,
            spans,
            ids: IdKeys::default(),
            repeated_ids: RepeatedIds::Memory(vec![(3, 64)]),
            confirmed_repeats: 0,
        };
        let bytes = codec::encode(&CandidatesForm::of(&found), STATE_VERSION).unwrap();
        let back: CandidatesForm = codec::decode(&bytes, STATE_VERSION).unwrap();
        let back = back.into_candidates(SetWriter::default()).unwrap();
        assert_eq!(back.pairs, found.pairs);
        assert_eq!(back.integrated.state(), found.integrated.state());
        assert_eq!(back.spans, found.spans);
        assert_eq!(back.repeated_ids, found.repeated_ids);
        assert!(back.spans.is_complete() && back.spans.get(900).is_some());
        assert_eq!(
            (
                back.records,
                back.rejected,
                back.empty,
                back.integrator_bytes
            ),
            (4, 2, 1, 99)
        );
        let again = codec::encode(&CandidatesForm::of(&back), STATE_VERSION).unwrap();
        assert_eq!(again, bytes);
        // Repeated ids on disk: their run named, not copied.
        let run = RunInfo {
            name: "dedup-repeated-ids.sorted".into(),
            bytes: 4096,
            entries: 1000,
            checksum: 7,
        };
        let on_disk = Candidates {
            repeated_ids: RepeatedIds::Disk(run),
            ..Candidates::default()
        };
        let bytes = codec::encode(&CandidatesForm::of(&on_disk), STATE_VERSION).unwrap();
        assert!(bytes.len() < 200);
        let back: CandidatesForm = codec::decode(&bytes, STATE_VERSION).unwrap();
        let back = back.into_candidates(SetWriter::default()).unwrap();
        assert_eq!(back.repeated_ids, on_disk.repeated_ids);
    }

    #[test]
    fn a_band_index_round_trips_with_the_same_bytes() {
        let found = Candidates::default();
        let bands = vec![
            vec![u64::from(u32::MAX) << 32 | 2, 5 << 32 | 7, 5 << 32 | 11],
            vec![],
        ];
        let spilled = Spilled {
            bands: vec![vec![], vec![]],
            ids: vec![crate::jobs::dedup::spill::runs::RunInfo {
                name: "dedup-ids-run-000000.sorted".into(),
                bytes: 36,
                entries: 1,
                checksum: 77,
            }],
            base: 2,
        };
        let bytes = codec::encode(
            &BandIndexForm::of(&bands, &found, Some(&spilled)),
            STATE_VERSION,
        )
        .unwrap();
        let form: BandIndexForm = codec::decode(&bytes, STATE_VERSION).unwrap();
        assert_eq!(form.bands(), 2);
        let (back, _, back_spilled) = form.into_parts(SetWriter::default()).unwrap();
        assert_eq!(back, bands);
        assert_eq!(back_spilled, spilled);
        let again = codec::encode(
            &BandIndexForm::of(&back, &found, Some(&back_spilled)),
            STATE_VERSION,
        )
        .unwrap();
        assert_eq!(again, bytes);
    }

    fn verified() -> Verified {
        let ids: CandidateIds = [(1, "\"a\""), (4, "7")].into_iter().collect();
        let keys = HashMap::from([(1, KeepKey::Text("b".into())), (4, KeepKey::Float(0.5))]);
        Verified {
            pairs: VerifiedPairs::Memory(vec![(1, 4, 0.9), (2, 4, 1.0), (4, 9, 0.85)]),
            ids: ClusteredIds::Memory { ids, keys },
            checked: 5,
            rejected: 2,
            unverifiable: 1,
            peak_bytes: 7,
        }
    }

    fn run_info(name: &str) -> RunInfo {
        RunInfo {
            name: name.into(),
            bytes: 120,
            entries: 3,
            checksum: 77,
        }
    }

    #[test]
    fn a_verifier_state_round_trips() {
        let held = HashMap::from([(9u32, vec![1u64, 5, 8]), (4, vec![2])]);
        let found = verified();
        let (VerifiedPairs::Memory(pairs), ClusteredIds::Memory { ids, keys }) =
            (&found.pairs, &found.ids)
        else {
            unreachable!("in memory");
        };
        let runs = [run_info("dedup-verify-held-000000.sorted")];
        let ids_runs = [run_info("dedup-verify-ids-000000.ids")];
        let pairs_runs = [run_info("dedup-verify-pairs-000000.vpairs")];
        let named = VerifierRuns {
            held: &runs,
            ids: &ids_runs,
            pairs: &pairs_runs,
        };
        let so_far = SavedVerified::so_far(&found, pairs, ids, keys);
        let form = VerifierForm::of(3, &held, 64, named, so_far);
        let bytes = codec::encode(&form, STATE_VERSION).unwrap();
        let mut back: VerifierForm<Vec<u64>, LoadedVerified> =
            codec::decode(&bytes, STATE_VERSION).unwrap();
        assert_eq!((back.cursor, back.peak_held_bytes), (3, 64));
        assert_eq!(back.spilled, runs);
        assert_eq!(back.ids_spilled, ids_runs);
        assert_eq!(back.pairs_spilled, pairs_runs);
        assert_eq!(back.take_held(), held);
        let verified = back.found.into_verified();
        assert_eq!(verified.pairs, found.pairs);
        assert_eq!(verified.ids, found.ids);
        assert_eq!(
            (verified.checked, verified.rejected, verified.unverifiable),
            (5, 2, 1)
        );
    }

    #[test]
    fn a_verified_result_round_trips_in_memory_and_on_disk_with_the_same_bytes() {
        let found = verified();
        let bytes = codec::encode(&SavedVerified::of(&found), STATE_VERSION).unwrap();
        // Streamed, the lists have the bytes of the lists themselves.
        let (VerifiedPairs::Memory(pairs), ClusteredIds::Memory { ids, keys }) =
            (&found.pairs, &found.ids)
        else {
            unreachable!("in memory");
        };
        let mut keyed: Vec<(u32, KeepKey)> = keys.iter().map(|(&r, k)| (r, k.clone())).collect();
        keyed.sort_unstable_by_key(|&(r, _)| r);
        let copied: LoadedVerified = VerifiedForm {
            pairs: VerifiedPairsForm::Memory(gapped(
                pairs.iter().map(|&(a, b, j)| (b, (b.wrapping_sub(a), j))),
            )),
            ids: IdsForm::Memory {
                ids: gapped(ids.iter().map(|(r, id)| (r, Box::<str>::from(id)))),
                keys: gapped(keyed),
            },
            checked: 5,
            rejected: 2,
            unverifiable: 1,
            peak_bytes: 7,
        };
        assert_eq!(codec::encode(&copied, STATE_VERSION).unwrap(), bytes);
        let back: LoadedVerified = codec::decode(&bytes, STATE_VERSION).unwrap();
        let back = back.into_verified();
        assert_eq!((&back.pairs, &back.ids), (&found.pairs, &found.ids));
        assert_eq!(
            codec::encode(&SavedVerified::of(&back), STATE_VERSION).unwrap(),
            bytes
        );
        // On disk: the runs named.
        let on_disk = Verified {
            pairs: VerifiedPairs::Disk(VerifiedRun {
                runs: vec![run_info("dedup-verify-pairs-000000.vpairs")],
            }),
            ids: ClusteredIds::Disk(run_info("dedup-verify-clustered.ids")),
            ..verified()
        };
        let bytes = codec::encode(&SavedVerified::of(&on_disk), STATE_VERSION).unwrap();
        assert!(bytes.len() < 200);
        let back: LoadedVerified = codec::decode(&bytes, STATE_VERSION).unwrap();
        let back = back.into_verified();
        assert_eq!((back.pairs, back.ids), (on_disk.pairs, on_disk.ids));
    }
}
