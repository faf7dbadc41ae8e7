//! LSH banding's last step: from the band keys of every record, sorted
//! band by band, to the candidate pairs. A kernel: it knows band lists of
//! `key << 32 | record` entries and nothing of passes, files or
//! checkpoints; pass 1's Integrator ([`super::passes::signatures`]) fills
//! the lists and calls [`candidate_pairs`] when the pass ends, or, when
//! the lists spilled to sorted runs under a memory budget
//! ([`super::spill`]), [`merged_candidate_pairs`] over their merge, which
//! gives the same pairs.
//!
//! Records sharing a key in a band are candidate pairs; which pairs of a
//! bucket, and why, is [`super::buckets`].

use std::convert::Infallible;
use std::sync::Mutex;

use super::buckets::{BucketPairs, Fingerprints};
use super::spill::across::CrossPairs;
use super::spill::merge::{Buckets, EntrySource};
use super::spill::pair_files::CandidatePairs;
use super::spill::pairs::{sort_pairs, PairSpill, PairsMade, Tally};
use super::spill::runs::RunError;

/// The candidate pairs of the `bands` (each a list of `key << 32 | record`
/// in input order, sorted by key in place): the pairs of each bucket of
/// records sharing a key ([`BucketPairs`]), sorted by the later record,
/// then the earlier one, without repeats.
///
/// Bands are independent, and the processors are idle once the pass ends,
/// so up to `threads` threads (the calling one included) each take the
/// next band not yet taken until none is left. A thread the system refuses
/// to start only means fewer of them.
pub fn candidate_pairs(bands: &mut [Vec<u64>], threads: usize) -> Vec<(u32, u32)> {
    // Before the sort, while entry `i` of every band is the same record.
    let twins = Fingerprints::of(bands);
    let count = bands.len();
    let bands: Vec<Mutex<&mut Vec<u64>>> = bands.iter_mut().map(Mutex::new).collect();
    let pairs = on_threads(
        count,
        threads,
        None,
        || (Vec::new(), BucketPairs::new(&twins)),
        |(scratch, buckets), index, pairs| {
            // Each band is taken by one thread only: never contended.
            let mut band = bands[index].lock().expect("a band's lock");
            add_pairs(&mut band, scratch, buckets, index == 0, pairs);
            Ok::<(), Infallible>(())
        },
    );
    match pairs {
        Ok(pairs) => pairs,
        Err(never) => match never {},
    }
}

/// [`candidate_pairs`] of bands read from sorted runs: `open(band)` gives
/// the band's entries in `(key, record)` order, each with its record's
/// twin fingerprint (spilled band lists, merged). The same pairs as
/// [`candidate_pairs`] of the same entries in memory; the first error of
/// any band ends it.
pub fn merged_candidate_pairs<S: EntrySource>(
    bands: usize,
    threads: usize,
    open: impl Fn(usize) -> Result<S, RunError> + Sync,
) -> Result<Vec<(u32, u32)>, RunError> {
    merged_candidate_pairs_from(bands, threads, 0, open)
}

/// [`merged_candidate_pairs`] with the pairs, as they are made, under
/// `spill`'s share of the memory budget: past it they go to sorted runs,
/// merged into the same pairs at the end ([`PairSpill`]).
pub fn merged_candidate_pairs_spilling<S: EntrySource>(
    bands: usize,
    threads: usize,
    spill: PairSpill<'_>,
    open: impl Fn(usize) -> Result<S, RunError> + Sync,
) -> Result<(CandidatePairs, PairsMade), RunError> {
    let pairs = pairs_of_merged_bands(bands, threads, 0, Some(&spill), open)?;
    spill.finish(pairs)
}

