//! The clusters' connected components when their members do not fit
//! their share of the memory budget
//! ([`crate::jobs::dedup::budget::Shares::clusters`]): what the in-memory
//! union-find makes ([`crate::jobs::dedup::clusters::Clusters::from_pairs`]),
//! made with sorted runs read front to back, never a look-up by record on
//! disk. [`crate::jobs::dedup::clusters::Clusters::from_pair_stream`]
//! picks it past the share under `--keep first`, and so does
//! [`crate::jobs::dedup::clusters::Clusters::with_index_stream`] for a
//! run against saved indexes ([`super::joined`]); under the other
//! policies without an index, [`super::ranked`] takes its roots table
//! and similarities (`contracted`) to choose each component's kept
//! record; the other policies against an index keep the in-memory
//! union-find for now.
//!
//! It gives, for every clustered record but its component's smallest, the
//! record, that smallest one (the kept record under `--keep first`) and
//! the highest similarity among the record's verified pairs, in record
//! order ([`Removed`]: in memory within a quarter of the share, else a
//! sorted run); and the histogram of the components' sizes.
//!
//! # Contraction rounds
//!
//! Round `r` reads its edge list `E_r` in pieces of a bounded number of
//! edges and runs a union-find over each piece. Round 0's are the
//! verified pairs, each record as its *node*: `node(record)`, a bijection
//! of `u32` (xor-shifts and multiplications by odd numbers, undone by
//! `record(node)`), so that the smallest node of a component is a
//! pseudo-random member of it, whatever the records' numbering (below,
//! how many rounds). Every node of a piece is a *leaf* of its piece component's
//! smallest node, or that node, a *center*; both are sorted by node
//! ([`super::sorter`]). For a node `v` with parents `m1 < m2 < ...` (over
//! all pieces): `v -> m1` goes to the round's map, and the next list gets
//! the edges `(m1, mi)`, and `(m1, v)` when `v` is a center too. A node
//! that is a center only maps nowhere.
//!
//! Why this is exact: replacing each piece by its star keeps the
//! components, and so does replacing `v`'s star edges by `v - m1` and
//! `m1 - mi`. A leaf that is no center has that one map edge, so no path
//! between nodes of `E_{r+1}` goes through it; a center that is mapped
//! keeps its map edge in `E_{r+1}`. So a component of `E_r` that meets
//! `E_{r+1}` meets it in one component of `E_{r+1}` holding its smallest
//! node (a center that no edge maps), and a component that does not is a
//! star: a center, never mapped, and leaves mapped to it alone. Hence, with
//! `R_r(x)` the smallest node of `x`'s component in `E_r`: `R_r(x) =
//! R_{r+1}(x)` for `x` in `E_{r+1}`, `R_r(v) = R_r(m1)` for `v` mapped,
//! `R_r(c) = c` for the rest, with `R_r(m1) = R_{r+1}(m1)` when `m1` is in
//! `E_{r+1}`, else `m1` (a star's center). No chain within a round.
//! Nothing of this depends on how the nodes are ordered: on the nodes of
//! records relabelled by a bijection, each component of the nodes is the
//! nodes of one component of the records, and the last step finds its
//! smallest record.
//!
//! Why it ends: a piece of `n` nodes in `c` components has `n - c` leaf
//! edges, no more than its edges, and `E_{r+1}` has one edge fewer than
//! the leaf edges for each leaf that is no center, of which there is at
//! least one (the largest node of `E_r`): `|E_{r+1}| < |E_r|`. A list that
//! fits one piece is solved in one round (each node one parent, no center
//! mapped: `E_{r+1}` is empty).
//!
//! How many rounds: a node larger than each of its neighbours is no
//! piece component's smallest, so a leaf and no center, gone from the
//! next list. Were the nodes the records themselves, a chain of records
//! numbered in order would have one such node, and `k` interleaved chains
//! (`x - x + k`, records of `k` documents each edited in turn) with `k`
//! above a piece's edges (no piece then holds two edges of a chain) lost
//! one node a chain a round: rounds as many as the chains' nodes, each one
//! sort of the remaining edges. With the nodes a pseudo-random order of
//! the records, a third of a path's nodes are larger than their
//! neighbours whatever the records' numbering, and the stars of a piece
//! remove more: each round leaves a fraction of the edges, `O(log n)`
//! rounds expected (as random-mate contraction; an expectation, not a
//! bound for every graph). The rounds are counted ([`Work`]).
//!
//! Measured in pieces of [`MIN_PIECE`] edges (a share of 0, the test
//! profile, `interleaved_chains_contract_in_rounds_logarithmic_in_their_edges`
//! asserts at most twice the edges' `log2`), before and after the
//! nodes were relabelled (rounds, seconds, bytes written):
//!
//! | graph (edges) | before | after |
//! |---|---|---|
//! | 17 interleaved chains of 1,177 (19,992) | 1,176, 174 s, 2.7 GB | 19, 0.5 s, 19 MB |
//! | 64 interleaved chains of 300 (19,136) | 299, 22 s, 663 MB | 17, 0.3 s, 18 MB |
//! | 100 interleaved chains of 201 (20,000) | 200, 23 s, 475 MB | 16, 0.5 s, 19 MB |
//! | 1,000 interleaved chains of 21 (20,000) | 20, 2.9 s, 57 MB | 10, 0.5 s, 18 MB |
//! | a path through 20,001 records in random order | 19, 0.5 s, 11 MB | 19, 0.4 s, 15 MB |
//! | the same through 200,001 records | 28, 17.6 s, 229 MB | 28, 16.4 s, 290 MB |
//!
//! A path already in random order takes as many rounds; its runs are a
//! quarter larger, the nodes spread over `u32` taking more bytes than
//! records numbered from 0.
//!
//! The roots are then resolved from the last round's map back to the
//! first: a table of `(node, root)` for the nodes that are not their own
//! root, sorted by node, merge-joined with the round's map sorted by
//! `m1`. The first round's table is written by root instead, each node as
//! its record: read front to back, a component is a root's entries and
//! the root, whose smallest record is the least of the root's and of the
//! first entry's (`smallest_records`); every other member goes with it to
//! the roots table by record, one more sort. That table, joined with each
//! record's highest similarity (a sort of both ends of every pair, each
//! record once with its largest similarity), gives the removed records in
//! order; sorted by root, it gives the sizes.
//!
//! # Stopping
//!
//! A stop request is looked at every [`STOP_EVERY`] steps of every loop
//! (a pair or edge read, a bucket split, an entry resolved or joined) and
//! at the start of every round ([`StopCheck`]): a stop ends it with
//! [`RunError::Stopped`] within a bounded time whatever the graph, every
//! run it wrote removed as its owner drops. Each round's start is logged
//! at info level with the edges it contracts, so a long clustering is
//! not silent.
//!
//! # Memory
//!
//! Each step holds at most the share: a piece (24 bytes an edge: the edge,
//! its nodes and their union-find) with the sorts it feeds, or the
//! readers of the runs it merges with the sort it feeds, each a fixed
//! part of the share ([`components`]). Relabelling the records takes no
//! memory: a node is computed from its record and back.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drainpipe_actors::TempSpace;

