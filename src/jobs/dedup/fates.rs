//! What pass 2 has settled so far, told to the copy of `kept.jsonl` that
//! runs beside it ([`super::passes::kept::follow`]): how far the Verifier
//! has checked the candidate pairs, which it verified, and how the pass
//! ended.
//!
//! A shared type, not part of either side: the Verifier
//! ([`super::passes::verify`]) tells, the copy waits, and neither imports
//! the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::spill::record_sets::RecordSet;

/// What pass 2 has settled so far, shared by the Verifier (which tells)
/// and the copy (which waits).
#[derive(Debug, Default)]
pub struct Fates {
    pub(super) state: Mutex<State>,
    /// Wakes the copy once what it waits for is settled.
    pub(super) settled: Condvar,
    /// Pass 2 did not complete: the copy stops (read at every record).
    pub(super) abandoned: AtomicBool,
}

/// What the Verifier has told, under the lock.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Every candidate pair whose later record is below this is checked.
    pub(super) checked_below: u64,
    /// Pairs verified since the copy last looked.
    pub(super) verified: Vec<(u32, u32)>,
    pub(super) end: End,
    /// The copy is waiting until `checked_below` passes this: only then
    /// is it woken (each wake-up is a system call).
    pub(super) waiting_for: Option<u64>,
    /// The copy has ended: nothing is kept for it any more.
    pub(super) closed: bool,
}

/// How pass 2 ended, as the copy sees it.
#[derive(Debug, Default)]
pub(super) enum End {
    /// Pass 2 is still running.
    #[default]
    Running,
    /// Pass 2 completed: the records it removed (read through a cursor of
    /// the copy's own).
    Finished(Arc<RecordSet>),
    /// Pass 2 did not complete, or the run ended before the copy.
    Abandoned,
}

impl Fates {
    /// Pass 2 has checked every candidate pair whose later record is
    /// below `below`; `verified` are the pairs it verified since its last
    /// call (`(earlier, later, similarity)`).
    pub fn checked(&self, below: u64, verified: &[(u32, u32, f64)]) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.checked_below = state.checked_below.max(below);
        state
            .verified
            .extend(verified.iter().map(|&(a, b, _)| (a, b)));
        if state.waiting_for.is_some_and(|w| state.checked_below > w) {
            state.waiting_for = None;
            self.settled.notify_one();
        }
    }

    /// Pass 2 ended (or the run ended before the copy): wakes the copy.
    pub(super) fn end(&self, end: End) {
        let mut state = self.lock();
        if matches!(state.end, End::Running) {
            if matches!(end, End::Abandoned) {
                self.abandoned.store(true, Ordering::Relaxed);
            }
            state.end = end;
        }
        self.settled.notify_one();
    }

    /// The copy has ended.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.verified = Vec::new();
    }

    /// The state, even after a panic while it was held.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
