//! Where pass 2 keeps the candidates' ids and `--keep` keys until the
//! clusters are known ([`IdsHeld`]): in memory with no budget; under one,
//! in memory while they fit their share ([`Shares::candidate_ids`]),
//! those of candidates that can be in no cluster dropped past it; and on
//! disk in record order once dropping those no longer makes room (the
//! ids of candidates still waiting for a later partner cannot be
//! dropped, and grow with the corpus), and the clustered records' joined
//! into a run of their own when the pass ends
//! ([`crate::jobs::dedup::spill::ids`]): what the pass hands on
//! ([`ClusteredIds`]) is on disk then too.
//!
//! With a saved index's hook none is dropped (a record whose only
//! partners are indexed ones may be in a cluster, and pass 2 does not
//! know which), so past the share they all go to disk, and the join
//! keeps those of the clustered records and of the records in a pair
//! across ([`RecordHook::records`]). A run of a million records against
//! an index of as many held 80 MB of ids and `--keep longest` keys there
//! under a budget of 128 MiB, whose share is 16 MiB.
//!
//! [`RecordHook::records`]: crate::jobs::dedup::chain::RecordHook::records
//!
//! The budget is kept before the memory is taken: an id is noted only
//! once what its vectors would grow to fits ([`Verifier::ids_bytes_after`]).
//!
//! [`Shares::candidate_ids`]: crate::jobs::dedup::budget::Shares::candidate_ids

use std::collections::HashMap;
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::Verifier;
use crate::jobs::dedup::chain::{CandidateIds, ClusteredIds};
use crate::jobs::dedup::keep::KeepKey;
use crate::jobs::dedup::spill::ids::{
    remove_clustered_run, remove_unnamed_runs, IdEntry, IdsSpill,
};
use crate::jobs::dedup::spill::record_sets::RecordSet;
use crate::jobs::dedup::spill::runs::{RunError, RunInfo};

/// Bytes a slot of the keys' table is counted for.
const KEY_SLOT_BYTES: usize = 4 + std::mem::size_of::<KeepKey>();

/// Where the candidates' ids and keys are held.
#[derive(Debug)]
pub enum IdsHeld {
    /// No budget: every id in memory, none dropped.
    All,
    /// Under a budget, in memory: past `share` bytes those of candidates
    /// that can be in no cluster are dropped ([`Verifier::prune_ids`],
    /// when `prune`); when that leaves more than half the share, all go
    /// to disk in `temp`.
    Pruned {
        /// The ids' share of the budget.
        share: u64,
        /// The run's temporary space.
        temp: Arc<TempSpace>,
        /// False with a saved index's hook: none is dropped, and past the
        /// share all go to disk.
        prune: bool,
    },
    /// On disk: runs in record order, and the segment being filled in
    /// `held_ids` and `held_keys`.
    OnDisk(IdsSpill),
}

impl IdsHeld {
    /// The runs of ids a checkpoint names.
    pub fn runs(&self) -> &[RunInfo] {
        match self {
            IdsHeld::OnDisk(spill) => spill.runs(),
            _ => &[],
        }
    }

    /// Bytes of the runs of ids written.
    pub fn bytes(&self) -> u64 {
        match self {
            IdsHeld::OnDisk(spill) => spill.bytes(),
            _ => 0,
        }
    }
}

/// The `(record, id, key)` of every candidate of `ids` and `keys`, in
/// record order.
fn entries<'a>(
    ids: &'a CandidateIds,
    keys: &'a HashMap<u32, KeepKey>,
) -> impl Iterator<Item = IdEntry<'a>> + 'a {
    let mut keyed: Vec<(u32, &KeepKey)> = keys.iter().map(|(&r, k)| (r, k)).collect();
    keyed.sort_unstable_by_key(|&(r, _)| r);
    let mut ids = ids.iter().peekable();
    let mut keyed = keyed.into_iter().peekable();
    std::iter::from_fn(move || {
        let next_id = ids.peek().map(|&(r, _)| r);
        let next_key = keyed.peek().map(|&(r, _)| r);
        let record = match (next_id, next_key) {
            (None, None) => return None,
            (Some(a), Some(b)) => a.min(b),
            (Some(r), None) | (None, Some(r)) => r,
        };
        let id = ids.next_if(|&(r, _)| r == record).map(|(_, id)| id);
        let key = keyed.next_if(|&(r, _)| r == record).map(|(_, k)| k);
        Some((record, id, key))
    })
}