use super::merge::{Buckets, EntrySource};
use super::runs::{Entry, RunError, RunInfo, RunReader, RunWriter};
use super::sorter::{unique_name, SortedRuns, SortedStream, Sorter};
use super::writer::{PREFIX, SUFFIX};
use crate::jobs::dedup::unionfind::UnionFind;

/// Bytes a piece takes an edge: the edge (8), its two nodes (8) and
/// their union-find (8).
pub const PIECE_EDGE_BYTES: u64 = 24;

/// The fewest edges a piece holds, whatever the share.
pub const MIN_PIECE: usize = 16;

/// The node a record is contracted as: a bijection of `u32` (xor-shifts
/// and multiplications by odd numbers, each reversible), so that the
/// smallest node of a piece component is a pseudo-random member of it,
/// whatever the records' numbering (see the module's docs).
fn node(record: u32) -> u32 {
    let mut x = record;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

/// The record contracted as `node` ([`node`]'s inverse: each step's,
/// in reverse order).
fn record(node: u32) -> u32 {
    let mut x = node;
    x ^= x >> 16;
    x = x.wrapping_mul(0x4302_1123);
    x ^= (x >> 15) ^ (x >> 30);
    x = x.wrapping_mul(0x1D69_E2A5);
    x ^ (x >> 16)
}

/// Bytes the runs take at their peak, a verified pair, at most: the
/// similarities' and the first stars' sorts (two entries a pair each), a
/// round's map and next edges beside them, the removed records' run, of
/// 10 to 23 bytes an entry (measured: 48 to 79 on graphs of every shape,
/// `the_peak_on_disk_is_within_its_estimate`; 40 to 66 before the records
/// were contracted as nodes spread over `u32`, whose keys and values take
/// more bytes).
/// What [`crate::jobs::dedup::clusters::Clusters::from_pair_stream`]
/// checks the disk's room for before it writes a run.
pub const DISK_BYTES_PER_PAIR: u64 = 96;

/// Bytes a removed record takes in memory ([`Removed::Memory`]).
pub const REMOVED_BYTES: u64 = 16;

/// A removed record: itself, the record it duplicates, the similarity.
pub type RemovedRecord = (u32, u32, f64);

/// Steps between two looks at whether the run was asked to stop: a look
/// is an atomic load, a step a few nanoseconds.
pub const STOP_EVERY: u32 = 1 << 12;

/// Whether the run was asked to stop, looked at every [`STOP_EVERY`]
/// steps and at each stage's start ([`RunError::Stopped`] when it was);
/// and, since it is where the clusters' loops already come by, what they
/// have done so far, told to a watcher as it looks ([`Steps`]: the
/// progress display between passes 2 and 3).
pub struct StopCheck<'a> {
    asked: &'a dyn Fn() -> bool,
    steps: Cell<u64>,
    round: Cell<usize>,
    watch: Option<&'a dyn Fn(Steps)>,
}

/// What the clusters' loops have done, as a [`StopCheck`] counts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// Steps taken (pairs and edges read, entries resolved or joined),
    /// counted [`STOP_EVERY`] at a time.
    pub steps: u64,
    /// The contraction round under way (0: none yet, or in memory).
    pub round: usize,
}

impl<'a> StopCheck<'a> {
    /// A check asking `asked`.
    pub fn new(asked: &'a dyn Fn() -> bool) -> Self {
        StopCheck {
            asked,
            steps: Cell::new(0),
            round: Cell::new(0),
            watch: None,
        }
    }

    /// A check asking `asked` that tells `watch` what was done each time
    /// it looks.
    pub fn watched(asked: &'a dyn Fn() -> bool, watch: &'a dyn Fn(Steps)) -> Self {
        StopCheck {
            watch: Some(watch),
            ..StopCheck::new(asked)
        }
    }

    /// A check that never stops (tests, and work no run can stop).
    pub fn never() -> StopCheck<'static> {
        StopCheck::new(&|| false)
    }

    /// Whether the run was asked to stop, now.
    pub fn asked(&self) -> bool {
        (self.asked)()
    }

    /// One step: every [`STOP_EVERY`], [`StopCheck::now`].
    pub fn step(&self) -> Result<(), RunError> {
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        if steps.is_multiple_of(u64::from(STOP_EVERY)) {
            return self.now();
        }
        Ok(())
    }

    /// The start of contraction round `round`: [`StopCheck::now`].
    pub fn round(&self, round: usize) -> Result<(), RunError> {
        self.round.set(round);
        self.now()
    }

    /// What was done so far.
    pub fn done(&self) -> Steps {
        let every = u64::from(STOP_EVERY);
        Steps {
            steps: self.steps.get() / every * every,
            round: self.round.get(),
        }
    }

    /// [`RunError::Stopped`] when the run was asked to stop.
    pub fn now(&self) -> Result<(), RunError> {
        if let Some(watch) = self.watch {
            watch(self.done());
        }
        if self.asked() {
            return Err(RunError::Stopped);
        }
        Ok(())
    }
}

/// What the external algorithm did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// Contraction rounds.
    pub rounds: usize,
    /// Runs written, at least (the last run of a sort read straight
    /// from its end, and its merges in levels, are not all counted).
    pub runs: usize,
}

/// The components of the verified pairs.
#[derive(Debug, Default)]
pub struct Components {
    /// Every clustered record but its component's smallest, in record
    /// order, with the smallest and its highest similarity.
    pub removed: Removed,
    /// Components of each size.
    pub sizes: BTreeMap<usize, u64>,
    /// What it took.
    pub work: Work,
}

