//! Pass 2, verify: pass 1's [`Found`] records and candidate pairs in,
//! [`Verified`] pairs out.
//!
//! | | |
//! |---|---|
//! | reads | the candidate records only, at the places pass 1 noted ([`reread`]), or the whole input |
//! | step 1 sends | [`Member`]: a candidate's id and shingle set (and its words for an index hook) |
//! | Integrator state (checkpoints) | [`Verifier`], saved as [`VerifierForm`](crate::jobs::dedup::state::VerifierForm) |
//! | on disk under `--max-memory` | the held shingle sets past their share, as runs keyed by the later partner ([`crate::jobs::dedup::spill::held`]), and the candidates' ids and keys past theirs, as runs in record order ([`crate::jobs::dedup::spill::ids`]), named by the checkpoints, removed once the result is written; the candidate pairs and last partners past theirs, written by pass 1 and read front to back ([`job::Partners`]), named by pass 1's result, removed once the outputs are committed |
//! | result (kept for `--resume`) | [`Verified`], saved as [`VerifiedForm`](crate::jobs::dedup::state::VerifiedForm): the pairs and clustered ids in memory, or the runs that hold them, named |
//!
//! Steps 1 and 2 are in [`job`]; this module runs the pass (not at all
//! when there is no candidate pair), or loads its result when an earlier
//! run completed it. When pass 3 copies `kept.jsonl` and this pass reads
//! the candidates only, the copy starts here and runs beside the pass
//! ([`super::kept::follow`]).

use std::sync::Arc;

use crate::jobs::dedup::budget::Shares;
use crate::jobs::dedup::chain::{CandidatePairs, Found, Reads, RecordHook, Verified};
use crate::jobs::dedup::ledger::{changed, Halt, Run};
use crate::jobs::dedup::resume::{self, Pass};
use crate::jobs::dedup::spill::runs::RunError;
use crate::jobs::dedup::state::LoadedVerified;
use crate::jobs::pass::{run_pass_into, run_pass_remote};

use drainpipe_actors::{RecordSource, RunReport};

use super::kept::follow::CandidatePlaces;
use super::kept::{self, KeptCopy};

pub mod job;
pub mod reread;

pub use job::{Member, PairsIn, SetSpace, Verifier, VerifyJob};

/// What pass 2 reads: its source, how many records it will read from it,
/// where its rejects go, and the candidates' places when it reads those
/// only (for the copy beside it).
struct Opened {
    source: Box<dyn RecordSource>,
    to_read: u64,
    rejects_file: &'static str,
    places: Option<CandidatePlaces>,
}

/// Opens what pass 2 reads for `job`: the candidate records only, at their
/// places, when `reads` says so (the job then expects those only), else
/// the whole input, decoding only the records it needs.
fn open(
    run: &Run<'_>,
    found: &Found,
    reads: &Reads,
    job: VerifyJob,
) -> Result<(VerifyJob, Opened), Halt> {
    // Reading the candidates only, it rejects nothing, unless the input
    // changed.
    if reads.candidates_only {
        let reread::CandidateSource {
            source,
            records,
            wanted,
        } = reread::candidates(run.ctx, &found.spans, &job)?;
        let opened = Opened {
            source,
            to_read: records.len() as u64,
            rejects_file: reread::REJECTS_FILE,
            places: Some((Arc::clone(&records), wanted)),
        };
        return Ok((job.reading_only(records), opened));
    }
    let mut source = (run.open)()?;
    if run.ctx.remote.is_none() {
        // Only the candidates, and the records pass 1 rejected, are
        // decoded.
        source.only_needed(job.needed());
    }
    let opened = Opened {
        source,
        to_read: found.read(),
        rejects_file: resume::REJECTS_FILE,
        places: None,
    };
    Ok((job, opened))
}

