//! The candidate pairs of one LSH bucket: the records that share a key in
//! one band.
//!
//! `--explain` promises that a pair of similarity J becomes a candidate,
//! and so is verified, with probability `1 - (1 - J^r)^b`: the chance that
//! the two share a key in some band. Pairing each record with its bucket's
//! first record only kept that promise for pairs that include the first.
//! On a chain of records where each has J ~0.85 with the next (and the far
//! ends share nothing), a band's bucket often holds three or four records
//! of the chain, and the pairs of the later ones were never verified:
//! 5-15 of 1,000 adjacent pairs missed, where the curve promises about one.
//!
//! What a bucket gives instead:
//!
//! - **At most [`ALL_PAIRS_UP_TO`] records: every pair of them.** The
//!   promise holds exactly. Measured: on three shuffled 1,000-record
//!   chains at J 0.852 (`tests/guarantees/dedup_candidates_keep_the_s_curve_promise_on_chains.rs`)
//!   the largest bucket has 9 records (8 was too few), and the first-record
//!   rule cut 47 of 2,997 adjacent pairs, this one none; on the
//!   200k-document benchmark corpus no bucket has more than 4 records, and
//!   every pair of them is 1.1% more pairs than the first-record rule
//!   (65,484 against 64,768, before repeats across bands are removed).
//! - **More records: twins are collapsed.** Records with the same key in
//!   every band (*twins*, the same [`Fingerprints`]; in practice identical
//!   texts) are in the same bucket of every band. The first of them stands
//!   for the others: each twin is paired with it (in the first band only,
//!   so a million identical lines give a million pairs, not eighteen
//!   million), and only the first is paired with the bucket's other
//!   records. When twins have the same shingle set (identical texts: their
//!   verified pair has J = 1), every pair of the bucket is as good as
//!   verified: a twin's similarity to any record is its first's. Twins
//!   whose sets differ (every MinHash value equal, so J near 1) are the
//!   one case where a pair stands on a near-identical record's similarity.
//! - **And distinct signatures in a window.** Each first of its twins is
//!   paired with the bucket's first and with the [`WINDOW`] firsts before
//!   it, in input order. Within a window the promise holds; beyond, a pair
//!   is joined only through the records between (a big bucket of distinct
//!   signatures is a family of near-duplicates, nearly always one cluster
//!   through its neighbours), and the bucket's first is paired with every
//!   record, as before, so no pair found before is lost.
//!
//! The bound: a record gives at most `WINDOW + 1` pairs per band (in a
//! bucket of at most 16, `(16 - 1) / 2` on average), plus one with its
//! first twin: at most `(WINDOW + 1) * bands + 1` candidate pairs a record
//! before repeats are removed (163 with the default 18 bands, 8 bytes
//! each), where the first-record rule gave `bands`. Reaching it takes
//! every record in a large bucket of distinct signatures in every band; a
//! bucket of identical records costs one pair a record, as before, and no
//! quadratic work.

use std::collections::HashMap;

/// Buckets of at most this many records give every pair of their members
/// (at most `(n - 1) / 2` pairs a record on average).
pub const ALL_PAIRS_UP_TO: usize = 16;

/// In a larger bucket, each distinct signature is paired with this many
/// distinct signatures before it (and with the bucket's first).
pub const WINDOW: usize = 8;

/// Records compared at once when the fingerprints are computed: their
/// accumulators stay in the first-level cache while each band goes by.
const CHUNK: usize = 1024;