/// [`merged_candidate_pairs_spilling`] of a run whose first `from`
/// records are saved indexes': the pairs among them are never held (as
/// [`merged_candidate_pairs_from`]), and those across (an indexed record
/// and one of the run's) stay within the same share as the run's own,
/// and are handed apart ([`PairSpill::finish_across`]).
pub fn merged_candidate_pairs_across<S: EntrySource>(
    bands: usize,
    threads: usize,
    from: u32,
    spill: PairSpill<'_>,
    open: impl Fn(usize) -> Result<S, RunError> + Sync,
) -> Result<(CandidatePairs, CrossPairs, PairsMade), RunError> {
    let pairs = pairs_of_merged_bands(bands, threads, from, Some(&spill), open)?;
    spill.finish_across(pairs, from)
}

/// [`merged_candidate_pairs`] without the pairs whose later record is
/// below `from`: a saved index's records come first in a run against it,
/// and the pairs among them are never held (their buckets' entries are
/// read, for the buckets they share with the run's records, and passed).
pub fn merged_candidate_pairs_from<S: EntrySource>(
    bands: usize,
    threads: usize,
    from: u32,
    open: impl Fn(usize) -> Result<S, RunError> + Sync,
) -> Result<Vec<(u32, u32)>, RunError> {
    pairs_of_merged_bands(bands, threads, from, None, open)
}

/// [`merged_candidate_pairs_from`], the pairs under `sink` when given
/// (what its lists hold at the end: the caller finishes it).
fn pairs_of_merged_bands<S: EntrySource>(
    bands: usize,
    threads: usize,
    from: u32,
    sink: Option<&PairSpill<'_>>,
    open: impl Fn(usize) -> Result<S, RunError> + Sync,
) -> Result<Vec<(u32, u32)>, RunError> {
    let none = Fingerprints::default();
    on_threads(
        bands,
        threads,
        sink,
        || (BucketPairs::new(&none), Tally::default(), 0usize),
        |(buckets, tally, compacted), index, pairs| {
            let mut band = Buckets::new(open(index)?);
            while let Some(bucket) = band.next_bucket()? {
                // Records are in order in a bucket: the last is the latest.
                let latest = bucket.last().map_or(0, |e| e.record);
                if bucket.len() < 2 || latest < from {
                    continue;
                }
                let start = pairs.len();
                buckets.add_with(bucket, |e| e.record, |e| e.print, index == 0, pairs);
                if from > 0 {
                    let mut kept = start;
                    for at in start..pairs.len() {
                        if pairs[at].1 >= from {
                            pairs[kept] = pairs[at];
                            kept += 1;
                        }
                    }
                    pairs.truncate(kept);
                }
                if let Some(sink) = sink {
                    sink.check(pairs, tally)?;
                }
            }
            // Without a sink (bands merged with no budget), or against an
            // index (whose pairs are mostly across, repeated in every band
            // the records share, under a share that may be large: the
            // default budget's), a pair is made again in every band its
            // records share: the list is sorted and its repeats dropped
            // each time it doubles, so that it holds about twice its
            // pairs and a band's at most, not a copy a band. The sink's
            // own sort may have shortened it since.
            *compacted = (*compacted).min(pairs.len());
            let compacts = sink.is_none() || from > 0;
            if compacts && pairs.len() > 2 * *compacted + COMPACT_FLOOR {
                sort_pairs(pairs);
                *compacted = pairs.len();
                if let Some(sink) = sink {
                    sink.recount(pairs, pairs.capacity(), tally);
                }
            }
            Ok(())
        },
    )
}

/// Pairs a thread's list holds past twice its last compacted length
/// before it is compacted again: a floor so that small lists are not
/// sorted band after band.
const COMPACT_FLOOR: usize = 1 << 16;

