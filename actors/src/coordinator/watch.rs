//! The tick: what the Coordinator looks at every [`TICK`] whatever else
//! happens: the stop request, checkpoints due, the deadlines of Draining,
//! Finishing (`finish.rs`) and Releasing, stalls, and progress.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::failure::Failure;
use crate::job::Job;
use crate::observe::Activity;
use crate::protocol::{Phase, StopCause};
use crate::report::Progress;
use crate::source::RecordSource;

use super::state::{DrainCheckpoint, Pulling, State};
use super::Coordinator;

/// How often the Coordinator looks at the stop request, deadlines, stalls
/// and progress.
pub(super) const TICK: Duration = Duration::from_millis(20);

/// When the watchdog last saw progress, reported a stall and published
/// progress.
pub(super) struct Watch {
    pub last_completion: Instant,
    last_stall_report: Instant,
    last_progress: Instant,
}

impl Watch {
    pub(super) fn new(now: Instant) -> Self {
        Watch {
            last_completion: now,
            last_stall_report: now,
            last_progress: now,
        }
    }
}

impl<J: Job, S: RecordSource> Coordinator<J, S> {
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        // Tests make the Coordinator itself panic here (feature `failpoints`).
        fail::fail_point!("coordinator::tick");
        if self.handle.stop_requested() && self.state.phase() == Phase::Running {
            self.stop(self.handle.stop_cause(), ctx);
        }
        self.watch_broker(ctx);
        self.schedule_checkpoint(ctx);
        match self.state.phase() {
            Phase::Running | Phase::Draining => self.watch_stall(),
            Phase::Finishing => self.finish_deadline(ctx),
            Phase::Releasing => self.release_deadline(),
            Phase::Stopped => {}
        }
        self.drain_deadline(ctx);
        self.handle.set_counts(
            self.counts.read,
            self.counts.done(),
            self.in_flight.len() as u64,
        );
        if self.watch.last_progress.elapsed() >= self.settings.progress_every {
            self.watch.last_progress = Instant::now();
            self.publish_progress();
        }
    }

    /// A distributed run whose broker stayed away past its deadline stops,
    /// failed: it drains (the pool runs step 1 of what it held here) and
    /// takes a checkpoint ([`StopCause::checkpoints`]).
    fn watch_broker(&mut self, ctx: &mut Context<Self>) {
        if self.state.phase() != Phase::Running {
            return;
        }
        let gone = self.observed.broker.lock().expect("broker status").clone();
        if let Some(trouble) = gone.filter(|t| t.gone) {
            log::error!("{}", trouble.message);
            let cause = StopCause::Failed(Failure::Unavailable(trouble.message));
            self.stop(cause, ctx);
        }
    }

    /// Releasing's deadline: stops the run, failed, naming what each
    /// Processor is doing.
    fn release_deadline(&mut self) {
        let deadline = self.settings.drain_timeout;
        if !self.released() && self.clock.in_phase() > deadline {
            self.fail(Failure::Internal(format!(
                "processor or source threads still running {}s after release: {}",
                deadline.as_secs(),
                self.activities()
            )));
            self.stopped();
        }
    }

    /// Draining's deadline: what is still in flight is reported with the
    /// stall report and abandoned, and the run goes on to Finishing.
    fn drain_deadline(&mut self, ctx: &mut Context<Self>) {
        let deadline = self.settings.drain_timeout;
        let State::Draining { timed_out, .. } = self.state else {
            return;
        };
        if timed_out || self.clock.in_phase() <= deadline {
            return;
        }
        self.fail(Failure::Internal(format!(
            "drain timed out after {}s with {} batches in flight: {}",
            deadline.as_secs(),
            self.in_flight.len(),
            self.stall_report()
        )));
        self.counts.abandoned_batches += self.in_flight.len() as u64;
        self.in_flight.clear();
        // Late answers are ignored: a pull's batch is never dispatched
        // and a checkpoint is no longer waited for.
        if self.pulling == Pulling::Outstanding {
            self.pulling = Pulling::Abandoned;
        }
        if let State::Draining {
            timed_out,
            checkpoint,
            ..
        } = &mut self.state
        {
            *timed_out = true;
            *checkpoint = DrainCheckpoint::Done;
        }
        self.check_drained(ctx);
    }

    fn publish_progress(&mut self) {
        let snapshot = Progress {
            phase: self.state.phase(),
            read: self.counts.read,
            done: self.counts.done(),
            rejected: self.counts.rejected,
            bytes: self.counts.bytes,
            position: self.counts.position,
            total: self.counts.total,
            in_flight: self.in_flight.len(),
            elapsed_s: self.observed.started.elapsed().as_secs_f64(),
        };
        if let Some(progress) = &mut self.progress {
            progress(&snapshot);
        }
    }

    fn watch_stall(&mut self) {
        let limit = self.settings.stall_timeout;
        if self.in_flight.is_empty()
            || self.watch.last_completion.elapsed() < limit
            || self.watch.last_stall_report.elapsed() < limit
        {
            return;
        }
        self.watch.last_stall_report = Instant::now();
        log::warn!(
            "STALL: no batch completed for {:.0}s. {}",
            self.watch.last_completion.elapsed().as_secs_f64(),
            self.stall_report()
        );
    }

    /// Phase, in-flight batches with ages, the Integrator's backlog and what
    /// each processor is doing.
    pub(crate) fn stall_report(&self) -> String {
        let ages: Vec<String> = self
            .in_flight
            .iter()
            .map(|(seq, f)| {
                format!(
                    "#{seq} ({} records, {:.1}s)",
                    f.records,
                    f.dispatched.elapsed().as_secs_f64()
                )
            })
            .collect();
        let broker = match &*self.observed.broker.lock().expect("broker status") {
            Some(trouble) => format!("; {}", trouble.message),
            None => String::new(),
        };
        format!(
            "phase {}; in flight: [{}]; integrator backlog: {} deliveries waiting, {} batches held for order; processors: {}{broker}",
            self.state.phase().name(),
            ages.join(", "),
            self.observed.integrator_mailbox.now(),
            self.observed.integrator_reorder.now(),
            self.activities()
        )
    }

    fn activities(&self) -> String {
        let now = self.observed.now_ms();
        let items: Vec<String> = self
            .observed
            .processors
            .iter()
            .enumerate()
            .map(|(i, p)| match p.activity() {
                Activity::Idle => format!("{i}: idle"),
                Activity::Busy {
                    batch,
                    record,
                    since_ms,
                } => format!(
                    "{i}: batch #{batch} at record {record} for {:.1}s",
                    now.saturating_sub(since_ms) as f64 / 1000.0
                ),
                Activity::Delivering { batch, since_ms } => format!(
                    "{i}: delivering batch #{batch} to the integrator for {:.1}s",
                    now.saturating_sub(since_ms) as f64 / 1000.0
                ),
            })
            .collect();
        items.join("; ")
    }
}
