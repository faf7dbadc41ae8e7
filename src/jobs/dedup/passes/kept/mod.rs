//! Pass 3, kept: the [`Clusters`] in, the two output files out
//! ([`Outputs`]: `kept.jsonl` or `kept.parquet` ([`form`]), and
//! `clusters.jsonl`, complete and uncommitted; the run commits them once
//! every check has passed).
//!
//! | | |
//! |---|---|
//! | reads | the kept records' bytes, copied from the inputs ([`copy`]), or the whole input ([`pipeline`]) |
//! | step 1 sends (pipeline) | a kept record's output line |
//! | Integrator state | none: it takes no checkpoint and keeps no result, so a resumed run runs it again from its start |
//! | result | [`Written`]: `kept.jsonl` or `kept.parquet`, uncommitted, and its record count |
//!
//! Three ways, one output: a pipeline pass whose processors format each
//! kept record's line ([`pipeline`]); a copy of the kept records' bytes
//! when pass 1 knows where every record is and every input is JSON Lines
//! ([`copy`]); and that copy on a thread beside pass 2 when pass 2 reads
//! the candidates only ([`follow`], started by [`start_beside`]).
//! `kept.parquet` is always written by the pipeline pass ([`rows`]).

use std::sync::Arc;
use std::time::Instant;

use drainpipe_actors::{AtomicFile, RunReport};

use crate::jobs::dedup::budget::Shares;
use crate::jobs::dedup::chain::{ClusteredIds, Found, Reads, Written};
use crate::jobs::dedup::clusters::{write_clusters_of, Clusters};
use crate::jobs::dedup::ledger::{changed, fail, Halt, PassTime, Run};
use crate::jobs::dedup::resume::{self, Pass};
use crate::jobs::dedup::spill::record_sets::RecordSet;
use crate::jobs::pass::{run_pass_into, run_pass_remote};

pub mod copy;
pub mod follow;
pub mod form;
pub mod pipeline;
pub mod rows;

pub use follow::{CandidatePlaces, KeptCopy};
pub use form::KeptForm;
pub use pipeline::KeptJob;

use copy::{copy_kept, read_cleanly, CopyTarget, NotCopied};
use follow::Checker;

/// What pass 3 hands the run: both output files, complete and
/// uncommitted.
#[derive(Debug)]
pub struct Outputs {
    /// `kept.jsonl` or `kept.parquet`.
    pub kept: Written,
    /// `clusters.jsonl`.
    pub clusters: AtomicFile,
    /// The report of the pass's pipeline, when it ran as one (a copy has
    /// none).
    pub report: Option<RunReport>,
    /// Bytes the removed records' set wrote to the temporary space (0:
    /// held in memory), `removed_records_spilled_bytes` in the summary.
    pub removed_spilled_bytes: u64,
}

/// Starts the copy of `kept.jsonl` beside pass 2 over the candidate
/// `pairs`, whose records' places pass 2 found (`candidates`); `None`
/// when the system gives it no thread (the copy then runs after the
/// pass).
pub fn start_beside(
    run: &Run<'_>,
    found: &Found,
    pairs: &[(u32, u32)],
    candidates: Option<CandidatePlaces>,
) -> Option<KeptCopy> {
    let ctx = run.ctx;
    let target = CopyTarget::of(ctx);
    let checker = Checker::new(
        ctx.inputs.clone(),
        Arc::clone(&found.spans),
        ctx.fields.clone(),
        run.params.ngram,
        run.params.threshold,
    )
    .with_candidates(candidates);
    let stuck = ctx.settings.stall_timeout;
    KeptCopy::start(target, Arc::clone(&found.integrated), pairs, checker, stuck)
        .map_err(|e| log::warn!("dedup: no thread for the copy beside the verify pass: {e}"))
        .ok()
}

/// Pass 3 over the `clusters` (`ids`: the clustered records' ids, in
/// memory or on disk, for `clusters.jsonl`), the kept records in `form`: copied when `reads` says
/// so (finishing the copy `beside` pass 2, if one runs), else a pipeline
/// pass. A pass that does not complete ends the run.
pub fn run(
    run: &mut Run<'_>,
    found: &Found,
    (clusters, ids): (&Clusters, &ClusteredIds),
    reads: &Reads,
    form: &KeptForm,
    beside: Option<KeptCopy>,
) -> Result<Outputs, Halt> {
    let share = (run.ctx.max_memory).map(|max_memory| Shares { max_memory }.record_set());
    let removed = clusters
        .removed_records((share, &run.ctx.temp))
        .map_err(|e| {
            anyhow::Error::new(e.into_io())
                .context("dedup pass 3: making the set of removed records")
        })?;
    removed.stop_on_failure(run.ctx.handle.clone());
    let removed = Arc::new(removed);
    if reads.copy {
        // No pipeline pass follows: the batch buffers are freed now, while
        // the copy runs, not as the process exits.
        run.ctx.buffers.release();
    }
    if let Some(stopped) = run.stopped_before(Pass::Kept) {
        return Err(stopped);
    }
    let budget = (&*run.ctx.temp, run.ctx.max_memory);
    let clusters = write_clusters_of(&run.ctx.output, clusters, ids, budget)?;
    crate::jobs::dedup::crash::here("dedup::pass3");
    let (kept, report) = if reads.copy {
        if run.reports.is_empty() {
            // Passes 1 and 2 were loaded: the run's report starts from theirs.
            let report = run.loaded_report(found.records, found.rejected);
            run.reports.push(report);
        }
        (copied(run, found, &removed, beside)?, None)
    } else {
        let (kept, report) = piped(run, found, Arc::clone(&removed), form)?;
        (kept, Some(report))
    };
    Ok(Outputs {
        kept,
        clusters,
        report,
        removed_spilled_bytes: removed.bytes_on_disk(),
    })
}