/// The removed records, in record order: in memory, or in a sorted run of
/// the temporary space (`Entry { key: record, record: kept, print:
/// similarity's bits }`).
#[derive(Debug)]
pub enum Removed {
    /// Held whole.
    Memory(Vec<RemovedRecord>),
    /// On disk.
    Disk(RemovedRun),
}

impl Default for Removed {
    fn default() -> Self {
        Removed::Memory(Vec::new())
    }
}

#[cfg(test)]
impl Removed {
    /// The list, when held in memory (tests build and read it there).
    pub fn in_memory(&self) -> &[RemovedRecord] {
        match self {
            Removed::Memory(list) => list,
            Removed::Disk(_) => panic!("the removed records are on disk"),
        }
    }

    /// [`Removed::in_memory`], to fill.
    pub fn in_memory_mut(&mut self) -> &mut Vec<RemovedRecord> {
        match self {
            Removed::Memory(list) => list,
            Removed::Disk(_) => panic!("the removed records are on disk"),
        }
    }
}

impl Removed {
    /// How many.
    pub fn len(&self) -> u64 {
        match self {
            Removed::Memory(list) => list.len() as u64,
            Removed::Disk(run) => run.info.entries,
        }
    }

    /// True when none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each in record order, read front to back when on disk.
    pub fn iter(&self) -> RemovedIter<'_> {
        match self {
            Removed::Memory(list) => RemovedIter::Memory(list.iter()),
            Removed::Disk(run) => RemovedIter::Disk(Some(run.open())),
        }
    }

    /// All of them in one list (tests, and the users that need one).
    pub fn to_vec(&self) -> Result<Vec<RemovedRecord>, RunError> {
        self.iter().collect()
    }
}

/// The removed records' run, removed when dropped.
#[derive(Debug)]
pub struct RemovedRun {
    temp: Arc<TempSpace>,
    info: RunInfo,
}

impl RemovedRun {
    fn open(&self) -> Result<RunReader, RunError> {
        super::levels::open(&self.temp, &self.info)
    }
}

impl Drop for RemovedRun {
    fn drop(&mut self) {
        if let Err(e) = self.temp.remove(&self.info.name, self.info.bytes) {
            log::warn!(
                "dedup clusters: removing {}: {e} (removed with the temporary folder)",
                self.info.name
            );
        }
    }
}

/// [`Removed::iter`]: the records, or the error that ended the read.
#[derive(Debug)]
pub enum RemovedIter<'a> {
    /// From memory.
    Memory(std::slice::Iter<'a, RemovedRecord>),
    /// From the run (`None` once it ended or failed).
    Disk(Option<Result<RunReader, RunError>>),
}

impl Iterator for RemovedIter<'_> {
    type Item = Result<RemovedRecord, RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = match self {
            RemovedIter::Memory(list) => return list.next().map(|&r| Ok(r)),
            RemovedIter::Disk(reader) => reader,
        };
        let read = match reader.as_mut()? {
            Ok(run) => run.next_entry(),
            Err(_) => Err(reader.take()?.expect_err("a failed open")),
        };
        match read {
            Ok(Some(e)) => Some(Ok((e.key as u32, e.record, f64::from_bits(e.print)))),
            Ok(None) => {
                *reader = None;
                None
            }
            Err(e) => {
                *reader = None;
                Some(Err(e))
            }
        }
    }
}

/// An error of the algorithm itself (a bug), as a run's failure.
pub(super) fn bug(message: String) -> RunError {
    RunError::Failed {
        kind: std::io::ErrorKind::Other,
        message: format!("dedup clusters: {message} (a bug)"),
    }
}

/// One piece of an edge list at a time, each turned into its stars.
struct Pieces {
    edges: Vec<(u32, u32)>,
    nodes: Vec<u32>,
    uf: UnionFind,
    limit: usize,
}

impl Pieces {
    /// Pieces within `share` bytes, of `floor` edges at least.
    fn new(share: u64, floor: usize) -> Self {
        let limit = usize::try_from(share / PIECE_EDGE_BYTES)
            .unwrap_or(usize::MAX)
            .max(floor.max(1));
        Pieces {
            edges: Vec::new(),
            nodes: Vec::new(),
            uf: UnionFind::new(0),
            limit,
        }
    }

    /// Adds the edge `(a, b)`; a full piece goes to `stars`.
    fn push(&mut self, (a, b): (u32, u32), stars: &mut Sorter) -> Result<(), RunError> {
        if self.edges.capacity() == 0 {
            // Their room taken once, exactly: grown by doubling, they
            // could take twice the piece's share.
            self.edges.reserve_exact(self.limit);
            self.nodes.reserve_exact(2 * self.limit);
        }
        self.edges.push((a, b));
        if self.edges.len() >= self.limit {
            self.flush(stars)?;
        }
        Ok(())
    }

    /// The piece's stars: each node with its component's smallest node
    /// (the smallest with itself: a center), as `Entry { key: node,
    /// record: smallest }`.
    fn flush(&mut self, stars: &mut Sorter) -> Result<(), RunError> {
        if self.edges.is_empty() {
            return Ok(());
        }
        self.nodes.clear();
        self.nodes
            .extend(self.edges.iter().flat_map(|&(a, b)| [a, b]));
        self.nodes.sort_unstable();
        self.nodes.dedup();
        // Dense indices in node order: the union-find's smallest index is
        // the smallest node.
        let dense = |nodes: &[u32], x: u32| nodes.binary_search(&x).expect("a node") as u32;
        self.uf.reset(self.nodes.len());
        for &(a, b) in &self.edges {
            self.uf.union(dense(&self.nodes, a), dense(&self.nodes, b));
        }
        for i in 0..self.nodes.len() {
            let root = self.uf.find(i as u32);
            stars.push(Entry {
                key: u64::from(self.nodes[i]),
                record: self.nodes[root as usize],
                print: 0,
            })?;
        }
        self.edges.clear();
        Ok(())
    }
}

