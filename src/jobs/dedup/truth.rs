//! The ground truth for measuring `dedup`: an exact all-pairs similarity
//! join over shingle sets, and precision and recall of the clusters the
//! job found against it.
//!
//! The join is AllPairs with prefix filtering: if `J(x, y) >= t` then
//! `|x ∩ y| >= ceil(t * |x|)`, so under any global order of the shingles
//! the first `|x| - ceil(t * |x|) + 1` shingles of `x` and those of `y`
//! share at least one shingle. Every set is indexed by its prefix (the
//! order is the hash value itself: shingle hashes are random, so common
//! shingles are not favoured, and the sets are sorted by it already);
//! pairs sharing a prefix shingle and passing the size filter
//! (`|small| >= t * |large|`) are verified with [`jaccard`]. The bounds are
//! taken one shingle looser than the arithmetic so that floating-point
//! rounding can never drop a pair: the result is exactly the pairs with
//! `jaccard >= t`, the same function the job uses. Runs single-threaded,
//! outside the actors; it holds every shingle set (8 bytes per shingle),
//! so it is meant for the demo corpus and tests.

use std::collections::{HashMap, HashSet};

use drainpipe_actors::{BatchBuilder, InputError, RecordSource};
use serde::Serialize;

use crate::input::{parse_text_record, TextFields};

use super::similarity::jaccard;
use super::unionfind::UnionFind;

/// The shingle sets of a corpus, flat.
#[derive(Debug, Default, Clone)]
pub struct ShingleSets {
    /// Input index of each set's record.
    pub records: Vec<u32>,
    offsets: Vec<usize>,
    hashes: Vec<u64>,
}

impl ShingleSets {
    /// No sets.
    pub fn new() -> Self {
        ShingleSets {
            records: Vec::new(),
            offsets: vec![0],
            hashes: Vec::new(),
        }
    }

    /// Adds the set (sorted, without repeats) of record `record`.
    pub fn push(&mut self, record: u32, set: &[u64]) {
        self.records.push(record);
        self.hashes.extend_from_slice(set);
        self.offsets.push(self.hashes.len());
    }

