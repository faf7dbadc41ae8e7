//! A new job in one file: line-length statistics. Run it with `cargo run --example custom_job -- [FILE...]` (no file: this file).
//!
//! Distributed (`docs/DISTRIBUTED.md`): step 1 on worker processes through
//! a NATS JetStream broker. A worker runs only the jobs compiled into it,
//! so this program is its own worker: on each worker host
//! `cargo run --example custom_job -- worker nats://HOST:4222`, then
//! `cargo run --example custom_job -- --nats nats://HOST:4222 [FILE...]`.
//! What makes the job distributable is [`RemoteJob`] (its parameters, and
//! outputs that serialize) and its entry in the workers' [`Registry`].
//!
//! Step 1 (on the processors, in parallel) measures one line; step 2 (in the
//! Integrator, in input order) keeps counts, extremes and a histogram, and
//! `finish` writes `line_lengths.tsv` atomically. Inputs are read with
//! drainpipe's input module, so JSON Lines, text, directories, `.gz` and
//! `.zst` all work.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use drainpipe::input::{parse_text_record, InputOptions, Inputs, TextFields, TextRecord};
use drainpipe_actors::remote::worker::{self, WorkerSettings};
use drainpipe_actors::remote::{Broker, Registry, RemoteJob, RemoteSettings};
use drainpipe_actors::{
    FinishContext, Integrate, Job, OutputDir, Pipeline, RawRecord, RecordError, RunReport,
};

/// The job: parsing and step 1. Holds no mutable state (it is shared by
/// every processor thread).
struct LineLengths(TextFields);

/// Step 2: the only mutable state of the run.
#[derive(Default)]
struct Stats {
    lines: u64,
    chars: u64,
    longest: (u64, u64), // (length, input index)
    /// `histogram[b]` counts lines of length in `[2^b - 1, 2^(b+1) - 1)`.
    histogram: Vec<u64>,
}

impl Job for LineLengths {
    type Parsed<'a> = TextRecord<'a>;
    type Output = u64;
    type Integrator = Stats;

    fn name(&self) -> &str {
        "line-lengths"
    }
    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<TextRecord<'a>, RecordError> {
        parse_text_record(raw, &self.0) // an error rejects the record, with its location
    }
    fn process(&self, record: TextRecord<'_>) -> Result<u64, RecordError> {
        Ok(record.text.chars().count() as u64)
    }
    fn integrator(&self) -> Stats {
        Stats::default()
    }
}

/// Step 1 on worker hosts: the job says what a worker needs to build the
/// same job (the JSON fields it reads); its output, a `u64`, serializes.
impl RemoteJob for LineLengths {
    fn params(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.0.text, &self.0.id)).expect("two strings serialize")
    }
}

impl LineLengths {
    /// The job [`RemoteJob::params`] describes, on a worker host.
    fn from_params(params: &[u8]) -> Result<Self, String> {
        let (text, id) = serde_json::from_slice(params).map_err(|e| e.to_string())?;
        Ok(LineLengths(TextFields { text, id }))
    }
}

/// The jobs this program's workers run, each by its [`Job::name`].
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.add("line-lengths", LineLengths::from_params);
    registry
}

impl Integrate for Stats {
    type Output = u64;

    fn integrate(&mut self, index: u64, len: u64) -> Result<(), RecordError> {
        self.lines += 1;
        self.chars += len;
        if self.lines == 1 || len > self.longest.0 {
            self.longest = (len, index);
        }
        let bucket = (u64::BITS - (len + 1).leading_zeros() - 1) as usize;
        if self.histogram.len() <= bucket {
            self.histogram.resize(bucket + 1, 0);
        }
        self.histogram[bucket] += 1;
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        let mut file = run.output.atomic("line_lengths.tsv")?; // renamed into place on commit
        for (b, n) in self.histogram.iter().enumerate() {
            writeln!(file, "{}..{}\t{n}", (1u64 << b) - 1, (1u64 << (b + 1)) - 2)?;
        }
        file.commit()?;
        let (longest, at) = self.longest;
        Ok(serde_json::json!({
            "lines": self.lines,
            "mean": self.chars as f64 / self.lines.max(1) as f64,
            "longest": longest,
            "longest_index": at,
            "partial": run.partial,
        }))
    }
}

/// Runs the job over `inputs`, writing into `output`.
pub fn run(inputs: &[PathBuf], output: OutputDir) -> anyhow::Result<RunReport> {
    let source = Inputs::open(inputs, InputOptions::default())?;
    let job = LineLengths(TextFields::default());
    Ok(Pipeline::new(job, source, output).run()?)
}

/// [`run`] with step 1 on the workers ([`work`]) of the broker at `url`,
/// as run `name` on it.
pub fn run_distributed(
    inputs: &[PathBuf],
    output: OutputDir,
    url: &str,
    name: &str,
) -> anyhow::Result<RunReport> {
    let source = Inputs::open(inputs, InputOptions::default())?;
    let job = LineLengths(TextFields::default());
    let remote = RemoteSettings::new(Broker::new(url), name);
    Ok(Pipeline::new(job, source, output).remote(remote).run()?)
}

/// A worker host: takes batches of this program's jobs from the broker at
/// `url`, `slots` at once, until `stop` is set; returns the batches it
/// answered.
pub fn work(url: &str, slots: usize, stop: Arc<AtomicBool>) -> anyhow::Result<u64> {
    let settings = WorkerSettings {
        broker: Broker::new(url),
        workers: slots,
    };
    let report = worker::run(settings, registry(), stop)?;
    Ok(report.answered.into_inner())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, url] = args.as_slice() {
        if mode == "worker" {
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, Arc::clone(&stop))?;
            }
            let answered = work(url, 2, stop)?;
            eprintln!("worker stopped after {answered} batches");
            return Ok(());
        }
    }
    let (nats, files) = match args.as_slice() {
        [flag, url, files @ ..] if flag == "--nats" => (Some(url.clone()), files),
        files => (None, files),
    };
    let mut inputs: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    if inputs.is_empty() {
        inputs.push(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/custom_job.rs").into());
    }
    let output = OutputDir::create("drainpipe-out/custom_job")?;
    let report = match nats {
        Some(url) => run_distributed(&inputs, output.clone(), &url, "custom_job")?,
        None => run(&inputs, output.clone())?,
    };
    report.write(&output)?;
    eprintln!("{}", report.human());
    println!("{:#}", report.result);
    print!(
        "{}",
        std::fs::read_to_string(output.file("line_lengths.tsv"))?
    );
    std::process::exit(report.exit_code);
}
