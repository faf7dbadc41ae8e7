//! A new actor type in the pipeline: a Reporter that receives progress snapshots and integrated results and streams them as JSON lines. Run it with `cargo run --example custom_actor [DOCS]`.
//!
//! How it is wired:
//!
//! - [`Pipeline::with_setup`] runs a closure inside the run's actix System
//!   before the pipeline's actors start. It starts the Reporter on an
//!   `Arbiter` of its own (its file IO stays off the System thread) and puts
//!   the Reporter's `Addr` in a slot the job and the progress callback share.
//! - Step 2 ([`Integrate::integrate`], on the Integrator's thread) sends
//!   results in chunks with `send` and waits for each reply: backpressure,
//!   and an error (which fails the run) if the Reporter is gone. The
//!   Reporter never sends to the Integrator, so the wait cannot deadlock.
//! - The progress callback (on the System thread) uses `try_send` and counts
//!   what is refused. It stops sending once the run reaches Finishing.
//! - [`Integrate::finish`] sends `Flush` and waits for the answer. A mailbox
//!   is one FIFO queue, so by then the Reporter has handled every chunk and
//!   every snapshot sent before Finishing. This matters: the System stops
//!   without draining mailboxes, and the Reporter is not part of the stop
//!   protocol, so anything not confirmed before `finish` returns could be
//!   dropped without a word. (A run that fails does not call `finish`; its
//!   stream may then lack its tail, and its report says it failed.)
//! - After the run, the Reporter's arbiter is joined, so its last work and
//!   `Drop` run before the process goes on.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use drainpipe::corpus::DemoSource;
use drainpipe::input::{parse_text_record, TextFields, TextRecord};
use drainpipe_actors::{
    FinishContext, Integrate, Job, OutputDir, Phase, Pipeline, RawRecord, RecordError, RunReport,
    Settings,
};
use futures::executor::block_on;

/// Where the Reporter's address is published by the setup closure.
type Slot = Arc<OnceLock<Addr<Reporter>>>;

/// Records per `Results` message.
const CHUNK: usize = 256;

// ---- The Reporter actor and its messages ----------------------------------

/// A progress snapshot, from the progress callback.
#[derive(Message)]
#[rtype(result = "()")]
struct Snapshot {
    phase: Phase,
    read: u64,
    done: u64,
}

/// Integrated results, `(input index, words)`, from step 2. The reply says
/// whether they were written.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
struct Results(Vec<(u64, u64)>);

/// Flushes the stream; the reply counts everything the Reporter handled.
#[derive(Message)]
#[rtype(result = "Result<Streamed, String>")]
struct Flush;

/// What the Reporter handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streamed {
    /// Results written.
    pub results: u64,
    /// Snapshots written.
    pub snapshots: u64,
}

/// Streams what it receives as JSON lines.
struct Reporter {
    out: BufWriter<File>,
    streamed: Streamed,
    /// The first write error; reported by `Flush`.
    error: Option<String>,
}

impl Reporter {
    fn line(&mut self, value: serde_json::Value) {
        if let Err(e) = writeln!(self.out, "{value}") {
            self.error.get_or_insert_with(|| e.to_string());
        }
    }
}

impl Actor for Reporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Only `try_send` (the snapshots) honours the capacity.
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Snapshot> for Reporter {
    type Result = ();
    fn handle(&mut self, s: Snapshot, _: &mut Context<Self>) {
        self.streamed.snapshots += 1;
        let phase = s.phase.name();
        self.line(serde_json::json!({ "progress": phase, "read": s.read, "done": s.done }));
    }
}

impl Handler<Results> for Reporter {
    type Result = Result<(), String>;
    fn handle(&mut self, Results(results): Results, _: &mut Context<Self>) -> Self::Result {
        for (index, words) in results {
            self.streamed.results += 1;
            self.line(serde_json::json!({ "index": index, "words": words }));
        }
        self.error.clone().map_or(Ok(()), Err)
    }
}

impl Handler<Flush> for Reporter {
    type Result = Result<Streamed, String>;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.out.flush() {
            self.error.get_or_insert_with(|| e.to_string());
        }
        self.error.clone().map_or(Ok(self.streamed), Err)
    }
}

// ---- A job whose step 2 talks to the Reporter -------------------------------

/// Step 1 counts the words of a record.
struct WordCount {
    fields: TextFields,
    reporter: Slot,
}

/// Step 2 sums them and streams each record's count to the Reporter.
struct Totals {
    reporter: Slot,
    chunk: Vec<(u64, u64)>,
    records: u64,
    words: u64,
}

impl Job for WordCount {
    type Parsed<'a> = TextRecord<'a>;
    type Output = u64;
    type Integrator = Totals;

