//! The Processor actor: one of N sync actors on a `SyncArbiter` (the pool).
//! Runs step 1 on every record of a batch, delivers the outputs to the
//! Integrator, waits for its acceptance and only then answers the
//! Coordinator, so an answered batch is a batch the Integrator holds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::batch::Batch;
use crate::failure::{panic_message, Failure};
use crate::integrator::{Deliver, Integrator, RejectedRecord};
use crate::job::{Job, RecordError};
use crate::observe::Observed;

/// Asks a processor to run step 1 on a batch.
#[derive(Debug, Message)]
#[rtype(result = "BatchDone")]
pub struct ProcessBatch(pub Batch);

/// A processor's answer: what happened to every record of the batch.
#[derive(Debug)]
pub struct BatchDone {
    /// The batch's sequence number.
    pub seq: u64,
    /// Records in the batch.
    pub records: u64,
    /// Records whose output the Integrator accepted.
    pub processed: u64,
    /// Records rejected (reader rejects, parse errors, step-1 errors and
    /// panics), accepted by the Integrator for `rejects.jsonl`.
    pub rejected: u64,
    /// Time spent in step 1 (excluding delivery), for batch sizing.
    pub busy: Duration,
    /// `Err` when the Integrator did not accept the batch (why it refused,
    /// or why it could not be reached): its records are abandoned and the
    /// run must stop.
    pub delivery: Result<(), Failure>,
}

/// The Processor actor, generic over the job.
pub struct Processor<J: Job> {
    job: Arc<J>,
    integrator: Addr<Integrator<<J as Job>::Integrator>>,
    observed: Arc<Observed>,
    slot: usize,
}

impl<J: Job> Processor<J> {
    /// Starts `workers` processor threads. Every thread holds a clone of
    /// `alive` until it exits; that is how the Coordinator knows they have.
    pub(crate) fn start_pool(
        workers: usize,
        job: Arc<J>,
        integrator: Addr<Integrator<J::Integrator>>,
        observed: Arc<Observed>,
        alive: mpsc::Sender<()>,
    ) -> Addr<Self> {
        let next_slot = AtomicUsize::new(0);
        let names = AtomicUsize::new(0);
        SyncArbiter::start_with_thread_builder(
            workers,
            move || {
                let n = names.fetch_add(1, Ordering::Relaxed);
                std::thread::Builder::new().name(format!("drainpipe-processor-{n}"))
            },
            move || {
                // Held by the factory, which every pool thread keeps until it
                // exits: the sender disconnects only when all of them have.
                let _ = &alive;
                Processor {
                    job: Arc::clone(&job),
                    integrator: integrator.clone(),
                    observed: Arc::clone(&observed),
                    slot: next_slot.fetch_add(1, Ordering::Relaxed) % workers,
                }
            },
        )
    }
}

impl<J: Job> Actor for Processor<J> {
    type Context = SyncContext<Self>;
}

/// Step 1 of one record: parse, then process.
fn step1<J: Job>(job: &J, raw: &crate::batch::RawRecord<'_>) -> Result<J::Output, RecordError> {
    fail::fail_point!("processor::record", |arg| Err(arg
        .unwrap_or_else(|| "injected error".into())
        .into()));
    let parsed = job.parse(raw)?;
    job.process(parsed)
}

/// Step 1 on every record of `batch`: the outputs and the rejects, each in
/// input order. A record's error or panic rejects that record only.
/// `at_record` hears each record's index before its step 1 (the stall
/// report's "working on record n"). The local pool and the remote workers
/// (`crate::remote`) both run batches through this function.
pub(crate) fn step1_batch<J: Job>(
    job: &J,
    batch: &Batch,
    mut at_record: impl FnMut(u64),
) -> Step1Outcome<J::Output> {
    let mut outputs = Vec::with_capacity(batch.len());
    let mut rejects = Vec::new();
    for record in batch.records() {
        match record {
            Err(r) => rejects.push(RejectedRecord::new(r.index, r.location, r.reason.into())),
            Ok(raw) => {
                at_record(raw.index);
                match catch_unwind(AssertUnwindSafe(|| step1(job, &raw))) {
                    Ok(Ok(output)) => outputs.push((raw.index, output)),
                    Ok(Err(e)) => {
                        rejects.push(RejectedRecord::new(raw.index, raw.location, e.to_string()))
                    }
                    Err(panic) => rejects.push(RejectedRecord::new(
                        raw.index,
                        raw.location,
                        format!("panic in step 1: {}", panic_message(&*panic)),
                    )),
                }
            }
        }
    }
    (outputs, rejects)
}

/// What step 1 made of a batch: `(input index, output)` for each record
/// processed, and the records rejected.
pub(crate) type Step1Outcome<O> = (Vec<(u64, O)>, Vec<RejectedRecord>);

impl<J: Job> Handler<ProcessBatch> for Processor<J> {
    type Result = MessageResult<ProcessBatch>;

    fn handle(
        &mut self,
        ProcessBatch(batch): ProcessBatch,
        _: &mut SyncContext<Self>,
    ) -> Self::Result {
        let started = Instant::now();
        let status = &self.observed.processors[self.slot];
        status.start_batch(batch.seq(), self.observed.now_ms());
        let (outputs, rejects) = step1_batch(&*self.job, &batch, |index| status.at_record(index));
        let busy = started.elapsed();
        let (processed, rejected) = (outputs.len() as u64, rejects.len() as u64);
        status.delivering(self.observed.now_ms());
        self.observed.integrator_mailbox.inc();
        // Blocking here is the backpressure: each processor has at most one
        // delivery outstanding. The Integrator never sends to a processor, so
        // no cycle of blocking sends exists.
        let reply = futures::executor::block_on(self.integrator.send(Deliver {
            seq: batch.seq(),
            outputs,
            rejects,
        }));
        let delivery = match reply {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(refused),
            Err(e) => {
                // The Integrator never handled the message, so the mailbox
                // gauge was not decremented by it.
                self.observed.integrator_mailbox.dec();
                Err(Failure::Internal(format!("integrator unreachable: {e}")))
            }
        };
        status.idle();
        MessageResult(BatchDone {
            seq: batch.seq(),
            records: batch.len() as u64,
            processed,
            rejected,
            busy,
            delivery,
        })
    }
}
