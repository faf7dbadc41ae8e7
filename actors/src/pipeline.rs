//! Wiring and running one pipeline: starts the actors in a fresh actix
//! System, runs it until the Coordinator stops it, then joins the
//! Integrator's arbiter (actix never does) before returning the report.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use crate::batch::BatchBuffers;
use crate::checkpoint::{Checkpoint, Checkpoints};
use crate::coordinator::{Coordinator, ProgressFn, Wiring};
use crate::failure::{panic_message, Failure};
use crate::integrator::Integrator;
use crate::job::{Integrate, Job};
use crate::observe::Observed;
use crate::output::OutputDir;
use crate::processor::ProcessBatch;
use crate::processor::Processor;
use crate::protocol::RunHandle;
use crate::remote::{
    ContextFn, Link, PoolWiring, RemoteError, RemoteJob, RemotePool, RemoteSettings, RemoteStats,
    Step,
};
use crate::report::{Progress, RunReport};
pub use crate::settings::Settings;
use crate::source::{RecordSource, Source};

/// Code run inside the pipeline's actix System before its actors start
/// ([`Pipeline::with_setup`]).
type SetupFn = Box<dyn FnOnce()>;

/// The error of a run that could not produce a report at all.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The actix System could not run.
    #[error("actor system failed: {0}")]
    System(#[from] std::io::Error),
    /// The System stopped without the Coordinator's report.
    #[error("the actor system stopped (code {0}) before the coordinator reported")]
    NoReport(i32),
    /// The settings are unusable.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The checkpoint to resume from cannot be used.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// An output could not be created.
    #[error(transparent)]
    Output(#[from] crate::error::OutputError),
    /// The broker of a distributed run cannot be used.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Starts a distributed run's pool, given its link to the broker: a
/// function of the job's type, made where the job's outputs are known to
/// serialize ([`Pipeline::remote`]).
type StartRemote<J> = fn(PoolWiring<<J as Job>::Integrator>) -> Recipient<ProcessBatch>;

/// A distributed run's broker settings and how to start its pool.
struct Remote<J: Job> {
    settings: RemoteSettings,
    /// [`RemoteJob::remote_name`].
    name: String,
    params: Vec<u8>,
    /// [`RemoteJob::context`] of the run's job.
    context: ContextFn,
    /// The run's job, for step 1 here once the broker is gone.
    local: Arc<dyn Step>,
    start: StartRemote<J>,
    stats: Arc<RemoteStats>,
}

/// One run of a job over a source.
pub struct Pipeline<J: Job, S: RecordSource> {
    job: Arc<J>,
    source: S,
    output: OutputDir,
    /// `None`: [`Settings::default`], made only if the run needs it (it
    /// asks the system how many processors there are).
    settings: Option<Settings>,
    handle: RunHandle,
    progress: Option<ProgressFn>,
    checkpoints: Checkpoints,
    setup: Option<SetupFn>,
    rejects_file: &'static str,
    buffers: Option<BatchBuffers>,
    remote: Option<Remote<J>>,
}

impl<J: Job, S: RecordSource> Pipeline<J, S> {
    /// A run of `job` over `source` writing into `output`.
    pub fn new(job: J, source: S, output: OutputDir) -> Self {
        Self::with_shared_job(Arc::new(job), source, output)
    }

    /// Like [`Pipeline::new`] for a job the caller keeps a reference to
    /// (for example to read what it gathered after the run).
    pub fn with_shared_job(job: Arc<J>, source: S, output: OutputDir) -> Self {
        Pipeline {
            job,
            source,
            output,
            settings: None,
            handle: RunHandle::new(),
            progress: None,
            checkpoints: Checkpoints::default(),
            setup: None,
            rejects_file: crate::REJECTS_FILE,
            buffers: None,
            remote: None,
        }
    }

    /// Takes checkpoints (and resumes from one) as `checkpoints` says.
    pub fn checkpoints(mut self, checkpoints: Checkpoints) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// Writes the rejected records into `name` instead of
    /// [`crate::REJECTS_FILE`] (for a later pass of a multi-pass job that
    /// reads only part of the input, so the first pass's list stays).
    pub fn rejects_file(mut self, name: &'static str) -> Self {
        self.rejects_file = name;
        self
    }

    /// Fills batches in `buffers`, which other runs may share (a job's
    /// passes: see [`BatchBuffers`]); otherwise the run has its own.
    pub fn sharing_buffers(mut self, buffers: &BatchBuffers) -> Self {
        self.buffers = Some(buffers.clone());
        self
    }

    /// Sets the tuning and limits.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Uses `handle` to receive stop requests and publish live counts.
    pub fn handle(mut self, handle: RunHandle) -> Self {
        self.handle = handle;
        self
    }

    /// Calls `f` with a progress snapshot every `progress_every`.
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Calls `f` once, on the System thread inside the run's actix System,
    /// before any actor of the pipeline starts. This is where actors of your
    /// own are started (`Actor::start`, or `Actor::start_in_arbiter` on an
    /// `Arbiter::new()` you join after the run) and their addresses handed
    /// to the job or the progress callback.
    ///
    /// Such actors are not part of the stop protocol: the System stops
    /// without draining their mailboxes, so whatever must reach them has to
    /// be confirmed before [`Integrate::finish`] returns.
    /// `examples/custom_actor.rs` shows a complete one.
    ///
    /// # Example
    ///
    /// A `Board` actor started in the setup closure; step 2 reports its
    /// total to it with `send` and waits for the reply, so the message is
    /// handled before the run goes on to stop the System.
    ///
    /// ```
    /// # use drainpipe_actors::{BatchBuilder, InputError, RecordSource};
    /// # struct Ten { next: u64, origin: Arc<str> }
    /// # impl RecordSource for Ten {
    /// #     fn fill(&mut self, b: &mut BatchBuilder, max: usize, _: usize) -> Result<bool, InputError> {
    /// #         while self.next < 10 && b.len() < max {
    /// #             self.next += 1;
    /// #             b.push(&self.origin, self.next, 0, "x".repeat(self.next as usize).as_bytes());
    /// #         }
    /// #         Ok(!b.is_empty())
    /// #     }
    /// #     fn position(&self) -> u64 { self.next }
    /// #     fn total(&self) -> Option<u64> { Some(10) }
    /// # }
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::{Arc, OnceLock};
    ///
    /// use actix::prelude::*;
    /// use drainpipe_actors::{
    ///     FinishContext, Integrate, Job, OutputDir, Pipeline, RawRecord, RecordError,
    /// };
    ///
    /// /// An actor of our own: keeps the last total it was told.
    /// struct Board(Arc<AtomicU64>);
    /// impl Actor for Board {
    ///     type Context = Context<Self>;
    /// }
    /// #[derive(Message)]
    /// #[rtype(result = "()")]
    /// struct Total(u64);
    /// impl Handler<Total> for Board {
    ///     type Result = ();
    ///     fn handle(&mut self, Total(n): Total, _: &mut Context<Self>) {
    ///         self.0.store(n, Ordering::SeqCst);
    ///     }
    /// }
    ///
    /// type Slot = Arc<OnceLock<Addr<Board>>>;
    ///
    /// /// Sums record lengths and reports the sum to the Board.
    /// struct Lengths(Slot);
    /// struct Sum(u64, Slot);
    ///
    /// impl Job for Lengths {
    ///     type Parsed<'a> = &'a [u8];
    ///     type Output = u64;
    ///     type Integrator = Sum;
    ///     fn name(&self) -> &str { "lengths" }
    ///     fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<&'a [u8], RecordError> { Ok(raw.bytes) }
    ///     fn process(&self, bytes: &[u8]) -> Result<u64, RecordError> { Ok(bytes.len() as u64) }
    ///     fn integrator(&self) -> Sum { Sum(0, Arc::clone(&self.0)) }
    /// }
    ///
    /// impl Integrate for Sum {
    ///     type Output = u64;
    ///     fn integrate(&mut self, _index: u64, len: u64) -> Result<(), RecordError> {
    ///         self.0 += len;
    ///         Ok(())
    ///     }
    ///     fn finish(&mut self, _: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
    ///         let board = self.1.get().ok_or("the board was not started")?;
    ///         // `send` and wait: an error if the Board is gone, never a silent drop.
    ///         futures::executor::block_on(board.send(Total(self.0)))?;
    ///         Ok(serde_json::json!({ "total_length": self.0 }))
    ///     }
    /// }
    ///
    /// let shown = Arc::new(AtomicU64::new(0));
    /// let slot: Slot = Arc::default();
    /// let setup = {
    ///     let (slot, shown) = (Arc::clone(&slot), Arc::clone(&shown));
    ///     move || {
    ///         // Inside the run's System: start the actor, publish its address.
    ///         let _ = slot.set(Board(shown).start());
    ///     }
    /// };
    /// let dir = tempfile::tempdir().unwrap();
    /// let source = Ten { next: 0, origin: "memory".into() };
    /// let report = Pipeline::new(Lengths(slot), source, OutputDir::create(dir.path()).unwrap())
    ///     .with_setup(setup)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(report.exit_code, 0, "{}", report.human());
    /// assert_eq!(shown.load(Ordering::SeqCst), 55);
    /// ```
    pub fn with_setup(mut self, f: impl FnOnce() + 'static) -> Self {
        self.setup = Some(Box::new(f));
        self
    }

    /// Runs the pipeline to its end on the current thread and returns the
    /// report. The outputs and `rejects.jsonl` are written by then;
    /// `summary.json` is the caller's to write ([`RunReport::write`]).
    pub fn run(mut self) -> Result<RunReport, PipelineError> {
        let settings = self.settings.take().unwrap_or_default();
        check_settings(&settings)?;
        let observed = Arc::new(Observed::new(settings.workers));
        let resume = self.checkpoints.resume.take();
        let integrator = self.integrator(&observed, resume.as_ref())?;
        let report_slot = Arc::new(Mutex::new(None));
        let join_deadline = settings.drain_timeout;
        let system = System::new();
        // Connected inside the System: the client's tasks run on its
        // runtime for the whole run.
        let link = match &self.remote {
            Some(r) => Some(system.block_on(Link::open(&r.settings, &r.name))?),
            None => None,
        };
        let stats = self.remote.as_ref().map(|r| Arc::clone(&r.stats));
        let arbiter = system.block_on({
            let report_slot = Arc::clone(&report_slot);
            async move { self.start(settings, observed, integrator, resume, report_slot, link) }
        });
        let code = system.run_with_code()?;
        let joined = join_arbiter(arbiter, join_deadline);
        let mut report = report_slot
            .lock()
            .expect("report slot poisoned")
            .take()
            .ok_or(PipelineError::NoReport(code))?;
        if let Err(message) = joined {
            log::error!("{message}");
            report.fail(Failure::Internal(message));
        }
        report.remote = stats.map(|s| s.to_json());
        Ok(report)
    }

    /// The Integrator actor over the job's state, restored from `resume`.
    fn integrator(
        &self,
        observed: &Arc<Observed>,
        resume: Option<&Checkpoint>,
    ) -> Result<Integrator<J::Integrator>, PipelineError> {
        let mut state = self.job.integrator();
        if let Some(c) = resume {
            state
                .restore(&c.job)
                .map_err(|e| PipelineError::Resume(e.to_string()))?;
        }
        let integrator = Integrator::new(
            state,
            self.output.clone(),
            Arc::clone(observed),
            resume,
            self.rejects_file,
        )?;
        Ok(integrator)
    }

    /// Starts the actors inside the run's System (after the caller's
    /// setup): the Integrator on an arbiter of its own, which is returned
    /// to be joined, the pool, the Source and the Coordinator.
    fn start(
        self,
        settings: Settings,
        observed: Arc<Observed>,
        integrator: Integrator<J::Integrator>,
        resume: Option<Checkpoint>,
        report_slot: Arc<Mutex<Option<RunReport>>>,
        link: Option<Link>,
    ) -> Arbiter {
        let Pipeline {
            job,
            source,
            handle,
            progress,
            checkpoints,
            setup,
            buffers,
            remote,
            ..
        } = self;
        if let Some(setup) = setup {
            setup();
        }
        let arbiter = Arbiter::new();
        let integrator = Integrator::start_in_arbiter(&arbiter.handle(), move |_| integrator);
        let (alive_tx, alive_rx) = mpsc::channel();
        let pool = match (remote, link) {
            (Some(remote), Some(link)) => (remote.start)(PoolWiring {
                link,
                job: remote.name,
                params: remote.params,
                integrator: integrator.clone(),
                observed: Arc::clone(&observed),
                stats: remote.stats,
                publish_deadline: settings.drain_timeout,
                context: remote.context,
                local: remote.local,
                deadline: remote.settings.deadline,
                alive: alive_tx,
            }),
            _ => Processor::start_pool(
                settings.workers,
                Arc::clone(&job),
                integrator.clone(),
                Arc::clone(&observed),
                alive_tx,
            )
            .recipient(),
        };
        let (source_alive_tx, source_alive_rx) = mpsc::channel();
        let total = source.total();
        let resume_at = resume.as_ref().map_or((0, 0), |c| (c.read, c.batches));
        let source = Source::start(
            source,
            source_alive_tx,
            resume_at,
            buffers.unwrap_or_default(),
        );
        Coordinator::<J, S>::new(Wiring {
            job_name: job.name().to_owned(),
            settings,
            source,
            pool,
            integrator,
            alive: alive_rx,
            source_alive: source_alive_rx,
            handle,
            observed,
            progress,
            report_slot,
            total,
            checkpoints,
            resume: resume.map(|c| (c.read, c.batches, c.integrated, c.rejected)),
        })
        .start();
        arbiter
    }
}

impl<J: RemoteJob, S: RecordSource> Pipeline<J, S> {
    /// Runs step 1 on worker hosts (`drainpipe worker`) through the broker
    /// `settings` name, instead of on processor threads here. The Source,
    /// the Integrator and the Coordinator stay in this process, with the
    /// same protocol. [`Pipeline::run`] then fails with
    /// [`PipelineError::Remote`] when the broker cannot be used.
    pub fn remote(mut self, settings: RemoteSettings) -> Self {
        let job = Arc::clone(&self.job);
        self.remote = Some(Remote {
            params: self.job.params(),
            context: Arc::new(move |records: std::ops::Range<u64>| job.context(records)),
            local: Arc::clone(&self.job) as Arc<dyn Step>,
            name: self.job.remote_name().to_owned(),
            settings,
            start: RemotePool::<J::Integrator>::start_pool,
            stats: Arc::default(),
        });
        self
    }
}

/// Refuses settings no run can use.
fn check_settings(s: &Settings) -> Result<(), PipelineError> {
    if s.workers == 0 || s.window == 0 || s.batch == Some(0) || s.max_batch_bytes == 0 {
        return Err(PipelineError::Settings(
            "workers, window, batch and max_batch_bytes must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Stops the arbiter and waits for its thread, with a deadline: its actor's
/// last work and `Drop` run only if it is joined. A thread that panicked or
/// did not exit in time is an error, reported in the run's summary.
fn join_arbiter(arbiter: Arbiter, deadline: Duration) -> Result<(), String> {
    arbiter.stop();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let joined = arbiter.join().map_err(|panic| panic_message(&*panic));
        // The receiver is gone only if the deadline passed; then nobody waits.
        let _ = done_tx.send(joined);
    });
    match done_rx.recv_timeout(deadline) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(panic)) => Err(format!("the integrator's thread panicked: {panic}")),
        Err(_) => Err(format!(
            "the integrator's thread did not exit within {deadline:?}"
        )),
    }
}
