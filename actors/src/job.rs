//! The job traits: what a user implements to run their own work on the
//! pipeline. A job is three things: how a record is parsed, step 1 (runs in
//! parallel on the processors) and step 2 (runs in one place, the
//! Integrator). Nothing here knows about any particular job.

use std::cell::RefCell;
use std::path::PathBuf;

use crate::batch::RawRecord;
use crate::error::OutputError;
use crate::observe::Heartbeat;
use crate::output::{AtomicFile, OutputDir};

/// Why one record could not be parsed or processed. Any error converts into
/// it with `?`, and so does a `String` or `&str`.
pub type RecordError = Box<dyn std::error::Error + Send + Sync>;

/// Steps 0 and 1 of a job: parsing and the per-record work. One value is
/// shared by every processor thread, hence `Send + Sync`; it must not hold
/// mutable state (use the [`Integrate`] side for that).
pub trait Job: Send + Sync + 'static {
    /// A parsed record; may borrow from the raw record's bytes.
    type Parsed<'a>;
    /// What step 1 produces for one record and sends to the Integrator.
    type Output: Send + 'static;
    /// Step 2: the state that integrates every output.
    type Integrator: Integrate<Output = Self::Output>;

    /// The job's name, as used on the command line and in the summary.
    fn name(&self) -> &str;

    /// Parses one record. An error rejects the record with its location.
    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<Self::Parsed<'a>, RecordError>;

    /// Step 1 for one parsed record. An error, or a panic, rejects the record
    /// with its reason; the processor thread survives either way.
    fn process(&self, record: Self::Parsed<'_>) -> Result<Self::Output, RecordError>;

    /// A fresh Integrator state for a run.
    fn integrator(&self) -> Self::Integrator;
}

/// Step 2 of a job: the only mutable result state of a run. It lives in the
/// Integrator actor on its own thread and sees every output exactly once, in
/// input order (the Integrator reorders batches), so results never depend on
/// the number of workers, the window or the batch size.
pub trait Integrate: Send + 'static {
    /// What step 1 produces for one record.
    type Output: Send + 'static;

    /// Integrates the output of the record at `index` (its position in the
    /// input). An error here is fatal to the run: the result state can no
    /// longer be trusted.
    fn integrate(&mut self, index: u64, output: Self::Output) -> Result<(), RecordError>;

    /// Writes the job's outputs into the output folder (atomically, through
    /// [`OutputDir`]) and returns the job's part of `summary.json`. Called
    /// once, after every dispatched batch has been integrated.
    ///
    /// The run waits for it at most `Settings::drain_timeout` without
    /// progress: a finish that takes long (a merge of spilled state, an
    /// output of many gigabytes) calls [`FinishContext::progress`] as it
    /// moves on, and is then never cut while it does; one that never
    /// calls it must end within the timeout.
    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError>;

    /// The state as bytes for a checkpoint (use [`crate::codec::encode`] or
    /// any stable encoding). `None`, the default, means the job does not
    /// support checkpoints: its runs take none, so there is nothing for a
    /// later run to resume from (a multi-pass job may still keep its own
    /// results between passes, as `dedup` does).
    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        None
    }

    /// Restores the state saved by [`Integrate::save`].
    fn restore(&mut self, _state: &[u8]) -> Result<(), RecordError> {
        Err("this job does not support checkpoints".into())
    }
}

/// What [`Integrate::finish`] knows about the run it ends, and the run's
/// rejected records, written but not yet committed: the job commits them in
/// one set with its outputs ([`FinishContext::commit_set`]), or first
/// ([`FinishContext::commit_rejects`]); whatever the job leaves, the
/// Integrator commits after `finish` returns. And where the finish reports
/// its progress ([`FinishContext::progress`]), which is what the run's
/// deadline for it measures.
#[derive(Debug)]
pub struct FinishContext<'a> {
    /// Where the outputs go.
    pub output: &'a OutputDir,
    /// True when the run was interrupted: the outputs cover only part of the
    /// input and say so.
    pub partial: bool,
    /// Records integrated.
    pub integrated: u64,
    /// Records rejected.
    pub rejected: u64,
    rejects: RefCell<Option<PendingRejects>>,
    heartbeat: Heartbeat,
}

/// A run's rejects file, written, not committed: the file, or, when the
/// run rejected nothing, the name of an earlier run's file to remove.
#[derive(Debug)]
pub struct PendingRejects {
    file: Option<AtomicFile>,
    name: &'static str,
}

impl PendingRejects {
    /// The rejects `file` (`None`: none) to commit as `name`.
    pub fn new(file: Option<AtomicFile>, name: &'static str) -> Self {
        PendingRejects { file, name }
    }
}

/// An earlier run's summary, which no longer describes the folder once a
/// set of outputs is committed; the run writes its own after the set.
const SUMMARY_FILE: &str = "summary.json";

impl<'a> FinishContext<'a> {
    /// The context of a run into `output` that rejected `rejected` records,
    /// written to `rejects` and not yet committed.
    pub fn new(
        output: &'a OutputDir,
        partial: bool,
        integrated: u64,
        rejected: u64,
        rejects: PendingRejects,
    ) -> Self {
        FinishContext {
            output,
            partial,
            integrated,
            rejected,
            rejects: RefCell::new(Some(rejects)),
            heartbeat: Heartbeat::default(),
        }
    }

    /// The context with its progress reported to `heartbeat` (the one the
    /// Coordinator watches; without it, progress goes nowhere: a finish
    /// called outside a pipeline).
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Says the finish moved on: the run's deadline for the finish
    /// (`Settings::drain_timeout`) counts from the last call, so a long
    /// finish that calls this at least once a timeout is never cut. Cheap
    /// (one atomic add), but call it per piece of work, not per item.
    pub fn progress(&self) {
        self.heartbeat.beat();
    }

    /// Where [`FinishContext::progress`] goes, for threads of the finish
    /// and code that does not hold the context: clone it and
    /// [`Heartbeat::beat`].
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.heartbeat
    }

    /// Commits `files` as one set with the run's rejects (or the removal
    /// of an earlier run's rejects file, when this run has none) and the
    /// removal of an earlier run's `summary.json` and of the files named in
    /// `others` (another job's outputs) ([`OutputDir::commit_set`]).
    /// Returns the final paths of `files`.
    pub fn commit_set(
        &self,
        mut files: Vec<AtomicFile>,
        others: &[&str],
    ) -> Result<Vec<PathBuf>, OutputError> {
        let n = files.len();
        let mut stale = vec![SUMMARY_FILE];
        stale.extend_from_slice(others);
        match self.rejects.borrow_mut().take() {
            Some(PendingRejects {
                file: Some(file), ..
            }) => files.push(file),
            Some(PendingRejects { file: None, name }) => stale.push(name),
            None => {}
        }
        let mut paths = self.output.commit_set(files, &[], &stale)?;
        paths.truncate(n);
        Ok(paths)
    }

    /// Commits the run's rejects now, alone (for a job whose later files
    /// depend on them being in place, such as the result of a pass that a
    /// resumed run loads). Does nothing once they are committed.
    pub fn commit_rejects(&self) -> Result<(), OutputError> {
        match self.rejects.borrow_mut().take() {
            Some(PendingRejects {
                file: Some(file), ..
            }) => file.commit().map(|_| ()),
            Some(PendingRejects { file: None, name }) => self.output.remove_stale(name),
            None => Ok(()),
        }
    }
}
