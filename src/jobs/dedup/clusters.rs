//! The step between passes 2 and 3: the clusters made from the verified
//! pairs ([`Clusters`], the state pass 3 reads), and `clusters.jsonl`, one
//! line per removed record (`kept.jsonl` is pass 3,
//! [`super::passes::kept`]).
//!
//! The clusters are made in memory by a union-find over the verified
//! pairs' records, or, past their share of the memory budget
//! ([`super::budget::Shares::clusters`]), from a stream of the pairs with
//! sorted runs read front to back ([`Clusters::from_pair_stream`],
//! [`super::spill::components`]), the removed records then read back
//! from disk in order ([`Removed`]). `--keep first` takes that path, with
//! or without indexes: against indexes, the components of the joined
//! pairs ([`Clusters::with_index_stream`], [`super::spill::joined`]),
//! their first indexed root being each component's smallest record.
//! Under `--keep longest`, `shortest` or `field:` without an index the
//! kept records are chosen the same way past the share
//! ([`Clusters::from_pair_stream_keeping`], [`super::spill::ranked`]),
//! the keys read in record order; with an index too
//! ([`Clusters::with_index_stream`], [`super::spill::joined`]'s
//! `joined_ranked`), a cluster with an indexed record keeping it.
//! Against indexes, the records removed as indexed records' duplicates
//! ([`Clusters::indexed`]) are named with their roots' ids within their
//! share or with runs ([`RemovedAsIndexed`], [`super::spill::indexed`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use drainpipe_actors::{AtomicFile, OutputDir, OutputError, TempSpace};

use super::budget::Shares;
use super::chain::{CandidateIds, ClusteredIds};
use super::keep::{KeepKey, KeepPolicy};
use super::spill::components::{components, Work, DISK_BYTES_PER_PAIR};
pub use super::spill::components::{Removed, RemovedIter, RemovedRecord, StopCheck};
use super::spill::indexed::Line as IndexedLine;
pub use super::spill::indexed::RemovedAsIndexed;
use super::spill::joined::{joined_components, joined_ranked};
use super::spill::named::{name_removed, Line, NamingError};
use super::spill::ranked::ranked;
use super::spill::record_sets::{RecordSet, SetWriter};
use super::spill::runs::RunError;
use super::spill::verified::VERIFIED_PAIR_BYTES;
use super::unionfind::UnionFind;

/// Bytes the union-find in memory takes a verified pair at most: the pair
/// (16, collected from a stream), its two records in the member list (8),
/// and per member (two a pair) its union-find parent (4), best
/// similarity (8), a cluster size (24, a map entry with its room) and a
/// removed record (16).
pub const IN_MEMORY_PAIR_BYTES: u64 = 16 + 8 + 2 * (4 + 8 + 24 + 16);

/// Bytes a `--keep` key read from disk into memory takes at most beside
/// its string's bytes: a hash table's slot (the record and the key, 32
/// bytes, and a control byte), up to twice over for the table's room.
pub const KEY_IN_MEMORY_BYTES: u64 = 80;

/// `prefers(later, earlier)`: true when record `later` ranks strictly
/// higher than `earlier`, which comes before it in input order, under the
/// run's `--keep` policy ([`super::keep`]).
pub type Prefers<'a> = dyn Fn(u32, u32) -> bool + 'a;

/// For each cluster's root (dense index), the dense index of the member
/// it keeps: members are visited in input order, so a later one takes the
/// place only when it ranks strictly higher, and ties go to the first.
fn chosen(
    uf: &mut UnionFind,
    members: &[u32],
    (prefers, stop): (&Prefers<'_>, &StopCheck<'_>),
) -> Result<Vec<u32>, RunError> {
    let mut kept: Vec<u32> = (0..members.len() as u32).collect();
    for (i, &record) in members.iter().enumerate() {
        stop.step()?;
        let root = uf.find(i as u32) as usize;
        let holder = kept[root] as usize;
        if holder != i && prefers(record, members[holder]) {
            kept[root] = i as u32;
        }
    }
    Ok(kept)
}

/// The removed records, each with the record it duplicates.
pub const CLUSTERS_FILE: &str = "clusters.jsonl";

