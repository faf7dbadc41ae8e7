//! The step between passes 2 and 3: the clusters made from the verified
//! pairs ([`Clusters`], the state pass 3 reads), and `clusters.jsonl`, one
//! line per removed record (`kept.jsonl` is pass 3,
//! [`super::passes::kept`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use drainpipe_actors::{AtomicFile, OutputDir};

use super::bitset::BitSet;
use super::unionfind::UnionFind;

/// The removed records, each with the record it duplicates.
pub const CLUSTERS_FILE: &str = "clusters.jsonl";

/// The clusters built from the verified pairs.
#[derive(Debug, Default)]
pub struct Clusters {
    /// `(removed record, kept record, similarity)` in input order of the
    /// removed record.
    pub removed: Vec<(u32, u32, f64)>,
    /// Number of clusters of each size (2 and more).
    pub sizes: BTreeMap<usize, u64>,
}

impl Clusters {
    /// Union-find over the verified pairs `(earlier, later, similarity)`.
    /// A cluster keeps its first record in input order; every other member
    /// is removed as a duplicate of it, with as similarity the highest
    /// exact Jaccard similarity among its verified pairs (its closest
    /// verified neighbour in the cluster: always >= the threshold, and
    /// equal to its similarity to the kept record when that pair was
    /// verified and is its closest).
    pub fn from_pairs(pairs: &[(u32, u32, f64)]) -> Self {
        let mut members: Vec<u32> = pairs.iter().flat_map(|&(a, b, _)| [a, b]).collect();
        members.sort_unstable();
        members.dedup();
        let dense = |r: u32| members.binary_search(&r).expect("a member");
        let mut uf = UnionFind::new(members.len());
        let mut best = vec![0.0f64; members.len()];
        for &(a, b, j) in pairs {
            let (da, db) = (dense(a), dense(b));
            uf.union(da as u32, db as u32);
            best[da] = best[da].max(j);
            best[db] = best[db].max(j);
        }
        let mut size: HashMap<u32, usize> = HashMap::new();
        let mut removed = Vec::new();
        for (i, &record) in members.iter().enumerate() {
            let root = uf.find(i as u32);
            *size.entry(root).or_default() += 1;
            if root as usize != i {
                removed.push((record, members[root as usize], best[i]));
            }
        }
        let mut sizes = BTreeMap::new();
        for &n in size.values() {
            *sizes.entry(n).or_default() += 1;
        }
        Clusters { removed, sizes }
    }

    /// Clusters of two records or more.
    pub fn count(&self) -> u64 {
        self.sizes.values().sum()
    }

    /// The removed records.
    pub fn removed_records(&self) -> BitSet {
        let mut removed = BitSet::new();
        for &(r, _, _) in &self.removed {
            removed.insert(r.into());
        }
        removed
    }

    /// Each clustered record with its cluster's kept record.
    pub fn roots(&self) -> HashMap<u32, u32> {
        let mut roots = HashMap::new();
        for &(r, kept, _) in &self.removed {
            roots.insert(r, kept);
            roots.insert(kept, kept);
        }
        roots
    }
}

/// Writes `clusters.jsonl` to a temporary file (committed by the caller):
/// `{"id": <id>, "duplicate_of": <id of the kept record>, "similarity":
/// <f64>}` per removed record, ids as the input gave them.
pub fn write_clusters(
    output: &OutputDir,
    clusters: &Clusters,
    ids: &HashMap<u32, Box<str>>,
) -> anyhow::Result<AtomicFile> {
    let mut file = output.atomic(CLUSTERS_FILE)?;
    let id = |r: u32| {
        ids.get(&r).ok_or_else(|| {
            anyhow::anyhow!("no id for record {r}: the input changed between passes")
        })
    };
    for &(r, kept, j) in &clusters.removed {
        writeln!(
            file,
            "{{\"id\":{},\"duplicate_of\":{},\"similarity\":{}}}",
            id(r)?,
            id(kept)?,
            serde_json::to_string(&j)?
        )
        .map_err(|e| drainpipe_actors::OutputError::new(file.target(), e))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_keeps_its_first_record() {
        // 9-4 and 4-6 verified, 2-7 verified: clusters {4, 6, 9}, {2, 7}.
        let c = Clusters::from_pairs(&[(4, 9, 0.85), (4, 6, 0.9), (6, 9, 0.95), (2, 7, 1.0)]);
        assert_eq!(c.removed, [(6, 4, 0.95), (7, 2, 1.0), (9, 4, 0.95)]);
        assert_eq!(c.count(), 2);
        assert_eq!(c.sizes, BTreeMap::from([(2, 1), (3, 1)]));
    }
}