impl Verifier {
    /// Bytes the candidates' ids and `--keep` keys hold.
    pub(super) fn ids_bytes(&self) -> u64 {
        let keys = self.held_keys.capacity() * KEY_SLOT_BYTES;
        (self.held_ids.heap_bytes() + keys) as u64
    }

    /// At most the bytes they will hold once an id of `len` bytes (and a
    /// key, when `key`) is noted: a full table doubles.
    pub(super) fn ids_bytes_after(&self, len: usize, key: bool) -> u64 {
        let keys = &self.held_keys;
        let slots = if !key || keys.len() < keys.capacity() {
            keys.capacity()
        } else {
            (2 * keys.capacity() + 1).max(3)
        };
        (self.held_ids.bytes_after(len) + slots * KEY_SLOT_BYTES) as u64
    }

    /// Notes candidate `x`'s `id` (`None`: a record read for a saved
    /// index's words only, in no cluster) and `key`, after its pairs were
    /// verified; under a budget, first makes room for them within their
    /// share (or the segment on disk).
    pub(super) fn note_id(
        &mut self,
        x: u32,
        id: Option<&str>,
        key: Option<KeepKey>,
    ) -> Result<(), RunError> {
        let len = id.map_or(0, str::len);
        let after = self.ids_bytes_after(len, key.is_some());
        match &self.ids {
            IdsHeld::All => {}
            IdsHeld::Pruned { share, temp, prune } if after > *share => {
                let (share, temp) = (*share, Arc::clone(temp));
                let bytes = self.ids_bytes();
                if *prune {
                    self.prune_ids(x);
                    let left = self.ids_bytes();
                    log::debug!(
                        "dedup pass 2: candidates' ids pruned after record {x}: {bytes} -> {left} bytes"
                    );
                }
                let left = self.ids_bytes();
                if left > share / 2 || self.ids_bytes_after(len, key.is_some()) > share {
                    let mut spill = IdsSpill::new(temp, Some(share));
                    self.write_segment(&mut spill)?;
                    // The segments that follow are a fraction of the share.
                    (self.held_ids, self.held_keys) = (CandidateIds::default(), HashMap::new());
                    self.ids = IdsHeld::OnDisk(spill);
                }
            }
            IdsHeld::Pruned { .. } => {}
            IdsHeld::OnDisk(spill) if after > spill.segment_bytes() => {
                let IdsHeld::OnDisk(mut spill) = std::mem::replace(&mut self.ids, IdsHeld::All)
                else {
                    unreachable!("matched on disk above");
                };
                let written = self.write_segment(&mut spill);
                self.ids = IdsHeld::OnDisk(spill);
                written?;
                self.held_ids.clear();
                self.held_keys.clear();
            }
            IdsHeld::OnDisk(_) => {}
        }
        if let Some(key) = key {
            self.held_keys.insert(x, key);
        }
        if let Some(id) = id {
            self.held_ids.insert(x, id);
        }
        self.peak_ids_bytes = self.peak_ids_bytes.max(self.ids_bytes());
        Ok(())
    }

    /// Writes the ids and keys in memory as the next run of `spill`.
    fn write_segment(&self, spill: &mut IdsSpill) -> Result<(), RunError> {
        let bytes = 2 * self.ids_bytes() + 64;
        spill.write(entries(&self.held_ids, &self.held_keys), bytes)
    }

