//! What every job's entry point receives ([`RunContext`]) and how it runs
//! one pass over the input ([`run_pass`]).
//!
//! A leaf below the jobs: a job imports it, and it imports no job, so the
//! jobs' folder (which names each job's resumable files) and the jobs
//! themselves import one way.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use drainpipe_actors::remote::{RemoteJob, RemoteSettings};
use drainpipe_actors::{
    BatchBuffers, Checkpoint, Checkpoints, Job, OutputDir, Pipeline, Progress, RecordSource,
    RunHandle, RunReport, Settings, TempSpace, REJECTS_FILE,
};

use crate::corpus::DemoSource;
use crate::input::{InputOptions, Inputs, TextFields};

/// Makes the progress callback of one pass, given the pass's name.
pub type ProgressFactory = Rc<dyn Fn(&str) -> Box<dyn FnMut(&Progress)>>;

/// What a step between passes has done so far, for its progress display:
/// it reads no records, so [`Progress`] does not fit it (dedup's
/// clusters: their contraction rounds over sorted runs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StageProgress {
    /// Steps taken: pairs and edges read, entries resolved or joined.
    pub steps: u64,
    /// The contraction round under way (0: none, as in memory).
    pub round: usize,
    /// Bytes the step has written to the temporary space.
    pub bytes_written: u64,
    /// The step is over: the display goes.
    pub done: bool,
}

/// The progress callback of one step between passes.
pub type StageShow = Box<dyn FnMut(&StageProgress)>;

/// Makes the progress callback of one step between passes, given its
/// name.
pub type StageFactory = Rc<dyn Fn(&str) -> StageShow>;

/// Everything a job's entry point needs from the command line.
#[derive(Clone)]
pub struct RunContext {
    /// Input paths (`-` is stdin); empty means the embedded demo corpus.
    pub inputs: Vec<PathBuf>,
    /// Reader options.
    pub input_options: InputOptions,
    /// Which JSON fields hold the text and the id.
    pub fields: TextFields,
    /// Where outputs go.
    pub output: OutputDir,
    /// Pipeline tuning and limits.
    pub settings: Settings,
    /// Stop requests (signals) and live counts.
    pub handle: RunHandle,
    /// Progress display, one callback per pass.
    pub progress: ProgressFactory,
    /// Progress display of the steps between passes, one callback each.
    pub stages: StageFactory,
    /// Number of documents of the demo corpus, when `inputs` is empty.
    pub demo_docs: u64,
    /// Take a checkpoint this often (`None`: only when interrupted).
    pub checkpoint_every: Option<Duration>,
    /// Continue from the checkpoint in the output folder.
    pub resume: bool,
    /// Identifies the job, its inputs and parameters; checkpoints of
    /// another fingerprint are refused.
    pub fingerprint: String,
    /// What runs the passes: the actor pipeline, or the no-actor baseline
    /// (benchmarks).
    pub engine: Engine,
    /// The batch buffers every pass of the run fills (see
    /// [`BatchBuffers`]).
    pub buffers: BatchBuffers,
    /// The most bytes of memory the run's state may hold (`--max-memory`;
    /// `None`: no limit): past it, a job spills to [`RunContext::temp`].
    pub max_memory: Option<u64>,
    /// Where state that passes the budget spills.
    pub temp: Arc<TempSpace>,
    /// Run step 1 on worker hosts through this broker (`--nats`); `None`:
    /// on this host's processor threads.
    pub remote: Option<RemoteSettings>,
}

/// What runs a job's passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The actor pipeline with its stop protocol.
    #[default]
    Actors,
    /// [`crate::baseline`]: plain threads and channels, to measure what the
    /// actors cost.
    PlainThreads,
}

impl RunContext {
    /// A context for tests and examples: no progress display, default
    /// settings, the given inputs and output folder.
    pub fn quiet(inputs: Vec<PathBuf>, output: OutputDir) -> Self {
        RunContext {
            inputs,
            input_options: InputOptions {
                max_record_bytes: 16 << 20,
                leave_out: vec![output.path().to_path_buf()],
                ..InputOptions::default()
            },
            fields: TextFields {
                text: "text".into(),
                id: "id".into(),
            },
            settings: Settings::default(),
            handle: RunHandle::new(),
            progress: Rc::new(|_| Box::new(|_: &Progress| {})),
            stages: Rc::new(|_| Box::new(|_: &StageProgress| {})),
            demo_docs: 50_000,
            checkpoint_every: None,
            resume: false,
            fingerprint: String::new(),
            engine: Engine::Actors,
            buffers: BatchBuffers::new(),
            max_memory: None,
            temp: Arc::new(TempSpace::new(output.path())),
            remote: None,
            output,
        }
    }