/// Runs `each(state, band, pairs)` for every band below `bands`, and
/// returns the pairs all of them appended, sorted by the later record,
/// then the earlier one, without repeats.
///
/// Bands are independent, and the processors are idle once the pass ends,
/// so up to `threads` threads (the calling one included, each with its
/// own `state()`) each take the next band not yet taken until none is
/// left, or until one fails ([`super::threads::on_threads`]). Under a
/// `spill`, each thread's list is sorted (and the repeats dropped) before
/// the lists join, so that they join within its limit.
fn on_threads<T: Send, E: Send>(
    bands: usize,
    threads: usize,
    spill: Option<&PairSpill<'_>>,
    state: impl Fn() -> T + Sync,
    each: impl Fn(&mut T, usize, &mut Vec<(u32, u32)>) -> Result<(), E> + Sync,
) -> Result<Vec<(u32, u32)>, E> {
    let states = super::threads::on_threads(
        bands,
        threads,
        "sorting LSH bands",
        || (state(), Vec::new()),
        |(state, pairs), band| each(state, band, pairs),
    )?;
    let mut lists: Vec<Vec<(u32, u32)>> = states.into_iter().map(|(_, pairs)| pairs).collect();
    if spill.is_some() {
        for list in &mut lists {
            sort_pairs(list);
            list.shrink_to_fit();
        }
    }
    let mut pairs = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    for list in lists {
        pairs.extend(list);
    }
    if let Some(spill) = spill {
        spill.joined(&pairs, pairs.capacity());
    }
    sort_pairs(&mut pairs);
    Ok(pairs)
}

/// Sorts `band` by key (through `scratch`) and appends the candidate pairs
/// of its buckets, unsorted, to `pairs` (with the twins' pairs when
/// `with_twins`: those of the first band).
fn add_pairs(
    band: &mut Vec<u64>,
    scratch: &mut Vec<u64>,
    buckets: &mut BucketPairs<'_>,
    with_twins: bool,
    pairs: &mut Vec<(u32, u32)>,
) {
    sort_by_key(band, scratch);
    for bucket in band.chunk_by(|a, b| a >> 32 == b >> 32) {
        if bucket.len() > 1 {
            buckets.add(bucket, with_twins, pairs);
        }
    }
}

