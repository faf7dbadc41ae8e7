//! The Integrator actor: the only owner of a run's result state (step 2).
//! Runs on an Arbiter of its own. Batches arrive in any order; it integrates
//! them in input order, holding early arrivals in a reorder buffer that the
//! Coordinator's window bounds. It writes `rejects.jsonl` as it goes (to a
//! temporary file) and commits every output only when told to finish: the
//! job's finish may commit the rejects in one set with its own outputs
//! ([`FinishContext::commit_set`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use actix::prelude::*;

use crate::batch::Location;
use crate::checkpoint::{Checkpoint, CHECKPOINT_FILE};
use crate::error::OutputError;
use crate::failure::{panic_message, Failure};
use crate::job::{FinishContext, Integrate, PendingRejects};
use crate::observe::Observed;
use crate::output::{AtomicFile, OutputDir};

/// The name of the rejects file in the output folder.
pub const REJECTS_FILE: &str = "rejects.jsonl";

/// A record that was not integrated, with where it came from and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RejectedRecord {
    /// Position in the input.
    pub index: u64,
    /// The input's display name.
    pub file: String,
    /// 1-based line (or record number for whole-file records).
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
}

impl RejectedRecord {
    pub(crate) fn new(index: u64, location: Location<'_>, reason: String) -> Self {
        RejectedRecord {
            index,
            file: location.origin.to_owned(),
            line: location.line,
            reason,
        }
    }
}

/// A processor hands the outputs and rejects of one batch to the Integrator.
/// The reply is `Ok` once the Integrator holds them, `Err` with its failure
/// when it has failed and refuses them.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Failure>")]
pub struct Deliver<O: Send + 'static> {
    /// The batch's sequence number.
    pub seq: u64,
    /// `(input index, output)` for each processed record, in input order.
    pub outputs: Vec<(u64, O)>,
    /// Rejected records, in input order.
    pub rejects: Vec<RejectedRecord>,
}

/// Tells the Integrator that no more batches will come: finalize and write
/// the outputs (unless `write` is false, after a failure).
#[derive(Debug, Message)]
#[rtype(result = "Result<Finished, IntegratorFailure>")]
pub struct Finish {
    /// The run did not read all of its input.
    pub partial: bool,
    /// Write the outputs (false when the run failed in a way that makes
    /// them untrustworthy: then only counts are reported).
    pub write: bool,
}

/// The Integrator's answer to [`Finish`].
#[derive(Debug)]
pub struct Finished {
    /// Records integrated.
    pub integrated: u64,
    /// Records rejected (and written to `rejects.jsonl`).
    pub rejected: u64,
    /// The job's part of the summary.
    pub job: serde_json::Value,
    /// Batches that arrived after a gap that never closed (always 0 unless
    /// a batch was lost; the conservation check then reports the loss).
    pub integrated_out_of_order: u64,
}

/// Why the Integrator failed, with counts up to the failure.
#[derive(Debug, Clone)]
pub struct IntegratorFailure {
    /// What went wrong: writing an output ([`Failure::Output`],
    /// [`Failure::Io`]), or an error or panic in step 2
    /// ([`Failure::Step2`]).
    pub cause: Failure,
    /// Records integrated before the failure.
    pub integrated: u64,
    /// Records rejected before the failure.
    pub rejected: u64,
}

struct Pending<O> {
    outputs: Vec<(u64, O)>,
    rejects: Vec<RejectedRecord>,
}

/// The Integrator actor, generic over the job's [`Integrate`] state.
pub struct Integrator<I: Integrate> {
    // Boxed so the actor is `Unpin` whatever the job's state is.
    state: Box<I>,
    output: OutputDir,
    rejects_file: Option<AtomicFile>,
    /// The rejects file's name ([`REJECTS_FILE`] unless the run chose one).
    rejects_name: &'static str,
    next_seq: u64,
    reorder: BTreeMap<u64, Pending<I::Output>>,
    integrated: u64,
    rejected: u64,
    failure: Option<IntegratorFailure>,
    observed: Arc<Observed>,
}

impl<I: Integrate> Integrator<I> {
    /// An Integrator over `state`; when resuming, `state` is already
    /// restored and `resume` carries the rest of the checkpoint.
    pub(crate) fn new(
        state: I,
        output: OutputDir,
        observed: Arc<Observed>,
        resume: Option<&Checkpoint>,
        rejects_name: &'static str,
    ) -> Result<Self, OutputError> {
        let mut integrator = Integrator {
            state: Box::new(state),
            output,
            rejects_file: None,
            rejects_name,
            next_seq: 0,
            reorder: BTreeMap::new(),
            integrated: 0,
            rejected: 0,
            failure: None,
            observed,
        };
        if let Some(c) = resume {
            integrator.next_seq = c.batches;
            integrator.integrated = c.integrated;
            integrator.rejected = c.rejected;
            if !c.rejects.is_empty() {
                let mut file = integrator.output.atomic(rejects_name)?;
                file.write_all(&c.rejects)
                    .map_err(|e| OutputError::new(file.target(), e))?;
                integrator.rejects_file = Some(file);
            }
        }
        Ok(integrator)
    }

