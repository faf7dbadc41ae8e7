//! The clusters of a run against saved indexes (`--against`) when their
//! pairs do not fit their share of the memory budget
//! ([`crate::jobs::dedup::budget::Shares::clusters`]): what the in-memory
//! union-find over the joined numbering makes
//! ([`crate::jobs::dedup::clusters::Clusters::with_index`]), made with
//! [`super::components`] from a stream of the joined pairs, under
//! `--keep first`.
//!
//! The joined numbering puts the indexed records first (`0..offset`), so
//! a component's smallest record, which [`super::components`] gives as the
//! root of every other member, is its first indexed root when it has one:
//! the record the in-memory path keeps (an indexed record cannot be
//! removed), and the first record otherwise, as `--keep first` keeps. Its
//! removed stream, in record order, is split as it is read:
//!
//! - an indexed root (`r < offset`) joined to an earlier one: `relabeled`,
//!   for the saved index's roots (in order, so sorted by the root);
//! - a record of this run whose root is one of this run's: the removed
//!   records, renumbered as this run numbers them, in memory within a
//!   quarter of the share, else in a run (`RemovedWriter`);
//! - a record of this run whose root is indexed: `indexed`, in record
//!   order, in memory within a quarter of the share, else in a run of its
//!   own (named with the indexed record's id by the caller:
//!   [`super::indexed`]).
//!
//! `relabeled` is held in memory: 8 bytes an indexed cluster this run
//! joins to another.
//!
//! Under `--keep longest`, `shortest` or `field:`, [`joined_ranked`]
//! makes them with [`super::ranked`] instead, this run's keys shifted
//! into the joined numbering: a component whose root is below `offset`
//! has an indexed record and keeps that root unranked (an indexed record
//! cannot be removed); the others keep by the policy's sequential rule
//! among this run's records. The result is split as above.

use std::collections::BTreeMap;
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::components::{
    components, Removed, RemovedRecord, RemovedWriter, StopCheck, Work, MIN_PIECE,
};
use super::ranked::{ranked_in_pieces, KeyedRecord};
use super::runs::RunError;
use crate::jobs::dedup::keep::KeepPolicy;

/// The joined clusters, split by numbering.
#[derive(Debug, Default)]
pub struct Joined {
    /// This run's records removed as duplicates of this run's records,
    /// `(removed, kept, similarity)`, numbered as this run numbers them,
    /// in record order.
    pub removed: Removed,
    /// This run's records removed as duplicates of an indexed record,
    /// `(removed, indexed root, similarity)`, the root in the joined
    /// numbering, in record order: in memory or in a run.
    pub indexed: Removed,
    /// `(indexed root, the first indexed root of its cluster)` for the
    /// indexed clusters this run joined to an earlier one, by root.
    pub relabeled: Vec<(u32, u32)>,
    /// Clusters of each size, an indexed cluster counted as one record.
    pub sizes: BTreeMap<usize, u64>,
    /// What the components took.
    pub work: Work,
    /// Under a ranking policy's `field:`, the members of the clusters
    /// without an indexed record that had no usable value (else 0).
    pub missing: u64,
}

/// The clusters of `offset` indexed records followed by this run's, from
/// the verified pairs `cross` (`(indexed cluster root, record of this
/// run, similarity)`) and this run's `own` (`(earlier, later,
/// similarity)`), each in any order, within `share` bytes in `temp`.
pub fn joined_components(
    cross: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    own: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    offset: u32,
    (share, temp): (u64, &Arc<TempSpace>),
    stop: &StopCheck<'_>,
) -> Result<Joined, RunError> {
    let pairs = shifted_pairs(cross, own, offset);
    let found = components(pairs, share, temp, stop)?;
    let mut joined = split(&found.removed, offset, (share, temp), stop)?;
    (joined.sizes, joined.work) = (found.sizes, found.work);
    Ok(joined)
}