    /// When the pass has ended (every partner has come): only the ids
    /// and keys of the clustered records are handed on, in memory when
    /// they were there, else joined from their runs (and the segment in
    /// memory) into a run of their own, in record order.
    pub(super) fn keep_clustered_ids(&mut self) -> Result<(), RunError> {
        match &self.ids {
            IdsHeld::All | IdsHeld::Pruned { prune: false, .. } => {}
            // A failure here is the pass's: its result would be wrong.
            IdsHeld::Pruned { prune: true, .. } => self.prune_ids_in_order(u32::MAX)?,
            IdsHeld::OnDisk(spill) => {
                let members = self.clustered_records()?;
                // A saved index's clusters also take records whose only
                // partners are indexed ones: those in a pair across. Both
                // sets are asked in increasing record order (the runs',
                // then the segment's), through cursors of their own.
                let across = self.record_hook.as_ref().map(|hook| hook.records().apart());
                let wanted = |r: u32| {
                    members.contains(r.into())
                        || across.as_ref().is_some_and(|a| a.contains(r.into()))
                };
                let tail = entries(&self.held_ids, &self.held_keys).filter(|e| wanted(e.0));
                let run = spill.join(wanted, tail)?;
                members.check()?;
                across.as_ref().map_or(Ok(()), RecordSet::check)?;
                members.remove_runs()?;
                self.found.ids = ClusteredIds::Disk(run);
                (self.held_ids, self.held_keys) = (CandidateIds::default(), HashMap::new());
                return Ok(());
            }
        }
        self.found.ids = ClusteredIds::Memory {
            ids: std::mem::take(&mut self.held_ids),
            keys: std::mem::take(&mut self.held_keys),
        };
        Ok(())
    }

    /// Takes up the runs of ids a checkpoint names (the ids it holds are
    /// those in memory then); runs of ids it does not name were written
    /// after it, and are removed.
    pub(super) fn restore_ids(&mut self, runs: Vec<RunInfo>) -> Result<(), RunError> {
        let Some(temp) = self.temp.clone() else {
            if runs.is_empty() {
                return Ok(());
            }
            return Err(RunError::Failed {
                kind: std::io::ErrorKind::NotFound,
                message: "the checkpoint names runs of candidates' ids, and this run has no \
                          temporary space"
                    .into(),
            });
        };
        // A pass that ended but was not kept may have left the clustered
        // records' run.
        remove_clustered_run(&temp)?;
        if runs.is_empty() {
            return remove_unnamed_runs(&temp, &[]);
        }
        let share = match &self.ids {
            IdsHeld::Pruned { share, .. } => Some(*share),
            _ => None,
        };
        let mut spill = IdsSpill::new(temp, share);
        log::info!(
            "dedup pass 2: resumed with {} runs of candidates' ids on disk",
            runs.len()
        );
        spill.restore(runs)?;
        self.ids = IdsHeld::OnDisk(spill);
        Ok(())
    }

    /// Removes the runs of ids, once the pass's result is written.
    pub(super) fn remove_id_runs(&mut self) -> std::io::Result<()> {
        match &mut self.ids {
            IdsHeld::OnDisk(spill) => spill.remove_all(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_go_in_record_order_with_their_keys() {
        let ids: CandidateIds = [(2, "\"b\""), (5, "7"), (9, "\"c\"")].into_iter().collect();
        let keys = HashMap::from([
            (9, KeepKey::Length(4)),
            (1, KeepKey::Missing),
            (5, KeepKey::Int(-2)),
        ]);
        let all: Vec<_> = entries(&ids, &keys).collect();
        assert_eq!(
            all,
            [
                (1, None, Some(&KeepKey::Missing)),
                (2, Some("\"b\""), None),
                (5, Some("7"), Some(&KeepKey::Int(-2))),
                (9, Some("\"c\""), Some(&KeepKey::Length(4))),
            ]
        );
    }
}