    /// Number of sets.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when there is no set.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The `i`-th set.
    pub fn set(&self, i: usize) -> &[u64] {
        &self.hashes[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// Reads every record of `source` and returns the non-empty shingle sets,
/// by input index. Records the parser rejects are skipped. `stop` is polled
/// between batches; when it returns true, `None` is returned.
pub fn read_sets(
    source: &mut dyn RecordSource,
    fields: &TextFields,
    ngram: usize,
    stop: &dyn Fn() -> bool,
) -> Result<Option<ShingleSets>, InputError> {
    let mut sets = ShingleSets::new();
    let mut index = 0u64;
    loop {
        if stop() {
            return Ok(None);
        }
        let mut batch = BatchBuilder::with_capacity(1024, 4 << 20);
        if !source.fill(&mut batch, 1024, 4 << 20)? {
            return Ok(Some(sets));
        }
        for record in batch.finish().records() {
            let at = index;
            index += 1;
            let Ok(raw) = record else { continue };
            let Ok(text) = parse_text_record(&raw, fields) else {
                continue;
            };
            let Ok(at) = u32::try_from(at) else { continue };
            let set = super::shingle::shingle_set(&text.text, ngram);
            if !set.is_empty() {
                sets.push(at, &set);
            }
        }
    }
}

/// Every pair of records whose exact similarity is at least `threshold`:
/// `(earlier, later, similarity)` by input index, sorted.
pub fn all_pairs(sets: &ShingleSets, threshold: f64) -> Vec<(u32, u32, f64)> {
    let mut prefixes: Vec<(u64, u32)> = Vec::new();
    for i in 0..sets.len() {
        let set = sets.set(i);
        let min_overlap = ((threshold * set.len() as f64).ceil() as usize)
            .saturating_sub(1)
            .max(1);
        let prefix = (set.len() + 1).saturating_sub(min_overlap).min(set.len());
        prefixes.extend(set[..prefix].iter().map(|&h| (h, i as u32)));
    }
    prefixes.sort_unstable();
    let mut candidates: Vec<(u32, u32)> = Vec::new();
    for group in prefixes.chunk_by(|a, b| a.0 == b.0) {
        for (k, &(_, a)) in group.iter().enumerate() {
            for &(_, b) in &group[k + 1..] {
                let (la, lb) = (sets.set(a as usize).len(), sets.set(b as usize).len());
                let (small, large) = (la.min(lb) as f64, la.max(lb) as f64);
                if small + 1.0 >= threshold * large {
                    candidates.push((a.min(b), a.max(b)));
                }
            }
        }
    }
    drop(prefixes);
    candidates.sort_unstable();
    candidates.dedup();
    let mut pairs: Vec<(u32, u32, f64)> = candidates
        .into_iter()
        .filter_map(|(a, b)| {
            let j = jaccard(sets.set(a as usize), sets.set(b as usize));
            let (ra, rb) = (sets.records[a as usize], sets.records[b as usize]);
            (j >= threshold).then_some((ra.min(rb), ra.max(rb), j))
        })
        .collect();
    pairs.sort_unstable_by_key(|&(a, b, _)| (a, b));
    pairs
}

/// Precision and recall of the predicted clusters against the truth.
///
/// Main figures (`precision`, `recall`): over pairs of records. A pair is
/// a true duplicate pair when its two records are connected in the graph
/// of all pairs with exact similarity >= threshold (the clusters a perfect
/// run would produce: the connected components of the truth); a pair is
/// predicted when the job put both records in one cluster. Precision =
/// correct / predicted pairs, recall = correct / true pairs (1 when the
/// denominator is 0).
///
/// Edge figures: `edge_recall` is the fraction of the pairs with exact
/// similarity >= threshold whose records share a predicted cluster;
/// `edge_precision` the fraction of predicted pairs whose own similarity
/// is >= threshold (lower than `precision` when clusters are chains).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Accuracy {
    /// Correct / predicted pairs.
    pub precision: f64,
    /// Correct / true pairs.
    pub recall: f64,
    /// Pairs connected in the truth graph.
    pub true_pairs: u64,
    /// Pairs sharing a predicted cluster.
    pub predicted_pairs: u64,
    /// Pairs both true and predicted.
    pub correct_pairs: u64,
    /// Pairs with exact similarity >= threshold (edges of the truth graph).
    pub true_edges: u64,
    /// Fraction of true edges inside a predicted cluster.
    pub edge_recall: f64,
    /// Fraction of predicted pairs that are true edges.
    pub edge_precision: f64,
}

fn pairs_of(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

/// Compares `predicted` (each clustered record with its cluster's kept
/// record; records not listed are alone) with the truth edges.
pub fn accuracy(truth: &[(u32, u32, f64)], predicted: &HashMap<u32, u32>) -> Accuracy {
    let mut members: Vec<u32> = truth.iter().flat_map(|&(a, b, _)| [a, b]).collect();
    members.sort_unstable();
    members.dedup();
    let dense = |r: u32| members.binary_search(&r).expect("a member") as u32;
    let mut uf = UnionFind::new(members.len());
    for &(a, b, _) in truth {
        uf.union(dense(a), dense(b));
    }
    let mut truth_sizes: HashMap<u32, u64> = HashMap::new();
    let mut cells: HashMap<(u32, u32), u64> = HashMap::new();
    for (i, &r) in members.iter().enumerate() {
        let root = uf.find(i as u32);
        *truth_sizes.entry(root).or_default() += 1;
        if let Some(&p) = predicted.get(&r) {
            *cells.entry((root, p)).or_default() += 1;
        }
    }
    let mut clusters: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&r, &root) in predicted {
        clusters.entry(root).or_default().push(r);
    }
    let true_pairs = truth_sizes.values().map(|&n| pairs_of(n)).sum();
    let predicted_pairs = clusters.values().map(|m| pairs_of(m.len() as u64)).sum();
    let correct_pairs = cells.values().map(|&n| pairs_of(n)).sum();
    let edges: HashSet<(u32, u32)> = truth.iter().map(|&(a, b, _)| (a, b)).collect();
    let recovered = truth
        .iter()
        .filter(|&&(a, b, _)| {
            matches!((predicted.get(&a), predicted.get(&b)), (Some(x), Some(y)) if x == y)
        })
        .count() as u64;
    let mut predicted_edges = 0u64;
    for members in clusters.values() {
        for (k, &a) in members.iter().enumerate() {
            for &b in &members[k + 1..] {
                predicted_edges += u64::from(edges.contains(&(a.min(b), a.max(b))));
            }
        }
    }
    Accuracy {
        precision: ratio(correct_pairs, predicted_pairs),
        recall: ratio(correct_pairs, true_pairs),
        true_pairs,
        predicted_pairs,
        correct_pairs,
        true_edges: truth.len() as u64,
        edge_recall: ratio(recovered, truth.len() as u64),
        edge_precision: ratio(predicted_edges, predicted_pairs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::SplitMix64;

    fn brute_force(sets: &ShingleSets, t: f64) -> Vec<(u32, u32, f64)> {
        let mut out = Vec::new();
        for a in 0..sets.len() {
            for b in a + 1..sets.len() {
                let j = jaccard(sets.set(a), sets.set(b));
                if j >= t {
                    out.push((sets.records[a], sets.records[b], j));
                }
            }
        }
        out
    }

    #[test]
    fn all_pairs_equals_brute_force() {
        // Small sets drawn from a small universe: many pairs near every
        // threshold, sizes from 1 up.
        let mut rng = SplitMix64::new(9);
        let mut sets = ShingleSets::new();
        for r in 0..300u32 {
            let base = rng.range(0, 30);
            let len = rng.range(1, 12);
            let mut set: Vec<u64> = (0..len)
                .map(|_| (base + rng.range(0, 14)) * 0x9E37)
                .collect();
            set.sort_unstable();
            set.dedup();
            sets.push(r * 2, &set);
        }
        for t in [0.3, 0.5, 0.6, 0.75, 0.8, 0.9, 1.0] {
            assert_eq!(all_pairs(&sets, t), brute_force(&sets, t), "threshold {t}");
        }
    }

    #[test]
    fn precision_and_recall_of_clusters() {
        // Truth: 1-2-3 connected (1-3 below the threshold), 7-8.
        let truth = [(1, 2, 0.9), (2, 3, 0.85), (7, 8, 0.95)];
        let mut predicted = HashMap::new();
        for (r, root) in [(1, 1), (2, 1), (3, 1), (5, 5), (6, 5)] {
            predicted.insert(r, root);
        }
        let acc = accuracy(&truth, &predicted);
        assert_eq!(acc.true_pairs, 4);
        assert_eq!(acc.predicted_pairs, 4);
        assert_eq!(acc.correct_pairs, 3);
        assert_eq!(acc.precision, 0.75);
        assert_eq!(acc.recall, 0.75);
        assert_eq!(acc.edge_recall, 2.0 / 3.0);
        assert_eq!(acc.edge_precision, 0.5);
    }
}
