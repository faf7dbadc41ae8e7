//! The three passes of `dedup`, each a unit with a named input and output
//! state ([`crate::jobs::dedup::chain`]):
//!
//! | pass | in | out |
//! |---|---|---|
//! | [`signatures`] | the records | [`Candidates`](crate::jobs::dedup::chain::Candidates) |
//! | [`verify`] | [`Found`] and the candidate pairs | [`Verified`](crate::jobs::dedup::chain::Verified) |
//! | [`kept`] | [`Clusters`](crate::jobs::dedup::clusters::Clusters) | [`Outputs`](kept::Outputs): `kept.jsonl` and `clusters.jsonl`, uncommitted |
//!
//! Each pass's folder holds its steps 1 and 2 (the `Job` and its
//! `Integrate` state) and, in its `mod.rs`, the function that runs it:
//! loads its result when resuming, else runs its pipeline, records its
//! time and ends the run when it does not complete
//! ([`crate::jobs::dedup::ledger`]). A pass imports the shared states and
//! kernels, never the job; the only import between passes is that pass 2
//! starts pass 3's copy beside itself ([`kept::start_beside`]).

use crate::jobs::pass::RunContext;

use super::chain::{Found, Reads};

pub mod kept;
pub mod signatures;
pub mod verify;

/// How passes 2 and 3 read the input, from where pass 1 found the records:
/// at their places when it knows every one (and, for the copy, every input
/// is JSON Lines and the kept records are written as `kept.jsonl`), else
/// in full. `hooked`: the records an index's hook has pass 2 read besides
/// the candidates ([`verify::reread::possible`]).
pub fn reads(ctx: &RunContext, found: &Found, form: &kept::KeptForm, hooked: u64) -> Reads {
    Reads {
        candidates_only: verify::reread::possible(ctx, found, hooked),
        copy: form.is_jsonl() && kept::copy::can_copy(&found.spans, &ctx.inputs),
    }
}