/// Splits a round's stars (sorted by node, then parent) into the round's
/// map (`Entry { key: m1, record: v }`, on disk) and the next round's
/// edges (`Entry { key: smaller, record: larger }`), each sort within
/// `share`.
fn contract(
    stars: SortedStream,
    temp: &Arc<TempSpace>,
    share: u64,
    (work, stop): (&mut Work, &StopCheck<'_>),
) -> Result<(SortedRuns, SortedStream), RunError> {
    let mut map = Sorter::new(temp, "map", share);
    let mut next = Sorter::new(temp, "edges", share);
    let mut buckets = Buckets::new(stars);
    while let Some(bucket) = buckets.next_bucket()? {
        stop.step()?;
        let v = bucket[0].key as u32;
        let center = bucket.last().is_some_and(|e| e.record == v);
        let parents = &bucket[..bucket.len() - usize::from(center)];
        let Some((first, rest)) = parents.split_first() else {
            continue;
        };
        let m1 = first.record;
        let edge = |to: u32| Entry {
            key: u64::from(m1),
            record: to,
            print: 0,
        };
        map.push(edge(v))?;
        for m in rest {
            next.push(edge(m.record))?;
        }
        if center {
            next.push(edge(v))?;
        }
    }
    let map = map.into_runs()?;
    work.runs += map.written() + next.runs_written();
    Ok((map, next.finish()?))
}

/// A stream with its next entry looked at.
struct Peeked {
    source: Option<SortedStream>,
    head: Option<Entry>,
}

impl Peeked {
    fn new(mut source: Option<SortedStream>) -> Result<Self, RunError> {
        let head = match &mut source {
            Some(s) => s.next_entry()?,
            None => None,
        };
        Ok(Peeked { source, head })
    }

    fn advance(&mut self) -> Result<Option<Entry>, RunError> {
        let head = self.head;
        self.head = match &mut self.source {
            Some(s) => s.next_entry()?,
            None => None,
        };
        Ok(head)
    }
}

/// How a roots table is sorted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    /// `Entry { key: node, record: root }`, by node: what the previous
    /// round's resolution merges with its map.
    Node,
    /// `Entry { key: root, record: node's record }`, by root, then
    /// record: the first round's, for [`smallest_records`].
    Root,
}