/// `kept.jsonl` copied from the inputs: by the copy `beside` pass 2, or
/// now.
fn copied(
    run: &mut Run<'_>,
    found: &Found,
    removed: &RecordSet,
    beside: Option<KeptCopy>,
) -> Result<Written, Halt> {
    let started = Instant::now();
    let target = CopyTarget::of(run.ctx);
    let beside_verify = beside.is_some();
    let copy_now = || {
        // A cursor of its own: after a copy beside pass 2, from the start.
        let removed = removed.apart();
        let copied = copy_kept(&target, &found.spans, &found.integrated, &removed);
        read_cleanly(&[&removed]).and(copied)
    };
    let (copied, copy_time) = match beside.map(|copy| copy.finish(removed)) {
        Some((Err(NotCopied::Redo(message)), _)) => {
            log::warn!("dedup: {message}; copying kept.jsonl again");
            (copy_now(), None)
        }
        Some((copied, time)) => (copied, Some(time)),
        None => (copy_now(), None),
    };
    // Beside the verify pass, the time the run spent on the copy after
    // that pass ended (what it adds to the run); the rate is over the
    // copy's own time.
    let elapsed_s = started.elapsed().as_secs_f64();
    let copy_s = copy_time.map_or(elapsed_s, |t| t.as_secs_f64());
    run.passes.push(PassTime::outside(
        Pass::Kept,
        elapsed_s,
        found.read() as f64 / copy_s.max(1e-9),
        beside_verify.then_some(Pass::Verify),
    ));
    copied.map_err(|not_copied| {
        // The report of the run so far, stopped or failed here.
        run.ended_in(Pass::Kept, |report| {
            if let NotCopied::Failed(message) | NotCopied::Redo(message) = not_copied {
                log::error!("{message}");
                fail(report, message.clone(), [message]);
            }
        })
    })
}

/// The kept records written by a pipeline pass over the whole input, in
/// `form`, and the pass's report.
fn piped(
    run: &mut Run<'_>,
    found: &Found,
    removed: Arc<RecordSet>,
    form: &KeptForm,
) -> Result<(Written, RunReport), Halt> {
    let ctx = run.ctx;
    let job = Arc::new(KeptJob::new(
        ctx.fields.clone(),
        Arc::clone(&found.integrated),
        removed,
        ctx.output.clone(),
        form.clone(),
    ));
    let checkpoints = run.resume.checkpoints(Pass::Kept)?;
    let name = Pass::Kept.name();
    let mut source = (run.open)()?;
    if ctx.remote.is_none() {
        // The removed records, and for `kept.parquet` the kept ones too,
        // are not decoded.
        source.only_needed(job.needed());
    }
    let rejects = resume::REJECTS_FILE;
    // Step 1 on worker hosts with `--nats` (`pipeline/remote.rs`), for
    // `kept.jsonl`: the processors of `kept.parquet` are cheap (a row's
    // number, or its id and text) and its copy is the Integrator's.
    let remote = ctx.remote.as_ref().filter(|_| form.is_jsonl());
    let mut report = match remote {
        Some(remote) => {
            let remote = remote.clone();
            let job = Arc::clone(&job);
            run_pass_remote(job, source, ctx, name, checkpoints, rejects, remote)?
        }
        None => run_pass_into(Arc::clone(&job), source, ctx, name, checkpoints, rejects)?,
    };
    run.ran(Pass::Kept, &report);
    if report.exit_code == 0 && report.records.read != found.read() {
        let read = report.records.read;
        changed(&mut report, Pass::Kept, found.read(), read);
    }
    if report.exit_code != 0 {
        return Err(run.ended(report, Pass::Kept));
    }
    found.integrated.check().map_err(|e| {
        anyhow::Error::new(e.into_io()).context("dedup pass 3: the records pass 1 integrated")
    })?;
    let written = job
        .take_result()
        .ok_or_else(|| anyhow::anyhow!("pass 3 ended without its result"))?;
    Ok((written, report))
}