    fn name(&self) -> &str {
        "word-count"
    }
    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<TextRecord<'a>, RecordError> {
        parse_text_record(raw, &self.fields)
    }
    fn process(&self, record: TextRecord<'_>) -> Result<u64, RecordError> {
        Ok(record.text.split_whitespace().count() as u64)
    }
    fn integrator(&self) -> Totals {
        Totals {
            reporter: Arc::clone(&self.reporter),
            chunk: Vec::with_capacity(CHUNK),
            records: 0,
            words: 0,
        }
    }
}

impl Totals {
    fn reporter(&self) -> Result<&Addr<Reporter>, RecordError> {
        Ok(self.reporter.get().ok_or("the reporter was not started")?)
    }

    /// Sends the chunk and waits until the Reporter has written it.
    fn send_chunk(&mut self) -> Result<(), RecordError> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        Ok(block_on(self.reporter()?.send(Results(chunk)))??)
    }
}

impl Integrate for Totals {
    type Output = u64;

    fn integrate(&mut self, index: u64, words: u64) -> Result<(), RecordError> {
        self.records += 1;
        self.words += words;
        self.chunk.push((index, words));
        if self.chunk.len() == CHUNK {
            self.send_chunk()?;
        }
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        if !self.chunk.is_empty() {
            self.send_chunk()?;
        }
        let streamed = block_on(self.reporter()?.send(Flush))??;
        Ok(serde_json::json!({
            "records": self.records,
            "words": self.words,
            "streamed_results": streamed.results,
            "streamed_snapshots": streamed.snapshots,
            "partial": run.partial,
        }))
    }
}

// ---- Wiring it together -------------------------------------------------------

/// What a run of the example produced.
pub struct Outcome {
    /// The pipeline's report; `result` carries what the Reporter streamed.
    pub report: RunReport,
    /// Snapshots the Reporter's mailbox accepted.
    pub snapshots_sent: u64,
    /// Snapshots it refused (mailbox full or closed), counted, not hidden.
    pub snapshots_refused: u64,
}

/// Counts the words of `docs` demo documents and streams per-record counts
/// and progress into `output/stream.jsonl`.
pub fn run(docs: u64, output: OutputDir) -> anyhow::Result<Outcome> {
    let slot: Slot = Arc::new(OnceLock::new());
    let arbiter_slot: Rc<RefCell<Option<Arbiter>>> = Rc::default();
    let (sent, refused) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
    let stream = File::create(output.file("stream.jsonl"))?;

    let setup = {
        let (slot, arbiter_slot) = (Arc::clone(&slot), Rc::clone(&arbiter_slot));
        move || {
            let arbiter = Arbiter::new();
            let reporter = Reporter::start_in_arbiter(&arbiter.handle(), move |_| Reporter {
                out: BufWriter::new(stream),
                streamed: Streamed::default(),
                error: None,
            });
            assert!(slot.set(reporter).is_ok(), "setup runs once");
            *arbiter_slot.borrow_mut() = Some(arbiter);
        }
    };
    let progress = {
        let (slot, sent, refused) = (Arc::clone(&slot), Rc::clone(&sent), Rc::clone(&refused));
        move |p: &drainpipe_actors::Progress| {
            if p.phase >= Phase::Finishing {
                return; // the Reporter is flushed during Finishing
            }
            let snapshot = Snapshot {
                phase: p.phase,
                read: p.read,
                done: p.done,
            };
            match slot.get().map(|r| r.try_send(snapshot)) {
                Some(Ok(())) => sent.set(sent.get() + 1),
                _ => refused.set(refused.get() + 1),
            }
        }
    };
    let job = WordCount {
        fields: TextFields::default(),
        reporter: Arc::clone(&slot),
    };
    let report = Pipeline::new(job, DemoSource::new(docs), output)
        .settings(Settings {
            workers: 2,
            window: 4,
            progress_every: std::time::Duration::from_millis(1),
            ..Settings::default()
        })
        .with_setup(setup)
        .on_progress(progress)
        .run()?;
    // The System stopped every arbiter; join the Reporter's thread.
    if let Some(arbiter) = arbiter_slot.borrow_mut().take() {
        arbiter.stop();
        let _ = arbiter.join();
    }
    Ok(Outcome {
        report,
        snapshots_sent: sent.get(),
        snapshots_refused: refused.get(),
    })
}

fn main() -> anyhow::Result<()> {
    let docs = std::env::args().nth(1).map_or(Ok(2_000), |n| n.parse())?;
    let output = OutputDir::create("drainpipe-out/custom_actor")?;
    let outcome = run(docs, output.clone())?;
    let report = &outcome.report;
    eprintln!("{}", report.human());
    println!("{:#}", report.result);
    println!(
        "progress snapshots: {} sent, {} refused; stream: {}",
        outcome.snapshots_sent,
        outcome.snapshots_refused,
        output.file("stream.jsonl").display()
    );
    std::process::exit(report.exit_code);
}
