//! Pass 1, signatures: the run's records in, [`Candidates`] out.
//!
//! | | |
//! |---|---|
//! | reads | the whole input |
//! | step 1 sends | [`Signed`]: a record's band keys, place and id key |
//! | Integrator state (checkpoints) | [`BandIndex`], saved as [`BandIndexForm`](crate::jobs::dedup::state::BandIndexForm) |
//! | on disk under `--max-memory` | sorted runs of each band and of the id keys ([`crate::jobs::dedup::spill`]), named by the checkpoints, removed once the result is written; the repeated ids past their share, one run named by the result ([`crate::jobs::dedup::spill::repeats`]), removed once the outputs are committed |
//! | result (kept for `--resume`) | [`Candidates`], saved as [`CandidatesForm`] |
//!
//! Steps 1 and 2 are in [`job`]; this module runs the pass, or loads its
//! result when an earlier run completed it.

use std::sync::Arc;

use anyhow::Context;

use crate::jobs::dedup::chain::{BandsHook, Candidates};
use crate::jobs::dedup::ledger::{per_record, Halt, Run};
use crate::jobs::dedup::params::Banding;
use crate::jobs::dedup::resume::{self, Pass};
use crate::jobs::dedup::spill::record_sets::SetWriter;
use crate::jobs::dedup::spill::repeats::{self, RepeatedIds};
use crate::jobs::dedup::state::CandidatesForm;
use crate::jobs::pass::{run_pass_into, run_pass_remote};

pub mod job;

pub use job::{BandIndex, SignatureJob, Signed, INTEGRATED, PERMUTATION_SEED, REMOTE_NAME};

/// Pass 1 with `banding`: loaded when resuming after it completed, else
/// run. A pass that does not complete ends the run. `hook`: a saved
/// index's bands join the run's ([`BandsHook`]).
pub fn run(
    run: &mut Run<'_>,
    banding: Banding,
    hook: Option<Arc<dyn BandsHook>>,
) -> Result<Candidates, Halt> {
    let mut candidates = match run.resume.load::<CandidatesForm>(Pass::Signatures)? {
        Some(form) => {
            run.loaded(Pass::Signatures);
            let integrated = SetWriter::new(INTEGRATED, Some(Arc::clone(&run.ctx.temp)), None);
            form.into_candidates(integrated)
                .map_err(|e| anyhow::Error::from(e.into_io()))
                .context("dedup pass 1: taking up its result")?
        }
        None => signatures(run, banding, hook)?,
    };
    log::info!(
        "dedup pass 1: {} records, {} candidate pairs, {:.0} integrator bytes per record",
        candidates.records,
        candidates.pairs.len(),
        per_record(candidates.integrator_bytes, candidates.records)
    );
    let ctx = run.ctx;
    let stop = || ctx.handle.stop_requested();
    let room = (&ctx.temp, ctx.max_memory);
    let repeats = repeats::report(&candidates.repeated_ids, run.open, &ctx.fields, &stop, room)?;
    candidates.confirmed_repeats = repeats.count;
    if let RepeatedIds::Memory(_) = candidates.repeated_ids {
        // Only their count is needed from here on (a run on disk stays,
        // named by the result, until the outputs are committed).
        candidates.repeated_ids = RepeatedIds::default();
    }
    Ok(candidates)
}

/// Runs the pass's pipeline over the whole input.
fn signatures(
    run: &mut Run<'_>,
    banding: Banding,
    hook: Option<Arc<dyn BandsHook>>,
) -> Result<Candidates, Halt> {
    let ctx = run.ctx;
    let job = Arc::new(
        SignatureJob::new(ctx.fields.clone(), run.params.ngram, banding)
            .keeping_result(run.resume.result_file(Pass::Signatures))
            .sorting_on(ctx.settings.workers)
            .spilling_to(Arc::clone(&ctx.temp), ctx.max_memory, ctx.handle.clone())
            .with_bands_hook(hook),
    );
    let checkpoints = run.resume.checkpoints(Pass::Signatures)?;
    let (source, name, rejects) = ((run.open)()?, Pass::Signatures.name(), resume::REJECTS_FILE);
    // Step 1 on worker hosts with `--nats` (`job/remote.rs`).
    let report = match &ctx.remote {
        Some(remote) => {
            let remote = remote.clone();
            run_pass_remote(
                Arc::clone(&job),
                source,
                ctx,
                name,
                checkpoints,
                rejects,
                remote,
            )?
        }
        None => run_pass_into(Arc::clone(&job), source, ctx, name, checkpoints, rejects)?,
    };
    run.ran(Pass::Signatures, &report);
    if report.exit_code != 0 {
        run.resume.discard(Pass::Signatures)?;
        return Err(run.ended(report, Pass::Signatures));
    }
    let candidates = job
        .take_result()
        .ok_or_else(|| anyhow::anyhow!("pass 1 ended without its result"))?;
    run.reports.push(report);
    Ok(candidates)
}