/// [`joined_components`] under a `--keep` `policy` other than `first`,
/// ranking the clusters without an indexed record by the `keys` of this
/// run's clustered records (in record order, numbered as this run
/// numbers them; see the module's docs).
pub fn joined_ranked(
    (cross, own, offset): (
        impl Iterator<Item = Result<RemovedRecord, RunError>>,
        impl Iterator<Item = Result<RemovedRecord, RunError>>,
        u32,
    ),
    (keys, policy): (
        impl Iterator<Item = Result<KeyedRecord, RunError>>,
        &KeepPolicy,
    ),
    (share, temp): (u64, &Arc<TempSpace>),
    stop: &StopCheck<'_>,
) -> Result<Joined, RunError> {
    joined_ranked_in_pieces(
        (cross, own, offset),
        (keys, policy),
        (share, MIN_PIECE),
        (temp, stop),
    )
}

/// [`joined_ranked`] with the components in pieces of `floor` edges at
/// least.
fn joined_ranked_in_pieces(
    (cross, own, offset): (
        impl Iterator<Item = Result<RemovedRecord, RunError>>,
        impl Iterator<Item = Result<RemovedRecord, RunError>>,
        u32,
    ),
    (keys, policy): (
        impl Iterator<Item = Result<KeyedRecord, RunError>>,
        &KeepPolicy,
    ),
    (share, floor): (u64, usize),
    (temp, stop): (&Arc<TempSpace>, &StopCheck<'_>),
) -> Result<Joined, RunError> {
    let pairs = shifted_pairs(cross, own, offset);
    let keys = keys.map(move |k| k.and_then(|(r, key)| Ok((shift(r, offset)?, key))));
    let keep = (policy, offset);
    let found = ranked_in_pieces(pairs, keys, keep, (share, floor), (temp, stop))?;
    let mut joined = split(&found.removed, offset, (share, temp), stop)?;
    (joined.sizes, joined.work, joined.missing) = (found.sizes, found.work, found.missing);
    Ok(joined)
}

/// Record `x` of this run numbered after the `offset` indexed records.
fn shift(x: u32, offset: u32) -> Result<u32, RunError> {
    x.checked_add(offset).ok_or_else(|| RunError::Failed {
        kind: std::io::ErrorKind::Other,
        message: format!(
            "dedup clusters: record {x} past 2^32 once numbered after the indexes (a bug)"
        ),
    })
}

/// The pairs across then this run's, in the joined numbering.
fn shifted_pairs(
    cross: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    own: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    offset: u32,
) -> impl Iterator<Item = Result<RemovedRecord, RunError>> {
    cross
        .map(move |p| p.and_then(|(root, b, j)| Ok((root, shift(b, offset)?, j))))
        .chain(
            own.map(move |p| p.and_then(|(a, b, j)| Ok((shift(a, offset)?, shift(b, offset)?, j)))),
        )
}

/// The joined removed records split by numbering (see the module's
/// docs); the sizes and work left for the caller.
fn split(
    found: &Removed,
    offset: u32,
    (share, temp): (u64, &Arc<TempSpace>),
    stop: &StopCheck<'_>,
) -> Result<Joined, RunError> {
    let mut removed = RemovedWriter::new(temp, share / 4);
    let mut indexed = RemovedWriter::named(temp, share / 4, "indexed");
    let mut relabeled = Vec::new();
    for record in found.iter() {
        stop.step()?;
        let (r, kept, j) = record?;
        if r < offset {
            relabeled.push((r, kept));
        } else if kept >= offset {
            removed.push((r - offset, kept - offset, j))?;
        } else {
            indexed.push((r - offset, kept, j))?;
        }
    }
    Ok(Joined {
        removed: removed.finish()?,
        indexed: indexed.finish()?,
        relabeled,
        ..Joined::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::dedup::clusters::Clusters;

    /// A small random number generator (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n.max(1)
        }

        fn similarity(&mut self) -> f64 {
            0.5 + self.below(1 << 20) as f64 / f64::from(1 << 21)
        }
    }

    /// A random graph: `offset` indexed records of which some are roots,
    /// `records` of this run; this run's pairs `(earlier, later)` once
    /// each, sorted by the later record, and pairs across `(indexed root,
    /// record)` sorted by the record, as pass 2 gives them.
    type Graph = (Vec<RemovedRecord>, Vec<RemovedRecord>, u32);

    fn graph(rng: &mut Rng) -> Graph {
        let offset = rng.below(400) as u32;
        let records = 2 + rng.below(2_000);
        let roots: Vec<u32> = (0..offset).filter(|_| rng.below(3) == 0).collect();
        let mut own: Vec<(u32, u32)> = (0..rng.below(3 * records))
            .map(|_| (rng.below(records) as u32, rng.below(records) as u32))
            .filter(|&(a, b)| a != b)
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        own.sort_unstable_by_key(|&(a, b)| (b, a));
        own.dedup();
        let mut cross: Vec<(u32, u32)> = Vec::new();
        if !roots.is_empty() {
            for _ in 0..rng.below(records) {
                let root = roots[rng.below(roots.len() as u64) as usize];
                cross.push((root, rng.below(records) as u32));
            }
        }
        cross.sort_unstable_by_key(|&(a, b)| (b, a));
        cross.dedup();
        let mut with = |pairs: Vec<(u32, u32)>| -> Vec<RemovedRecord> {
            pairs
                .into_iter()
                .map(|(a, b)| (a, b, rng.similarity()))
                .collect()
        };
        (with(own), with(cross), offset)
    }

    fn stream(
        list: &[RemovedRecord],
    ) -> impl Iterator<Item = Result<RemovedRecord, RunError>> + '_ {
        list.iter().map(|&p| Ok(p))
    }

    fn same(got: &[RemovedRecord], want: &[RemovedRecord], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.0 == w.0 && g.1 == w.1 && g.2.to_bits() == w.2.to_bits(),
                "{what}: {g:?} where the union-find gives {w:?}"
            );
        }
    }

    #[test]
    fn the_joined_components_are_the_union_finds_with_the_index_on_random_graphs() {
        let mut rng = Rng(14);
        let (mut spilled, mut indexed_spilled) = (0, 0);
        for round in 0..60 {
            let (own, cross, offset) = graph(&mut rng);
            let (want, want_relabeled) = Clusters::with_index(&own, &cross, offset);
            let dir = tempfile::tempdir().unwrap();
            let temp = Arc::new(TempSpace::new(dir.path()));
            // Tiny shares: pieces of the fewest edges, every sort in runs.
            let share = rng.below(3) * (2 << 10);
            let got = joined_components(
                stream(&cross),
                stream(&own),
                offset,
                (share, &temp),
                &StopCheck::never(),
            )
            .unwrap();
            let what = format!("graph {round}: offset {offset}, share {share}");
            same(
                &got.removed.to_vec().unwrap(),
                &want.removed.to_vec().unwrap(),
                &what,
            );
            let want_indexed = want.indexed.to_vec().unwrap();
            same(&got.indexed.to_vec().unwrap(), &want_indexed, &what);
            assert_eq!(got.relabeled, want_relabeled, "{what}");
            assert_eq!(got.sizes, want.sizes, "{what}");
            spilled += usize::from(matches!(got.removed, Removed::Disk(_)));
            indexed_spilled += usize::from(matches!(got.indexed, Removed::Disk(_)));
            let expected = usize::from(matches!(got.removed, Removed::Disk(_)))
                + usize::from(matches!(got.indexed, Removed::Disk(_)));
            drop(got);
            let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
            assert_eq!(left, 0, "{what}: {expected} run(s) left before the drop");
        }
        assert!(
            spilled > 5 && indexed_spilled > 5,
            "{spilled} graphs with the removed records in a run, {indexed_spilled} with those \
             removed as indexed records' duplicates"
        );
    }

    #[test]
    fn indexed_roots_joined_through_this_run_are_relabeled_to_the_first() {
        // As `Clusters::with_index`'s example: indexed roots 3 and 7 (of
        // 10), joined through this run's records 1, 2 and 4.
        let own = [(0, 1, 0.9), (2, 4, 0.8)];
        let cross = [(7, 1, 0.85), (3, 2, 1.0), (7, 4, 0.95), (5, 6, 0.7)];
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let got = joined_components(
            stream(&cross),
            stream(&own),
            10,
            (0, &temp),
            &StopCheck::never(),
        )
        .unwrap();
        assert_eq!(got.removed.to_vec().unwrap(), []);
        assert_eq!(
            got.indexed.to_vec().unwrap(),
            [
                (0, 3, 0.9),
                (1, 3, 0.9),
                (2, 3, 1.0),
                (4, 3, 0.95),
                (6, 5, 0.7)
            ]
        );
        assert_eq!(got.relabeled, [(7, 3)]);
        assert_eq!(got.sizes, BTreeMap::from([(2, 1), (6, 1)]));
    }
}