/// The roots table of round `r` (the nodes that are not their own root,
/// each with its root, sorted `by`) from the round's `map` and the next
/// round's `table` (by node; see the module's docs), sorted within
/// `share`.
fn resolve(
    map: SortedRuns,
    table: Option<SortedStream>,
    by: By,
    temp: &Arc<TempSpace>,
    share: u64,
    (work, stop): (&mut Work, &StopCheck<'_>),
) -> Result<SortedStream, RunError> {
    stop.now()?;
    let mut sorter = Sorter::new(temp, "roots", share);
    let mut out = |node: u32, root: u32| {
        let (key, value) = match by {
            By::Node => (node, root),
            By::Root => (root, record(node)),
        };
        sorter.push(Entry {
            key: u64::from(key),
            record: value,
            print: 0,
        })
    };
    let mut later = Peeked::new(table)?;
    let mut map = map.stream()?;
    while let Some(e) = map.next_entry()? {
        stop.step()?;
        while later.head.is_some_and(|t| t.key < e.key) {
            let t = later.advance()?.expect("a head");
            out(t.key as u32, t.record)?;
        }
        let root = match later.head {
            Some(t) if t.key == e.key => t.record,
            _ => e.key as u32,
        };
        out(e.record, root)?;
    }
    while let Some(t) = later.advance()? {
        stop.step()?;
        out(t.key as u32, t.record)?;
    }
    work.runs += sorter.runs_written();
    sorter.finish()
}

/// The removed records as they are joined, in memory until they pass
/// `limit`, then in a run, whose room on the disk is checked before it is
/// written and every [`ROOM_EVERY`] entries after: it grows to the end,
/// so one check at its start cannot tell a disk that fills meanwhile.
/// An unfinished run is removed when the writer drops.
pub(super) struct RemovedWriter {
    temp: Arc<TempSpace>,
    /// What its run's name says it holds.
    what: &'static str,
    limit: usize,
    memory: Vec<RemovedRecord>,
    /// The run being written: its writer, its name, its entries.
    disk: Option<(RunWriter, String, u64)>,
}

/// Entries of the removed records' run between two checks of the disk's
/// room (1.4 MiB of them at most).
const ROOM_EVERY: u64 = 1 << 16;

/// Bytes an entry of the removed records' run takes on disk at most.
const REMOVED_DISK_BYTES: u64 = 23;

impl RemovedWriter {
    /// Removed records in memory within `bytes`, past them in a run of
    /// `temp`.
    pub(super) fn new(temp: &Arc<TempSpace>, bytes: u64) -> Self {
        RemovedWriter::named(temp, bytes, "removed")
    }

    /// [`RemovedWriter::new`], its run's name saying `what` it holds.
    pub(super) fn named(temp: &Arc<TempSpace>, bytes: u64, what: &'static str) -> Self {
        RemovedWriter {
            temp: Arc::clone(temp),
            what,
            limit: usize::try_from(bytes / REMOVED_BYTES).unwrap_or(usize::MAX),
            memory: Vec::new(),
            disk: None,
        }
    }

    /// Checks that `bytes` more fit on the disk of the run `name`.
    fn room(&self, name: &str, bytes: u64) -> Result<(), RunError> {
        self.temp.ensure_room(bytes).map_err(|cause| RunError::Io {
            path: self.temp.folder().join(name),
            cause,
        })
    }

    /// Adds the next one, in record order.
    pub(super) fn push(&mut self, removed: RemovedRecord) -> Result<(), RunError> {
        let entry = |(r, kept, j): RemovedRecord| Entry {
            key: u64::from(r),
            record: kept,
            print: j.to_bits(),
        };
        if let Some((_, name, entries)) = &self.disk {
            if (*entries + 1).is_multiple_of(ROOM_EVERY) {
                self.room(name, ROOM_EVERY * REMOVED_DISK_BYTES)?;
            }
        }
        if let Some((writer, _, entries)) = &mut self.disk {
            *entries += 1;
            return writer.push(entry(removed));
        }
        self.memory.push(removed);
        if self.memory.len() > self.limit {
            let name = format!("{PREFIX}{}{SUFFIX}", unique_name(self.what));
            let held = self.memory.len() as u64;
            self.room(&name, (held + ROOM_EVERY) * REMOVED_DISK_BYTES)?;
            let path = self.temp.path(&name).map_err(|cause| RunError::Io {
                path: self.temp.folder().join(&name),
                cause,
            })?;
            let writer = RunWriter::create(&path, true)?;
            let (writer, _, _) = self.disk.insert((writer, name, held));
            for &r in &self.memory {
                writer.push(entry(r))?;
            }
            self.memory = Vec::new();
        }
        Ok(())
    }

    /// The removed records, in memory or in their run.
    pub(super) fn finish(mut self) -> Result<Removed, RunError> {
        let Some((writer, name, _)) = self.disk.take() else {
            return Ok(Removed::Memory(std::mem::take(&mut self.memory)));
        };
        let info = writer.finish().inspect_err(|_| self.forget(&name))?;
        self.temp.wrote(info.bytes);
        Ok(Removed::Disk(RemovedRun {
            temp: Arc::clone(&self.temp),
            info,
        }))
    }

    /// Removes the unfinished run `name` (never counted as written).
    fn forget(&self, name: &str) {
        if let Err(e) = self.temp.remove(name, 0) {
            log::warn!("dedup clusters: removing {name}: {e} (removed with the temporary folder)");
        }
    }
}

impl Drop for RemovedWriter {
    fn drop(&mut self) {
        if let Some((writer, name, _)) = self.disk.take() {
            drop(writer);
            self.forget(&name);
        }
    }
}

/// The components of the verified `pairs` (`(earlier, later,
/// similarity)`, in any order), within `share` bytes, in the temporary
/// space `temp` (see the module's docs). Every run is removed when it
/// returns, but the removed records' when they are on disk (removed as
/// they drop).
///
/// The share's parts: round 0 reads the pairs in pieces of a quarter,
/// beside two sorts of a quarter each (the stars, each record's highest
/// similarity); later rounds in pieces of half, beside the stars' sort
/// and the edges' readers; a round's split and each resolution hold
/// three sorts' or readers' quarters, the smallest records' a reader's
/// and a sort's; the last join the table's and the
/// similarities' readers, the sizes' sort and the removed records in
/// memory, a quarter each.
///
/// `stop` is looked at as it goes (see the module's docs): a stop ends it
/// with [`RunError::Stopped`], every run removed.
pub fn components(
    pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    share: u64,
    temp: &Arc<TempSpace>,
    stop: &StopCheck<'_>,
) -> Result<Components, RunError> {
    components_in_pieces(pairs, share, temp, (MIN_PIECE, stop))
}

/// [`components`] in pieces of `floor` edges at least (tests: pieces of
/// one edge).
fn components_in_pieces(
    pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    share: u64,
    temp: &Arc<TempSpace>,
    (floor, stop): (usize, &StopCheck<'_>),
) -> Result<Components, RunError> {
    let (table, best, mut work) = contracted(pairs, share, temp, (floor, stop))?;
    let (removed, sizes) = join(table, best, temp, share / 4, (&mut work, stop))?;
    Ok(Components {
        removed,
        sizes,
        work,
    })
}

/// The components before their join ([`components`] but its last
/// step, which [`super::ranked`] does its own way): the roots table
/// (`Entry { key: record, record: smallest }` for every clustered record
/// but its component's smallest record, in record order; `None`: no
/// pair), every
/// clustered record's highest similarity (`Entry { key: record, print:
/// similarity's bits }`, in record order), and the work.
pub(super) fn contracted(
    pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    share: u64,
    temp: &Arc<TempSpace>,
    (floor, stop): (usize, &StopCheck<'_>),
) -> Result<(Option<SortedStream>, SortedRuns, Work), RunError> {
    let quarter = share / 4;
    let mut work = Work::default();
    let mut maps: Vec<SortedRuns> = Vec::new();
    let mut best = Sorter::new(temp, "best", quarter);
    let mut stars = Sorter::new(temp, "stars", quarter);
    let mut pieces = Pieces::new(quarter, floor);
    for pair in pairs {
        stop.step()?;
        let (a, b, j) = pair?;
        for x in [a, b] {
            best.push(Entry {
                key: u64::from(x),
                record: 0,
                print: j.to_bits(),
            })?;
        }
        pieces.push((node(a), node(b)), &mut stars)?;
    }
    pieces.flush(&mut stars)?;
    drop(pieces);
    let best = best.into_runs()?;
    work.runs += best.written();
    // Tests act here (a signal, a full disk) with runs on disk.
    crate::jobs::dedup::crash::hold("dedup::clusters_hold", &|| stop.asked());
    let mut said = RoundLog::new();
    loop {
        work.rounds += 1;
        stop.round(work.rounds)?;
        work.runs += stars.runs_written();
        let (map, mut edges) = contract(stars.finish()?, temp, quarter, (&mut work, stop))?;
        maps.push(map);
        let mut first = edges.next_entry()?;
        if first.is_none() {
            break;
        }
        stars = Sorter::new(temp, "stars", quarter);
        let mut pieces = Pieces::new(share / 2, floor);
        let mut left = 0u64;
        while let Some(e) = first {
            stop.step()?;
            pieces.push((e.key as u32, e.record), &mut stars)?;
            left += 1;
            first = edges.next_entry()?;
        }
        pieces.flush(&mut stars)?;
        said.round(work.rounds, left);
    }
    let mut table = None;
    while let Some(map) = maps.pop() {
        let by = if maps.is_empty() { By::Root } else { By::Node };
        table = Some(resolve(map, table, by, temp, quarter, (&mut work, stop))?);
    }
    let table = match table {
        Some(by_root) => Some(smallest_records(by_root, temp, quarter, (&mut work, stop))?),
        None => None,
    };
    Ok((table, best, work))
}

/// The roots table by record (`Entry { key: record, record: smallest }`
/// for every clustered record but its component's smallest, in record
/// order) from the first round's (`Entry { key: root, record }`, sorted
/// by root node, then record): a component is its root's entries and
/// its root, whose smallest record is the least of the root's and the
/// first entry's. Read front to back, sorted within `share`.
fn smallest_records(
    mut by_root: SortedStream,
    temp: &Arc<TempSpace>,
    share: u64,
    (work, stop): (&mut Work, &StopCheck<'_>),
) -> Result<SortedStream, RunError> {
    stop.now()?;
    let mut out = Sorter::new(temp, "roots", share);
    let mut push = |key: u32, smallest: u32| {
        if key == smallest {
            return Ok(());
        }
        out.push(Entry {
            key: u64::from(key),
            record: smallest,
            print: 0,
        })
    };
    // The component being read: its root node and smallest record.
    let mut component: Option<(u64, u32)> = None;
    while let Some(e) = by_root.next_entry()? {
        stop.step()?;
        let smallest = match component {
            Some((root, smallest)) if root == e.key => smallest,
            _ => {
                let root = record(e.key as u32);
                let smallest = root.min(e.record);
                push(root, smallest)?;
                component = Some((e.key, smallest));
                smallest
            }
        };
        push(e.record, smallest)?;
    }
    drop(by_root);
    work.runs += out.runs_written();
    out.finish()
}

/// The rounds' log lines: at info level for the first rounds, each power
/// of two and at least every [`ROUND_LOG_EVERY`], so a clustering of many
/// rounds says where it is without a line a round.
struct RoundLog {
    last: Instant,
}

/// The longest a clustering goes without a round's line at info level.
const ROUND_LOG_EVERY: Duration = Duration::from_secs(10);

impl RoundLog {
    fn new() -> Self {
        RoundLog {
            last: Instant::now(),
        }
    }

    /// Round `round` contracted its edges to `left` for the next.
    fn round(&mut self, round: usize, left: u64) {
        let due = round <= 4 || round.is_power_of_two() || self.last.elapsed() >= ROUND_LOG_EVERY;
        let level = if due {
            self.last = Instant::now();
            log::Level::Info
        } else {
            log::Level::Debug
        };
        log::log!(
            level,
            "dedup: clusters: contraction round {round} done, {left} edges left for round {}",
            round + 1
        );
    }
}

/// The removed records, each roots-table entry with its record's highest
/// similarity from `best`, and the sizes, counted from the table sorted
/// by root; each part within `quarter`.
fn join(
    table: Option<SortedStream>,
    best: SortedRuns,
    temp: &Arc<TempSpace>,
    quarter: u64,
    (work, stop): (&mut Work, &StopCheck<'_>),
) -> Result<(Removed, BTreeMap<usize, u64>), RunError> {
    stop.now()?;
    let mut table = Peeked::new(table)?;
    let mut best = best.stream()?;
    let mut by_root = Sorter::new(temp, "sizes", quarter);
    let mut out = RemovedWriter::new(temp, quarter);
    while let Some(t) = table.advance()? {
        stop.step()?;
        let similarity = loop {
            match best.next_entry()? {
                Some(b) if b.key < t.key => continue,
                Some(b) if b.key == t.key => break f64::from_bits(b.print),
                _ => return Err(bug(format!("record {} without a similarity", t.key))),
            }
        };
        out.push((t.key as u32, t.record, similarity))?;
        by_root.push(Entry {
            key: u64::from(t.record),
            record: t.key as u32,
            print: 0,
        })?;
    }
    drop(best);
    work.runs += by_root.runs_written();
    let mut sizes = BTreeMap::new();
    let mut by_root = Buckets::new(by_root.finish()?);
    while let Some(members) = by_root.next_bucket()? {
        stop.step()?;
        // The root, and the records removed as its duplicates.
        *sizes.entry(members.len() + 1).or_default() += 1;
    }
    let removed = out.finish()?;
    work.runs += usize::from(matches!(removed, Removed::Disk(_)));
    Ok((removed, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::dedup::clusters::Clusters;
    use crate::jobs::dedup::testing::Rng;

    /// The pairs as pass 2 gives them: each once, sorted by the later
    /// record, with a similarity.
    fn verified(rng: &mut Rng, edges: impl IntoIterator<Item = (u32, u32)>) -> Vec<RemovedRecord> {
        let mut pairs: Vec<(u32, u32)> = edges
            .into_iter()
            .filter(|&(a, b)| a != b)
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        pairs.sort_unstable_by_key(|&(a, b)| (b, a));
        pairs.dedup();
        pairs
            .into_iter()
            .map(|(a, b)| (a, b, 0.5 + rng.below(1 << 20) as f64 / f64::from(1 << 21)))
            .collect()
    }

    /// Graphs of each shape, with their names.
    fn graphs(rng: &mut Rng) -> Vec<(&'static str, Vec<RemovedRecord>)> {
        let n = 6_000u32;
        let random: Vec<(u32, u32)> = (0..n)
            .map(|_| {
                (
                    rng.below(u64::from(n)) as u32,
                    rng.below(u64::from(n)) as u32,
                )
            })
            .collect();
        let giant: Vec<(u32, u32)> = (1..n)
            .map(|i| (rng.below(u64::from(i)) as u32, i))
            .collect();
        vec![
            ("random pairs", verified(rng, random)),
            (
                "a chain in order",
                verified(rng, (0..n).map(|i| (i, i + 1))),
            ),
            ("a chain in reverse", {
                let mut v = verified(rng, (0..n).map(|i| (i, i + 1)));
                v.reverse();
                v
            }),
            ("a chain shuffled", {
                let mut v = verified(rng, (0..n).map(|i| (i, i + 1)));
                for i in (1..v.len()).rev() {
                    v.swap(i, rng.below(i as u64 + 1) as usize);
                }
                v
            }),
            ("a chain of every other record", {
                verified(rng, (0..n).map(|i| (2 * i, 2 * i + 2)))
            }),
            (
                "stars",
                verified(rng, (0..n).map(|i| (i / 500 * 500 + 7, i + 10))),
            ),
            (
                "a star on the last record",
                verified(rng, (0..n).map(|i| (i, n))),
            ),
            ("cliques", {
                let mut edges = Vec::new();
                for c in 0..40u32 {
                    for a in 0..12 {
                        for b in a + 1..12 {
                            edges.push((c + 40 * a, c + 40 * b));
                        }
                    }
                }
                verified(rng, edges)
            }),
            (
                "components of two",
                verified(rng, (0..n).map(|i| (3 * i, 3 * i + 1))),
            ),
            ("one giant component", verified(rng, giant)),
            ("nothing", Vec::new()),
        ]
    }

    fn external(pairs: &[RemovedRecord], share: u64) -> (Components, tempfile::TempDir) {
        external_in_pieces(pairs, share, MIN_PIECE)
    }

    fn external_in_pieces(
        pairs: &[RemovedRecord],
        share: u64,
        floor: usize,
    ) -> (Components, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let stop = StopCheck::never();
        let pairs = pairs.iter().map(|&p| Ok(p));
        let got = components_in_pieces(pairs, share, &temp, (floor, &stop)).unwrap();
        let left: Vec<_> = std::fs::read_dir(temp.dir().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let expected = usize::from(matches!(got.removed, Removed::Disk(_)));
        assert_eq!(
            left.len(),
            expected,
            "only the removed records' run: {left:?}"
        );
        (got, dir)
    }

    fn same_as_in_memory(name: &str, pairs: &[RemovedRecord], share: u64) -> Work {
        same_in_pieces(name, pairs, share, MIN_PIECE)
    }

    fn same_in_pieces(name: &str, pairs: &[RemovedRecord], share: u64, floor: usize) -> Work {
        let want = Clusters::from_pairs(pairs);
        let (got, _dir) = external_in_pieces(pairs, share, floor);
        let (want_list, got_list) = (
            want.removed.to_vec().unwrap(),
            got.removed.to_vec().unwrap(),
        );
        assert_eq!(got_list.len(), want_list.len(), "{name}");
        for (g, w) in got_list.iter().zip(&want_list) {
            assert!(
                g.0 == w.0 && g.1 == w.1 && g.2.to_bits() == w.2.to_bits(),
                "{name}: {g:?} where the union-find gives {w:?}"
            );
        }
        assert_eq!(got.sizes, want.sizes, "{name}");
        got.work
    }

    #[test]
    fn the_external_components_are_the_union_finds_on_graphs_of_every_shape() {
        let mut rng = Rng::new(42);
        for (name, pairs) in graphs(&mut rng) {
            for share in [0, 4 << 10, 1 << 30] {
                let work = same_as_in_memory(name, &pairs, share);
                if share == 0 && pairs.len() > 1_000 {
                    // Pairs apart are solved in their pieces: one round.
                    let rounds = if name == "components of two" { 1 } else { 2 };
                    assert!(work.rounds >= rounds, "{name}: {work:?}");
                    assert!(work.runs > 10, "{name}: {work:?}");
                }
            }
        }
    }

    #[test]
    fn the_peak_on_disk_is_within_its_estimate() {
        let mut rng = Rng::new(13);
        for (name, pairs) in graphs(&mut rng) {
            if pairs.len() < 1_000 {
                continue;
            }
            for share in [0, 64 << 10] {
                let dir = tempfile::tempdir().unwrap();
                let temp = Arc::new(TempSpace::new(dir.path()));
                let stop = StopCheck::never();
                let stream = pairs.iter().map(|&p| Ok(p));
                let got = components_in_pieces(stream, share, &temp, (MIN_PIECE, &stop)).unwrap();
                let per_pair = temp.peak_bytes() as f64 / pairs.len() as f64;
                eprintln!(
                    "{name}, share {share}: {per_pair:.1} bytes a pair at the peak, {:?}",
                    got.work
                );
                assert!(
                    temp.peak_bytes() <= pairs.len() as u64 * DISK_BYTES_PER_PAIR,
                    "{name}: {per_pair:.1} bytes a pair"
                );
            }
        }
    }

    #[test]
    fn random_graphs_of_every_density_give_the_union_finds_components() {
        let mut rng = Rng::new(7);
        for _ in 0..40 {
            let nodes = 2 + rng.below(3_000);
            let edges: Vec<(u32, u32)> = (0..rng.below(4 * nodes))
                .map(|_| (rng.below(nodes) as u32, rng.below(nodes) as u32))
                .collect();
            let pairs = verified(&mut rng, edges);
            same_as_in_memory("random", &pairs, rng.below(3) * (2 << 10));
        }
    }

    #[test]
    fn a_center_that_only_its_mapped_leaf_joins_to_a_smaller_one_gets_its_root() {
        // Pieces of one edge, were the records the nodes: 5 is a leaf of
        // 2, and the center of 7, which is a leaf of 0 too. Mapping 7 to 0
        // with the edge (0, 5) alone would leave 2 as a root of its own; 5
        // keeps its edge to 2. (The case as nodes: the next test.)
        let pairs = [(2, 5, 0.9), (5, 7, 0.8), (0, 7, 0.85)];
        let work = same_in_pieces("mapped center", &pairs, 0, 1);
        assert!(work.rounds >= 2, "{work:?}");
        let (got, _dir) = external_in_pieces(&pairs, 0, 1);
        let list = got.removed.to_vec().unwrap();
        assert_eq!(list, [(2, 0, 0.9), (5, 0, 0.9), (7, 0, 0.85)]);
    }

    #[test]
    fn a_center_that_only_its_mapped_leaf_joins_to_a_smaller_node_gets_its_root() {
        // The case above in node order: the records contracted as nodes
        // 0, 2, 5 and 7.
        let [r0, r2, r5, r7] = [0, 2, 5, 7].map(record);
        let pair = |a: u32, b: u32, j| (a.min(b), a.max(b), j);
        let pairs = [pair(r2, r5, 0.9), pair(r5, r7, 0.8), pair(r0, r7, 0.85)];
        let work = same_in_pieces("mapped center in node order", &pairs, 0, 1);
        assert!(work.rounds >= 2, "{work:?}");
    }

    #[test]
    fn the_node_of_a_record_is_a_bijection_undone_by_record() {
        let mut rng = Rng::new(17);
        let samples = (0..1 << 16)
            .chain(u32::MAX - (1 << 16)..=u32::MAX)
            .chain((0..1 << 16).map(|_| rng.next() as u32));
        for x in samples {
            assert_eq!(record(node(x)), x, "{x}");
            assert_eq!(node(record(x)), x, "{x}");
        }
        // Its multiplications are undone by their inverses.
        assert_eq!(0x7FEB_352Du32.wrapping_mul(0x1D69_E2A5), 1);
        assert_eq!(0x846C_A68Bu32.wrapping_mul(0x4302_1123), 1);
        // It spreads a run of records over the nodes' range.
        let nodes: Vec<u32> = (0..1_000).map(node).collect();
        let low = nodes.iter().filter(|&&n| n < u32::MAX / 2).count();
        assert!(
            (400..600).contains(&low),
            "{low} of 1,000 in the lower half"
        );
    }

    /// `k` interleaved chains of `len` records (`x - x + k`).
    fn interleaved_chains(rng: &mut Rng, k: u32, len: u32) -> Vec<RemovedRecord> {
        verified(rng, (0..k * (len - 1)).map(|x| (x, x + k)))
    }

    /// A path through the records `0..=n` in a random order.
    fn shuffled_path(rng: &mut Rng, n: u32) -> Vec<RemovedRecord> {
        let mut order: Vec<u32> = (0..=n).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        verified(rng, order.windows(2).map(|w| (w[0], w[1])))
    }

    #[test]
    fn interleaved_chains_contract_in_rounds_logarithmic_in_their_edges() {
        let mut rng = Rng::new(23);
        let graphs = [
            (
                "64 interleaved chains of 300",
                interleaved_chains(&mut rng, 64, 300),
            ),
            (
                "17 interleaved chains of 600",
                interleaved_chains(&mut rng, 17, 600),
            ),
            ("a shuffled path", shuffled_path(&mut rng, 20_000)),
        ];
        for (name, pairs) in graphs {
            // Chains longer than a piece's edges: numbered as records,
            // one node a chain a round, 299 and 599 rounds.
            let work = same_in_pieces(name, &pairs, 0, MIN_PIECE);
            let log2 = (pairs.len() as f64).log2();
            assert!(
                (work.rounds as f64) <= 2.0 * log2,
                "{name}: {} rounds for {} edges",
                work.rounds,
                pairs.len()
            );
        }
    }

    #[test]
    fn graphs_in_pieces_of_one_or_two_edges_give_the_union_finds_components() {
        let mut rng = Rng::new(11);
        for _ in 0..300 {
            let nodes = 2 + rng.below(40);
            let edges: Vec<(u32, u32)> = (0..rng.below(3 * nodes))
                .map(|_| (rng.below(nodes) as u32, rng.below(nodes) as u32))
                .collect();
            let mut pairs = verified(&mut rng, edges);
            // In any order: pass 2's, or shuffled.
            if rng.below(2) == 0 {
                for i in (1..pairs.len()).rev() {
                    pairs.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            let floor = 1 + rng.below(2) as usize;
            same_in_pieces("small", &pairs, 0, floor);
        }
    }

    /// [`components_in_pieces`] over `pairs` within no share, asked to
    /// stop at the `stop_at`-th look (never: 0), and the looks it took.
    fn stopped_at(pairs: &[RemovedRecord], stop_at: u32) -> (Result<Components, RunError>, u32) {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let looks = Cell::new(0u32);
        let asked = || {
            looks.set(looks.get() + 1);
            looks.get() == stop_at
        };
        let stop = StopCheck::new(&asked);
        let got = components_in_pieces(pairs.iter().map(|&p| Ok(p)), 0, &temp, (MIN_PIECE, &stop));
        let left: Vec<_> = match temp.dir() {
            Ok(folder) => std::fs::read_dir(folder)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect(),
            Err(_) => Vec::new(),
        };
        if got.is_err() {
            assert!(left.is_empty(), "stopped at look {stop_at}: {left:?} left");
        }
        (got, looks.get())
    }

    #[test]
    fn a_stop_seen_at_any_look_ends_the_components_with_no_run_left() {
        let mut rng = Rng::new(5);
        // A chain whose records are shuffled: several rounds, each with
        // its runs.
        let n = 20_000u32;
        let mut order: Vec<u32> = (0..n).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let pairs = verified(&mut rng, order.windows(2).map(|w| (w[0], w[1])));
        let (whole, looks) = stopped_at(&pairs, 0);
        let work = whole.unwrap().work;
        // Looked at in every stage: each round's start and its steps, each
        // resolution's and the join's.
        assert!(work.rounds >= 2, "{work:?}");
        assert!(
            looks as usize > 2 * work.rounds + pairs.len() * 2 / STOP_EVERY as usize,
            "{looks} looks in {work:?}"
        );
        for stop_at in 1..=looks {
            let (got, seen) = stopped_at(&pairs, stop_at);
            assert!(
                matches!(got, Err(RunError::Stopped)),
                "asked to stop at look {stop_at} of {looks}: {:?}",
                got.map(|c| c.work)
            );
            assert_eq!(seen, stop_at, "it went on looking after the stop");
        }
    }

    #[test]
    fn removed_records_past_their_room_go_to_a_run_read_back_in_order() {
        let mut rng = Rng::new(3);
        let pairs = verified(&mut rng, (0..20_000u32).map(|i| (2 * i, 2 * i + 1)));
        let (got, dir) = external(&pairs, 0);
        let Removed::Disk(_) = &got.removed else {
            panic!("20,000 removed records within no share: on disk");
        };
        let list = got.removed.to_vec().unwrap();
        assert_eq!(list.len(), 20_000);
        assert!(list
            .iter()
            .all(|&(r, kept, _)| r == kept + 1 && kept % 2 == 0));
        drop(got);
        let temp = dir.path().join(drainpipe_actors::TEMP_FOLDER);
        assert_eq!(
            std::fs::read_dir(temp).unwrap().count(),
            0,
            "removed with it"
        );
    }

    #[test]
    fn a_watched_check_tells_its_watcher_the_rounds_and_the_steps_as_it_looks() {
        let told = std::cell::RefCell::new(Vec::new());
        let watch = |steps: Steps| told.borrow_mut().push(steps);
        let asked = || false;
        let stop = StopCheck::watched(&asked, &watch);
        for _ in 0..STOP_EVERY * 2 + 5 {
            stop.step().unwrap();
        }
        stop.round(1).unwrap();
        let every = u64::from(STOP_EVERY);
        assert_eq!(
            *told.borrow(),
            [
                Steps {
                    steps: every,
                    round: 0
                },
                Steps {
                    steps: 2 * every,
                    round: 0
                },
                Steps {
                    steps: 2 * every,
                    round: 1
                },
            ]
        );
        // The components tell the rounds they make.
        told.borrow_mut().clear();
        let pairs: Vec<RemovedRecord> = (0..2_000u32).map(|r| (r, r + 1, 0.9)).collect();
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let found = components(pairs.into_iter().map(Ok), 0, &temp, &stop).unwrap();
        let rounds: Vec<usize> = told.borrow().iter().map(|s| s.round).collect();
        assert!(found.work.rounds >= 2, "{:?}", found.work);
        assert_eq!(rounds.iter().max(), Some(&found.work.rounds), "{rounds:?}");
        assert!(rounds.windows(2).all(|w| w[0] <= w[1]), "{rounds:?}");
    }
}