    fn fail(&mut self, cause: Failure) {
        log::error!("integrator failed: {cause}");
        self.failure = Some(IntegratorFailure {
            cause,
            integrated: self.integrated,
            rejected: self.rejected,
        });
        self.reorder.clear();
        self.observed.integrator_reorder.set(0);
    }

    fn write_rejects(&mut self, rejects: &[RejectedRecord]) -> Result<(), OutputError> {
        if rejects.is_empty() {
            return Ok(());
        }
        if self.rejects_file.is_none() {
            self.rejects_file = Some(self.output.atomic(self.rejects_name)?);
        }
        let file = self.rejects_file.as_mut().expect("just created");
        for r in rejects {
            let mut line = serde_json::to_vec(r).expect("a reject serializes");
            line.push(b'\n');
            file.write_all(&line)
                .map_err(|e| OutputError::new(file.target(), e))?;
        }
        Ok(())
    }

    /// Integrates one batch; on failure records it and returns false.
    fn integrate(&mut self, pending: Pending<I::Output>) -> bool {
        if let Err(e) = self.write_rejects(&pending.rejects) {
            self.fail(e.into());
            return false;
        }
        self.rejected += pending.rejects.len() as u64;
        let state = &mut self.state;
        let mut integrated = 0u64;
        let result = catch_unwind(AssertUnwindSafe(|| {
            for (index, output) in pending.outputs {
                fail::fail_point!("integrator::integrate", |arg| Err(format!(
                    "injected error at record {index}: {}",
                    arg.unwrap_or_default()
                )));
                state
                    .integrate(index, output)
                    .map_err(|e| format!("record {index}: {e}"))?;
                integrated += 1;
            }
            Ok(())
        }));
        self.integrated += integrated;
        let reason = match result {
            Ok(Ok(())) => return true,
            Ok(Err(reason)) => reason,
            Err(panic) => format!("panic in step 2: {}", panic_message(&*panic)),
        };
        self.fail(Failure::Step2(reason));
        false
    }

    fn integrate_ready(&mut self) {
        while let Some(pending) = self.reorder.remove(&self.next_seq) {
            self.next_seq += 1;
            if !self.integrate(pending) {
                return;
            }
        }
        self.observed
            .integrator_reorder
            .set(self.reorder.len() as u64);
    }
}

impl<I: Integrate> Actor for Integrator<I> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Processors block for our answer, so at most N deliveries wait here.
        // The capacity only matters for `try_send`, which nobody uses, but a
        // full mailbox delays a `send` until it is polled: keep it out of
        // reach. (`usize::MAX` overflows inside actix.)
        ctx.set_mailbox_capacity(1 << 16);
    }
}

impl<I: Integrate> Handler<Deliver<I::Output>> for Integrator<I> {
    type Result = Result<(), Failure>;

    fn handle(&mut self, msg: Deliver<I::Output>, ctx: &mut Context<Self>) -> Self::Result {
        self.observed.integrator_mailbox.dec();
        // First what an earlier acceptance left to integrate (if its
        // notification has not run yet): at most one accepted batch is ever
        // waiting, so the window bounds the reorder buffer.
        if self.failure.is_none() {
            self.integrate_ready();
        }
        if let Some(f) = &self.failure {
            return Err(f.cause.clone());
        }
        let next = msg.seq == self.next_seq;
        self.reorder.insert(
            msg.seq,
            Pending {
                outputs: msg.outputs,
                rejects: msg.rejects,
            },
        );
        self.observed
            .integrator_reorder
            .set(self.reorder.len() as u64);
        // Accepted once we hold it. Integration runs right after this reply
        // (a notification, handled before the next message), so the
        // processor starts its next batch while step 2 runs on this one. A
        // failure while integrating refuses the next delivery and is
        // reported with exact counts at Finish.
        if next {
            ctx.notify(IntegrateHeld);
        }
        Ok(())
    }
}

/// Integrates the held batches that are next in input order (sent by the
/// Integrator to itself after accepting a delivery).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct IntegrateHeld;

impl<I: Integrate> Handler<IntegrateHeld> for Integrator<I> {
    type Result = ();

    fn handle(&mut self, _: IntegrateHeld, _: &mut Context<Self>) {
        if self.failure.is_none() {
            self.integrate_ready();
        }
    }
}

impl<I: Integrate> Handler<Finish> for Integrator<I> {
    type Result = Result<Finished, IntegratorFailure>;

    fn handle(&mut self, msg: Finish, _: &mut Context<Self>) -> Self::Result {
        let out_of_order = self.integrate_left_behind();
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let job = if msg.write {
            self.finish_job(msg.partial)?
        } else {
            serde_json::Value::Null
        };
        Ok(Finished {
            integrated: self.integrated,
            rejected: self.rejected,
            job,
            integrated_out_of_order: out_of_order,
        })
    }
}