/// Sorts `entries` by their high 32 bits (the key), keeping the order of
/// equal keys (records stay in input order): a least-significant-digit
/// radix sort through `scratch`, three passes of 11 bits, with the counts
/// of all three taken in one pass over the entries. Four passes of 8 bits,
/// each counted on its own, went over the entries eight times, not four
/// (pass 1's Finishing at 200k documents, sort included: 28-30 ms before,
/// 26-28 ms after).
pub fn sort_by_key(entries: &mut Vec<u64>, scratch: &mut Vec<u64>) {
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

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::super::buckets::{ALL_PAIRS_UP_TO, WINDOW};
    use super::*;

    /// Bands of `records` records, each key drawn by `key(record, band)`.
    fn bands_of(records: u32, bands: usize, key: impl Fn(u32, usize) -> u32) -> Vec<Vec<u64>> {
        (0..bands)
            .map(|band| {
                (0..records)
                    .map(|r| u64::from(key(r, band)) << 32 | u64::from(r))
                    .collect()
            })
            .collect()
    }

    /// The buckets of each band: key -> records, in input order.
    fn buckets_of(bands: &[Vec<u64>]) -> Vec<HashMap<u32, Vec<u32>>> {
        bands
            .iter()
            .map(|band| {
                let mut buckets: HashMap<u32, Vec<u32>> = HashMap::new();
                for &entry in band {
                    buckets
                        .entry((entry >> 32) as u32)
                        .or_default()
                        .push(entry as u32);
                }
                buckets
            })
            .collect()
    }

    #[test]
    fn every_pair_of_a_small_bucket_and_of_the_first_record_rule_is_a_candidate() {
        let mut state = 1u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        // Keys from a small set, so that they repeat (buckets of 1 to about
        // 30), spread over all four bytes (every digit of the radix sort
        // matters).
        let keys: Vec<u32> = (0..3000 * 5)
            .map(|_| (next() % 250).wrapping_mul(0x0101_0101))
            .collect();
        let bands = bands_of(3000, 5, |r, band| keys[r as usize * 5 + band]);
        let pairs = candidate_pairs(&mut bands.clone(), 1);
        let set: HashSet<(u32, u32)> = pairs.iter().copied().collect();
        assert_eq!(set.len(), pairs.len(), "no repeats");
        assert!(pairs
            .windows(2)
            .all(|w| (w[0].1, w[0].0) < (w[1].1, w[1].0)));
        assert!(pairs.iter().all(|&(a, b)| a < b));
        let (mut small, mut large) = (0, 0);
        for buckets in buckets_of(&bands) {
            for members in buckets.values() {
                // The first record's pairs, as before, in every bucket.
                for &later in &members[1..] {
                    assert!(set.contains(&(members[0], later)));
                }
                if members.len() <= ALL_PAIRS_UP_TO {
                    small += 1;
                    for (i, &a) in members.iter().enumerate() {
                        for &b in &members[i + 1..] {
                            assert!(set.contains(&(a, b)), "({a}, {b}) of {members:?}");
                        }
                    }
                } else {
                    // No twins here: each record with the WINDOW before it.
                    large += 1;
                    for (i, &b) in members.iter().enumerate() {
                        for &a in &members[i.saturating_sub(WINDOW)..i] {
                            assert!(set.contains(&(a, b)), "({a}, {b}) of {members:?}");
                        }
                    }
                }
            }
        }
        assert!(small > 1000 && large > 10, "{small} small, {large} large");
        // Sorted by one thread or split among several, the same pairs.
        for threads in [2, 3, 40] {
            let mut bands = bands.clone();
            assert_eq!(
                candidate_pairs(&mut bands, threads),
                pairs,
                "{threads} threads"
            );
        }
    }

    #[test]
    fn a_bucket_of_identical_records_gives_one_pair_a_record() {
        let records = 20_000;
        let mut bands = bands_of(records, 18, |_, band| band as u32 * 77);
        let pairs = candidate_pairs(&mut bands, 2);
        let expected: Vec<(u32, u32)> = (1..records).map(|r| (0, r)).collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn twins_in_a_large_bucket_are_paired_with_their_first_only() {
        // Band 0: one bucket of 72 records. Elsewhere, records with the
        // same r % 3 share every key (three families of 19 twins) except
        // records 57..72, each on its own.
        let mut bands = bands_of(72, 4, |r, band| match (band, r) {
            (0, _) => 5,
            (_, 57..) => 100 + r,
            _ => 10 + r % 3,
        });
        let pairs = candidate_pairs(&mut bands, 1);
        let mut expected: Vec<(u32, u32)> = (3..57).map(|r| (r % 3, r)).collect();
        // The firsts of the bucket of band 0: 0, 1, 2, 57, 58, ..., 71,
        // each with the bucket's first and the WINDOW before it.
        let firsts: Vec<u32> = [0, 1, 2].into_iter().chain(57..72).collect();
        for (i, &b) in firsts.iter().enumerate() {
            for &a in &firsts[i.saturating_sub(WINDOW)..i] {
                expected.push((a, b));
            }
            if i > WINDOW {
                expected.push((0, b));
            }
        }
        // Buckets 10, 11, 12 of the other bands: twins only, no pair.
        expected.sort_unstable_by_key(|&(a, b)| (b, a));
        expected.dedup();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn a_large_bucket_of_distinct_records_gives_a_bounded_number_of_pairs() {
        let records = 10_000;
        // All in one bucket of band 0, distinct everywhere else.
        let mut bands = bands_of(records, 18, |r, band| if band == 0 { 1 } else { r });
        let pairs = candidate_pairs(&mut bands, 2);
        assert!(
            pairs.len() <= (WINDOW + 1) * records as usize,
            "{} pairs",
            pairs.len()
        );
        assert!(pairs.len() >= WINDOW * (records as usize - WINDOW));
    }
}
