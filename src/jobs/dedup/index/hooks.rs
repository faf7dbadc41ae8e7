//! What an index run hooks into passes 1 and 2 ([`BandsHook`],
//! [`RecordHook`]): the indexes' band lists joined before the run's, so
//! buckets, twins and windows are those of one run over the indexed
//! records followed by this run's; and, in pass 2, each record's exact
//! similarity with the indexed records it shares a bucket with, and its
//! words and id written into the index being saved.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::jobs::dedup::bitset::BitSet;
use crate::jobs::dedup::chain::{BandsHook, RecordHook};
use crate::jobs::dedup::lsh::candidate_pairs;
use crate::jobs::dedup::similarity::jaccard;

use super::files::SegmentWriter;

/// Pass 1's hook: `prior` (the indexes' entries, records `0..offset`, in
/// record order) joined before the run's entries (records shifted by
/// `offset`).
#[derive(Debug)]
pub struct JoinedBands {
    prior: Mutex<Vec<Vec<u64>>>,
    offset: u32,
    keep: bool,
    out: Mutex<Option<BandsOut>>,
}

/// What [`JoinedBands`] found besides the run's own pairs.
#[derive(Debug, Default)]
pub struct BandsOut {
    /// `(indexed record, record)`: pairs across, sorted by the record.
    pub cross: Vec<(u32, u32)>,
    /// The joined bands, sorted (kept when an index is saved).
    pub bands: Vec<Vec<u64>>,
}

impl JoinedBands {
    /// Joins `prior` (empty bands: no index to join) before the run's
    /// bands; keeps the joined, sorted bands when `keep`.
    pub fn new(prior: Vec<Vec<u64>>, offset: u32, keep: bool) -> Self {
        JoinedBands {
            prior: Mutex::new(prior),
            offset,
            keep,
            out: Mutex::default(),
        }
    }

    /// What it found, once pass 1 has made its pairs.
    pub fn take(&self) -> Option<BandsOut> {
        self.out.lock().expect("bands hook poisoned").take()
    }
}

impl BandsHook for JoinedBands {
    fn candidate_pairs(
        &self,
        bands: &mut Vec<Vec<u64>>,
        threads: usize,
    ) -> Result<Vec<(u32, u32)>, String> {
        let prior = std::mem::take(&mut *self.prior.lock().expect("bands hook poisoned"));
        let mut prior = prior.into_iter();
        let offset = self.offset;
        let mut joined: Vec<Vec<u64>> = Vec::with_capacity(bands.len());
        for own in std::mem::take(bands) {
            let mut band = prior.next().unwrap_or_default();
            band.reserve(own.len());
            for e in own {
                let record = (e as u32).checked_add(offset).ok_or_else(|| {
                    format!("the indexes' {offset} records and this run's pass 2^32")
                })?;
                band.push(e >> 32 << 32 | u64::from(record));
            }
            joined.push(band);
        }
        drop(prior);
        let pairs = candidate_pairs(&mut joined, threads);
        let (mut own, mut cross) = (Vec::new(), Vec::new());
        for (a, b) in pairs {
            if b < offset {
                // Both indexed: their clusters are the index's.
                continue;
            }
            if a < offset {
                cross.push((a, b - offset));
            } else {
                own.push((a - offset, b - offset));
            }
        }
        if !self.keep {
            joined = Vec::new();
        }
        *self.out.lock().expect("bands hook poisoned") = Some(BandsOut {
            cross,
            bands: joined,
        });
        Ok(own)
    }
}

/// Pass 2's hook: verifies the pairs across, and writes each record's
/// words and id into the index being saved.
#[derive(Debug)]
pub struct Joiner {
    threshold: f64,
    /// The records in pairs across.
    reads: BitSet,
    /// An index is saved: every record's words are written.
    saving: bool,
    state: Mutex<JoinerState>,
}

/// [`Joiner`]'s state, changed by pass 2's Integrator only.
#[derive(Debug, Default)]
pub struct JoinerState {
    /// `(indexed record, record)`, sorted by the record.
    cross: Vec<(u32, u32)>,
    cursor: usize,
    /// The indexed records' sets.
    sets: HashMap<u32, Vec<u64>>,
    /// `(indexed record, record, similarity)` at or above the threshold.
    pub verified: Vec<(u32, u32, f64)>,
    /// Pairs across whose similarity was computed.
    pub checked: u64,
    /// Pairs across that could not be checked (a record pass 2 did not
    /// read: the input changed).
    pub unverifiable: u64,
    /// The index being saved: this run's records' words and ids.
    pub writer: Option<SegmentWriter>,
    /// The first error writing them.
    pub error: Option<std::io::Error>,
}

