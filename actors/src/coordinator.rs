//! The Coordinator actor: flow control and the stop protocol. Runs on the
//! System arbiter and never blocks it (the SyncArbiter relays run there too).
//!
//! Running -> Draining -> Finishing -> Releasing -> Stopped, each entered
//! once, in order, each logged, each after Running with a deadline. See
//! `docs/PROTOCOL.md` for the contract.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::checkpoint::{CheckpointStats, Checkpoints};
use crate::failure::{ExitCode, Failure};
use crate::integrator::{Finish, Finished, Integrator, IntegratorFailure, TakeCheckpoint};
use crate::job::Job;
use crate::observe::{Activity, Observed};
use crate::processor::{BatchDone, ProcessBatch, Processor};
use crate::protocol::{Phase, RunHandle, StopCause};
use crate::report::{Peaks, Progress, Records, RunReport};
use crate::source::{Pull, Pulled, RecordSource, Source};
use crate::Settings;

/// How often the Coordinator looks at the stop request, deadlines, stalls
/// and progress.
const TICK: Duration = Duration::from_millis(20);
/// Adaptive batches aim at this much step-1 work each: long enough that a
/// scheduling delay of the Integrator (a few ms when threads outnumber
/// cores) does not empty the window, and that the hand-offs between
/// threads each batch costs stay small next to its work, short enough to
/// stop promptly. 8 ms ran dedup at 200k documents 4.5% faster than 4 ms
/// (median of 10 paired runs); 16 ms was no faster and held more memory.
const BATCH_WORK: Duration = Duration::from_millis(8);
const MAX_ADAPTIVE_BATCH: usize = 1 << 16;
/// The smallest batch [`Coordinator::next_batch_size`] shrinks to near the
/// end of the input.
const MIN_TAIL_BATCH: usize = 16;
/// How often Releasing first looks whether the released threads have
/// exited, and for how long it looks that often.
const EXIT_LOOK: Duration = Duration::from_micros(100);
const EXIT_LOOKS_OFTEN: Duration = Duration::from_millis(5);
/// How long Releasing waits for a Source blocked in an abandoned read.
const SOURCE_GRACE: Duration = Duration::from_secs(1);

/// The progress callback: called on the System thread every
/// [`Settings::progress_every`].
pub type ProgressFn = Box<dyn FnMut(&Progress)>;

struct InFlight {
    dispatched: Instant,
    records: u64,
}

/// The Coordinator actor.
pub struct Coordinator<J: Job, S: RecordSource> {
    job_name: String,
    settings: Settings,
    source: Option<Addr<Source<S>>>,
    pool: Option<Addr<Processor<J>>>,
    integrator: Addr<Integrator<J::Integrator>>,
    /// Disconnected when every processor thread has exited.
    alive: mpsc::Receiver<()>,
    /// Disconnected when the Source's thread has exited.
    source_alive: mpsc::Receiver<()>,
    /// An interrupted run stopped waiting for a pull (the Source may be
    /// blocked reading, e.g. an idle stdin).
    pull_abandoned: bool,
    handle: RunHandle,
    observed: Arc<Observed>,
    progress: Option<ProgressFn>,
    report_slot: Arc<Mutex<Option<RunReport>>>,

    phase: Phase,
    phase_entered: Instant,
    phases: BTreeMap<&'static str, f64>,
    cause: Option<StopCause>,
    errors: Vec<String>,
    exit: ExitCode,

    in_flight: BTreeMap<u64, InFlight>,
    /// Sequence number of the next batch the Source will hand over.
    next_seq: u64,
    pulling: bool,
    batch_size: usize,
    ns_per_record: Option<f64>,

    read: u64,
    bytes: u64,
    position: u64,
    total: Option<u64>,
    processed: u64,
    rejected: u64,
    abandoned_batches: u64,

    last_completion: Instant,
    last_stall_report: Instant,
    last_progress: Instant,
    finished: Option<Result<Finished, IntegratorFailure>>,

