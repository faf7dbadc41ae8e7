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
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use drainpipe_actors::{
    Batch, BatchBuilder, FinishContext, Integrate, Job, OutputDir, RecordSource, Records, RunReport,
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
    mut source: S,
    output: &OutputDir,
    workers: usize,
    rejects_file: &'static str,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let (work_tx, work_rx) = sync_channel::<Batch>(2 * workers);
    let (done_tx, done_rx) = sync_channel::<Done<J::Output>>(2 * workers);
    let reader = std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
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
    });
    let work_rx = Arc::new(Mutex::new(work_rx));
    let pool: Vec<_> = (0..workers)
        .map(|_| {
            let (job, work_rx, done_tx) = (Arc::clone(&job), Arc::clone(&work_rx), done_tx.clone());
            std::thread::spawn(move || step1(&*job, &work_rx, |done| done_tx.send(done).is_ok()))
        })
        .collect();
    drop(done_tx);

    let mut state = job.integrator();
    let rejects_name = rejects_file;
    let mut rejects_file = output.atomic(rejects_name)?;
    let (mut next, mut held) = (0u64, BTreeMap::new());
    let (mut integrated, mut rejected) = (0u64, 0u64);
    for done in done_rx {
        held.insert(done.seq, done);
        while let Some(done) = held.remove(&next) {
            next += 1;
            for line in &done.rejects {
                writeln!(rejects_file, "{line}")?;
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
    let (read, bytes) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    for worker in pool {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    }
    anyhow::ensure!(held.is_empty(), "batches missing from the baseline");
    if rejected > 0 {
        rejects_file.commit()?;
    } else {
        output.remove_stale(rejects_name)?;
    }
    let result = state
        .finish(&FinishContext {
            output,
            partial: false,
            integrated,
            rejected,
        })
        .map_err(|e| anyhow::anyhow!("finishing: {e}"))?;
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(RunReport {
        job: job.name().to_owned(),
        fingerprint: String::new(),
        exit: "complete",
        exit_code: 0,
        cause: "end of input".into(),
        errors: Vec::new(),
        partial: false,
        outputs_written: true,
        conservation: read == integrated + rejected,
        records: Records {
            read,
            integrated,
            rejected,
            abandoned: 0,
        },
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
    })
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
