//! The no-actor baseline: the same job (the same parse, step 1 and step 2
//! code) on plain threads and bounded channels, without the actors and the
//! stop protocol. It exists to measure what the actor pipeline costs; it has
//! no stop protocol, no deadlines and no checkpoints, and is not for real
//! runs.
//!
//! A reader thread fills batches, N worker threads run step 1, the calling
//! thread integrates in input order (a reorder buffer, as the Integrator's).

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use drainpipe_actors::{
    AtomicFile, Batch, BatchBuilder, FinishContext, Integrate, Job, OutputDir, PendingRejects,
    RecordSource, Records, RunReport,
};

/// Records per batch in the baseline (a fixed size: what a hand-written
/// program would pick).
pub const BASELINE_BATCH: usize = 512;

struct Done<O> {
    seq: u64,
    outputs: Vec<(u64, O)>,
    rejects: Vec<String>,
}

/// Runs `job` over `source` on plain threads; the report has the counts,
/// the time and the job's result (the protocol's fields are defaults).
pub fn run_plain<J: Job, S: RecordSource>(
    job: Arc<J>,
    source: S,
    output: &OutputDir,
    workers: usize,
    rejects_file: &'static str,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let (work_tx, work_rx) = sync_channel::<Batch>(2 * workers);
    let (done_tx, done_rx) = sync_channel::<Done<J::Output>>(2 * workers);
    let reader = start_reader(source, work_tx);
    let pool = start_workers(&job, work_rx, done_tx, workers);
    let mut state = job.integrator();
    let mut rejects = output.atomic(rejects_file)?;
    let counts = integrate_in_order(&mut state, done_rx, &mut rejects)?;
    let (read, bytes) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    for worker in pool {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    }
    let Integrated {
        integrated,
        rejected,
        missing,
    } = counts;
    anyhow::ensure!(missing == 0, "batches missing from the baseline");
    let rejects = PendingRejects::new((rejected > 0).then_some(rejects), rejects_file);
    let ctx = FinishContext::new(output, false, integrated, rejected, rejects);
    let result = state
        .finish(&ctx)
        .map_err(|e| anyhow::anyhow!("finishing: {e}"))?;
    ctx.commit_rejects()?;
    let records = Records {
        read,
        integrated,
        rejected,
        abandoned: 0,
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(plain_report(
        job.name(),
        records,
        bytes,
        workers,
        elapsed_s,
        result,
    ))
}

/// The reader thread: fills batches of [`BASELINE_BATCH`] records and
/// sends them to the workers; returns the records and bytes it read.
fn start_reader<S: RecordSource>(
    mut source: S,
    work_tx: SyncSender<Batch>,
) -> JoinHandle<anyhow::Result<(u64, u64)>> {
    std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
        let (mut seq, mut index, mut bytes) = (0, 0, 0);
        loop {
            let mut builder = BatchBuilder::with_capacity(BASELINE_BATCH, 0);
            if !source.fill(&mut builder, BASELINE_BATCH, 4 << 20)? {
                return Ok((index, bytes));
            }
            let batch = builder.finish_numbered(seq, index);
            seq += 1;
            index += batch.len() as u64;
            bytes += batch.data_bytes() as u64;
            if work_tx.send(batch).is_err() {
                anyhow::bail!("the workers stopped early");
            }
        }
    })
}

/// `workers` threads running step 1 on the batches of `work_rx`, each
/// sending what it did to `done_tx`.
fn start_workers<J: Job>(
    job: &Arc<J>,
    work_rx: Receiver<Batch>,
    done_tx: SyncSender<Done<J::Output>>,
    workers: usize,
) -> Vec<JoinHandle<()>> {
    let work_rx = Arc::new(Mutex::new(work_rx));
    (0..workers)
        .map(|_| {
            let (job, work_rx, done_tx) = (Arc::clone(job), Arc::clone(&work_rx), done_tx.clone());
            std::thread::spawn(move || step1(&*job, &work_rx, |done| done_tx.send(done).is_ok()))
        })
        .collect()
}

/// Records integrated and rejected, and batches never integrated (held
/// behind one that never came).
struct Integrated {
    integrated: u64,
    rejected: u64,
    missing: usize,
}

/// Step 2 on the calling thread: the batches in input order (a reorder
/// buffer, as the Integrator's), their rejects written to `rejects`,
/// until every worker has ended.
fn integrate_in_order<I: Integrate>(
    state: &mut I,
    done_rx: Receiver<Done<I::Output>>,
    rejects: &mut AtomicFile,
) -> anyhow::Result<Integrated> {
    let (mut next, mut held) = (0u64, BTreeMap::new());
    let (mut integrated, mut rejected) = (0u64, 0u64);
    for done in done_rx {
        held.insert(done.seq, done);
        while let Some(done) = held.remove(&next) {
            next += 1;
            for line in &done.rejects {
                writeln!(rejects, "{line}")?;
            }
            rejected += done.rejects.len() as u64;
            for (index, out) in done.outputs {
                state
                    .integrate(index, out)
                    .map_err(|e| anyhow::anyhow!("step 2 failed at record {index}: {e}"))?;
                integrated += 1;
            }
        }
    }
    Ok(Integrated {
        integrated,
        rejected,
        missing: held.len(),
    })
}

/// The report of a baseline run: its counts, time and result; the
/// protocol's fields are defaults.
fn plain_report(
    job: &str,
    records: Records,
    bytes: u64,
    workers: usize,
    elapsed_s: f64,
    result: serde_json::Value,
) -> RunReport {
    let read = records.read;
    RunReport {
        job: job.to_owned(),
        fingerprint: String::new(),
        exit: "complete",
        exit_code: 0,
        cause: "end of input".into(),
        errors: Vec::new(),
        partial: false,
        outputs_written: true,
        conservation: read == records.integrated + records.rejected,
        records,
        workers,
        window: 2 * workers,
        batch: BASELINE_BATCH,
        batch_adaptive: false,
        elapsed_s,
        phases: BTreeMap::new(),
        records_per_s: read as f64 / elapsed_s.max(1e-9),
        bytes,
        peaks: Default::default(),
        peak_rss_bytes: None,
        checkpoints: Default::default(),
        result,
        remote: None,
    }
}

/// One worker: step 1 on each batch it takes, panics caught per record.
fn step1<J: Job>(
    job: &J,
    work: &Mutex<Receiver<Batch>>,
    mut send: impl FnMut(Done<J::Output>) -> bool,
) {
    loop {
        let next = work.lock().expect("work queue poisoned").recv();
        let Ok(batch) = next else { return };
        let mut outputs = Vec::with_capacity(batch.len());
        let mut rejects = Vec::new();
        for record in batch.records() {
            let reject = |index: u64, at: String, reason: String| {
                serde_json::json!({ "index": index, "at": at, "reason": reason }).to_string()
            };
            match record {
                Err(r) => rejects.push(reject(r.index, r.location.to_string(), r.reason.into())),
                Ok(raw) => match catch_unwind(AssertUnwindSafe(|| {
                    job.parse(&raw).and_then(|parsed| job.process(parsed))
                })) {
                    Ok(Ok(out)) => outputs.push((raw.index, out)),
                    Ok(Err(e)) => {
                        rejects.push(reject(raw.index, raw.location.to_string(), e.to_string()))
                    }
                    Err(_) => {
                        rejects.push(reject(raw.index, raw.location.to_string(), "panic".into()))
                    }
                },
            }
        }
        if !send(Done {
            seq: batch.seq(),
            outputs,
            rejects,
        }) {
            return;
        }
    }
}
