//! The sets of records pass 2 makes: its candidates, with an index hook
//! the records it shingles, and the clustered records its candidates'
//! ids are pruned and joined by. Each is written in record order by a
//! [`SetWriter`] within its share of the budget ([`Shares::record_set`]),
//! past it on disk, and read back in increasing order
//! ([`crate::jobs::dedup::spill::record_sets`]), where a bit a record held
//! 125 MB each for 10^9 records outside the budget.
//!
//! [`Shares::record_set`]: crate::jobs::dedup::budget::Shares::record_set

use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::PairsIn;
use crate::jobs::dedup::spill::merge::EntrySource;
use crate::jobs::dedup::spill::pair_files::PairReader;
use crate::jobs::dedup::spill::record_sets::{RecordSet, SetState, SetWriter};
use crate::jobs::dedup::spill::runs::{Entry, RunError};
use crate::jobs::dedup::spill::sorter::Sorter;
use crate::jobs::dedup::spill::verified::PairsSpill;

/// The candidates' set, as its runs are named.
pub const CANDIDATES: &str = "candidates";
/// With an index hook: the records whose shingle sets pass 2 computes.
pub const SHINGLED: &str = "shingled";
/// The records of the verified pairs.
pub const CLUSTERED: &str = "clustered";

/// A member of a set read back, or why it could not be.
type Member = Result<u64, RunError>;

/// Where pass 2's sets go: the run's temporary space and a set's share of
/// the budget (without either, held in memory whatever their size).
#[derive(Debug, Clone, Default)]
pub struct SetSpace {
    /// The run's temporary space.
    pub temp: Option<Arc<TempSpace>>,
    /// A set's share ([`crate::jobs::dedup::budget::Shares::record_set`]).
    pub share: Option<u64>,
}

impl SetSpace {
    /// An empty set `name`: the runs of that name a killed run left are
    /// removed first (pass 2 makes its sets again when it resumes).
    fn writer(&self, name: &'static str) -> Result<SetWriter, RunError> {
        SetWriter::new(name, self.temp.clone(), self.share).resumed(SetState::default())
    }

    /// The set `name` of `members`, given in non-decreasing order.
    pub fn set_of(
        &self,
        name: &'static str,
        members: impl IntoIterator<Item = Member>,
    ) -> Result<RecordSet, RunError> {
        let mut writer = self.writer(name)?;
        for member in members {
            writer.insert(member?)?;
        }
        writer.finish()
    }
}

/// The members of two non-decreasing streams, in non-decreasing order (an
/// error as soon as it comes).
pub fn merged(
    a: impl Iterator<Item = Member>,
    b: impl Iterator<Item = Member>,
) -> impl Iterator<Item = Member> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || {
        let from_a = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(_), None) => true,
            (None, Some(_)) | (_, Some(Err(_))) => false,
            (Some(Ok(x)), Some(Ok(y))) => x <= y,
        };
        if from_a {
            a.next()
        } else {
            b.next()
        }
    })
}

/// The keys of a pairs' file, front to back (an error ends them).
fn keys(mut reader: PairReader) -> impl Iterator<Item = Member> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let next = reader.next_entry().transpose()?;
        failed = next.is_err();
        Some(next.map(|e| e.key))
    })
}

/// The records of every candidate pair. In memory the pairs are sorted by
/// their later record: a sorted copy of the earlier ones (4 bytes a pair,
/// beside the pairs' 16 within their share) is merged with them. On disk,
/// the later records of the by-later file are merged with the last-partner
/// file's, keyed by the earlier record: both read front to back.
pub fn candidates_of(pairs: &PairsIn, space: &SetSpace) -> Result<RecordSet, RunError> {
    match pairs {
        PairsIn::Memory(pairs) => {
            let mut earlier: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            earlier.sort_unstable();
            earlier.dedup();
            let earlier = earlier.into_iter().map(|r| Ok(u64::from(r)));
            let later = pairs.iter().map(|p| Ok(u64::from(p.1)));
            space.set_of(CANDIDATES, merged(earlier, later))
        }
        PairsIn::Disk(temp, files) => {
            let later = keys(PairReader::open(temp, &files.by_later)?);
            let earlier = keys(PairReader::open(temp, &files.last)?);
            space.set_of(CANDIDATES, merged(earlier, later))
        }
    }
}