/// One band's `key` into a record's fingerprint so far (from 0): a
/// multiply and a rotation per key, computed over records side by side in
/// [`Fingerprints::of`]: the key enters the low half, the multiply carries
/// it up, the rotation brings it down for the next band.
#[inline(always)]
fn mix(print: u64, key: u64) -> u64 {
    ((print ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(32)
}

/// The fingerprint of one record from its keys in band order: the value
/// [`Fingerprints::of`] gives it (0 for a record without keys), computed
/// when the record is integrated, for band lists that spill to disk.
pub fn fingerprint(keys: &[u32]) -> u64 {
    keys.iter()
        .fold(0, |print, &key| mix(print, u64::from(key)))
}

/// Per record, a 64-bit hash of its keys in every band: records with equal
/// fingerprints are twins (the same keys everywhere, but for a collision
/// of probability about 2^-64 per pair).
#[derive(Debug, Default)]
pub struct Fingerprints(Vec<u64>);

impl Fingerprints {
    /// The fingerprints of the records in `bands`, each a list of
    /// `key << 32 | record` entries in the order the records were
    /// integrated (before the lists are sorted): entry `i` of every band is
    /// the same record, which puts a key in every band. Lists of different
    /// lengths (never, short of a bug) give no twins at all.
    pub fn of(bands: &[Vec<u64>]) -> Self {
        let Some(first) = bands.first() else {
            return Fingerprints::default();
        };
        if bands.iter().any(|band| band.len() != first.len()) {
            return Fingerprints::default();
        }
        let records = first.iter().map(|&e| e as u32 as usize + 1).max();
        let mut prints = vec![0u64; records.unwrap_or(0)];
        let mut acc = [0u64; CHUNK];
        for start in (0..first.len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(first.len());
            let acc = &mut acc[..end - start];
            acc.fill(0);
            for band in bands {
                let band = &band[start..end];
                debug_assert!(band
                    .iter()
                    .zip(&first[start..end])
                    .all(|(&e, &f)| e as u32 == f as u32));
                for (a, &entry) in acc.iter_mut().zip(band) {
                    *a = mix(*a, entry >> 32);
                }
            }
            for (&a, &entry) in acc.iter().zip(&first[start..end]) {
                prints[entry as u32 as usize] = a;
            }
        }
        Fingerprints(prints)
    }

    /// The fingerprint of `record` (0 when it has none: then it is nobody's
    /// twin but another such record's, which only costs a verified pair).
    fn of_record(&self, record: u32) -> u64 {
        self.0.get(record as usize).copied().unwrap_or(0)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * 8
    }
}

/// Turns buckets into candidate pairs, with scratch space reused from one
/// bucket to the next.
#[derive(Debug)]
pub struct BucketPairs<'a> {
    twins: &'a Fingerprints,
    /// The first record of each fingerprint in the bucket, in input order.
    firsts: Vec<u32>,
    first_of: HashMap<u64, u32>,
}

impl<'a> BucketPairs<'a> {
    /// Pairs for buckets whose records' twins are told by `twins`.
    pub fn new(twins: &'a Fingerprints) -> Self {
        BucketPairs {
            twins,
            firsts: Vec::new(),
            first_of: HashMap::new(),
        }
    }

    /// Appends the candidate pairs `(earlier, later)` of `bucket` (entries
    /// `key << 32 | record` of one key, in input order) to `pairs`, with
    /// each twin's pair with its first when `with_twins` (one band says
    /// it for all: twins are in the same bucket in every band).
    pub fn add(&mut self, bucket: &[u64], with_twins: bool, pairs: &mut Vec<(u32, u32)>) {
        let twins = self.twins;
        self.add_with(
            bucket,
            |&entry| entry as u32,
            |&entry| twins.of_record(entry as u32),
            with_twins,
            pairs,
        );
    }

    /// [`BucketPairs::add`] for a bucket of any entries, in input order,
    /// whose `record` and twin fingerprint (`print`) are told by the two
    /// functions: the fingerprints of spilled entries travel with them.
    pub fn add_with<T>(
        &mut self,
        bucket: &[T],
        record: impl Fn(&T) -> u32,
        print: impl Fn(&T) -> u64,
        with_twins: bool,
        pairs: &mut Vec<(u32, u32)>,
    ) {
        if bucket.len() <= ALL_PAIRS_UP_TO {
            for (i, a) in bucket.iter().enumerate() {
                pairs.extend(bucket[i + 1..].iter().map(|b| (record(a), record(b))));
            }
            return;
        }
        self.firsts.clear();
        self.first_of.clear();
        let mut last: Option<(u64, u32)> = None;
        for entry in bucket {
            let r = record(entry);
            let print = print(entry);
            // Twins are usually next to each other: one look-up per run.
            let first = match last {
                Some((p, first)) if p == print => first,
                _ => *self.first_of.entry(print).or_insert(r),
            };
            last = Some((print, first));
            if first == r {
                self.firsts.push(r);
            } else if with_twins {
                pairs.push((first, r));
            }
        }
        let firsts = &self.firsts;
        for (i, &r) in firsts.iter().enumerate().skip(1) {
            let from = i.saturating_sub(WINDOW);
            if from > 0 {
                pairs.push((firsts[0], r));
            }
            pairs.extend(firsts[from..i].iter().map(|&e| (e, r)));
        }
    }
}
