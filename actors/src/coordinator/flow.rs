//! Running: pulling batches from the Source while the window is open,
//! dispatching them to the pool, accounting for each answer, and sizing
//! batches.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::batch::Batch;
use crate::error::InputError;
use crate::failure::Failure;
use crate::job::Job;
use crate::processor::{BatchDone, ProcessBatch};
use crate::protocol::{Phase, StopCause};
use crate::source::{Pull, Pulled, RecordSource};

use super::state::{Counters, Pulling, State};
use super::Coordinator;

/// Adaptive batches aim at this much step-1 work each: long enough that a
/// scheduling delay of the Integrator (a few ms when threads outnumber
/// cores) does not empty the window, and that the hand-offs between
/// threads each batch costs stay small next to its work, short enough to
/// stop promptly. 8 ms ran dedup at 200k documents 4.5% faster than 4 ms
/// (median of 10 paired runs); 16 ms was no faster and held more memory.
const BATCH_WORK: Duration = Duration::from_millis(8);
const MAX_ADAPTIVE_BATCH: usize = 1 << 16;
/// The smallest batch [`BatchSizing::next`] shrinks to near the end of the
/// input.
const MIN_TAIL_BATCH: usize = 16;

/// A batch dispatched and not yet answered.
pub(super) struct InFlight {
    pub dispatched: Instant,
    pub records: u64,
}

/// The batch size: fixed by the settings, or adapted to the work.
pub(super) struct BatchSizing {
    /// The size chosen (the last one, when adaptive).
    pub size: usize,
    /// Set by [`crate::Settings::batch`]: never adapted.
    pub fixed: bool,
    ns_per_record: Option<f64>,
}

impl BatchSizing {
    pub(super) fn new(fixed: Option<usize>) -> Self {
        BatchSizing {
            size: fixed.unwrap_or(16).max(1),
            fixed: fixed.is_some(),
            ns_per_record: None,
        }
    }

    /// The size of the next batch: the adaptive one, made smaller near the
    /// end of an input of known size, so the last batches spread over every
    /// worker instead of leaving one with a long tail while the others wait
    /// (what remains is estimated from the bytes per record so far).
    pub(super) fn next(&self, counts: &Counters, workers: usize) -> usize {
        let Some(total) = counts.total else {
            return self.size;
        };
        if self.fixed || counts.read == 0 || counts.position == 0 {
            return self.size;
        }
        let left = total.saturating_sub(counts.position) as f64 * counts.read as f64
            / counts.position as f64;
        let share = (left / (2 * workers.max(1)) as f64).ceil() as usize;
        self.size.min(share.max(MIN_TAIL_BATCH))
    }

    /// Adaptive batch size: about [`BATCH_WORK`] of step 1 per batch.
    pub(super) fn adapt(&mut self, done: &BatchDone) {
        if self.fixed || done.records == 0 {
            return;
        }
        let sample = done.busy.as_nanos() as f64 / done.records as f64;
        let ns = match self.ns_per_record {
            None => sample,
            Some(avg) => 0.8 * avg + 0.2 * sample,
        };
        self.ns_per_record = Some(ns);
        let target = (BATCH_WORK.as_nanos() as f64 / ns.max(1.0)) as usize;
        self.size = target.clamp(1, MAX_ADAPTIVE_BATCH);
    }
}

impl<J: Job, S: RecordSource> Coordinator<J, S> {
    /// The window bounds the span of batches from the oldest unanswered one
    /// to the next to dispatch, not just the number in flight: answered
    /// batches after an unanswered one wait in the Integrator's reorder
    /// buffer, and they must be bounded too.
    pub(super) fn window_open(&self) -> bool {
        let oldest = self
            .in_flight
            .first_key_value()
            .map_or(self.next_seq, |(&seq, _)| seq);
        self.next_seq - oldest < self.settings.window as u64
    }