/// Pass 2 over the candidate `pairs` of pass 1 (sorted by the later
/// record; in memory, or on disk past their share): loaded when resuming after it completed, else run. Returns
/// what it verified, and the copy of `kept.jsonl` when it ran beside the
/// pass. A pass that does not complete ends the run (and abandons the
/// copy). `hook`: the pass also reads the records a saved index needs
/// and tells it each one ([`RecordHook`]).
pub fn run(
    run: &mut Run<'_>,
    found: &Found,
    pairs: CandidatePairs,
    reads: &Reads,
    hook: Option<Arc<dyn RecordHook>>,
) -> Result<(Verified, Option<KeptCopy>), Halt> {
    // Loaded first: a run with an index completed pass 2 with its hook,
    // which the resumed run no longer needs.
    if let Some(form) = run.resume.load::<LoadedVerified>(Pass::Verify)? {
        run.loaded(Pass::Verify);
        return Ok((form.into_verified(), None));
    }
    if pairs.is_empty() && hook.is_none() {
        return Ok((Verified::default(), None));
    }
    let pairs = PairsIn::of(pairs, &run.ctx.temp);
    let job = job_for(run, found, &pairs, hook)?;
    let (
        mut job,
        Opened {
            source,
            to_read,
            rejects_file,
            places,
        },
    ) = open(run, found, reads, job)?;
    if let Some(stopped) = run.stopped_before(Pass::Verify) {
        return Err(stopped);
    }
    // The copy beside builds a graph of the pairs: only with the pairs in
    // memory, within their share (else it runs after the pass).
    let copy = match pairs.in_memory() {
        Some(pairs) if reads.copy && reads.candidates_only && run.params.copy_beside_verify => {
            kept::start_beside(run, found, pairs, places)
        }
        _ => None,
    };
    if let Some(copy) = &copy {
        job = job.telling(copy.fates());
    }
    let job = Arc::new(job);
    let report = pipeline(run, &job, source, rejects_file)?;
    let verified = completed(run, &job, report, to_read)?;
    Ok((verified, copy))
}

/// The pass's job over `pairs`: its sets of records within their share
/// of the budget, its result kept for `--resume`, `hook` told every
/// record; a set's run that cannot be read stops the run.
fn job_for(
    run: &Run<'_>,
    found: &Found,
    pairs: &PairsIn,
    hook: Option<Arc<dyn RecordHook>>,
) -> Result<VerifyJob, Halt> {
    let ctx = run.ctx;
    let sets = SetSpace {
        temp: Some(Arc::clone(&ctx.temp)),
        share: (ctx.max_memory).map(|max_memory| Shares { max_memory }.record_set()),
    };
    let candidates = |e: RunError| {
        anyhow::Error::new(e.into_io()).context("dedup pass 2: the candidate records")
    };
    let job = VerifyJob::new(
        ctx.fields.clone(),
        run.params.ngram,
        run.params.threshold,
        Arc::clone(&found.integrated),
        (pairs.clone(), sets),
    )
    .map_err(candidates)?
    .keeping_result(run.resume.result_file(Pass::Verify))
    .spilling_to(Arc::clone(&ctx.temp), ctx.max_memory, ctx.handle.clone())
    .keeping(run.params.keep.clone())
    .with_record_hook(hook)
    .map_err(candidates)?;
    job.stop_on_set_failures(&ctx.handle);
    Ok(job)
}

/// Runs the pass's pipeline over `source`, here or with step 1 on
/// worker hosts (`--nats`, `job/remote.rs`).
fn pipeline(
    run: &mut Run<'_>,
    job: &Arc<VerifyJob>,
    source: Box<dyn RecordSource>,
    rejects_file: &'static str,
) -> Result<RunReport, Halt> {
    let ctx = run.ctx;
    let checkpoints = run.resume.checkpoints(Pass::Verify)?;
    let name = Pass::Verify.name();
    let job = Arc::clone(job);
    let report = match &ctx.remote {
        Some(remote) => {
            let remote = remote.clone();
            run_pass_remote(job, source, ctx, name, checkpoints, rejects_file, remote)?
        }
        None => run_pass_into(job, source, ctx, name, checkpoints, rejects_file)?,
    };
    run.ran(Pass::Verify, &report);
    Ok(report)
}

/// What the pass verified, once its `report` says it read all `to_read`
/// records and every set it read could be read; else the run ends here,
/// the pass's result discarded.
fn completed(
    run: &mut Run<'_>,
    job: &VerifyJob,
    mut report: RunReport,
    to_read: u64,
) -> Result<Verified, Halt> {
    if report.exit_code == 0 && report.records.read != to_read {
        let read = report.records.read;
        changed(&mut report, Pass::Verify, to_read, read);
    }
    if report.exit_code != 0 {
        run.resume.discard(Pass::Verify)?;
        return Err(run.ended(report, Pass::Verify));
    }
    if let Err(e) = job.check_sets() {
        // A set's run could not be read: what the pass wrote is wrong.
        run.resume.discard(Pass::Verify)?;
        let e = anyhow::Error::new(e.into_io());
        return Err(e.context("dedup pass 2: the record sets it read").into());
    }
    if let Err(e) = job.remove_sets() {
        // Its result is written: the runs go with the temporary folder.
        log::warn!("dedup pass 2: removing the sets of records it made: {e}");
    }
    let verified = job
        .take_result()
        .ok_or_else(|| anyhow::anyhow!("pass 2 ended without its result"))?;
    run.reports.push(report);
    Ok(verified)
}
