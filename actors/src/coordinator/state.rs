//! The Coordinator's state: one enum for where the protocol stands, the
//! conversation with the Source, the counters and the phase clock.
//!
//! `State` is finer than the public [`Phase`]: a checkpoint taken while
//! running is a state of its own (pulls pause) in phase Running, and a
//! checkpoint under way when a stop comes is carried into Draining. What a
//! state needs lives in its variant: the cause exists from Draining on,
//! the Integrator's answer from Releasing on.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::integrator::{Finished, IntegratorFailure};
use crate::protocol::{Phase, StopCause};

/// Where the stop protocol stands.
pub(super) enum State {
    /// Pulling and dispatching while the window is open.
    Running,
    /// Phase Running, paused for a checkpoint: no pulls until nothing is in
    /// flight and no pull is outstanding; then the checkpoint is
    /// `requested` from the Integrator, and Running resumes at its answer.
    Checkpointing { began: Instant, requested: bool },
    /// No more pulls; waiting until every dispatched batch is answered.
    Draining {
        cause: StopCause,
        checkpoint: DrainCheckpoint,
        /// The deadline passed (reported once; what was in flight is
        /// abandoned).
        timed_out: bool,
    },
    /// `Finish` is with the Integrator; `progress` is what its finish has
    /// shown of moving on (its deadline counts from the last sign).
    Finishing {
        cause: StopCause,
        progress: FinishProgress,
    },
    /// The pool's and Source's addresses are dropped; waiting for their
    /// threads to exit. `finished` is the Integrator's answer to `Finish`
    /// (`None` if it did not answer in time).
    Releasing {
        cause: StopCause,
        finished: Option<Result<Finished, IntegratorFailure>>,
    },
    /// The report is made and the System told to stop.
    Stopped,
}

/// The checkpoint of a run in Draining.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum DrainCheckpoint {
    /// None taken since the stop: an interrupted run takes one once drained,
    /// so `--resume` goes on from where it stopped.
    Due,
    /// A request is with the Integrator: a periodic one under way when the
    /// stop came (`last: false`, another is due after it), or the last one.
    Requested { began: Instant, last: bool },
    /// Taken, failed, not wanted, or given up at the deadline.
    Done,
}

impl State {
    /// The public phase this state belongs to.
    pub(super) fn phase(&self) -> Phase {
        match self {
            State::Running | State::Checkpointing { .. } => Phase::Running,
            State::Draining { .. } => Phase::Draining,
            State::Finishing { .. } => Phase::Finishing,
            State::Releasing { .. } => Phase::Releasing,
            State::Stopped => Phase::Stopped,
        }
    }

    /// Why the run stopped, from Draining on.
    pub(super) fn cause(&self) -> Option<&StopCause> {
        match self {
            State::Draining { cause, .. }
            | State::Finishing { cause, .. }
            | State::Releasing { cause, .. } => Some(cause),
            State::Running | State::Checkpointing { .. } | State::Stopped => None,
        }
    }
}

/// What the Coordinator has seen of the job's finish moving on: the beats
/// of its heartbeat (`Observed::finish`), looked at every tick.
#[derive(Debug, Clone, Copy)]
pub(super) struct FinishProgress {
    /// When Finishing began.
    pub began: Instant,
    /// The beats when Finishing began.
    pub first: u64,
    /// The beats when last looked at.
    pub beats: u64,
    /// When the beats were last seen to change (or Finishing began).
    pub last: Instant,
}

impl FinishProgress {
    /// Finishing begins now, the heartbeat at `beats`.
    pub(super) fn new(beats: u64) -> Self {
        let now = Instant::now();
        FinishProgress {
            began: now,
            first: beats,
            beats,
            last: now,
        }
    }

    /// Takes the heartbeat's `beats` now: progress when they moved.
    pub(super) fn look(&mut self, beats: u64) {
        if beats != self.beats {
            (self.beats, self.last) = (beats, Instant::now());
        }
    }

    /// Progress reports since Finishing began.
    pub(super) fn reports(&self) -> u64 {
        self.beats.wrapping_sub(self.first)
    }
}

/// The Coordinator's one `Pull` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pulling {
    /// None outstanding.
    Idle,
    /// A `Pull` is with the Source.
    Outstanding,
    /// An interrupted run stopped waiting for it (the Source may be blocked
    /// reading, e.g. an idle stdin): whatever it returns is discarded
    /// uncounted, and Releasing waits for the Source only a grace period.
    Abandoned,
}

/// What the run has counted.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Records handed over by the Source (including a resumed checkpoint's).
    pub read: u64,
    /// Bytes of record data read.
    pub bytes: u64,
    /// The Source's position, in the unit of `total`.
    pub position: u64,
    /// The input's size, if known.
    pub total: Option<u64>,
    /// Records the processors reported integrated.
    pub processed: u64,
    /// Records the processors reported rejected.
    pub rejected: u64,
    /// Batches whose records were neither integrated nor rejected.
    pub abandoned_batches: u64,
}

impl Counters {
    /// Records whose batch was answered.
    pub(super) fn done(&self) -> u64 {
        self.processed + self.rejected
    }
}

/// When the current phase began, and the seconds spent in each phase.
pub(super) struct PhaseClock {
    entered: Instant,
    pub spent: BTreeMap<&'static str, f64>,
}

impl PhaseClock {
    pub(super) fn new(now: Instant) -> Self {
        PhaseClock {
            entered: now,
            spent: BTreeMap::new(),
        }
    }

    /// Seconds since the current phase began.
    pub(super) fn in_phase(&self) -> std::time::Duration {
        self.entered.elapsed()
    }

    /// Closes `leaving`, starts the next phase now; returns the seconds
    /// `leaving` took.
    pub(super) fn enter(&mut self, leaving: Phase) -> f64 {
        let spent = self.entered.elapsed().as_secs_f64();
        *self.spent.entry(leaving.name()).or_default() += spent;
        self.entered = Instant::now();
        spent
    }
}