#[cfg(test)]
mod ranked_tests {
    use std::cell::Cell;
    use std::collections::HashMap;

    use super::*;
    use crate::jobs::dedup::clusters::{Clusters, Prefers};
    use crate::jobs::dedup::keep::KeepKey;
    use crate::jobs::dedup::testing::Rng;

    /// A random graph against `offset` indexed records, some of them
    /// roots: this run's pairs and those across as pass 2 gives them, a
    /// record often joined to several indexed roots.
    fn graph(rng: &mut Rng) -> (Vec<RemovedRecord>, Vec<RemovedRecord>, u32, u32) {
        let offset = rng.below(60) as u32;
        let records = 2 + rng.below(200) as u32;
        let roots: Vec<u32> = (0..offset).filter(|_| rng.below(3) == 0).collect();
        let similarity = |rng: &mut Rng| 0.5 + rng.below(8) as f64 / 16.0;
        let mut own: Vec<(u32, u32)> = (0..rng.below(2 * u64::from(records)))
            .map(|_| {
                (
                    rng.below(records.into()) as u32,
                    rng.below(records.into()) as u32,
                )
            })
            .filter(|&(a, b)| a != b)
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        own.sort_unstable_by_key(|&(a, b)| (b, a));
        own.dedup();
        let mut cross: Vec<(u32, u32)> = Vec::new();
        for _ in 0..rng.below(u64::from(records) / 2 + 1) {
            if roots.is_empty() {
                break;
            }
            let root = roots[rng.below(roots.len() as u64) as usize];
            cross.push((root, rng.below(records.into()) as u32));
        }
        cross.sort_unstable_by_key(|&(a, b)| (b, a));
        cross.dedup();
        let own = own
            .into_iter()
            .map(|(a, b)| (a, b, similarity(rng)))
            .collect();
        let cross = cross
            .into_iter()
            .map(|(a, b)| (a, b, similarity(rng)))
            .collect();
        (own, cross, offset, records)
    }

