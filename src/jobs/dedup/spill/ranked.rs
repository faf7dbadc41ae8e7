//! The clusters under a `--keep` policy other than `first`
//! (`longest`, `shortest`, `field:NAME`) when they do not fit their share
//! of the memory budget ([`crate::jobs::dedup::budget::Shares::clusters`]):
//! what the in-memory union-find with its ranking makes
//! ([`crate::jobs::dedup::clusters::Clusters::from_pairs_keeping`]), from
//! the verified pairs and the clustered records' keys in record order,
//! with sorted runs read front to back, never a look-up by record on disk
//! and never a whole cluster in memory.
//!
//! A cluster keeps the member its policy ranks first, by a sequential
//! rule: its members are visited in record order and a later one takes
//! the holder's place only when it ranks strictly higher
//! ([`KeepPolicy::prefers`]), ties going to the first. That rule is
//! emulated as it is, not by sorting on a rank (against indexes,
//! a cluster whose root is indexed keeps it unranked:
//! [`super::joined`]): on `field:` keys
//! `prefers` is not a total order (an integer and a float compare as
//! 64-bit floats, two integers exactly), so the holder a cluster ends
//! with can depend on the order its members come in.
//!
//! 1. The components (`components::contracted`): every clustered
//!    record but its component's smallest with that smallest (its root),
//!    and every clustered record's highest similarity, both in record
//!    order. Joined, beside the keys (also in record order), they give
//!    each member `(root, record, similarity, key)`, sorted by `(root,
//!    record)` with the key as text ([`super::named`]'s sort of records
//!    with a text: the key written as one, exactly).
//! 2. Each root's members come in record order: only the holder and its
//!    key are held while they pass, so a cluster of a million identical
//!    records takes no more than one of two. Each root whose holder is
//!    not itself goes to a table `(root, kept)`, already in root order,
//!    and every member, without its key, to a sort by `(root, record)`;
//!    the sizes are counted there.
//! 3. The members merge-joined with that table give every removed record
//!    `(record, kept, similarity)` (the root too, when another member is
//!    kept), sorted by record: the removed records in memory within a
//!    quarter of the share, else a run ([`Removed`]).
//!
//! # Memory
//!
//! Step 1 holds the readers of the table and the similarities, a quarter
//! of the share each, beside the sort by root (half); step 2 that sort's
//! readers (half) beside the members' and the table's sorts (a quarter
//! each); step 3 the readers of those two and the sort by record, then
//! that sort's readers and the removed records in memory, a quarter each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::components::{
    bug, contracted, Removed, RemovedRecord, RemovedWriter, StopCheck, Work, MIN_PIECE,
};
use super::merge::EntrySource;
use super::named::Sorter as TextSorter;
use super::runs::{Entry, RunError};
use super::sorter::{SortedStream, Sorter};
use crate::jobs::dedup::keep::{KeepKey, KeepPolicy};

/// The fewest bytes the sort by root holds before it writes a run,
/// whatever the share: a run of a few records costs a file each.
const MIN_TEXT_SORT: u64 = 64 << 10;

/// The clusters made under a keep policy.
#[derive(Debug, Default)]
pub struct Ranked {
    /// Every clustered record but its cluster's kept one, in record
    /// order, with the kept one and its highest similarity.
    pub removed: Removed,
    /// Clusters of each size.
    pub sizes: BTreeMap<usize, u64>,
    /// Clustered records without a usable value for the policy's field
    /// (0 unless it is `field:`), as [`KeepPolicy::missing`] counts them.
    pub missing: u64,
    /// What the components took; the runs of the ranking are added.
    pub work: Work,
}

/// A clustered record's key: in record order, a record that has none
/// (or is not clustered) left out.
pub type KeyedRecord = (u32, Option<KeepKey>);

/// The clusters of the verified `pairs` (`(earlier, later, similarity)`,
/// in any order) keeping, in each, the member `policy` ranks first by the
/// `keys` of the clustered records (in increasing record order; a record
/// without one ranks as [`KeepKey::Missing`]), within `share` bytes, in
/// the temporary space `temp` (see the module's docs). Every run is
/// removed when it returns, but the removed records' when they are on
/// disk (removed as they drop).
pub fn ranked(
    pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    keys: impl Iterator<Item = Result<KeyedRecord, RunError>>,
    policy: &KeepPolicy,
    (share, temp): (u64, &Arc<TempSpace>),
    stop: &StopCheck<'_>,
) -> Result<Ranked, RunError> {
    let keep = (policy, 0);
    ranked_in_pieces(pairs, keys, keep, (share, MIN_PIECE), (temp, stop))
}