    /// Pulls the next batch if Running, no pull is outstanding and the
    /// window is open; otherwise sees whether a checkpoint can be taken.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.state.phase() == Phase::Running && self.handle.stop_requested() {
            self.stop(self.handle.stop_cause(), ctx);
        }
        if !matches!(self.state, State::Running)
            || self.pulling != Pulling::Idle
            || !self.window_open()
        {
            self.maybe_checkpoint(ctx);
            return;
        }
        let Some(source) = &self.source else { return };
        self.pulling = Pulling::Outstanding;
        let mut max_records = self.sizing.next(&self.counts, self.settings.workers);
        if let Some(limit) = self.settings.max_records {
            // No batch crosses the limit; at the limit, one record more
            // tells whether the input holds more.
            let left = limit.saturating_sub(self.counts.read).max(1);
            max_records = max_records.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let pull = Pull {
            max_records,
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
        reply: Result<Result<Pulled, InputError>, MailboxError>,
        ctx: &mut Context<Self>,
    ) {
        if self.pulling == Pulling::Abandoned {
            if let Ok(Ok(Pulled { batch: Some(b), .. })) = &reply {
                log::info!(
                    "{} records read after the stop were not processed; a resumed run reads them again",
                    b.len()
                );
            }
            return;
        }
        self.pulling = Pulling::Idle;
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
                self.counts.position = position;
                self.stop(StopCause::EndOfInput, ctx);
            }
            Ok(Ok(Pulled {
                batch: Some(batch),
                position,
            })) => {
                self.counts.position = position;
                self.counts.read += batch.len() as u64;
                self.counts.bytes += batch.data_bytes() as u64;
                if self.past_record_limit(&batch, ctx) {
                    return;
                }
                // A batch that was pulled is dispatched even after a stop
                // request: its records are read and must be accounted for.
                self.dispatch(batch, ctx);
                self.pump(ctx);
                self.check_drained(ctx);
            }
        }
    }

    /// A batch whose records pass `Settings::max_records` is not
    /// dispatched: no record past the limit reaches step 1 or 2 (whose
    /// tables could not number it). Its records are counted abandoned
    /// and the run stops, failed, without outputs.
    fn past_record_limit(&mut self, batch: &Batch, ctx: &mut Context<Self>) -> bool {
        let Some(limit) = self.settings.max_records else {
            return false;
        };
        if self.counts.read <= limit {
            return false;
        }
        log::error!(
            "record {} is past the {limit} records this run can number: {} records read are not processed",
            limit + 1,
            batch.len()
        );
        self.counts.abandoned_batches += 1;
        self.stop(StopCause::Failed(Failure::TooManyRecords { limit }), ctx);
        true
    }

    fn dispatch(&mut self, batch: Batch, ctx: &mut Context<Self>) {
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
        self.watch.last_completion = Instant::now();
        match reply {
            Err(e) => {
                self.counts.abandoned_batches += 1;
                let lost = format!(
                    "batch {seq} ({} records) lost: processor pool unreachable: {e}",
                    flight.records
                );
                self.stop(StopCause::Failed(Failure::Lost(lost)), ctx);
            }
            Ok(BatchDone {
                delivery: Err(refused),
                ..
            }) => {
                self.counts.abandoned_batches += 1;
                let refused = Failure::Refused(Box::new(refused));
                self.stop(StopCause::Failed(refused), ctx);
            }
            Ok(done) => {
                self.counts.processed += done.processed;
                self.counts.rejected += done.rejected;
                self.sizing.adapt(&done);
                if let Some(limit) = self.settings.max_rejects {
                    if self.counts.rejected > limit {
                        let too_many = Failure::TooManyRejects { limit };
                        self.stop(StopCause::Failed(too_many), ctx);
                    }
                }
            }
        }
        self.pump(ctx);
        self.check_drained(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(records: u64, busy: Duration) -> BatchDone {
        BatchDone {
            seq: 0,
            records,
            processed: records,
            rejected: 0,
            busy,
            delivery: Ok(()),
        }
    }

    #[test]
    fn an_adaptive_batch_aims_at_eight_milliseconds_of_step_1() {
        let mut sizing = BatchSizing::new(None);
        // 1000 records in 1 ms: 1 us each, so 8 ms is 8000 records.
        sizing.adapt(&done(1000, Duration::from_millis(1)));
        assert_eq!(sizing.size, 8000);
        // Slower records shrink it, smoothed rather than at once.
        sizing.adapt(&done(1000, Duration::from_millis(10)));
        assert!(sizing.size < 8000 && sizing.size > 800, "{}", sizing.size);
    }

    #[test]
    fn a_fixed_batch_size_never_adapts_or_shrinks() {
        let mut sizing = BatchSizing::new(Some(100));
        sizing.adapt(&done(1000, Duration::from_millis(1)));
        let counts = Counters {
            read: 1000,
            position: 999,
            total: Some(1000),
            ..Counters::default()
        };
        assert_eq!(sizing.next(&counts, 4), 100);
    }

    #[test]
    fn batches_shrink_near_the_end_of_an_input_of_known_size() {
        let mut sizing = BatchSizing::new(None);
        sizing.size = 10_000;
        let mut counts = Counters {
            read: 100_000,
            position: 100_000,
            total: Some(10_000_000),
            ..Counters::default()
        };
        assert_eq!(sizing.next(&counts, 4), 10_000, "far from the end");
        // 1000 records left over 4 workers: shares of 1000 / 8 = 125.
        counts.position = 9_999_000;
        counts.read = 9_999_000;
        assert_eq!(sizing.next(&counts, 4), 125);
        // Never below the tail minimum.
        counts.position = 9_999_990;
        assert_eq!(sizing.next(&counts, 4), MIN_TAIL_BATCH);
    }
}
