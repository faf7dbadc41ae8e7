//! Pass 2 ([`super`]) reading the candidate records only: when pass 1 noted
//! where every record it integrated lies ([`Spans`]), the verify pass reads
//! the records of the candidate pairs at their places
//! ([`crate::input::Reread`]), a fraction of the input, instead of all of
//! it. Its outputs are those of a full read. Places on disk (past their
//! share of the memory budget) are read once, front to back, for the
//! candidates' ([`PlaceCursor`]).

use std::sync::Arc;

use anyhow::Context;
use drainpipe_actors::{RecordSource, Span};

use crate::input::{Reread, Wanted};
use crate::jobs::pass::RunContext;

use crate::jobs::dedup::budget::Shares;
use crate::jobs::dedup::chain::Found;
use crate::jobs::dedup::spans::Spans;
use crate::jobs::dedup::spill::places::PlaceCursor;

use super::job::VerifyJob;

/// Where the pass's rejects go: a record it rejects is one pass 1
/// integrated, so the input changed and the run fails; `rejects.jsonl`
/// stays pass 1's.
pub const REJECTS_FILE: &str = "dedup-verify-rejects.jsonl";

/// Bytes pass 2 holds for each candidate record while it reads the
/// candidates only: its place ([`Wanted`]) and its index.
pub const CANDIDATE_PLACE_BYTES: u64 = (size_of::<Wanted>() + size_of::<u32>()) as u64;

/// True when pass 2 can read the candidates only: pass 1 noted every
/// record's place, and under a memory budget the candidates' places (at
/// most two records a candidate pair) fit in their share
/// ([`Shares::candidate_places`]). Past it, pass 2 reads the whole input,
/// decoding only the records it needs, so the list never grows with the
/// candidates beyond the budget (at 20M short documents it would be about
/// 120 MB). `hooked`: the records an index's hook has the pass read
/// besides the candidates (every record when an index is saved: at 5M
/// short documents their places took 140 MB beside a 128M budget).
pub fn possible(ctx: &RunContext, found: &Found, hooked: u64) -> bool {
    let fits = |max_memory| {
        let records = (2 * found.candidate_pairs).saturating_add(hooked);
        let most = records.saturating_mul(CANDIDATE_PLACE_BYTES);
        most <= Shares { max_memory }.candidate_places()
    };
    !ctx.inputs.is_empty() && found.spans.is_complete() && ctx.max_memory.is_none_or(fits)
}

/// A source of the candidate records only.
pub struct CandidateSource {
    /// Reads them.
    pub source: Box<dyn RecordSource>,
    /// Their record indices, in the order it yields them (for
    /// [`VerifyJob::reading_only`]).
    pub records: Arc<Vec<u32>>,
    /// Their places, in that order (the copy beside the pass finds them
    /// there when the places are on disk).
    pub wanted: Arc<Vec<Wanted>>,
}

/// The source of the candidate records of `job`.
pub fn candidates(
    ctx: &RunContext,
    spans: &Spans,
    job: &VerifyJob,
) -> anyhow::Result<CandidateSource> {
    let records = job
        .candidate_records()
        .map_err(|e| e.into_io())
        .context("dedup pass 2: reading the candidate records' set")?;
    let mut places = PlaceCursor::new(spans, &ctx.temp);
    let wanted = records
        .iter()
        .map(|&record| {
            let at = places
                .get(record.into())
                .map_err(|e| e.into_io())
                .context("dedup pass 2: reading the records' places")?
                .with_context(|| format!("candidate record {record} has no place in the input"))?;
            Ok(Wanted {
                span: Span {
                    input: at.input,
                    offset: at.offset,
                },
                len: at.len,
                line: at.line,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wanted = Arc::new(wanted);
    let source = Reread::open(&ctx.inputs, Arc::clone(&wanted))?;
    Ok(CandidateSource {
        source: Box::new(source),
        records: Arc::new(records),
        wanted,
    })
}