impl<I: Integrate> Integrator<I> {
    /// Integrates whatever is held in order first (a notification may
    /// still be pending), then what is left behind a gap: a batch was
    /// lost. Those are integrated anyway so the counts are exact; the
    /// conservation check reports the loss. How many were behind a gap.
    fn integrate_left_behind(&mut self) -> u64 {
        if self.failure.is_none() {
            self.integrate_ready();
        }
        let mut out_of_order = 0;
        while self.failure.is_none() {
            let Some((seq, pending)) = self.reorder.pop_first() else {
                break;
            };
            log::error!(
                "batch {} never arrived; integrating batch {seq} after the gap",
                self.next_seq
            );
            self.next_seq = seq + 1;
            out_of_order += 1;
            self.integrate(pending);
        }
        out_of_order
    }

    /// Has the job write its outputs (`Integrate::finish`, under
    /// `catch_unwind`) and commits the rejects; then, for a complete run,
    /// removes the checkpoint. The job's summary.
    fn finish_job(&mut self, partial: bool) -> Result<serde_json::Value, IntegratorFailure> {
        // The rejects go to the job uncommitted, to commit with its outputs
        // (no file: remove one an earlier run may have left); what it
        // leaves is committed after it.
        let rejects = PendingRejects::new(self.rejects_file.take(), self.rejects_name);
        let ctx = FinishContext::new(
            &self.output,
            partial,
            self.integrated,
            self.rejected,
            rejects,
        )
        .with_heartbeat(self.observed.finish.clone());
        let state = &mut self.state;
        let finished = catch_unwind(AssertUnwindSafe(|| {
            state
                .finish(&ctx)
                .and_then(|job| Ok(ctx.commit_rejects().map(|()| job)?))
        }));
        let failure = match finished {
            Ok(Ok(job)) => {
                // A complete run leaves nothing to resume. Removed only once
                // the outputs that replace it are written, so a crash at any
                // moment leaves one or the other.
                if partial {
                    return Ok(job);
                }
                match self.output.remove_stale(CHECKPOINT_FILE) {
                    Ok(()) => return Ok(job),
                    Err(e) => e.into(),
                }
            }
            Ok(Err(e)) => {
                // Finishing mostly writes files: an error here is an output
                // error unless the job says otherwise in its message.
                let io = e.downcast_ref::<OutputError>().is_some()
                    || e.downcast_ref::<std::io::Error>().is_some();
                let message = format!("finishing the job: {e}");
                if io {
                    Failure::Io(message)
                } else {
                    Failure::Step2(message)
                }
            }
            Err(panic) => Failure::Step2(format!(
                "panic while finishing the job: {}",
                panic_message(&*panic)
            )),
        };
        self.fail(failure);
        Err(self.failure.clone().expect("just failed"))
    }
}

/// Asks the Integrator, at a quiescent moment (nothing in flight, every
/// batch before `batches` integrated), to write a checkpoint. The reply is
/// the checkpoint's size, `None` when the job does not support checkpoints.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<u64>, Failure>")]
pub struct TakeCheckpoint {
    /// Records read so far.
    pub read: u64,
    /// Batches numbered so far.
    pub batches: u64,
    /// The run's fingerprint.
    pub fingerprint: String,
}

impl<I: Integrate> Handler<TakeCheckpoint> for Integrator<I> {
    type Result = Result<Option<u64>, Failure>;

    fn handle(&mut self, msg: TakeCheckpoint, _: &mut Context<Self>) -> Self::Result {
        if self.failure.is_none() {
            self.integrate_ready();
        }
        if let Some(f) = &self.failure {
            return Err(f.cause.clone());
        }
        if self.next_seq != msg.batches || !self.reorder.is_empty() {
            return Err(Failure::Internal(format!(
                "checkpoint requested while not quiescent: integrated up to batch {}, {} held, coordinator numbered {}",
                self.next_seq,
                self.reorder.len(),
                msg.batches
            )));
        }
        let state = &self.state;
        let job = match catch_unwind(AssertUnwindSafe(|| state.save())) {
            Ok(None) => return Ok(None),
            Ok(Some(Ok(bytes))) => bytes,
            Ok(Some(Err(e))) => return Err(Failure::Step2(format!("saving the job's state: {e}"))),
            Err(panic) => {
                return Err(Failure::Step2(format!(
                    "panic while saving the job's state: {}",
                    panic_message(&*panic)
                )))
            }
        };
        let rejects = match &mut self.rejects_file {
            Some(file) => file.written().map_err(|e| {
                Failure::Io(format!("reading back {}: {e}", file.target().display()))
            })?,
            None => Vec::new(),
        };
        let checkpoint = Checkpoint {
            fingerprint: msg.fingerprint,
            read: msg.read,
            batches: msg.batches,
            integrated: self.integrated,
            rejected: self.rejected,
            rejects,
            job,
        };
        let bytes = checkpoint
            .encode()
            .map_err(|e| Failure::Internal(e.to_string()))?;
        self.output.write_all(CHECKPOINT_FILE, &bytes)?;
        Ok(Some(bytes.len() as u64))
    }
}
