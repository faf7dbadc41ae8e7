//! The stop protocol's vocabulary: phases, why a run stops and the shared
//! handle a signal handler uses to ask for a stop (failures and exit codes
//! are in `failure.rs`). `docs/PROTOCOL.md` states the contract these
//! types implement.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// The Coordinator's phases, in the only order they can occur.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Pulling from the Source and dispatching while fewer than W batches
    /// are in flight.
    Running = 0,
    /// No more pulls; waiting until every dispatched batch is answered.
    Draining = 1,
    /// The Integrator writes its outputs and answers with its summary.
    Finishing = 2,
    /// The pool's and the Source's addresses are dropped; waiting until
    /// their threads have exited.
    Releasing = 3,
    /// The System is told to stop with the run's exit code.
    Stopped = 4,
}

impl Phase {
    /// The phase's name as logged and written to `summary.json`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Finishing => "finishing",
            Phase::Releasing => "releasing",
            Phase::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Running,
            1 => Phase::Draining,
            2 => Phase::Finishing,
            3 => Phase::Releasing,
            _ => Phase::Stopped,
        }
    }
}

pub use crate::failure::ExitCode;
use crate::failure::Failure;

/// Why a run left the Running phase.
#[derive(Debug, Clone)]
pub enum StopCause {
    /// The Source reported end of input.
    EndOfInput,
    /// A stop was requested through the [`RunHandle`] (SIGINT or SIGTERM).
    Interrupted,
    /// Something went wrong (too many rejects, an input, output or
    /// Integrator failure, a lost message).
    Failed(Failure),
}

impl StopCause {
    /// The exit code this cause leads to when nothing worse happens later.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StopCause::EndOfInput => ExitCode::Complete,
            StopCause::Interrupted => ExitCode::Interrupted,
            StopCause::Failed(failure) => failure.exit_code(),
        }
    }

    /// Whether the run read its whole input.
    pub fn complete(&self) -> bool {
        matches!(self, StopCause::EndOfInput)
    }

    /// Whether the drain ends with a checkpoint, so that `--resume` goes
    /// on from where the run stopped: after a stop request, or when a
    /// service the run depends on stayed away ([`Failure::Unavailable`]).
    pub fn checkpoints(&self) -> bool {
        matches!(
            self,
            StopCause::Interrupted | StopCause::Failed(Failure::Unavailable(_))
        )
    }

    /// Whether the Integrator's outputs can still be written (partially, if
    /// the input was not read to its end): after an end of input, a stop
    /// request or too many rejects. Not after an input error: the input is
    /// damaged, and outputs over part of it would pass for results.
    pub fn outputs_writable(&self) -> bool {
        matches!(
            self,
            StopCause::EndOfInput
                | StopCause::Interrupted
                | StopCause::Failed(Failure::TooManyRejects { .. })
        )
    }
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopCause::EndOfInput => write!(f, "end of input"),
            StopCause::Interrupted => write!(f, "interrupted by signal"),
            StopCause::Failed(failure) => write!(f, "{failure}"),
        }
    }
}

/// Live state of a run shared with the outside world: a signal handler asks
/// for a stop through it and reads what a hard exit would abandon. Cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct RunHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug, Default)]
struct HandleInner {
    stop: AtomicBool,
    /// Why a stop was requested, when not by a signal.
    failure: Mutex<Option<Failure>>,
    phase: AtomicU8,
    read: AtomicU64,
    done: AtomicU64,
    in_flight: AtomicU64,
}

impl RunHandle {
    /// A handle for a new run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the Coordinator to drain and stop (what the first SIGINT does).
    /// Safe to call from any thread, including a signal-handling thread.
    pub fn request_stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
    }

    /// Asks the Coordinator to drain and stop because of `failure` (a
    /// job's own, found off the actors' messages: a write on a thread of
    /// its own): the run ends failed with its cause and exit code, not as
    /// interrupted. The first failure asked for is kept.
    pub fn request_stop_failed(&self, failure: Failure) {
        let mut kept = self.inner.failure.lock().unwrap_or_else(|p| p.into_inner());
        kept.get_or_insert(failure);
        drop(kept);
        self.request_stop();
    }

    /// Why the stop was requested: the failure given to
    /// [`RunHandle::request_stop_failed`], or a signal.
    pub fn stop_cause(&self) -> StopCause {
        let kept = self.inner.failure.lock().unwrap_or_else(|p| p.into_inner());
        match &*kept {
            Some(failure) => StopCause::Failed(failure.clone()),
            None => StopCause::Interrupted,
        }
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }

    /// The Coordinator's current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.inner.phase.load(Ordering::SeqCst))
    }

    /// Records handed to the Coordinator so far.
    pub fn records_read(&self) -> u64 {
        self.inner.read.load(Ordering::SeqCst)
    }

    /// Records whose batch has been answered (integrated or rejected).
    pub fn records_done(&self) -> u64 {
        self.inner.done.load(Ordering::SeqCst)
    }

    /// Batches dispatched and not yet answered.
    pub fn batches_in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.inner.phase.store(phase as u8, Ordering::SeqCst);
    }

    pub(crate) fn set_counts(&self, read: u64, done: u64, in_flight: u64) {
        self.inner.read.store(read, Ordering::SeqCst);
        self.inner.done.store(done, Ordering::SeqCst);
        self.inner.in_flight.store(in_flight, Ordering::SeqCst);
    }
}
