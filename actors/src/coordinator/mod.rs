//! The Coordinator actor: flow control and the stop protocol. Runs on the
//! System arbiter and never blocks it (the SyncArbiter relays run there too).
//!
//! Running -> Draining -> Finishing -> Releasing -> Stopped, each entered
//! once, in order, each logged, each after Running with a deadline. See
//! `docs/PROTOCOL.md` for the contract.
//!
//! Where the protocol stands is one value, a `State` whose variants carry
//! what each state needs (the cause of the stop, a checkpoint under way,
//! the Integrator's answer), so no combination of flags can say something
//! the protocol does not allow. The actor is one struct split by concern,
//! each file an `impl` block of it:
//!
//! - `state.rs`: the `State` enum, the Source conversation (`Pulling`), the
//!   counters and the phase clock;
//! - `flow.rs`: Running: pulling, dispatching, answers, the window and the
//!   batch size;
//! - `checkpoint.rs`: checkpoints while running and when interrupted;
//! - `drain.rs`: Draining, Releasing and Stopped;
//! - `finish.rs`: Finishing, whose deadline counts from the job's last
//!   report of progress;
//! - `watch.rs`: the tick: stop requests, deadlines, stall reports and
//!   progress;
//! - `summary.rs`: the final report and its conservation checks.

mod checkpoint;
mod drain;
mod finish;
mod flow;
mod state;
mod summary;
mod watch;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;

use crate::checkpoint::Checkpoints;
use crate::failure::{ExitCode, Failure};
use crate::integrator::Integrator;
use crate::job::Job;
use crate::observe::Observed;
use crate::processor::ProcessBatch;
use crate::protocol::{Phase, RunHandle, StopCause};
use crate::report::{Progress, RunReport};
use crate::settings::Settings;
use crate::source::{RecordSource, Source};

use self::checkpoint::CheckpointSchedule;
use self::flow::{BatchSizing, InFlight};
use self::state::{Counters, DrainCheckpoint, PhaseClock, Pulling, State};
use self::watch::Watch;

/// The progress callback: called on the System thread every
/// [`Settings::progress_every`].
pub type ProgressFn = Box<dyn FnMut(&Progress)>;

/// The Coordinator actor.
pub struct Coordinator<J: Job, S: RecordSource> {
    job_name: String,
    settings: Settings,
    source: Option<Addr<Source<S>>>,
    /// The processor pool: the local `SyncArbiter` of Processors, or the
    /// remote pool (`crate::remote::RemotePool`); both answer `ProcessBatch`
    /// with `BatchDone` once the Integrator holds the batch.
    pool: Option<Recipient<ProcessBatch>>,
    integrator: Addr<Integrator<J::Integrator>>,
    /// Disconnected when every processor thread has exited.
    alive: mpsc::Receiver<()>,
    /// Disconnected when the Source's thread has exited.
    source_alive: mpsc::Receiver<()>,
    handle: RunHandle,
    observed: Arc<Observed>,
    progress: Option<ProgressFn>,
    report_slot: Arc<Mutex<Option<RunReport>>>,

    /// Where the protocol stands.
    state: State,
    /// The conversation with the Source (it spans Running and Draining).
    pulling: Pulling,
    /// When the current phase began, and the time spent in each.
    clock: PhaseClock,
    /// Every failure met, in order; the worst decides the exit code.
    failures: Vec<Failure>,

    /// Dispatched and not yet answered, by sequence number.
    in_flight: BTreeMap<u64, InFlight>,
    /// Sequence number of the next batch the Source will hand over.
    next_seq: u64,
    sizing: BatchSizing,
    counts: Counters,
    watch: Watch,
    checkpoints: CheckpointSchedule,
    /// Stops the System if the Coordinator goes away without reporting.
    stop_guard: StopSystemOnDrop,
}

/// Stops the actor System with exit code 70 when dropped while armed.
///
/// The Coordinator is the only actor that stops the System. Should it die
/// without doing so (a panic in one of its handlers: actix drops the
/// actor, and the System goes on), nothing else would, and the process
/// would wait forever with no timer left to fire. This guard, dropped
/// with the Coordinator, turns that into a prompt failed run instead.
struct StopSystemOnDrop {
    armed: bool,
}