/// The clusters built from the verified pairs.
#[derive(Debug, Default)]
pub struct Clusters {
    /// `(removed record, kept record, similarity)` in input order of the
    /// removed record: in memory, or in a run on disk read front to back.
    pub removed: Removed,
    /// Removed records whose cluster has an indexed record (`--against`),
    /// in input order: they duplicate the cluster's first indexed record
    /// (in memory, or past their share on disk, named with its id by
    /// [`RemovedAsIndexed::name`]).
    pub indexed: RemovedAsIndexed,
    /// Number of clusters of each size (2 and more).
    pub sizes: BTreeMap<usize, u64>,
    /// Bytes written to the temporary space to make them (0: made in
    /// memory), `clusters_spilled_bytes` in the summary.
    pub spilled_bytes: u64,
    /// Under a `--keep` policy other than `first` without an index, the
    /// clustered records without a usable value for its field (0 unless
    /// it is `field:`), counted as the clusters are made: the summary's
    /// `keep.missing_field`. `None`: not counted (the summary counts
    /// them from the keys in memory).
    pub missing_keys: Option<u64>,
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
        Clusters::from_pairs_keeping(pairs, None)
    }

    /// [`Clusters::from_pairs`], keeping in each cluster the record that
    /// ranks highest by `prefers` (`prefers(later, earlier)`: true when the
    /// later record ranks strictly higher; ties go to the first record in
    /// input order): the clusters are the same, only the kept record and
    /// so `duplicate_of` change. `None`: the first record.
    pub fn from_pairs_keeping(pairs: &[(u32, u32, f64)], prefers: Option<&Prefers<'_>>) -> Self {
        Clusters::from_pairs_stopping(pairs, prefers, &StopCheck::never())
            .expect("a check that never stops")
    }

    /// [`Clusters::from_pairs_keeping`], its loops looking at `stop`
    /// ([`RunError::Stopped`] when the run was asked to stop).
    pub fn from_pairs_stopping(
        pairs: &[(u32, u32, f64)],
        prefers: Option<&Prefers<'_>>,
        stop: &StopCheck<'_>,
    ) -> Result<Self, RunError> {
        let (removed, sizes) = in_memory(pairs, prefers, stop)?;
        Ok(Clusters {
            removed: Removed::Memory(removed),
            sizes,
            ..Clusters::default()
        })
    }

    /// [`Clusters::from_pairs`] from a stream of the `count` verified
    /// pairs (sorted by the later record), within `share` bytes of memory
    /// (`None`: no budget): the union-find in memory when the pairs fit
    /// ([`IN_MEMORY_PAIR_BYTES`] each), else the components made with
    /// sorted runs in `temp` ([`super::spill::components`]), the removed
    /// records in a run past a quarter of the share. The same clusters
    /// either way. A stop `stop` sees ends it with [`RunError::Stopped`],
    /// nothing of it left on disk.
    pub fn from_pair_stream(
        pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
        count: u64,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        stop: &StopCheck<'_>,
    ) -> Result<Self, RunError> {
        let past = |&share: &u64| count.saturating_mul(IN_MEMORY_PAIR_BYTES) > share;
        let pairs = pairs.map(|pair| stop.step().and(pair));
        let Some(share) = share.filter(past) else {
            log::info!("dedup: making the clusters of {count} verified pairs in memory");
            let pairs = pairs.collect::<Result<Vec<_>, RunError>>()?;
            let clusters = Clusters::from_pairs_stopping(&pairs, None, stop)?;
            clusters.made(None);
            return Ok(clusters);
        };
        log::info!(
            "dedup: the clusters of {count} verified pairs pass their share of the memory \
             budget ({share} bytes); making them with sorted runs in {}",
            temp.folder().display()
        );
        room_for(count, temp)?;
        let before = temp.bytes_spilled();
        let found = components(pairs, share, temp, stop)?;
        let clusters = Clusters {
            removed: found.removed,
            sizes: found.sizes,
            spilled_bytes: temp.bytes_spilled() - before,
            ..Clusters::default()
        };
        clusters.made(Some(found.work));
        Ok(clusters)
    }

    /// Logs what was made, with `work` the contraction's on disk (`None`:
    /// in memory).
    fn made(&self, work: Option<Work>) {
        let how = work.map_or("in memory".to_owned(), |work| {
            format!(
                "in {} contraction rounds, {} runs written, {} bytes spilled",
                work.rounds, work.runs, self.spilled_bytes
            )
        });
        log::info!(
            "dedup: {} clusters made, {} records removed, {how}",
            self.count(),
            self.removed.len()
        );
    }

    /// [`Clusters::from_pair_stream`] under a `--keep` `policy` other
    /// than `first`, ranking by the clustered records' keys in `ids`: the
    /// union-find with its ranking in memory when the pairs fit the share
    /// (and the keys too, when they must be read from disk into memory:
    /// [`KEY_IN_MEMORY_BYTES`] each, beside their run's bytes), else
    /// [`super::spill::ranked`], the keys read front to back in record
    /// order. The same clusters either way, with
    /// [`Clusters::missing_keys`] counted.
    pub fn from_pair_stream_keeping(
        pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
        count: u64,
        (ids, policy): (&ClusteredIds, &KeepPolicy),
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        stop: &StopCheck<'_>,
    ) -> Result<Self, RunError> {
        let loaded_keys = match ids {
            ClusteredIds::Memory { .. } => 0,
            ClusteredIds::Disk(info) => info
                .entries
                .saturating_mul(KEY_IN_MEMORY_BYTES)
                .saturating_add(info.bytes),
        };
        let bytes = count
            .saturating_mul(IN_MEMORY_PAIR_BYTES)
            .saturating_add(loaded_keys);
        let pairs = pairs.map(|pair| stop.step().and(pair));
        let Some(share) = share.filter(|&share| bytes > share) else {
            log::info!("dedup: making the clusters of {count} verified pairs in memory");
            let pairs = pairs.collect::<Result<Vec<_>, RunError>>()?;
            let clusters = Clusters::keeping_in_memory(&pairs, (ids, policy), (temp, stop))?;
            clusters.made(None);
            return Ok(clusters);
        };
        log::info!(
            "dedup: the clusters of {count} verified pairs pass their share of the memory \
             budget ({share} bytes); making them and choosing their kept records by \
             --keep {policy} with sorted runs in {}",
            temp.folder().display()
        );
        room_for(count, temp)?;
        let before = temp.bytes_spilled();
        let keys = ids
            .reader(temp)
            .map(|id| id.map(|(record, _, key)| (record, key)));
        let found = ranked(pairs, keys, policy, (share, temp), stop)?;
        let clusters = Clusters {
            removed: found.removed,
            sizes: found.sizes,
            spilled_bytes: temp.bytes_spilled() - before,
            missing_keys: Some(found.missing),
            ..Clusters::default()
        };
        clusters.made(Some(found.work));
        Ok(clusters)
    }

    /// [`Clusters::from_pairs_keeping`] by the keys of `ids` (read into
    /// memory when on disk), with [`Clusters::missing_keys`] counted.
    fn keeping_in_memory(
        pairs: &[RemovedRecord],
        (ids, policy): (&ClusteredIds, &KeepPolicy),
        (temp, stop): (&TempSpace, &StopCheck<'_>),
    ) -> Result<Self, RunError> {
        let keys = keys_in_memory(ids, temp)?;
        let keys = keys.as_ref();
        let ranking = policy.ranking(keys);
        let prefers = ranking.as_ref().map(|r| r as &Prefers<'_>);
        let mut clusters = Clusters::from_pairs_stopping(pairs, prefers, stop)?;
        let clustered = clusters.roots()?.into_keys();
        clusters.missing_keys = Some(policy.missing(keys, clustered));
        Ok(clusters)
    }

    /// [`Clusters::with_index_keeping`] from a stream of this run's
    /// `count` verified `pairs` and of the `across` verified pairs across
    /// (`indexed`, each indexed record its cluster's root), within `share`
    /// bytes of memory (`None`: no budget), under `keep`: `None` for
    /// `--keep first`, else the clustered records' ids with their keys
    /// and the policy ranking them. The union-find in memory when the
    /// pairs and those across fit ([`IN_MEMORY_PAIR_BYTES`] each, as
    /// [`Clusters::from_pair_stream`], and the keys read from disk into
    /// memory, as [`Clusters::from_pair_stream_keeping`]), else the
    /// components of the joined pairs made with sorted runs in `temp`
    /// ([`super::spill::joined`]; ranked, under another policy than
    /// `first`, with the keys read in record order), the removed records
    /// in a run past a quarter of the share. The same clusters either
    /// way, with [`Clusters::missing_keys`] counted under a policy. The
    /// pairs across are freed once read.
    pub fn with_index_stream(
        pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
        count: u64,
        (indexed, across, offset): (
            impl Iterator<Item = Result<RemovedRecord, RunError>>,
            u64,
            u32,
        ),
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        (keep, stop): (Option<(&ClusteredIds, &KeepPolicy)>, &StopCheck<'_>),
    ) -> Result<(Self, Vec<(u32, u32)>), RunError> {
        let all = count.saturating_add(across);
        let loaded_keys = match keep {
            Some((ClusteredIds::Disk(info), _)) => info
                .entries
                .saturating_mul(KEY_IN_MEMORY_BYTES)
                .saturating_add(info.bytes),
            _ => 0,
        };
        let bytes = all
            .saturating_mul(IN_MEMORY_PAIR_BYTES)
            .saturating_add(loaded_keys);
        let pairs = pairs.map(|pair| stop.step().and(pair));
        let Some(share) = share.filter(|&share| bytes > share) else {
            log::info!(
                "dedup: making the clusters of {all} verified pairs (with those across) in memory"
            );
            let pairs = pairs.collect::<Result<Vec<_>, RunError>>()?;
            let indexed = indexed.collect::<Result<Vec<_>, RunError>>()?;
            let made =
                Clusters::with_index_in_memory(&pairs, (&indexed, offset), temp, (keep, stop))?;
            made.0.made(None);
            return Ok(made);
        };
        log::info!(
            "dedup: the clusters of {all} verified pairs (with those across) pass their share \
             of the memory budget ({share} bytes); making them{} with sorted runs in {}",
            keep.map_or(String::new(), |(_, policy)| format!(
                " and choosing their kept records by --keep {policy}"
            )),
            temp.folder().display()
        );
        // The pairs across are held until the first round has read them.
        let held = across.saturating_mul(VERIFIED_PAIR_BYTES);
        room_for(all, temp)?;
        let before = temp.bytes_spilled();
        let within = (share.saturating_sub(held), temp);
        let found = match keep {
            None => joined_components(indexed, pairs, offset, within, stop)?,
            Some((ids, policy)) => {
                let keys = ids
                    .reader(temp)
                    .map(|id| id.map(|(record, _, key)| (record, key)));
                joined_ranked((indexed, pairs, offset), (keys, policy), within, stop)?
            }
        };
        log::info!(
            "dedup: clusters made in {} contraction rounds, {} runs written; {} records \
             removed as duplicates of indexed records ({})",
            found.work.rounds,
            found.work.runs,
            found.indexed.len(),
            match found.indexed {
                Removed::Memory(_) => "in memory",
                Removed::Disk(_) => "in a run",
            }
        );
        let clusters = Clusters {
            removed: found.removed,
            indexed: RemovedAsIndexed::unnamed(found.indexed),
            sizes: found.sizes,
            spilled_bytes: temp.bytes_spilled() - before,
            missing_keys: keep.map(|_| found.missing),
        };
        Ok((clusters, found.relabeled))
    }

    /// [`Clusters::with_index_stopping`] by the keys of `keep`'s ids
    /// (read into memory when on disk), with [`Clusters::missing_keys`]
    /// counted under a policy.
    fn with_index_in_memory(
        pairs: &[RemovedRecord],
        (indexed, offset): (&[RemovedRecord], u32),
        temp: &TempSpace,
        (keep, stop): (Option<(&ClusteredIds, &KeepPolicy)>, &StopCheck<'_>),
    ) -> Result<(Self, Vec<(u32, u32)>), RunError> {
        let Some((ids, policy)) = keep else {
            return Clusters::with_index_stopping(pairs, indexed, offset, (None, stop));
        };
        let keys = keys_in_memory(ids, temp)?;
        let keys = keys.as_ref();
        let ranking = policy.ranking(keys);
        let prefers = ranking.as_ref().map(|r| r as &Prefers<'_>);
        let (mut clusters, relabeled) =
            Clusters::with_index_stopping(pairs, indexed, offset, (prefers, stop))?;
        let clustered = clusters.roots()?.into_keys();
        clusters.missing_keys = Some(policy.missing(keys, clustered));
        Ok((clusters, relabeled))
    }

    /// The clusters of one run over `offset` indexed records followed by
    /// this run's records, from this run's verified `pairs` and its
    /// verified pairs with indexed records, `(the indexed record's cluster
    /// root, record, similarity)`: the indexes' clusters stand for their
    /// roots. Also returns the indexed roots whose clusters joined an
    /// earlier root's through this run's records, with that root.
    /// Cluster sizes count each indexed cluster as one record.
    pub fn with_index(
        pairs: &[(u32, u32, f64)],
        indexed: &[(u32, u32, f64)],
        offset: u32,
    ) -> (Self, Vec<(u32, u32)>) {
        Clusters::with_index_keeping(pairs, indexed, offset, None)
    }

    /// [`Clusters::with_index`], keeping by `prefers` (over this run's
    /// records, numbered as this run numbers them) in the clusters without
    /// an indexed record; a cluster with one keeps its first indexed
    /// root, as under `first`: an indexed record cannot be removed.
    pub fn with_index_keeping(
        pairs: &[(u32, u32, f64)],
        indexed: &[(u32, u32, f64)],
        offset: u32,
        prefers: Option<&Prefers<'_>>,
    ) -> (Self, Vec<(u32, u32)>) {
        let never = StopCheck::never();
        Clusters::with_index_stopping(pairs, indexed, offset, (prefers, &never))
            .expect("a check that never stops")
    }

    /// [`Clusters::with_index_keeping`], its loops looking at `stop`
    /// ([`RunError::Stopped`] when the run was asked to stop).
    pub fn with_index_stopping(
        pairs: &[(u32, u32, f64)],
        indexed: &[(u32, u32, f64)],
        offset: u32,
        (prefers, stop): (Option<&Prefers<'_>>, &StopCheck<'_>),
    ) -> Result<(Self, Vec<(u32, u32)>), RunError> {
        let joined_prefers = prefers.map(|p| {
            move |later: u32, earlier: u32| {
                earlier >= offset && later >= offset && p(later - offset, earlier - offset)
            }
        });
        let joined_prefers = joined_prefers.as_ref().map(|p| p as &Prefers<'_>);
        let all: Vec<(u32, u32, f64)> = indexed
            .iter()
            .map(|&(root, b, j)| (root, b + offset, j))
            .chain(pairs.iter().map(|&(a, b, j)| (a + offset, b + offset, j)))
            .collect();
        let (joined, sizes) = in_memory(&all, joined_prefers, stop)?;
        let mut clusters = Clusters {
            sizes,
            ..Clusters::default()
        };
        let (mut relabeled, mut removed, mut indexed) = (Vec::new(), Vec::new(), Vec::new());
        for (r, kept, j) in joined {
            if r < offset {
                relabeled.push((r, kept));
            } else if kept >= offset {
                removed.push((r - offset, kept - offset, j));
            } else {
                indexed.push((r - offset, kept, j));
            }
        }
        clusters.removed = Removed::Memory(removed);
        clusters.indexed = RemovedAsIndexed::unnamed(Removed::Memory(indexed));
        Ok((clusters, relabeled))
    }

    /// Records removed, as duplicates of this run's records or of indexed
    /// ones.
    pub fn removed_count(&self) -> usize {
        (self.removed.len() + self.indexed.len()) as usize
    }

    /// Clusters of two records or more.
    pub fn count(&self) -> u64 {
        self.sizes.values().sum()
    }

    /// The removed records, as duplicates of this run's records or of
    /// indexed ones, as a set: within `share` bytes of memory, past it
    /// written to runs in `temp` ([`super::spill::record_sets`]; `None`:
    /// all in memory). Both lists are read front to back, merged in
    /// record order as the set takes its members.
    pub fn removed_records(
        &self,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
    ) -> Result<RecordSet, RunError> {
        let mut set = SetWriter::new("removed", Some(Arc::clone(temp)), share).for_this_run();
        let mut own = self.removed.iter().map(|r| r.map(|(record, _, _)| record));
        let mut indexed = (self.indexed.records()).map(|r| r.map(|(record, _, _)| record));
        let (mut a, mut b) = (own.next().transpose()?, indexed.next().transpose()?);
        loop {
            let record = match (a, b) {
                (Some(x), y) if y.is_none_or(|y| x <= y) => {
                    a = own.next().transpose()?;
                    x
                }
                (_, Some(y)) => {
                    b = indexed.next().transpose()?;
                    y
                }
                (_, None) => break,
            };
            set.insert(record.into())?;
        }
        set.finish()
    }

    /// Each clustered record with its cluster's kept record: a table of
    /// every clustered record in memory, for the demo's accuracy and the
    /// `--keep field:` summary of clusters made in memory.
    pub fn roots(&self) -> Result<HashMap<u32, u32>, RunError> {
        let mut roots = HashMap::new();
        for record in self.removed.iter() {
            let (r, kept, _) = record?;
            roots.insert(r, kept);
            roots.insert(kept, kept);
        }
        Ok(roots)
    }
}

/// The keys of `ids`, read into memory when on disk.
fn keys_in_memory<'a>(
    ids: &'a ClusteredIds,
    temp: &TempSpace,
) -> Result<std::borrow::Cow<'a, HashMap<u32, KeepKey>>, RunError> {
    match ids {
        ClusteredIds::Memory { keys, .. } => Ok(std::borrow::Cow::Borrowed(keys)),
        ClusteredIds::Disk(_) => ids
            .reader(temp)
            .filter_map(|id| match id {
                Ok((record, _, key)) => key.map(|key| Ok((record, key))),
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, RunError>>()
            .map(std::borrow::Cow::Owned),
    }
}

/// Refuses clusters of `count` verified pairs made with runs before one
/// is written when the disk has no room for what they are estimated to
/// take at their peak ([`DISK_BYTES_PER_PAIR`] a pair); each run checks
/// its own room as it goes. The message names the stage and the pairs,
/// the cause the folder and the bytes needed and free.
fn room_for(count: u64, temp: &TempSpace) -> Result<(), RunError> {
    let room = count.saturating_mul(DISK_BYTES_PER_PAIR);
    temp.ensure_room(room).map_err(|no_room| RunError::Io {
        path: temp.folder().to_owned(),
        cause: std::io::Error::new(
            no_room.kind(),
            format!(
                "the clusters' runs for {count} verified pairs take about {room} bytes at \
                 their peak ({DISK_BYTES_PER_PAIR} a pair): {no_room}"
            ),
        ),
    })
}

/// The union-find over `pairs` ([`Clusters::from_pairs_keeping`]): the
/// removed records in input order, and the clusters' sizes. Each loop
/// looks at `stop` as the external paths' do, so a stop ends a large
/// clustering in memory within a bounded time too.
fn in_memory(
    pairs: &[(u32, u32, f64)],
    prefers: Option<&Prefers<'_>>,
    stop: &StopCheck<'_>,
) -> Result<(Vec<RemovedRecord>, BTreeMap<usize, u64>), RunError> {
    let mut members: Vec<u32> = pairs.iter().flat_map(|&(a, b, _)| [a, b]).collect();
    members.sort_unstable();
    members.dedup();
    let dense = |r: u32| members.binary_search(&r).expect("a member");
    let mut uf = UnionFind::new(members.len());
    let mut best = vec![0.0f64; members.len()];
    for &(a, b, j) in pairs {
        stop.step()?;
        let (da, db) = (dense(a), dense(b));
        uf.union(da as u32, db as u32);
        best[da] = best[da].max(j);
        best[db] = best[db].max(j);
    }
    // Tests act here (a signal) with the union-find made in memory.
    super::crash::hold("dedup::clusters_memory_hold", &|| stop.asked());
    stop.now()?;
    let chosen = match prefers {
        Some(prefers) => Some(chosen(&mut uf, &members, (prefers, stop))?),
        None => None,
    };
    let mut size: HashMap<u32, usize> = HashMap::new();
    let mut removed = Vec::new();
    for (i, &record) in members.iter().enumerate() {
        stop.step()?;
        let root = uf.find(i as u32);
        *size.entry(root).or_default() += 1;
        let kept = chosen.as_ref().map_or(root, |k| k[root as usize]);
        if kept as usize != i {
            removed.push((record, members[kept as usize], best[i]));
        }
    }
    let mut sizes = BTreeMap::new();
    for &n in size.values() {
        *sizes.entry(n).or_default() += 1;
    }
    Ok((removed, sizes))
}

/// Writes `clusters.jsonl` to a temporary file (committed by the caller):
/// `{"id": <id>, "duplicate_of": <id of the kept record>, "similarity":
/// <f64>}` per removed record, ids as the input gave them; a record that
/// duplicates an indexed record has that record's id as `duplicate_of`
/// and `"index": <the index's name>` after the similarity. Within the
/// share of `max_memory` ([`Shares::clusters_file`]; `None`: no budget),
/// past it with runs in `temp` ([`write_clusters_from`]).
pub fn write_clusters(
    output: &OutputDir,
    clusters: &Clusters,
    ids: &CandidateIds,
    (temp, max_memory): (&TempSpace, Option<u64>),
) -> anyhow::Result<AtomicFile> {
    let removed = clusters.removed.iter();
    let ids = || Ok::<_, RunError>(ids.iter().map(Ok));
    write_clusters_from(output, removed, ids, &clusters.indexed, (temp, max_memory))
}

/// [`write_clusters`] with the clustered records' ids as pass 2 left
/// them: looked up in memory, or read front to back from their run on
/// disk, never held whole.
pub fn write_clusters_of(
    output: &OutputDir,
    clusters: &Clusters,
    ids: &ClusteredIds,
    budget: (&TempSpace, Option<u64>),
) -> anyhow::Result<AtomicFile> {
    match ids {
        ClusteredIds::Memory { ids, .. } => write_clusters(output, clusters, ids, budget),
        ClusteredIds::Disk(_) => {
            let named = || {
                let read = ids.reader(budget.0);
                Ok::<_, RunError>(read.map(|id| id.map(|(record, id, _)| (record, id))))
            };
            let removed = clusters.removed.iter();
            write_clusters_from(output, removed, named, &clusters.indexed, budget)
        }
    }
}

/// [`write_clusters`] from streams, none held whole
/// ([`crate::jobs::dedup::spill::named`]): the `removed` records
/// `(removed, kept, similarity)`, and passes over the `ids` in record order
/// (each call opens one), holding those of every removed, kept and
/// `indexed` record; the `indexed` ones read twice side by side (their
/// records, then their lines), front to back when on disk.
pub fn write_clusters_from<E, I, S>(
    output: &OutputDir,
    removed: impl IntoIterator<Item = Result<(u32, u32, f64), E>>,
    ids: impl FnMut() -> Result<I, E>,
    indexed: &RemovedAsIndexed,
    (temp, max_memory): (&TempSpace, Option<u64>),
) -> anyhow::Result<AtomicFile>
where
    E: Into<NamingError>,
    I: Iterator<Item = Result<(u32, S), E>>,
    S: AsRef<str>,
{
    let share = max_memory.map_or(u64::MAX, |max_memory| Shares { max_memory }.clusters_file());
    let mut file = output.atomic(CLUSTERS_FILE)?;
    let records = indexed.records().map(|x| x.map(|(record, _, _)| record));
    let mut lines = indexed.lines();
    let spilled = name_removed(removed, ids, records, (share, temp), |line| match line {
        Line::Removed {
            id,
            kept,
            similarity,
        } => write_removed(&mut file, (id, kept), similarity),
        Line::Indexed { nth, id } => match lines.next()? {
            Some(x) => write_indexed(&mut file, id, &x),
            None => Err(NamingError::Spill(RunError::Failed {
                kind: std::io::ErrorKind::Other,
                message: format!("dedup clusters: no line for indexed record {nth} (a bug)"),
            })),
        },
    })
    .map_err(|e| match e {
        // As an IO error: exit 74, the file named.
        NamingError::Spill(e) => anyhow::Error::new(e.into_io()),
        NamingError::Write(e) => anyhow::Error::new(e),
        e => anyhow::Error::new(e),
    })?;
    if spilled.bytes > 0 {
        log::info!(
            "dedup: {CLUSTERS_FILE} past its share of the memory budget: {} runs sorted by kept record, {} by removed record, {} bytes written to {}",
            spilled.by_kept,
            spilled.by_removed,
            spilled.bytes,
            temp.folder().display()
        );
    }
    Ok(file)
}

/// The line of a record removed as a duplicate of one of the run's
/// records, by their `(removed, kept)` ids.
fn write_removed(
    file: &mut AtomicFile,
    (id, kept): (&str, &str),
    similarity: f64,
) -> Result<(), NamingError> {
    let similarity = similarity_text(file, similarity)?;
    writeln!(
        file,
        "{{\"id\":{id},\"duplicate_of\":{kept},\"similarity\":{similarity}}}"
    )
    .map_err(|e| OutputError::new(file.target(), e).into())
}

/// The line of a record removed as a duplicate of an indexed record.
fn write_indexed(file: &mut AtomicFile, id: &str, x: &IndexedLine<'_>) -> Result<(), NamingError> {
    let similarity = similarity_text(file, x.similarity)?;
    let index = serde_json::to_string(x.index)
        .map_err(|e| OutputError::new(file.target(), std::io::Error::other(e)))?;
    writeln!(
        file,
        "{{\"id\":{},\"duplicate_of\":{},\"similarity\":{},\"index\":{}}}",
        id, x.id, similarity, index
    )
    .map_err(|e| OutputError::new(file.target(), e).into())
}

/// A similarity as JSON (as `serde_json` writes an `f64`).
fn similarity_text(file: &AtomicFile, similarity: f64) -> Result<String, OutputError> {
    serde_json::to_string(&similarity)
        .map_err(|e| OutputError::new(file.target(), std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_union_find_in_memory_stops_at_any_look_of_its_loops() {
        // A chain of 10,000 pairs over 10,001 members.
        let pairs: Vec<RemovedRecord> = (0..10_000u32).map(|r| (r, r + 1, 0.9)).collect();
        let longer = |later: u32, earlier: u32| later % 7 > earlier % 7;
        for prefers in [None, Some(&longer as &Prefers<'_>)] {
            let whole = Clusters::from_pairs_keeping(&pairs, prefers);
            let mut looks_whole = 0;
            for stop_at in 1.. {
                let looks = std::cell::Cell::new(0u32);
                let asked = || {
                    looks.set(looks.get() + 1);
                    looks.get() == stop_at
                };
                let stop = StopCheck::new(&asked);
                match Clusters::from_pairs_stopping(&pairs, prefers, &stop) {
                    Err(RunError::Stopped) => continue,
                    Err(e) => panic!("{e}"),
                    Ok(made) => {
                        assert_eq!(
                            made.removed.to_vec().unwrap(),
                            whole.removed.to_vec().unwrap()
                        );
                        looks_whole = looks.get();
                        break;
                    }
                }
            }
            // Every 4096 steps: two looks over the pairs, one between,
            // then two over the members; ranked, the ranking's loop
            // takes steps 10,001 to 20,001 first (two looks) and the
            // members' three. A stop at every one of them ends it.
            let after = if prefers.is_some() { 2 + 3 } else { 2 };
            assert_eq!(looks_whole, 2 + 1 + after, "ranked: {}", prefers.is_some());
        }
    }

    #[test]
    fn a_cluster_keeps_its_first_record() {
        // 9-4 and 4-6 verified, 2-7 verified: clusters {4, 6, 9}, {2, 7}.
        let c = Clusters::from_pairs(&[(4, 9, 0.85), (4, 6, 0.9), (6, 9, 0.95), (2, 7, 1.0)]);
        assert_eq!(
            c.removed.to_vec().unwrap(),
            [(6, 4, 0.95), (7, 2, 1.0), (9, 4, 0.95)]
        );
        assert_eq!(c.count(), 2);
        assert_eq!(c.sizes, BTreeMap::from([(2, 1), (3, 1)]));
    }

    #[test]
    fn a_cluster_keeps_the_record_its_policy_prefers_and_ties_go_to_the_first() {
        let pairs = [(4, 9, 0.85), (4, 6, 0.9), (6, 9, 0.95), (2, 7, 1.0)];
        // Ranks: 6 and 9 tie above 4; 7 ranks below 2.
        let rank = |r: u32| match r {
            6 | 9 => 2,
            7 => 0,
            _ => 1,
        };
        let prefers = |later: u32, earlier: u32| rank(later) > rank(earlier);
        let c = Clusters::from_pairs_keeping(&pairs, Some(&prefers));
        assert_eq!(
            c.removed.to_vec().unwrap(),
            [(4, 6, 0.9), (7, 2, 1.0), (9, 6, 0.95)]
        );
        assert_eq!(c.sizes, Clusters::from_pairs(&pairs).sizes);
    }

    #[test]
    fn a_cluster_with_an_indexed_record_keeps_it_whatever_the_policy() {
        // Indexed root 3 (of 10); this run's 0-1 and 2-4 (0 joins root 3),
        // and 5-6 alone: the policy prefers every later record.
        let prefers = |later: u32, earlier: u32| later > earlier;
        let (c, _) = Clusters::with_index_keeping(
            &[(0, 1, 0.9), (2, 4, 0.8), (5, 6, 1.0)],
            &[(3, 0, 0.85)],
            10,
            Some(&prefers),
        );
        let indexed: Vec<(u32, u32)> = (c.indexed.to_vec().unwrap().into_iter())
            .map(|(record, root, _)| (record, root))
            .collect();
        assert_eq!(indexed, [(0, 3), (1, 3)]);
        assert_eq!(c.removed.to_vec().unwrap(), [(2, 4, 0.8), (5, 6, 1.0)]);
    }

    #[test]
    fn a_record_joined_to_an_indexed_cluster_duplicates_its_first_root() {
        // Indexed roots 3 and 7 (of 10 indexed records); this run's 0-1
        // verified, 1 joins root 7 and 2 joins root 3, 2-4 verified and
        // 4 joins root 7: roots 3 and 7 become one cluster, rooted at 3.
        let (c, relabeled) = Clusters::with_index(
            &[(0, 1, 0.9), (2, 4, 0.8)],
            &[(7, 1, 0.85), (3, 2, 1.0), (7, 4, 0.95)],
            10,
        );
        assert_eq!(c.removed.to_vec().unwrap(), []);
        let indexed = c.indexed.to_vec().unwrap();
        assert_eq!(
            indexed,
            [(0, 3, 0.9), (1, 3, 0.9), (2, 3, 1.0), (4, 3, 0.95)]
        );
        assert_eq!(relabeled, [(7, 3)]);
        assert_eq!(c.sizes, BTreeMap::from([(6, 1)]));
        assert_eq!(c.removed_count(), 4);
    }

    /// The members of `c`'s removed set made within `budget`, asked one
    /// by one and listed, and its bytes on disk.
    fn removed_set(c: &Clusters, budget: (Option<u64>, &Arc<TempSpace>)) -> (Vec<u64>, u64) {
        let set = c.removed_records(budget).unwrap();
        let members: Vec<u64> = set.members().map(Result::unwrap).collect();
        let end = members.last().map_or(0, |&m| m + 100);
        let asked: Vec<u64> = (0..end).filter(|&r| set.contains(r)).collect();
        set.check().unwrap();
        assert_eq!(asked, members);
        (members, set.bytes_on_disk())
    }

    #[test]
    fn removed_records_of_the_run_and_of_an_index_make_one_set_in_record_order() {
        // Records 3, 13, 23, ... removed, every other one as a duplicate
        // of an indexed record (2 of them, before offset 2).
        let offset = 2;
        let (mut pairs, mut indexed) = (Vec::new(), Vec::new());
        for i in 0..3_000u32 {
            match i % 2 {
                0 => pairs.push((i * 10, i * 10 + 3, 0.9)),
                _ => indexed.push((i % 2, i * 10 + 3, 0.9)),
            }
        }
        let (c, _) = Clusters::with_index(&pairs, &indexed, offset);
        assert_eq!((c.removed.len(), c.indexed.len()), (1_500, 1_500));
        let want: Vec<u64> = (0..3_000u64).map(|i| i * 10 + 3).collect();
        let dir = tempfile::tempdir().unwrap();
        let sets = Arc::new(TempSpace::new(dir.path()));
        for (share, spills) in [(None, false), (Some(64), true)] {
            let (got, on_disk) = removed_set(&c, (share, &sets));
            assert_eq!(got, want);
            assert_eq!(on_disk > 0, spills);
        }
    }

    #[test]
    fn clusters_past_their_share_are_made_with_runs_and_are_the_same() {
        // Chains of three records far apart: 6,000 pairs.
        let pairs: Vec<(u32, u32, f64)> = (0..3_000u32)
            .flat_map(|i| {
                let (a, b, c) = (i, i + 7_000, i * 3 + 20_000);
                [(a, b, 0.81), (b, c, 0.9 + f64::from(i % 7) / 100.0)]
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let stream = || pairs.iter().map(|&p| Ok(p));
        let count = pairs.len() as u64;
        let want = Clusters::from_pairs(&pairs);
        // Within the share: the union-find in memory, nothing written.
        let share = count * IN_MEMORY_PAIR_BYTES;
        let never = StopCheck::never();
        let c = Clusters::from_pair_stream(stream(), count, (Some(share), &temp), &never).unwrap();
        assert_eq!(temp.bytes_spilled(), 0);
        assert!(matches!(c.removed, Removed::Memory(_)));
        // Past it: runs, the removed records among them.
        let c =
            Clusters::from_pair_stream(stream(), count, (Some(64 << 10), &temp), &never).unwrap();
        assert!(temp.bytes_spilled() > 0);
        assert_eq!(c.spilled_bytes, temp.bytes_spilled());
        assert!(matches!(c.removed, Removed::Disk(_)));
        assert_eq!(c.removed.to_vec().unwrap(), want.removed.to_vec().unwrap());
        assert_eq!(
            (c.sizes.clone(), c.removed_count()),
            (want.sizes.clone(), 6_000)
        );
        assert_eq!(c.roots().unwrap(), want.roots().unwrap());
        // The removed set, in memory or past a share of 64 bytes on disk
        // (in a space of its own: its runs go with the run's folder).
        let sets_dir = tempfile::tempdir().unwrap();
        let sets = Arc::new(TempSpace::new(sets_dir.path()));
        let (members, held) = removed_set(&want, (None, &sets));
        assert_eq!((members.len(), held), (6_000, 0));
        for c in [&c, &want] {
            let (got, on_disk) = removed_set(c, (Some(64), &sets));
            assert_eq!(got, members);
            assert!(on_disk > 0);
        }
        drop(c);
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0, "the removed records' run goes with the clusters");
    }

    #[test]
    fn clusters_kept_by_a_policy_past_their_share_are_the_ones_made_in_memory() {
        use crate::jobs::dedup::spill::ids::IdsSpill;
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        // Clusters of 2 to 6 records; a score by record, some missing.
        let pairs: Vec<(u32, u32, f64)> = (0..12_000u32)
            .filter(|r| r % 6 < 1 + r / 6 % 5)
            .map(|r| (r, r + 1, 0.5 + f64::from(r % 7) / 16.0))
            .collect();
        let key = |r: u32| match r % 5 {
            0 => KeepKey::Missing,
            1 => KeepKey::Text(format!("s{}", r % 3).into()),
            n => KeepKey::Int(i64::from((r * n) % 11)),
        };
        let clustered: std::collections::BTreeSet<u32> =
            pairs.iter().flat_map(|&(a, b, _)| [a, b]).collect();
        let names: Vec<String> = clustered.iter().map(|r| format!("{r}")).collect();
        let keys: HashMap<u32, KeepKey> = clustered.iter().map(|&r| (r, key(r))).collect();
        let memory = ClusteredIds::Memory {
            ids: clustered
                .iter()
                .zip(&names)
                .map(|(&r, n)| (r, n.as_str()))
                .collect(),
            keys: keys.clone(),
        };
        let mut spill = IdsSpill::new(Arc::clone(&temp), None);
        let entries = clustered.iter().zip(&names);
        spill
            .write(
                entries.map(|(&r, n)| (r, Some(n.as_str()), keys.get(&r))),
                1 << 20,
            )
            .unwrap();
        let disk = ClusteredIds::Disk(spill.join(|_| true, []).unwrap());
        spill.remove_all().unwrap();
        let count = pairs.len() as u64;
        for policy in ["field:k", "field:k:asc", "longest"] {
            let policy: KeepPolicy = policy.parse().unwrap();
            let ranking = policy.ranking(&keys);
            let want = Clusters::from_pairs_keeping(&pairs, ranking.as_ref().map(|r| r as _));
            let want_missing = policy.missing(&keys, clustered.iter().copied());
            for ids in [&memory, &disk] {
                for (share, spills) in [(None, false), (Some(64 << 10), true)] {
                    let before = temp.bytes_spilled();
                    let stream = pairs.iter().map(|&p| Ok(p));
                    let c = Clusters::from_pair_stream_keeping(
                        stream,
                        count,
                        (ids, &policy),
                        (share, &temp),
                        &StopCheck::never(),
                    )
                    .unwrap();
                    assert_eq!(temp.bytes_spilled() > before, spills, "{policy}");
                    assert_eq!(c.spilled_bytes > 0, spills, "{policy}");
                    assert_eq!(c.removed.to_vec().unwrap(), want.removed.to_vec().unwrap());
                    assert_eq!(c.sizes, want.sizes, "{policy}");
                    assert_eq!(c.missing_keys, Some(want_missing), "{policy}");
                }
            }
            assert!(want_missing > 0 || policy.field().is_none());
        }
        disk.remove(&temp).unwrap();
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0, "every run removed");
    }
}