    /// Keys with many ties; under `field:`, some missing and of each kind.
    fn key(rng: &mut Rng, policy: &KeepPolicy) -> Option<KeepKey> {
        if policy.field().is_none() {
            return Some(KeepKey::Length(rng.below(3) * 10));
        }
        match rng.below(6) {
            0 => None,
            1 => Some(KeepKey::Missing),
            2 => Some(KeepKey::Float(rng.below(3) as f64)),
            3 => Some(KeepKey::Text(format!("t{}", rng.below(2)).into())),
            _ => Some(KeepKey::Int(rng.below(3) as i64)),
        }
    }

    fn policies() -> Vec<KeepPolicy> {
        vec![
            KeepPolicy::Longest,
            KeepPolicy::Shortest,
            "field:s".parse().unwrap(),
            "field:s:asc".parse().unwrap(),
        ]
    }

    fn same(got: &Removed, want: &Removed, what: &str) {
        let (got, want) = (got.to_vec().unwrap(), want.to_vec().unwrap());
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g.0 == w.0 && g.1 == w.1 && g.2.to_bits() == w.2.to_bits(),
                "{what}: {g:?} where the union-find gives {w:?}"
            );
        }
    }

    #[test]
    fn the_joined_ranked_clusters_are_the_union_finds_with_the_index_on_random_graphs() {
        let mut rng = Rng::new(1414);
        let (mut several_roots, mut spilled) = (0, 0);
        for round in 0..150 {
            let (own, cross, offset, records) = graph(&mut rng);
            for policy in policies() {
                let keyed: Vec<KeyedRecord> = (0..records)
                    .filter_map(|r| key(&mut rng, &policy).map(|k| (r, Some(k))))
                    .collect();
                let table: HashMap<u32, KeepKey> = keyed
                    .iter()
                    .filter_map(|(r, k)| k.clone().map(|k| (*r, k)))
                    .collect();
                let ranking = policy.ranking(&table);
                let prefers = ranking.as_ref().map(|r| r as &Prefers<'_>);
                let never = StopCheck::never();
                let (want, want_relabeled) =
                    Clusters::with_index_stopping(&own, &cross, offset, (prefers, &never)).unwrap();
                let want_missing = policy.missing(&table, want.roots().unwrap().into_keys());
                let want_indexed = want.indexed.records().collect::<Result<Vec<_>, _>>();
                let want_indexed = Removed::Memory(want_indexed.unwrap());
                let dir = tempfile::tempdir().unwrap();
                let temp = Arc::new(TempSpace::new(dir.path()));
                let share = rng.below(3) * (2 << 10);
                let floor = 1 + rng.below(2) as usize;
                let got = joined_ranked_in_pieces(
                    (
                        cross.iter().map(|&p| Ok(p)),
                        own.iter().map(|&p| Ok(p)),
                        offset,
                    ),
                    (keyed.iter().map(|k| Ok(k.clone())), &policy),
                    (share, floor),
                    (&temp, &never),
                )
                .unwrap();
                let what = format!("graph {round} {policy}: offset {offset}, share {share}");
                same(&got.removed, &want.removed, &what);
                same(&got.indexed, &want_indexed, &what);
                assert_eq!(got.relabeled, want_relabeled, "{what}");
                assert_eq!(got.sizes, want.sizes, "{what}");
                assert_eq!(got.missing, want_missing, "{what}");
                several_roots += usize::from(!got.relabeled.is_empty());
                spilled += usize::from(got.work.runs > 0);
            }
        }
        assert!(
            several_roots > 20,
            "{several_roots} graphs joined indexed roots"
        );
        assert!(spilled > 20, "{spilled} graphs ranked with runs");
    }

    #[test]
    fn a_stop_inside_the_joined_ranking_ends_it_as_a_stop_with_nothing_left() {
        let mut rng = Rng::new(7);
        let (own, cross, offset, records) = loop {
            let g = graph(&mut rng);
            if g.0.len() > 150 && !g.1.is_empty() {
                break g;
            }
        };
        let policy = KeepPolicy::Longest;
        let keyed: Vec<KeyedRecord> = (0..records).map(|r| (r, key(&mut rng, &policy))).collect();
        for after in [0, 1, 3, 10] {
            let looks = Cell::new(0u32);
            let asked = || {
                looks.set(looks.get() + 1);
                looks.get() > after
            };
            let stop = StopCheck::new(&asked);
            let dir = tempfile::tempdir().unwrap();
            let temp = Arc::new(TempSpace::new(dir.path()));
            let got = joined_ranked_in_pieces(
                (
                    cross.iter().map(|&p| Ok(p)),
                    own.iter().map(|&p| Ok(p)),
                    offset,
                ),
                (keyed.iter().map(|k| Ok(k.clone())), &policy),
                (0, 1),
                (&temp, &stop),
            );
            assert!(
                matches!(got, Err(RunError::Stopped)),
                "asked to stop after {after} looks: {:?}",
                got.map(|j| j.work)
            );
            let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
            assert_eq!(left, 0, "runs left after a stop");
        }
    }
}
