//! Draining, Releasing and Stopped: waiting for every answer, dropping the
//! pool's and the Source's addresses and waiting for their threads, then
//! stopping the System. Finishing, between Draining and Releasing, is
//! `finish.rs`.

use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::integrator::{Finished, IntegratorFailure};
use crate::job::Job;
use crate::protocol::StopCause;
use crate::source::RecordSource;

use super::state::{DrainCheckpoint, Pulling, State};
use super::watch::TICK;
use super::Coordinator;

/// How often Releasing first looks whether the released threads have
/// exited, and for how long it looks that often.
const EXIT_LOOK: Duration = Duration::from_micros(100);
const EXIT_LOOKS_OFTEN: Duration = Duration::from_millis(5);
/// How long Releasing waits for a Source blocked in an abandoned read.
const SOURCE_GRACE: Duration = Duration::from_secs(1);

impl<J: Job, S: RecordSource> Coordinator<J, S> {
    /// Leaves Draining once nothing is in flight, no pull is outstanding
    /// and no checkpoint is with the Integrator; an interrupted run takes
    /// its last checkpoint first.
    pub(super) fn check_drained(&mut self, ctx: &mut Context<Self>) {
        let State::Draining {
            cause, checkpoint, ..
        } = &mut self.state
        else {
            return;
        };
        // An interrupted run does not wait for a pull: the Source may be
        // blocked on an idle input, and what it reads now was never counted
        // as read, so leaving it unprocessed loses nothing.
        let interrupted = matches!(cause, StopCause::Interrupted);
        if (self.pulling == Pulling::Outstanding && !interrupted)
            || !self.in_flight.is_empty()
            || matches!(checkpoint, DrainCheckpoint::Requested { .. })
        {
            return;
        }
        if self.pulling == Pulling::Outstanding {
            self.pulling = Pulling::Abandoned;
        }
        if *checkpoint == DrainCheckpoint::Due {
            // An interrupted run (or one whose broker stayed away) saves
            // where it stopped, so `--resume` can go on.
            let wanted = cause.checkpoints()
                && self.counts.abandoned_batches == 0
                && self.checkpoints.supported;
            if wanted {
                *checkpoint = DrainCheckpoint::Requested {
                    began: Instant::now(),
                    last: true,
                };
                self.request_checkpoint(ctx);
                return;
            }
            *checkpoint = DrainCheckpoint::Done;
        }
        let cause = cause.clone();
        self.finish(cause, ctx);
    }

    pub(super) fn release(
        &mut self,
        finished: Option<Result<Finished, IntegratorFailure>>,
        ctx: &mut Context<Self>,
    ) {
        let cause = self.state.cause().cloned().unwrap_or(StopCause::EndOfInput);
        self.enter(State::Releasing { cause, finished });
        // Dropping the last addresses is what lets a SyncArbiter drain its
        // queue and end its threads; the tick then waits for them to exit.
        self.pool = None;
        self.source = None;
        // They usually have within one or two milliseconds: look sooner
        // than the tick would (a tick's wait, per pass, is most of a short
        // run), and often, since each look is cheap.
        self.look_for_exits(ctx, EXIT_LOOK);
    }

    /// Checks every `after` for [`EXIT_LOOKS_OFTEN`], then after twice as
    /// long each time, up to a tick, that the released threads have exited.
    fn look_for_exits(&mut self, ctx: &mut Context<Self>, after: Duration) {
        ctx.run_later(after, move |act, ctx| {
            let releasing = matches!(act.state, State::Releasing { .. });
            if releasing && !act.released() && after < TICK {
                let often = act.clock.in_phase() < EXIT_LOOKS_OFTEN;
                act.look_for_exits(ctx, if often { after } else { after * 2 });
            }
        });
    }

    /// Stops the run if every released thread has exited.
    pub(super) fn released(&mut self) -> bool {
        match self.alive.try_recv() {
            Err(TryRecvError::Disconnected) if self.source_exited() => {
                self.stopped();
                true
            }
            _ => false,
        }
    }

    /// Whether the Source's thread is gone, or is blocked in a read we gave
    /// up waiting for (then it holds no record of ours: after a grace
    /// period it is left to the process exit, with a warning).
    fn source_exited(&mut self) -> bool {
        if let Err(TryRecvError::Disconnected) = self.source_alive.try_recv() {
            return true;
        }
        if self.pulling == Pulling::Abandoned && self.clock.in_phase() > SOURCE_GRACE {
            log::warn!("the source is still blocked reading its input; not waiting for it");
            // Warned once: the run stops now.
            self.pulling = Pulling::Idle;
            return true;
        }
        false
    }

    /// Stopped: builds the report, leaves it in the report slot and stops
    /// the System with its exit code.
    pub(super) fn stopped(&mut self) {
        let (cause, finished) = match &mut self.state {
            State::Releasing { cause, finished } => (cause.clone(), finished.take()),
            _ => unreachable!("the run stops only from Releasing"),
        };
        self.enter(State::Stopped);
        let report = self.report(cause, finished);
        let code = report.exit_code;
        *self.report_slot.lock().expect("report slot poisoned") = Some(report);
        self.stop_guard.armed = false;
        System::current().stop_with_code(code);
    }
}