impl Joiner {
    /// Verifies `cross` against the indexed records' `sets`, and writes
    /// into `writer` when an index is saved (then pass 2 reads every
    /// record).
    pub fn new(
        threshold: f64,
        cross: Vec<(u32, u32)>,
        sets: HashMap<u32, Vec<u64>>,
        writer: Option<SegmentWriter>,
    ) -> Self {
        let mut reads = BitSet::new();
        for &(_, b) in &cross {
            reads.insert(b.into());
        }
        Joiner {
            threshold,
            reads,
            saving: writer.is_some(),
            state: Mutex::new(JoinerState {
                cross,
                sets,
                writer,
                ..JoinerState::default()
            }),
        }
    }

    /// What it found, once pass 2 has ended.
    pub fn take(&self) -> JoinerState {
        let mut state = std::mem::take(&mut *self.state.lock().expect("joiner poisoned"));
        state.unverifiable += (state.cross.len() - state.cursor) as u64;
        state
    }
}

impl JoinerState {
    /// Pushes empty entries (records pass 2 did not read: rejected) up to
    /// `record`.
    pub fn fill_to(&mut self, record: u64) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        while self.error.is_none() && writer.records() < record {
            if let Err(e) = writer.push(Vec::new(), None) {
                self.error = Some(e);
            }
        }
    }
}

impl RecordHook for Joiner {
    fn records(&self) -> BitSet {
        self.reads.clone()
    }

    fn wants_words(&self) -> bool {
        self.saving
    }

    fn record(&self, record: u32, id: &str, set: &[u64], words: Option<&[u8]>) {
        let mut state = self.state.lock().expect("joiner poisoned");
        let s = &mut *state;
        while s.cursor < s.cross.len() && s.cross[s.cursor].1 < record {
            s.unverifiable += 1;
            s.cursor += 1;
        }
        while s.cursor < s.cross.len() && s.cross[s.cursor].1 == record {
            let indexed = s.cross[s.cursor].0;
            s.cursor += 1;
            let Some(theirs) = s.sets.get(&indexed) else {
                s.unverifiable += 1;
                continue;
            };
            let j = jaccard(theirs, set);
            s.checked += 1;
            if j >= self.threshold {
                s.verified.push((indexed, record, j));
            }
        }
        s.fill_to(record.into());
        if let (Some(writer), None) = (&mut s.writer, &s.error) {
            let words = words.map(<[u8]>::to_vec).unwrap_or_default();
            if let Err(e) = writer.push(words, Some(id.into())) {
                s.error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_bands_give_the_runs_own_pairs_and_the_pairs_across() {
        // One band. Indexed records 0, 1, 2 (keys 7, 7, 9); this run's
        // records 0, 1 (keys 7, 9), numbered 3 and 4 when joined.
        let prior = vec![vec![7 << 32, 7 << 32 | 1, 9 << 32 | 2]];
        let hook = JoinedBands::new(prior, 3, true);
        let mut bands = vec![vec![7 << 32, 9 << 32 | 1]];
        let own = hook.candidate_pairs(&mut bands, 1).unwrap();
        assert!(own.is_empty(), "{own:?}");
        let out = hook.take().unwrap();
        assert_eq!(out.cross, [(0, 0), (1, 0), (2, 1)]);
        assert_eq!(
            out.bands,
            [vec![
                7 << 32,
                7 << 32 | 1,
                7 << 32 | 3,
                9 << 32 | 2,
                9 << 32 | 4
            ]]
        );
        // Without an index: the run's own pairs, numbered as the run's.
        let hook = JoinedBands::new(vec![Vec::new()], 0, false);
        let mut bands = vec![vec![7 << 32, 7 << 32 | 1]];
        assert_eq!(hook.candidate_pairs(&mut bands, 1).unwrap(), [(0, 1)]);
        assert!(hook.take().unwrap().bands.is_empty());
    }
}