/// [`ranked`] with the components in pieces of `floor` edges at least,
/// over records numbered with `pinned` indexed records first (`--against`,
/// [`super::joined`]): a cluster whose root is below `pinned` has an
/// indexed record, which cannot be removed, and keeps its root unranked,
/// as the in-memory union-find does
/// ([`crate::jobs::dedup::clusters::Clusters::with_index_keeping`]); the
/// others are ranked, and only their members counted in
/// [`Ranked::missing`].
pub(super) fn ranked_in_pieces(
    pairs: impl Iterator<Item = Result<RemovedRecord, RunError>>,
    keys: impl Iterator<Item = Result<KeyedRecord, RunError>>,
    (policy, pinned): (&KeepPolicy, u32),
    (share, floor): (u64, usize),
    (temp, stop): (&Arc<TempSpace>, &StopCheck<'_>),
) -> Result<Ranked, RunError> {
    let (table, best, mut work) = contracted(pairs, share, temp, (floor, stop))?;
    let quarter = share / 4;
    let mut by_root = TextSorter::new(temp, "ranks", (share / 2).max(MIN_TEXT_SORT));
    let mut best = best.stream()?;
    members_by_root(table, &mut best, keys, (&mut by_root, stop))?;
    drop(best);
    let mut sorted = by_root.finish()?;
    let keep = (policy, pinned);
    let (members, chosen, sizes, missing) = choose(&mut sorted, keep, (temp, quarter), stop)?;
    work.runs += sorted.made();
    sorted.close()?;
    work.runs += members.runs_written() + chosen.runs_written();
    let removed = removed(
        members.finish()?,
        chosen.finish()?,
        temp,
        quarter,
        (&mut work, stop),
    )?;
    Ok(Ranked {
        removed,
        sizes,
        missing: if policy.field().is_some() { missing } else { 0 },
        work,
    })
}

/// Step 1: each clustered record of `best` (in record order, with its
/// highest similarity), its root from `table` (itself when it has none),
/// and its key from `keys`, pushed to `by_root`.
fn members_by_root(
    table: Option<SortedStream>,
    best: &mut SortedStream,
    keys: impl Iterator<Item = Result<KeyedRecord, RunError>>,
    (by_root, stop): (&mut TextSorter<'_>, &StopCheck<'_>),
) -> Result<(), RunError> {
    let mut table = Head::new(table)?;
    let mut keys = keys.peekable();
    let mut text = String::new();
    while let Some(b) = best.next_entry()? {
        stop.step()?;
        let record = b.key as u32;
        let root = match table.head {
            Some(t) if t.key == b.key => table.advance()?.map_or(record, |t| t.record),
            Some(t) if t.key < b.key => {
                return Err(bug(format!("record {} with a root and no pair", t.key)));
            }
            _ => record,
        };
        let key = loop {
            match keys.next_if(|k| k.as_ref().map_or(true, |(r, _)| *r <= record)) {
                Some(Ok((r, key))) if r == record => break key,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => break None,
            }
        };
        key_text(key.as_ref(), &mut text);
        by_root.push(root, record, f64::from_bits(b.print), &text)?;
    }
    if let Some(t) = table.head {
        return Err(bug(format!("record {} with a root and no pair", t.key)));
    }
    Ok(())
}

/// A cluster's members as they pass in record order: its root, how many
/// passed, and the one holding the place with its key.
struct Holder {
    root: u32,
    size: usize,
    record: u32,
    key: KeepKey,
}

/// Step 2: each root's members from `sorted` (by root, then record),
/// the holder kept by the policy's sequential rule (the root itself when
/// below `pinned`). Returns the members by `(root << 32 | record)` with
/// their similarity, the roots whose kept record is another (`Entry {
/// key: root, record: kept }`), the sizes, and how many members of the
/// ranked clusters had no key or a missing one; each sort within
/// `quarter`.
fn choose(
    sorted: &mut super::named::Sorted<'_>,
    (policy, pinned): (&KeepPolicy, u32),
    (temp, quarter): (&Arc<TempSpace>, u64),
    stop: &StopCheck<'_>,
) -> Result<(Sorter, Sorter, BTreeMap<usize, u64>, u64), RunError> {
    let mut members = Sorter::new(temp, "members", quarter);
    let mut chosen = Sorter::new(temp, "chosen", quarter);
    let mut sizes = BTreeMap::new();
    let mut close = |h: Holder, chosen: &mut Sorter| {
        *sizes.entry(h.size).or_default() += 1;
        if h.record == h.root {
            return Ok(());
        }
        chosen.push(Entry {
            key: u64::from(h.root),
            record: h.record,
            print: 0,
        })
    };
    let mut holder: Option<Holder> = None;
    let mut missing = 0;
    while let Some(n) = sorted.next()? {
        stop.step()?;
        members.push(Entry {
            key: u64::from(n.key) << 32 | u64::from(n.other),
            record: 0,
            print: n.similarity.to_bits(),
        })?;
        let (root, record) = (n.key, n.other);
        let key = key_of_text(n.id)?;
        missing += u64::from(root >= pinned && key.is_missing());
        match &mut holder {
            Some(h) if h.root == root => {
                h.size += 1;
                if root >= pinned && policy.prefers(&key, &h.key) {
                    (h.record, h.key) = (record, key);
                }
            }
            _ => {
                if record != root {
                    return Err(bug(format!("the cluster of {root} starts at {record}")));
                }
                if let Some(h) = holder.replace(Holder {
                    root,
                    size: 1,
                    record,
                    key,
                }) {
                    close(h, &mut chosen)?;
                }
            }
        }
    }
    if let Some(h) = holder {
        close(h, &mut chosen)?;
    }
    Ok((members, chosen, sizes, missing))
}

/// Step 3: every member of `members` (by root, then record) that is not
/// its root's kept record in `chosen` (the root itself when absent),
/// sorted by record, as the removed records.
fn removed(
    mut members: SortedStream,
    chosen: SortedStream,
    temp: &Arc<TempSpace>,
    quarter: u64,
    (work, stop): (&mut Work, &StopCheck<'_>),
) -> Result<Removed, RunError> {
    let mut chosen = Head::new(Some(chosen))?;
    let mut by_record = Sorter::new(temp, "removed", quarter);
    while let Some(m) = members.next_entry()? {
        stop.step()?;
        let (root, record) = ((m.key >> 32) as u32, m.key as u32);
        while chosen.head.is_some_and(|c| c.key < u64::from(root)) {
            chosen.advance()?;
        }
        let kept = match chosen.head {
            Some(c) if c.key == u64::from(root) => c.record,
            _ => root,
        };
        if record != kept {
            by_record.push(Entry {
                key: u64::from(record),
                record: kept,
                print: m.print,
            })?;
        }
    }
    drop((members, chosen));
    work.runs += by_record.runs_written();
    let mut sorted = by_record.finish()?;
    let mut out = RemovedWriter::new(temp, quarter);
    while let Some(e) = sorted.next_entry()? {
        stop.step()?;
        out.push((e.key as u32, e.record, f64::from_bits(e.print)))?;
    }
    drop(sorted);
    let removed = out.finish()?;
    work.runs += usize::from(matches!(removed, Removed::Disk(_)));
    Ok(removed)
}

/// A sorted stream with its next entry looked at.
struct Head {
    source: Option<SortedStream>,
    head: Option<Entry>,
}

impl Head {
    fn new(mut source: Option<SortedStream>) -> Result<Self, RunError> {
        let head = match &mut source {
            Some(s) => s.next_entry()?,
            None => None,
        };
        Ok(Head { source, head })
    }

    /// The head, the next entry read in its place.
    fn advance(&mut self) -> Result<Option<Entry>, RunError> {
        let head = self.head;
        self.head = match &mut self.source {
            Some(s) => s.next_entry()?,
            None => None,
        };
        Ok(head)
    }
}

/// Writes `key` into `text` as the sort by root carries it (a text, as
/// it carries ids): empty for none or a missing value, else a letter for
/// its kind and its value: a number in decimal, a float's bits in hex
/// (exactly), a string as it is.
fn key_text(key: Option<&KeepKey>, text: &mut String) {
    text.clear();
    // Writing to a String cannot fail.
    let _ = match key {
        None | Some(KeepKey::Missing) => Ok(()),
        Some(KeepKey::Length(n)) => write!(text, "L{n}"),
        Some(KeepKey::Int(i)) => write!(text, "I{i}"),
        Some(KeepKey::UInt(u)) => write!(text, "U{u}"),
        Some(KeepKey::Float(f)) => write!(text, "F{:x}", f.to_bits()),
        Some(KeepKey::Text(s)) => write!(text, "T{s}"),
    };
}

/// The key [`key_text`] wrote.
fn key_of_text(text: &str) -> Result<KeepKey, RunError> {
    let Some(kind) = text.chars().next() else {
        return Ok(KeepKey::Missing);
    };
    let value = &text[kind.len_utf8()..];
    let key = match kind {
        'L' => value.parse().ok().map(KeepKey::Length),
        'I' => value.parse().ok().map(KeepKey::Int),
        'U' => value.parse().ok().map(KeepKey::UInt),
        'F' => u64::from_str_radix(value, 16)
            .ok()
            .map(|bits| KeepKey::Float(f64::from_bits(bits))),
        'T' => Some(KeepKey::Text(value.into())),
        _ => None,
    };
    key.ok_or_else(|| bug(format!("a key read back as {text:?}")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::jobs::dedup::clusters::{Clusters, Prefers};
    use crate::jobs::dedup::testing::Rng;

    /// The pairs as pass 2 gives them: each once, sorted by the later
    /// record, with a similarity (some equal).
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
            .map(|(a, b)| (a, b, 0.5 + rng.below(64) as f64 / 128.0))
            .collect()
    }

    /// 2^53: the integers around it compare apart exactly, and equal to
    /// the float 2^53 as 64-bit floats.
    const EDGE: i64 = 1 << 53;

    /// A `field:` key drawn from a small pool: ties, every kind, and
    /// integers and floats that no total order ranks as `prefers` does.
    fn field_key(rng: &mut Rng) -> Option<KeepKey> {
        Some(match rng.below(12) {
            0 => return None,
            1 => KeepKey::Missing,
            2 => KeepKey::Int(rng.below(5) as i64 - 2),
            3 => KeepKey::Int(EDGE + rng.below(3) as i64 - 1),
            4 => KeepKey::Float(EDGE as f64),
            5 => KeepKey::Float(rng.below(5) as f64 / 2.0 - 1.0),
            6 => KeepKey::UInt(u64::MAX - rng.below(2)),
            7 => KeepKey::Float(u64::MAX as f64),
            8 => KeepKey::Text(["", "a", "ab", "b", "é", "日本"][rng.below(6) as usize].into()),
            9 => KeepKey::Text(format!("x{}", rng.below(4)).into()),
            10 => KeepKey::Int(i64::MIN + rng.below(2) as i64),
            _ => KeepKey::Float(-0.0),
        })
    }

    /// A length: few values, so ties are many.
    fn length_key(rng: &mut Rng) -> Option<KeepKey> {
        Some(KeepKey::Length(rng.below(4) * 100))
    }

    /// Draws a record's key.
    type Draw = fn(&mut Rng) -> Option<KeepKey>;

    fn policies() -> Vec<(KeepPolicy, Draw)> {
        vec![
            (KeepPolicy::Longest, length_key),
            (KeepPolicy::Shortest, length_key),
            ("field:s".parse().unwrap(), field_key),
            ("field:s:asc".parse().unwrap(), field_key),
        ]
    }

    /// Graphs of each shape.
    fn graphs(rng: &mut Rng) -> Vec<(&'static str, Vec<RemovedRecord>)> {
        let n = 3_000u32;
        let random: Vec<(u32, u32)> = (0..n)
            .map(|_| (rng.below(n.into()) as u32, rng.below(n.into()) as u32))
            .collect();
        let giant: Vec<(u32, u32)> = (1..n).map(|i| (rng.below(i.into()) as u32, i)).collect();
        vec![
            ("random pairs", verified(rng, random)),
            ("a chain", verified(rng, (0..n).map(|i| (i, i + 1)))),
            (
                "stars",
                verified(rng, (0..n).map(|i| (i / 300 * 300 + 7, i + 10))),
            ),
            ("a star on the last record", {
                verified(rng, (0..n).map(|i| (i, n)))
            }),
            (
                "components of two",
                verified(rng, (0..n).map(|i| (3 * i, 3 * i + 1))),
            ),
            ("one giant component", verified(rng, giant)),
            ("nothing", Vec::new()),
        ]
    }

    /// The keys of `pairs`' records (and of some records in no pair),
    /// drawn by `draw`.
    fn keys_of(rng: &mut Rng, pairs: &[RemovedRecord], draw: Draw) -> Vec<KeyedRecord> {
        let last = pairs.iter().map(|p| p.1).max().unwrap_or(0);
        (0..=last + 5)
            .filter_map(|r| draw(rng).map(|key| (r, Some(key))))
            .collect()
    }

    fn same_as_in_memory(
        name: &str,
        pairs: &[RemovedRecord],
        (policy, keys): (&KeepPolicy, &[KeyedRecord]),
        (share, floor): (u64, usize),
    ) -> Work {
        let table: HashMap<u32, KeepKey> = keys
            .iter()
            .filter_map(|(r, k)| k.clone().map(|k| (*r, k)))
            .collect();
        let ranking = policy.ranking(&table);
        let want = Clusters::from_pairs_keeping(pairs, ranking.as_ref().map(|r| r as &Prefers<'_>));
        let want_missing = policy.missing(&table, want.roots().unwrap().into_keys());
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let got = ranked_in_pieces(
            pairs.iter().map(|&p| Ok(p)),
            keys.iter().map(|k| Ok(k.clone())),
            (policy, 0),
            (share, floor),
            (&temp, &StopCheck::never()),
        )
        .unwrap();
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        let on_disk = matches!(got.removed, Removed::Disk(_));
        assert_eq!(left, usize::from(on_disk), "{name}: runs left");
        let (want_list, got_list) = (
            want.removed.to_vec().unwrap(),
            got.removed.to_vec().unwrap(),
        );
        assert_eq!(got_list.len(), want_list.len(), "{name} {policy}");
        for (g, w) in got_list.iter().zip(&want_list) {
            assert!(
                g.0 == w.0 && g.1 == w.1 && g.2.to_bits() == w.2.to_bits(),
                "{name} {policy}: {g:?} where the union-find gives {w:?}"
            );
        }
        assert_eq!(got.sizes, want.sizes, "{name} {policy}");
        assert_eq!(got.missing, want_missing, "{name} {policy}");
        let work = got.work;
        drop(got);
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0, "{name}: the removed records' run goes with them");
        work
    }

    #[test]
    fn the_kept_records_are_the_union_finds_on_graphs_of_every_shape_and_policy() {
        let mut rng = Rng::new(42);
        for (name, pairs) in graphs(&mut rng) {
            for (policy, draw) in policies() {
                let keys = keys_of(&mut rng, &pairs, draw);
                for share in [0, 4 << 10, 1 << 30] {
                    let work =
                        same_as_in_memory(name, &pairs, (&policy, &keys), (share, MIN_PIECE));
                    if share == 0 && pairs.len() > 1_000 {
                        assert!(work.runs > 10, "{name} {policy}: {work:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn random_graphs_with_random_keys_in_pieces_of_one_or_two_edges_give_the_union_finds() {
        let mut rng = Rng::new(11);
        for _ in 0..200 {
            let nodes = 2 + rng.below(60);
            let edges: Vec<(u32, u32)> = (0..rng.below(3 * nodes))
                .map(|_| (rng.below(nodes) as u32, rng.below(nodes) as u32))
                .collect();
            let mut pairs = verified(&mut rng, edges);
            if rng.below(2) == 0 {
                for i in (1..pairs.len()).rev() {
                    pairs.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            for (policy, draw) in policies() {
                let keys = keys_of(&mut rng, &pairs, draw);
                let floor = 1 + rng.below(2) as usize;
                same_as_in_memory("small", &pairs, (&policy, &keys), (0, floor));
            }
        }
    }

    #[test]
    fn a_giant_cluster_keeps_its_first_record_among_equals_and_its_best_otherwise() {
        let mut rng = Rng::new(3);
        let n = 20_000u32;
        let edges: Vec<(u32, u32)> = (1..n).map(|i| (rng.below(i.into()) as u32, i)).collect();
        let pairs = verified(&mut rng, edges);
        let equal: Vec<KeyedRecord> = (0..n).map(|r| (r, Some(KeepKey::Length(7)))).collect();
        let rising: Vec<KeyedRecord> = (0..n)
            .map(|r| (r, Some(KeepKey::Length(u64::from(r / 3)))))
            .collect();
        for (keys, longest_keeps) in [(&equal, 0), (&rising, (n - 1) / 3 * 3)] {
            for policy in [KeepPolicy::Longest, KeepPolicy::Shortest] {
                let work = same_as_in_memory("giant", &pairs, (&policy, keys), (0, MIN_PIECE));
                assert!(work.runs > 10, "{work:?}");
            }
            let dir = tempfile::tempdir().unwrap();
            let temp = Arc::new(TempSpace::new(dir.path()));
            let stream = pairs.iter().map(|&p| Ok(p));
            let keyed = keys.iter().map(|k| Ok(k.clone()));
            let never = StopCheck::never();
            let got = ranked(stream, keyed, &KeepPolicy::Longest, (0, &temp), &never).unwrap();
            let list = got.removed.to_vec().unwrap();
            assert_eq!(list.len() as u32, n - 1);
            assert!(list
                .iter()
                .all(|r| r.1 == longest_keeps && r.0 != longest_keeps));
            assert_eq!(got.sizes, BTreeMap::from([(n as usize, 1)]));
        }
    }

    #[test]
    fn the_sequential_rule_is_kept_where_integers_and_floats_compare_by_kind() {
        // Under `field:s`, 2^53 + 1 ranks above the integer 2^53, and ties
        // with the float 2^53, which ties with the integer 2^53: which one
        // is kept depends on the order the members come in.
        let policy: KeepPolicy = "field:s".parse().unwrap();
        let (int, float, above) = (
            KeepKey::Int(EDGE),
            KeepKey::Float(EDGE as f64),
            KeepKey::Int(EDGE + 1),
        );
        let pairs = [(0, 1, 0.9), (1, 2, 0.8), (10, 11, 0.9), (11, 12, 0.8)];
        let keys: Vec<KeyedRecord> = [
            (0, &float),
            (1, &above),
            (2, &int),
            (10, &int),
            (11, &float),
            (12, &above),
        ]
        .into_iter()
        .map(|(r, k)| (r, Some(k.clone())))
        .collect();
        same_as_in_memory("by kind", &pairs, (&policy, &keys), (0, 1));
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let stream = pairs.iter().map(|&p| Ok(p));
        let keyed = keys.iter().map(|k| Ok(k.clone()));
        let never = StopCheck::never();
        let got = ranked(stream, keyed, &policy, (0, &temp), &never).unwrap();
        let kept: Vec<(u32, u32)> = got
            .removed
            .iter()
            .map(|r| r.map(|r| (r.0, r.1)).unwrap())
            .collect();
        assert_eq!(kept, [(1, 0), (2, 0), (10, 12), (11, 12)]);
    }

    #[test]
    fn keys_are_carried_through_the_sort_exactly() {
        let mut rng = Rng::new(5);
        let mut text = String::new();
        for _ in 0..2_000 {
            let key = field_key(&mut rng).or(length_key(&mut rng));
            key_text(key.as_ref(), &mut text);
            let back = key_of_text(&text).unwrap();
            match (&key, &back) {
                (Some(KeepKey::Float(a)), KeepKey::Float(b)) => {
                    assert_eq!(a.to_bits(), b.to_bits())
                }
                (None, b) => assert_eq!(*b, KeepKey::Missing),
                (Some(a), b) => assert_eq!(a, b),
            }
        }
        for (key, written) in [
            (KeepKey::Text("".into()), "T"),
            (KeepKey::Text("Lx".into()), "TLx"),
            (KeepKey::Int(-3), "I-3"),
            (KeepKey::Missing, ""),
        ] {
            key_text(Some(&key), &mut text);
            assert_eq!(text, written);
            assert_eq!(key_of_text(&text).unwrap(), key);
        }
        assert!(key_of_text("Q1").is_err() && key_of_text("Lx").is_err());
    }
}
