//! A job's step 1 behind an object, so one worker process takes batches of
//! any job it knows, of any run: the batch names its job and carries the
//! job's parameters; the worker's [`Registry`] builds the job from them.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use crate::batch::Batch;
use crate::job::{FinishContext, Integrate, RecordError};
use crate::processor::step1_batch;

use super::wire::{pack, Answer};
use super::RemoteJob;

/// Step 1 of one job, as a worker runs it; any [`RemoteJob`] is one.
pub trait Step: Send + Sync {
    /// Runs step 1 on `batch` (part `part`, delivered `delivered` times),
    /// whose records' context is `context` ([`RemoteJob::context`]), and
    /// packs the answer for the pool.
    #[doc(hidden)]
    fn answer(
        &self,
        batch: &Batch,
        context: &[u8],
        part: u32,
        delivered: u64,
    ) -> Result<Vec<u8>, String>;
}

impl<J: RemoteJob> Step for J {
    fn answer(
        &self,
        batch: &Batch,
        context: &[u8],
        part: u32,
        delivered: u64,
    ) -> Result<Vec<u8>, String> {
        let started = Instant::now();
        let first = batch.first_index;
        let records = first..first + batch.len() as u64;
        let (outputs, rejects) = match self.with_context(records, context)? {
            Some(job) => step1_batch(&job, batch, |_| {}),
            None => step1_batch(self, batch, |_| {}),
        };
        pack(&Answer {
            seq: batch.seq(),
            part,
            delivered,
            busy_ns: started.elapsed().as_nanos() as u64,
            outputs,
            rejects,
        })
        .map_err(|e| e.to_string())
    }
}

/// Builds a job from its parameters ([`RemoteJob::params`]); an error says
/// why the parameters are unusable.
pub type StepFactory = Box<dyn Fn(&[u8]) -> Result<Arc<dyn Step>, String> + Send + Sync>;

/// The jobs a worker can run, by name.
#[derive(Default)]
pub struct Registry {
    factories: HashMap<String, StepFactory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    /// A registry that knows no job.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers job `name` ([`crate::Job::name`]), built from its
    /// parameters by `make`.
    pub fn add<J: RemoteJob>(
        &mut self,
        name: &str,
        make: impl Fn(&[u8]) -> Result<J, String> + Send + Sync + 'static,
    ) -> &mut Self {
        let factory: StepFactory =
            Box::new(move |params| make(params).map(|job| Arc::new(job) as Arc<dyn Step>));
        self.factories.insert(name.to_owned(), factory);
        self
    }

    /// The job `name` with `params`; `Err` says why there is none.
    pub(crate) fn build(&self, name: &str, params: &[u8]) -> Result<Arc<dyn Step>, String> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| format!("this worker does not know the job {name:?}"))?;
        factory(params)
    }
}

/// The step 2 of a job that only runs step 1, on a worker host: a job
/// built there from a batch's parameters and context, whose outputs go
/// back to the run's own Integrator. Integrating into it is an error, so
/// a job wired to it by mistake fails its run instead of dropping outputs.
pub struct StepOnly<O>(PhantomData<fn() -> O>);

impl<O> Default for StepOnly<O> {
    fn default() -> Self {
        StepOnly(PhantomData)
    }
}

impl<O> std::fmt::Debug for StepOnly<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepOnly")
    }
}

impl<O: Send + 'static> Integrate for StepOnly<O> {
    type Output = O;

    fn integrate(&mut self, index: u64, _: O) -> Result<(), RecordError> {
        Err(format!("record {index}: this job runs step 1 only (on a worker host)").into())
    }

    fn finish(&mut self, _: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        Err("this job runs step 1 only (on a worker host)".into())
    }
}