/// The records of the verified `pairs` (made in the order of their later
/// record). Held in memory, a sorted copy of them; with runs on disk, an
/// external sort within the set's share.
pub fn clustered_of(pairs: &PairsSpill, space: &SetSpace) -> Result<RecordSet, RunError> {
    let temp = match &space.temp {
        Some(temp) if !pairs.runs().is_empty() => temp,
        _ => {
            let mut records: Vec<u32> = pairs.held().iter().flat_map(|p| [p.0, p.1]).collect();
            records.sort_unstable();
            records.dedup();
            return space.set_of(CLUSTERED, records.into_iter().map(|r| Ok(r.into())));
        }
    };
    let mut sorter = Sorter::new(temp, CLUSTERED, space.share.unwrap_or(u64::MAX));
    for pair in pairs.reader() {
        let (a, b, _) = pair?;
        for record in [a, b] {
            sorter.push(Entry {
                key: record.into(),
                record: 0,
                print: 0,
            })?;
        }
    }
    let mut sorted = sorter.finish()?;
    let members = std::iter::from_fn(move || sorted.next_entry().transpose());
    space.set_of(CLUSTERED, members.map(|e| e.map(|e| e.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(set: &RecordSet) -> Vec<u64> {
        set.members().map(Result::unwrap).collect()
    }

    #[test]
    fn two_increasing_streams_merge_in_order() {
        let a = [1u64, 4, 4, 9].map(Ok).into_iter();
        let b = [0u64, 4, 5, 12, 13].map(Ok).into_iter();
        let got: Vec<u64> = merged(a, b).map(Result::unwrap).collect();
        assert_eq!(got, [0, 1, 4, 4, 4, 5, 9, 12, 13]);
    }

    #[test]
    fn the_candidates_are_the_records_of_every_pair_in_memory_or_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        // Pairs sorted by the later record, the earlier ones far apart.
        let mut pairs: Vec<(u32, u32)> = (1..200_000u32)
            .filter(|r| r % 3 == 0)
            .map(|r| ((r.wrapping_mul(2_654_435_761) >> 8) % r, r))
            .collect();
        pairs.sort_unstable_by_key(|&(a, b)| (b, a));
        let mut want: Vec<u64> = pairs
            .iter()
            .flat_map(|p| [p.0.into(), p.1.into()])
            .collect();
        want.sort_unstable();
        want.dedup();
        let space = SetSpace {
            temp: Some(Arc::clone(&temp)),
            share: Some(256),
        };
        let memory = PairsIn::Memory(Arc::new(pairs.clone()));
        let set = candidates_of(&memory, &space).unwrap();
        assert!(set.bytes_on_disk() > 0, "past its share");
        assert_eq!(members(&set), want);
        set.remove_runs().unwrap();
        let files = crate::jobs::dedup::spill::pair_files::CandidatePairs::handed(
            pairs,
            &temp,
            Some(1 << 10),
            &drainpipe_actors::Heartbeat::default(),
        )
        .unwrap();
        let disk = PairsIn::of(files, &temp);
        assert!(disk.in_memory().is_none());
        let set = candidates_of(&disk, &space).unwrap();
        assert_eq!(members(&set), want);
    }

    #[test]
    fn the_clustered_records_are_sorted_from_the_pairs_in_memory_or_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let space = SetSpace {
            temp: Some(Arc::clone(&temp)),
            share: Some(4 << 10),
        };
        let made: Vec<(u32, u32, f64)> = (1..50_000u32).map(|r| (r / 2, r, 0.9)).collect();
        let mut want: Vec<u64> = made.iter().flat_map(|p| [p.0.into(), p.1.into()]).collect();
        want.sort_unstable();
        want.dedup();
        for share in [None, Some(4 << 10)] {
            let mut pairs = PairsSpill::new(Some(Arc::clone(&temp)), share);
            for &p in &made {
                pairs.push(p).unwrap();
            }
            assert_eq!(pairs.runs().is_empty(), share.is_none());
            let set = clustered_of(&pairs, &space).unwrap();
            assert_eq!(members(&set), want);
        }
    }
}