    /// The checkpoint settings of the run's (first) pass; loads and checks
    /// the checkpoint when resuming.
    pub fn checkpoints(&self) -> anyhow::Result<Checkpoints> {
        let resume = if self.resume {
            Some(Checkpoint::load(&self.output, &self.fingerprint)?)
        } else {
            None
        };
        Ok(Checkpoints {
            every: self.checkpoint_every,
            fingerprint: self.fingerprint.clone(),
            resume,
        })
    }
}

/// The run's input: the files named on the command line, or the demo
/// corpus when there are none.
pub fn open_source(ctx: &RunContext) -> anyhow::Result<Box<dyn RecordSource>> {
    if ctx.inputs.is_empty() {
        Ok(Box::new(DemoSource::new(ctx.demo_docs)))
    } else {
        Ok(Box::new(Inputs::open(
            &ctx.inputs,
            ctx.input_options.clone(),
        )?))
    }
}

/// Runs one pass of `job` over `source` with the context's settings, stop
/// handle, progress display and checkpoints.
pub fn run_pass<J: Job, S: RecordSource>(
    job: Arc<J>,
    source: S,
    ctx: &RunContext,
    pass: &str,
) -> anyhow::Result<RunReport> {
    let checkpoints = if ctx.engine == Engine::PlainThreads {
        Checkpoints::default()
    } else {
        ctx.checkpoints()?
    };
    run_pass_with(job, source, ctx, pass, checkpoints)
}

/// [`run_pass`] with the pass's own checkpoint settings (a job of several
/// passes gives each pass its fingerprint and decides which one resumes).
pub fn run_pass_with<J: Job, S: RecordSource>(
    job: Arc<J>,
    source: S,
    ctx: &RunContext,
    pass: &str,
    checkpoints: Checkpoints,
) -> anyhow::Result<RunReport> {
    run_pass_into(job, source, ctx, pass, checkpoints, REJECTS_FILE)
}

/// [`run_pass_with`], writing the rejected records into `rejects_file`
/// instead of `rejects.jsonl` (a later pass that reads part of the input
/// must leave the first pass's list in place).
pub fn run_pass_into<J: Job, S: RecordSource>(
    job: Arc<J>,
    source: S,
    ctx: &RunContext,
    pass: &str,
    checkpoints: Checkpoints,
    rejects_file: &'static str,
) -> anyhow::Result<RunReport> {
    if ctx.engine == Engine::PlainThreads {
        return crate::baseline::run_plain(
            job,
            source,
            &ctx.output,
            ctx.settings.workers,
            rejects_file,
        );
    }
    Ok(pipeline(job, source, ctx, pass, checkpoints, rejects_file).run()?)
}

/// [`run_pass_into`] with step 1 on the worker hosts of `remote`'s broker.
pub fn run_pass_remote<J: RemoteJob, S: RecordSource>(
    job: Arc<J>,
    source: S,
    ctx: &RunContext,
    pass: &str,
    checkpoints: Checkpoints,
    rejects_file: &'static str,
    remote: RemoteSettings,
) -> anyhow::Result<RunReport> {
    let pipeline = pipeline(job, source, ctx, pass, checkpoints, rejects_file);
    Ok(pipeline.remote(remote).run()?)
}

/// The pipeline of one pass, as the context sets it up.
fn pipeline<J: Job, S: RecordSource>(
    job: Arc<J>,
    source: S,
    ctx: &RunContext,
    pass: &str,
    checkpoints: Checkpoints,
    rejects_file: &'static str,
) -> Pipeline<J, S> {
    Pipeline::with_shared_job(job, source, ctx.output.clone())
        .rejects_file(rejects_file)
        .sharing_buffers(&ctx.buffers)
        .settings(ctx.settings.clone())
        .checkpoints(checkpoints)
        .handle(ctx.handle.clone())
        .on_progress((ctx.progress)(pass))
}