    checkpoints: Checkpoints,
    checkpoint_stats: CheckpointStats,
    last_checkpoint: Instant,
    /// Set while pulls are paused for a checkpoint: `Some(when it began)`.
    quiescing: Option<Instant>,
    /// A checkpoint request is with the Integrator.
    checkpoint_pending: bool,
    /// False once the job said it cannot checkpoint.
    checkpoint_supported: bool,
    /// The checkpoint on stop was taken (or is not wanted).
    final_checkpoint_done: bool,
    /// The Draining deadline passed (reported once).
    drain_timed_out: bool,
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
    pub pool: Addr<Processor<J>>,
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
        let batch_size = w.settings.batch.unwrap_or(16).max(1);
        let (read, batches, processed, rejected) = w.resume.unwrap_or_default();
        let checkpoint_stats = CheckpointStats {
            resumed: w.resume.is_some(),
            resumed_at: read,
            ..CheckpointStats::default()
        };
        Coordinator {
            job_name: w.job_name,
            settings: w.settings,
            source: Some(w.source),
            pool: Some(w.pool),
            integrator: w.integrator,
            alive: w.alive,
            source_alive: w.source_alive,
            pull_abandoned: false,
            handle: w.handle,
            observed: w.observed,
            progress: w.progress,
            report_slot: w.report_slot,
            phase: Phase::Running,
            phase_entered: now,
            phases: BTreeMap::new(),
            cause: None,
            errors: Vec::new(),
            exit: ExitCode::Complete,
            in_flight: BTreeMap::new(),
            next_seq: batches,
            pulling: false,
            batch_size,
            ns_per_record: None,
            read,
            bytes: 0,
            position: 0,
            total: w.total,
            processed,
            rejected,
            abandoned_batches: 0,
            last_completion: now,
            last_stall_report: now,
            last_progress: now,
            finished: None,
            checkpoints: w.checkpoints,
            checkpoint_stats,
            last_checkpoint: now,
            quiescing: None,
            checkpoint_pending: false,
            checkpoint_supported: true,
            final_checkpoint_done: false,
            drain_timed_out: false,
            stop_guard: StopSystemOnDrop { armed: true },
        }
    }

    fn enter(&mut self, phase: Phase) {
        debug_assert!(phase > self.phase, "phases only move forward");
        let spent = self.phase_entered.elapsed().as_secs_f64();
        *self.phases.entry(self.phase.name()).or_default() += spent;
        log::info!(
            "phase {} -> {} after {spent:.3}s ({} batches in flight, {} records read)",
            self.phase.name(),
            phase.name(),
            self.in_flight.len(),
            self.read
        );
        self.phase = phase;
        self.phase_entered = Instant::now();
        self.handle.set_phase(phase);
    }

    /// Records a failure; the worst exit code wins.
    fn fail(&mut self, failure: Failure) {
        log::error!("{failure}");
        self.exit = self.exit.worst(failure.exit_code());
        self.errors.push(failure.to_string());
    }

    /// Leaves Running (once) for `cause`. Later causes are only recorded.
    fn stop(&mut self, cause: StopCause, ctx: &mut Context<Self>) {
        match &cause {
            StopCause::Failed(failure) => self.fail(failure.clone()),
            other => self.exit = self.exit.worst(other.exit_code()),
        }
        if self.cause.is_none() {
            log::info!("stopping: {cause}");
            self.cause = Some(cause);
        }
        if self.phase == Phase::Running {
            self.enter(Phase::Draining);
        }
        self.check_drained(ctx);
    }

    /// The window bounds the span of batches from the oldest unanswered one
    /// to the next to dispatch, not just the number in flight: answered
    /// batches after an unanswered one wait in the Integrator's reorder
    /// buffer, and they must be bounded too.
    fn window_open(&self) -> bool {
        let oldest = self
            .in_flight
            .first_key_value()
            .map_or(self.next_seq, |(&seq, _)| seq);
        self.next_seq - oldest < self.settings.window as u64
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.phase == Phase::Running && self.handle.stop_requested() {
            self.stop(StopCause::Interrupted, ctx);
        }
        if self.phase != Phase::Running
            || self.pulling
            || self.quiescing.is_some()
            || !self.window_open()
        {
            self.maybe_checkpoint(ctx);
            return;
        }
        let Some(source) = &self.source else { return };
        self.pulling = true;
        let pull = Pull {
            max_records: self.next_batch_size(),
            max_bytes: self.settings.max_batch_bytes,
        };
        source
            .send(pull)
            .into_actor(self)
            .map(|reply, act, ctx| act.on_pulled(reply, ctx))
            .spawn(ctx);
    }

    fn on_pulled(
        &mut self,
        reply: Result<Result<Pulled, crate::error::InputError>, MailboxError>,
        ctx: &mut Context<Self>,
    ) {
        self.pulling = false;
        if self.pull_abandoned {
            if let Ok(Ok(Pulled { batch: Some(b), .. })) = &reply {
                log::info!(
                    "{} records read after the stop were not processed; a resumed run reads them again",
                    b.len()
                );
            }
            return;
        }
        match reply {
            Err(e) => self.stop(
                StopCause::Failed(Failure::Lost(format!("source unreachable: {e}"))),
                ctx,
            ),
            Ok(Err(e)) => self.stop(StopCause::Failed(e.into()), ctx),
            Ok(Ok(Pulled {
                batch: None,
                position,
            })) => {
                self.position = position;
                self.stop(StopCause::EndOfInput, ctx);
            }
            Ok(Ok(Pulled {
                batch: Some(batch),
                position,
            })) => {
                self.position = position;
                self.read += batch.len() as u64;
                self.bytes += batch.data_bytes() as u64;
                // A batch that was pulled is dispatched even after a stop
                // request: its records are read and must be accounted for.
                self.dispatch(batch, ctx);
                self.pump(ctx);
                self.check_drained(ctx);
            }
        }
    }

    fn dispatch(&mut self, batch: crate::batch::Batch, ctx: &mut Context<Self>) {
        let seq = batch.seq();
        debug_assert_eq!(seq, self.next_seq, "the Source numbers batches in order");
        self.next_seq = seq + 1;
        let records = batch.len() as u64;
        let Some(pool) = &self.pool else {
            unreachable!("the pool is released only after draining")
        };
        self.in_flight.insert(
            seq,
            InFlight {
                dispatched: Instant::now(),
                records,
            },
        );
        self.observed.in_flight.inc();
        pool.send(ProcessBatch(batch))
            .into_actor(self)
            .map(move |reply, act, ctx| act.on_done(seq, reply, ctx))
            .spawn(ctx);
    }

    fn on_done(
        &mut self,
        seq: u64,
        reply: Result<BatchDone, MailboxError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(flight) = self.in_flight.remove(&seq) else {
            // Only after a drain timeout, which already counted it abandoned.
            log::warn!("batch {seq} answered after the drain deadline; ignored");
            return;
        };
        self.observed.in_flight.dec();
        self.last_completion = Instant::now();
        match reply {
            Err(e) => {
                self.abandoned_batches += 1;
                self.stop(
                    StopCause::Failed(Failure::Lost(format!(
                        "batch {seq} ({} records) lost: processor pool unreachable: {e}",
                        flight.records
                    ))),
                    ctx,
                );
            }
            Ok(done) => {
                if let Err(reason) = done.delivery {
                    self.abandoned_batches += 1;
                    self.stop(StopCause::Failed(Failure::Refused(Box::new(reason))), ctx);
                } else {
                    self.processed += done.processed;
                    self.rejected += done.rejected;
                    self.adapt_batch(&done);
                    if let Some(limit) = self.settings.max_rejects {
                        if self.rejected > limit {
                            self.stop(StopCause::Failed(Failure::TooManyRejects { limit }), ctx);
                        }
                    }
                }
            }
        }
        self.pump(ctx);
        self.check_drained(ctx);
    }

    /// The size of the next batch: the adaptive one, made smaller near the
    /// end of an input of known size, so the last batches spread over every
    /// worker instead of leaving one with a long tail while the others wait
    /// (what remains is estimated from the bytes per record so far).
    fn next_batch_size(&self) -> usize {
        let Some(total) = self.total else {
            return self.batch_size;
        };
        if self.settings.batch.is_some() || self.read == 0 || self.position == 0 {
            return self.batch_size;
        }
        let left =
            total.saturating_sub(self.position) as f64 * self.read as f64 / self.position as f64;
        let share = (left / (2 * self.settings.workers.max(1)) as f64).ceil() as usize;
        self.batch_size.min(share.max(MIN_TAIL_BATCH))
    }

    /// Adaptive batch size: about [`BATCH_WORK`] of step 1 per batch.
    fn adapt_batch(&mut self, done: &BatchDone) {
        if self.settings.batch.is_some() || done.records == 0 {
            return;
        }
        let sample = done.busy.as_nanos() as f64 / done.records as f64;
        let ns = match self.ns_per_record {
            None => sample,
            Some(avg) => 0.8 * avg + 0.2 * sample,
        };
        self.ns_per_record = Some(ns);
        let target = (BATCH_WORK.as_nanos() as f64 / ns.max(1.0)) as usize;
        self.batch_size = target.clamp(1, MAX_ADAPTIVE_BATCH);
    }

    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        // An interrupted run does not wait for a pull: the Source may be
        // blocked on an idle input, and what it reads now was never counted
        // as read, so leaving it unprocessed loses nothing.
        let interrupted = matches!(self.cause, Some(StopCause::Interrupted));
        if self.phase != Phase::Draining
            || (self.pulling && !interrupted)
            || !self.in_flight.is_empty()
            || self.checkpoint_pending
        {
            return;
        }
        if self.pulling {
            self.pull_abandoned = true;
        }
        // An interrupted run saves where it stopped, so `--resume` can go on.
        if !self.final_checkpoint_done {
            self.final_checkpoint_done = true;
            if interrupted && self.abandoned_batches == 0 {
                self.quiescing = Some(Instant::now());
                self.take_checkpoint(ctx);
                return;
            }
        }
        self.enter(Phase::Finishing);
        let cause = self.cause.clone().unwrap_or(StopCause::EndOfInput);
        let finish = Finish {
            partial: !cause.complete(),
            write: cause.outputs_writable() && self.abandoned_batches == 0,
        };
        self.integrator
            .send(finish)
            .timeout(self.settings.drain_timeout)
            .into_actor(self)
            .map(|reply, act, ctx| {
                match reply {
                    Ok(result) => act.finished = Some(result),
                    Err(e) => act.fail(Failure::Internal(format!(
                        "the integrator did not finish: {e}"
                    ))),
                }
                act.release(ctx);
            })
            .spawn(ctx);
    }

    /// Takes the periodic checkpoint once quiescent: nothing in flight and
    /// no pull outstanding.
    fn maybe_checkpoint(&mut self, ctx: &mut Context<Self>) {
        if self.phase == Phase::Running
            && self.quiescing.is_some()
            && !self.checkpoint_pending
            && !self.pulling
            && self.in_flight.is_empty()
        {
            self.take_checkpoint(ctx);
        }
    }

    fn take_checkpoint(&mut self, ctx: &mut Context<Self>) {
        if !self.checkpoint_supported {
            self.quiescing = None;
            self.check_drained(ctx);
            return;
        }
        self.checkpoint_pending = true;
        let request = TakeCheckpoint {
            read: self.read,
            batches: self.next_seq,
            fingerprint: self.checkpoints.fingerprint.clone(),
        };
        self.integrator
            .send(request)
            .timeout(self.settings.drain_timeout)
            .into_actor(self)
            .map(|reply, act, ctx| {
                act.checkpoint_pending = false;
                let began = act.quiescing.take().unwrap_or_else(Instant::now);
                act.last_checkpoint = Instant::now();
                match reply {
                    Ok(Ok(Some(bytes))) => {
                        let stats = &mut act.checkpoint_stats;
                        stats.count += 1;
                        stats.seconds += began.elapsed().as_secs_f64();
                        stats.bytes = bytes;
                        log::info!(
                            "checkpoint written after {} records ({bytes} bytes, {:.3}s)",
                            act.read,
                            began.elapsed().as_secs_f64()
                        );
                    }
                    Ok(Ok(None)) => {
                        log::info!(
                            "no checkpoint: the {} job keeps no resumable state in this run (a resumed run redoes it)",
                            act.job_name
                        );
                        act.checkpoint_supported = false;
                    }
                    Ok(Err(e)) => act.stop(
                        StopCause::Failed(Failure::Checkpoint(Box::new(e))),
                        ctx,
                    ),
                    Err(e) => act.stop(
                        StopCause::Failed(Failure::Lost(format!("checkpoint not answered: {e}"))),
                        ctx,
                    ),
                }
                act.pump(ctx);
                act.check_drained(ctx);
            })
            .spawn(ctx);
    }

    fn release(&mut self, ctx: &mut Context<Self>) {
        self.enter(Phase::Releasing);
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
            if act.phase == Phase::Releasing && !act.released() && after < TICK {
                let often = act.phase_entered.elapsed() < EXIT_LOOKS_OFTEN;
                act.look_for_exits(ctx, if often { after } else { after * 2 });
            }
        });
    }

    /// Stops the run if every released thread has exited.
    fn released(&mut self) -> bool {
        match self.alive.try_recv() {
            Err(TryRecvError::Disconnected) if self.source_exited() => {
                self.stopped();
                true
            }
            _ => false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // Tests make the Coordinator itself panic here (feature `failpoints`).
        fail::fail_point!("coordinator::tick");
        if self.handle.stop_requested() && self.phase == Phase::Running {
            self.stop(StopCause::Interrupted, ctx);
        }
        if let Some(every) = self.checkpoints.every {
            if self.phase == Phase::Running
                && self.checkpoint_supported
                && self.quiescing.is_none()
                && self.last_checkpoint.elapsed() >= every
            {
                log::debug!("quiescing for a checkpoint");
                self.quiescing = Some(Instant::now());
                self.maybe_checkpoint(ctx);
            }
        }
        let deadline = self.settings.drain_timeout;
        match self.phase {
            Phase::Running | Phase::Draining => self.watch_stall(),
            Phase::Releasing => {
                if !self.released() && self.phase_entered.elapsed() > deadline {
                    self.fail(Failure::Internal(format!(
                        "processor or source threads still running {}s after release: {}",
                        deadline.as_secs(),
                        self.activities()
                    )));
                    self.stopped();
                }
            }
            Phase::Finishing | Phase::Stopped => {}
        }
        if self.phase == Phase::Draining
            && !self.drain_timed_out
            && self.phase_entered.elapsed() > deadline
        {
            self.drain_timed_out = true;
            self.fail(Failure::Internal(format!(
                "drain timed out after {}s with {} batches in flight: {}",
                deadline.as_secs(),
                self.in_flight.len(),
                self.stall_report()
            )));
            self.abandoned_batches += self.in_flight.len() as u64;
            self.in_flight.clear();
            // Late answers are ignored: a pull's batch is never dispatched
            // and a checkpoint is no longer waited for.
            if self.pulling {
                self.pulling = false;
                self.pull_abandoned = true;
            }
            self.checkpoint_pending = false;
            self.final_checkpoint_done = true;
            self.check_drained(ctx);
        }
        self.handle.set_counts(
            self.read,
            self.processed + self.rejected,
            self.in_flight.len() as u64,
        );
        if self.last_progress.elapsed() >= self.settings.progress_every {
            self.last_progress = Instant::now();
            self.publish_progress();
        }
    }

    /// Whether the Source's thread is gone, or is blocked in a read we gave
    /// up waiting for (then it holds no record of ours: after a grace
    /// period it is left to the process exit, with a warning).
    fn source_exited(&mut self) -> bool {
        if let Err(TryRecvError::Disconnected) = self.source_alive.try_recv() {
            return true;
        }
        if self.pull_abandoned && self.phase_entered.elapsed() > SOURCE_GRACE {
            log::warn!("the source is still blocked reading its input; not waiting for it");
            self.pull_abandoned = false;
            return true;
        }
        false
    }

    fn publish_progress(&mut self) {
        let snapshot = Progress {
            phase: self.phase,
            read: self.read,
            done: self.processed + self.rejected,
            rejected: self.rejected,
            bytes: self.bytes,
            position: self.position,
            total: self.total,
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
            || self.last_completion.elapsed() < limit
            || self.last_stall_report.elapsed() < limit
        {
            return;
        }
        self.last_stall_report = Instant::now();
        log::warn!(
            "STALL: no batch completed for {:.0}s. {}",
            self.last_completion.elapsed().as_secs_f64(),
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
        format!(
            "phase {}; in flight: [{}]; integrator backlog: {} deliveries waiting, {} batches held for order; processors: {}",
            self.phase.name(),
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

    fn stopped(&mut self) {
        self.enter(Phase::Stopped);
        let report = self.report();
        let code = report.exit_code;
        *self.report_slot.lock().expect("report slot poisoned") = Some(report);
        self.stop_guard.armed = false;
        System::current().stop_with_code(code);
    }

    fn report(&mut self) -> RunReport {
        let cause = self.cause.clone().unwrap_or(StopCause::EndOfInput);
        let mut records = Records {
            read: self.read,
            ..Records::default()
        };
        let mut outputs_written = false;
        let mut result = serde_json::Value::Null;
        let failed_run;
        match self.finished.take() {
            Some(Ok(f)) => {
                records.integrated = f.integrated;
                records.rejected = f.rejected;
                outputs_written = !f.job.is_null();
                result = f.job;
                failed_run = self.abandoned_batches > 0;
                if f.integrated_out_of_order > 0 {
                    self.fail(Failure::Internal(format!(
                        "{} batches reached the integrator after a gap",
                        f.integrated_out_of_order
                    )));
                }
                // The processors' answers and the Integrator's counts are
                // independent tallies of the same records.
                if !failed_run && (f.integrated, f.rejected) != (self.processed, self.rejected) {
                    self.fail(Failure::Internal(format!(
                        "processors reported {} processed + {} rejected, integrator counted {} + {}",
                        self.processed, self.rejected, f.integrated, f.rejected
                    )));
                }
            }
            Some(Err(failure)) => {
                records.integrated = failure.integrated;
                records.rejected = failure.rejected;
                failed_run = true;
                // Reported already when a refused batch stopped the run;
                // its code still counts.
                let reason = failure.cause.to_string();
                let failed = Failure::Integrator(Box::new(failure.cause));
                if !self.errors.iter().any(|e| e.contains(&reason)) {
                    self.fail(failed);
                } else {
                    self.exit = self.exit.worst(failed.exit_code());
                }
            }
            None => {
                records.integrated = self.processed;
                records.rejected = self.rejected;
                failed_run = true;
            }
        }
        let accounted = records.integrated + records.rejected;
        records.abandoned = if failed_run {
            records.read.saturating_sub(accounted)
        } else {
            0
        };
        let conservation = accounted + records.abandoned == records.read;
        if !conservation {
            self.fail(Failure::DataLoss {
                read: records.read,
                integrated: records.integrated,
                rejected: records.rejected,
                abandoned: records.abandoned,
            });
        }
        let elapsed_s = self.observed.started.elapsed().as_secs_f64();
        RunReport {
            job: self.job_name.clone(),
            fingerprint: self.checkpoints.fingerprint.clone(),
            exit: self.exit.label(),
            exit_code: self.exit.code(),
            cause: cause.to_string(),
            errors: self.errors.clone(),
            partial: !cause.complete(),
            outputs_written,
            records,
            conservation,
            workers: self.settings.workers,
            window: self.settings.window,
            batch: self.batch_size,
            batch_adaptive: self.settings.batch.is_none(),
            elapsed_s,
            phases: self.phases.clone(),
            // Records read by this run (not before the checkpoint resumed).
            records_per_s: (self.read - self.checkpoint_stats.resumed_at) as f64
                / elapsed_s.max(1e-9),
            bytes: self.bytes,
            checkpoints: self.checkpoint_stats.clone(),
            peak_rss_bytes: None,
            peaks: Peaks {
                in_flight: self.observed.in_flight.peak(),
                integrator_mailbox: self.observed.integrator_mailbox.peak(),
                integrator_reorder: self.observed.integrator_reorder.peak(),
            },
            result,
        }
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
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        self.pump(ctx);
    }
}
