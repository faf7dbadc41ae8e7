//! A new job in one file: line-length statistics. Run it with `cargo run --example custom_job -- [FILE...]` (no file: this file).
//!
//! Step 1 (on the processors, in parallel) measures one line; step 2 (in the
//! Integrator, in input order) keeps counts, extremes and a histogram, and
//! `finish` writes `line_lengths.tsv` atomically. Inputs are read with
//! drainpipe's input module, so JSON Lines, text, directories, `.gz` and
//! `.zst` all work.

use std::io::Write;
use std::path::PathBuf;

use drainpipe::input::{parse_text_record, InputOptions, Inputs, TextFields, TextRecord};
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

fn main() -> anyhow::Result<()> {
    let mut inputs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if inputs.is_empty() {
        inputs.push(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/custom_job.rs").into());
    }
    let output = OutputDir::create("drainpipe-out/custom_job")?;
    let report = run(&inputs, output.clone())?;
    report.write(&output)?;
    eprintln!("{}", report.human());
    println!("{:#}", report.result);
    print!(
        "{}",
        std::fs::read_to_string(output.file("line_lengths.tsv"))?
    );
    std::process::exit(report.exit_code);
}
