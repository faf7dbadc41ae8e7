//! Checkpoints: periodic ones while running (pulls pause until nothing is
//! in flight, then the Integrator saves one), and the last one of an
//! interrupted run, once it has drained.

use std::time::Instant;

use actix::prelude::*;

use crate::checkpoint::{CheckpointStats, Checkpoints};
use crate::failure::Failure;
use crate::integrator::TakeCheckpoint;
use crate::job::Job;
use crate::protocol::StopCause;
use crate::source::RecordSource;

use super::state::{DrainCheckpoint, Pulling, State};
use super::Coordinator;

/// When checkpoints are taken, and what they cost so far.
pub(super) struct CheckpointSchedule {
    pub config: Checkpoints,
    pub stats: CheckpointStats,
    /// When the last one was answered (or the run began).
    pub last: Instant,
    /// False once the job said it keeps no resumable state.
    pub supported: bool,
}

impl CheckpointSchedule {
    pub(super) fn new(config: Checkpoints, resumed: bool, resumed_at: u64, now: Instant) -> Self {
        CheckpointSchedule {
            config,
            stats: CheckpointStats {
                resumed,
                resumed_at,
                ..CheckpointStats::default()
            },
            last: now,
            supported: true,
        }
    }

    /// Whether a periodic checkpoint is due.
    pub(super) fn due(&self) -> bool {
        self.supported
            && self
                .config
                .every
                .is_some_and(|every| self.last.elapsed() >= every)
    }
}

impl<J: Job, S: RecordSource> Coordinator<J, S> {
    /// Starts a periodic checkpoint when one is due (on the tick): pulls
    /// pause until the run is quiescent.
    pub(super) fn schedule_checkpoint(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.state, State::Running) && self.checkpoints.due() {
            log::debug!("quiescing for a checkpoint");
            self.enter(State::Checkpointing {
                began: Instant::now(),
                requested: false,
            });
            self.maybe_checkpoint(ctx);
        }
    }

    /// Requests the periodic checkpoint once quiescent: nothing in flight
    /// and no pull outstanding.
    pub(super) fn maybe_checkpoint(&mut self, ctx: &mut Context<Self>) {
        if let State::Checkpointing {
            requested: requested @ false,
            ..
        } = &mut self.state
        {
            if self.pulling == Pulling::Idle && self.in_flight.is_empty() {
                *requested = true;
                self.request_checkpoint(ctx);
            }
        }
    }

    /// Sends `TakeCheckpoint`; its answer is handled by `on_checkpoint`.
    pub(super) fn request_checkpoint(&mut self, ctx: &mut Context<Self>) {
        let request = TakeCheckpoint {
            read: self.counts.read,
            batches: self.next_seq,
            fingerprint: self.checkpoints.config.fingerprint.clone(),
        };
        self.integrator
            .send(request)
            .timeout(self.settings.drain_timeout)
            .into_actor(self)
            .map(|reply, act, ctx| act.on_checkpoint(reply, ctx))
            .spawn(ctx);
    }

    fn on_checkpoint(
        &mut self,
        reply: Result<Result<Option<u64>, Failure>, MailboxError>,
        ctx: &mut Context<Self>,
    ) {
        // Running resumes; a checkpoint of Draining is done, or the last
        // one is due after a periodic one. An answer after the drain
        // deadline finds neither and changes no state.
        let began = match &mut self.state {
            State::Checkpointing { began, .. } => {
                let began = *began;
                self.enter(State::Running);
                began
            }
            State::Draining { checkpoint, .. } => match *checkpoint {
                DrainCheckpoint::Requested { began, last } => {
                    *checkpoint = if last {
                        DrainCheckpoint::Done
                    } else {
                        DrainCheckpoint::Due
                    };
                    began
                }
                DrainCheckpoint::Due | DrainCheckpoint::Done => Instant::now(),
            },
            _ => Instant::now(),
        };
        self.checkpoints.last = Instant::now();
        match reply {
            Ok(Ok(Some(bytes))) => {
                let stats = &mut self.checkpoints.stats;
                stats.count += 1;
                stats.seconds += began.elapsed().as_secs_f64();
                stats.bytes = bytes;
                log::info!(
                    "checkpoint written after {} records ({bytes} bytes, {:.3}s)",
                    self.counts.read,
                    began.elapsed().as_secs_f64()
                );
            }
            Ok(Ok(None)) => {
                log::info!(
                    "no checkpoint: the {} job keeps no resumable state in this run (a resumed run redoes it)",
                    self.job_name
                );
                self.checkpoints.supported = false;
            }
            Ok(Err(e)) => {
                let failed = Failure::Checkpoint(Box::new(e));
                self.stop(StopCause::Failed(failed), ctx);
            }
            Err(e) => {
                let lost = Failure::Lost(format!("checkpoint not answered: {e}"));
                self.stop(StopCause::Failed(lost), ctx);
            }
        }
        self.pump(ctx);
        self.check_drained(ctx);
    }
}