impl Drop for StopSystemOnDrop {
    fn drop(&mut self) {
        if self.armed {
            log::error!(
                "the coordinator stopped without a report (a panic in one of its handlers)"
            );
            if let Some(system) = System::try_current() {
                system.stop_with_code(ExitCode::Software.code());
            }
        }
    }
}

/// Everything the Coordinator is started with.
pub(crate) struct Wiring<J: Job, S: RecordSource> {
    pub job_name: String,
    pub settings: Settings,
    pub source: Addr<Source<S>>,
    pub pool: Recipient<ProcessBatch>,
    pub integrator: Addr<Integrator<J::Integrator>>,
    pub alive: mpsc::Receiver<()>,
    pub source_alive: mpsc::Receiver<()>,
    pub handle: RunHandle,
    pub observed: Arc<Observed>,
    pub progress: Option<ProgressFn>,
    pub report_slot: Arc<Mutex<Option<RunReport>>>,
    pub total: Option<u64>,
    pub checkpoints: Checkpoints,
    /// `(read, batches, integrated, rejected)` of the checkpoint resumed.
    pub resume: Option<(u64, u64, u64, u64)>,
}

impl<J: Job, S: RecordSource> Coordinator<J, S> {
    pub(crate) fn new(w: Wiring<J, S>) -> Self {
        let now = Instant::now();
        let (read, batches, processed, rejected) = w.resume.unwrap_or_default();
        Coordinator {
            job_name: w.job_name,
            sizing: BatchSizing::new(w.settings.batch),
            settings: w.settings,
            source: Some(w.source),
            pool: Some(w.pool),
            integrator: w.integrator,
            alive: w.alive,
            source_alive: w.source_alive,
            handle: w.handle,
            observed: w.observed,
            progress: w.progress,
            report_slot: w.report_slot,
            state: State::Running,
            pulling: Pulling::Idle,
            clock: PhaseClock::new(now),
            failures: Vec::new(),
            in_flight: BTreeMap::new(),
            next_seq: batches,
            counts: Counters {
                read,
                processed,
                rejected,
                total: w.total,
                ..Counters::default()
            },
            watch: Watch::new(now),
            checkpoints: CheckpointSchedule::new(w.checkpoints, w.resume.is_some(), read, now),
            stop_guard: StopSystemOnDrop { armed: true },
        }
    }

    /// Moves to `next`. A change of phase is logged with the time spent,
    /// the batches in flight and the records read, and published.
    fn enter(&mut self, next: State) {
        let (from, to) = (self.state.phase(), next.phase());
        self.state = next;
        if from == to {
            return;
        }
        debug_assert!(to > from, "phases only move forward");
        let spent = self.clock.enter(from);
        log::info!(
            "phase {} -> {} after {spent:.3}s ({} batches in flight, {} records read)",
            from.name(),
            to.name(),
            self.in_flight.len(),
            self.counts.read
        );
        self.handle.set_phase(to);
    }

    /// Records a failure (the worst exit code wins).
    fn fail(&mut self, failure: Failure) {
        log::error!("{failure}");
        self.failures.push(failure);
    }

    /// Leaves Running (once) for `cause`. Later causes are only recorded.
    fn stop(&mut self, cause: StopCause, ctx: &mut Context<Self>) {
        if let StopCause::Failed(failure) = &cause {
            self.fail(failure.clone());
        }
        if self.state.phase() == Phase::Running {
            log::info!("stopping: {cause}");
            // A checkpoint already with the Integrator is waited for.
            let checkpoint = match self.state {
                State::Checkpointing {
                    began,
                    requested: true,
                } => DrainCheckpoint::Requested { began, last: false },
                _ => DrainCheckpoint::Due,
            };
            self.enter(State::Draining {
                cause,
                checkpoint,
                timed_out: false,
            });
        }
        self.check_drained(ctx);
    }
}

impl<J: Job, S: RecordSource> Actor for Coordinator<J, S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        log::info!(
            "phase running: {} workers, window {}, batch {}",
            self.settings.workers,
            self.settings.window,
            self.settings
                .batch
                .map_or_else(|| "adaptive".to_owned(), |b| b.to_string())
        );
        self.handle.set_phase(Phase::Running);
        ctx.run_interval(watch::TICK, |act, ctx| act.tick(ctx));
        self.pump(ctx);
    }
}
