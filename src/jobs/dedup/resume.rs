//! Checkpoints and `--resume` for `dedup`, a job of three passes.
//!
//! - While pass 1 (signatures) or pass 2 (verify) runs, it takes
//!   checkpoints like any job (`checkpoint.bin`, every
//!   `--checkpoint-every` seconds and on a stop request), with the pass's
//!   own fingerprint (the run's, plus the pass's name), so a checkpoint of
//!   one pass is never loaded into another.
//! - When pass 1 or 2 completes, its Integrator writes the pass's result
//!   ([`SIGNATURES_FILE`], [`VERIFIED_FILE`]: a `PassResult`, with the
//!   checkpoint's header and checks) before the pass's checkpoint is
//!   removed, so a stop at any moment leaves one or the other.
//! - Pass 3 (kept) takes no checkpoint and keeps no result: it writes
//!   nothing under its outputs' names until it ends, so a resumed run
//!   always runs it again from its start.
//! - `--resume` loads the results of the completed passes, resumes the
//!   interrupted pass from `checkpoint.bin` (or starts it, when the stop
//!   came between passes) and runs the rest. A damaged, foreign or
//!   other-version file is refused (exit code 2), never silently used.
//! - A run without `--resume` first removes pass results an earlier run
//!   left; a run that completes removes them once it has committed
//!   `kept.jsonl` and `clusters.jsonl` (pass 3, complete, has already
//!   removed `checkpoint.bin`).
//! - A run with indexes keeps what its hooks made in [`INDEX_FILE`]
//!   (`index::progress`): written by pass 1's hook before pass 1's result,
//!   and again once pass 2 has completed; its pass 2 takes no checkpoint
//!   and runs again from its start when it did not complete.
//! - The passes write the records they reject into [`REJECTS_FILE`], not
//!   `rejects.jsonl`: the run commits it as `rejects.jsonl` in the one set
//!   with its other outputs, so a run that fails or stops never leaves its
//!   list beside an earlier run's outputs.

use anyhow::Context as _;
use drainpipe_actors::{
    codec, Checkpoint, CheckpointError, Checkpoints, OutputDir, PassResult, RecordError,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state::STATE_VERSION;
use crate::jobs::pass::{Engine, RunContext};

/// The result of pass 1, kept until the run completes.
pub const SIGNATURES_FILE: &str = "dedup-signatures.bin";

/// The result of pass 2, kept until the run completes.
pub const VERIFIED_FILE: &str = "dedup-verified.bin";

/// What a run against saved indexes, or saving one, did in passes 1 and
/// 2 besides their results (the pairs across, the index being drafted),
/// kept until the run completes.
pub const INDEX_FILE: &str = "dedup-index.bin";

/// Every pass result file.
pub const PASS_FILES: [&str; 3] = [SIGNATURES_FILE, VERIFIED_FILE, INDEX_FILE];

/// The records the passes rejected, kept until the run commits its
/// outputs: then it becomes `rejects.jsonl` with `kept.jsonl` and
/// `clusters.jsonl`, as one set. Not a state to resume from by itself (a
/// pass that stopped leaves its list here too), so not one of
/// [`PASS_FILES`]; a resumed run finds it beside them.
pub const REJECTS_FILE: &str = "dedup-rejects.jsonl";

/// The passes of `dedup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Pass 1: signatures and candidate pairs.
    Signatures,
    /// Pass 2: exact verification.
    Verify,
    /// Pass 3: `kept.jsonl`.
    Kept,
}

impl Pass {
    /// The pass's name, in logs, reports and fingerprints.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Signatures => "signatures",
            Pass::Verify => "verify",
            Pass::Kept => "kept",
        }
    }

    /// The file its result is kept in, if it keeps one.
    pub fn result_file(self) -> Option<&'static str> {
        match self {
            Pass::Signatures => Some(SIGNATURES_FILE),
            Pass::Verify => Some(VERIFIED_FILE),
            Pass::Kept => None,
        }
    }
}

/// Where a completed pass writes its result; handed to its Integrator.
#[derive(Debug, Clone)]
pub struct ResultFile {
    name: &'static str,
    fingerprint: String,
}

impl ResultFile {
    /// Writes `form` (one of [`super::state`]'s) atomically into `output`.
    /// An IO error comes back as an `OutputError`, so the run exits 74.
    pub fn write<T: Serialize>(&self, output: &OutputDir, form: &T) -> Result<(), RecordError> {
        let result = PassResult {
            fingerprint: self.fingerprint.clone(),
            state: codec::encode(form, STATE_VERSION)?,
        };
        output.write_all(self.name, &result.encode()?)?;
        log::info!("dedup: {} written", self.name);
        Ok(())
    }
}

/// The checkpoints and pass results of one dedup run.
pub struct Resume<'a> {
    ctx: &'a RunContext,
}

impl<'a> Resume<'a> {
    /// For `ctx`'s run. Without `--resume`, removes the pass results an
    /// earlier run left, so they can never be mixed with this run's.
    pub fn new(ctx: &'a RunContext) -> anyhow::Result<Self> {
        if !ctx.resume {
            for name in PASS_FILES.into_iter().chain([REJECTS_FILE]) {
                ctx.output.remove_stale(name)?;
            }
        }
        Ok(Resume { ctx })
    }

    /// The fingerprint of `pass`'s checkpoints.
    pub fn fingerprint(&self, pass: Pass) -> String {
        format!("{}; pass {}", self.ctx.fingerprint, pass.name())
    }

    fn result_fingerprint(&self, pass: Pass) -> String {
        format!("{}; result of pass {}", self.ctx.fingerprint, pass.name())
    }

    fn index_fingerprint(&self) -> String {
        format!("{}; the index run's state", self.ctx.fingerprint)
    }

    /// Where a run with indexes keeps its state ([`INDEX_FILE`]); `None`
    /// for the no-actor baseline, which takes no checkpoints.
    pub fn index_file(&self) -> Option<ResultFile> {
        (self.ctx.engine == Engine::Actors).then(|| ResultFile {
            name: INDEX_FILE,
            fingerprint: self.index_fingerprint(),
        })
    }

    /// When resuming, the state a run with indexes left ([`INDEX_FILE`]).
    pub fn load_index<T: DeserializeOwned>(&self) -> anyhow::Result<Option<T>> {
        if !self.ctx.resume {
            return Ok(None);
        }
        self.load_file(INDEX_FILE, &self.index_fingerprint())
    }

    /// Where `pass` keeps its result; `None` for a pass that keeps none and
    /// for the no-actor baseline, which takes no checkpoints.
    pub fn result_file(&self, pass: Pass) -> Option<ResultFile> {
        if self.ctx.engine != Engine::Actors {
            return None;
        }
        Some(ResultFile {
            name: pass.result_file()?,
            fingerprint: self.result_fingerprint(pass),
        })
    }

    /// When resuming, the result `pass` left when it completed, as the form
    /// it was written in; `None` when it did not complete.
    pub fn load<T: DeserializeOwned>(&self, pass: Pass) -> anyhow::Result<Option<T>> {
        let Some(name) = pass.result_file().filter(|_| self.ctx.resume) else {
            return Ok(None);
        };
        let form = self.load_file(name, &self.result_fingerprint(pass))?;
        if form.is_some() {
            log::info!("dedup: pass {} loaded from {name}", pass.name());
        }
        Ok(form)
    }

    /// The form kept in `name`, written with `fingerprint`, if it exists.
    fn load_file<T: DeserializeOwned>(
        &self,
        name: &str,
        fingerprint: &str,
    ) -> anyhow::Result<Option<T>> {
        let output = &self.ctx.output;
        let Some(result) = PassResult::load(output, name, fingerprint)? else {
            return Ok(None);
        };
        let form = codec::decode(&result.state, STATE_VERSION).map_err(|cause| {
            CheckpointError::Codec {
                path: output.file(name).display().to_string(),
                cause,
            }
        })?;
        Ok(Some(form))
    }

    /// The checkpoint settings of `pass`, with the checkpoint to resume it
    /// from: required for pass 1 (with no pass result, a resumed run must
    /// have stopped in it); for pass 2 only when there is one (none means
    /// the stop came before it started). Pass 3 takes none.
    pub fn checkpoints(&self, pass: Pass) -> anyhow::Result<Checkpoints> {
        let fingerprint = self.fingerprint(pass);
        let every = self.ctx.checkpoint_every;
        let resume = match pass {
            Pass::Kept => {
                return Ok(Checkpoints {
                    every: None,
                    fingerprint,
                    resume: None,
                })
            }
            _ if !self.ctx.resume => None,
            Pass::Signatures => Some(Checkpoint::load(&self.ctx.output, &fingerprint)?),
            Pass::Verify => self.optional_checkpoint(&fingerprint, Pass::Signatures)?,
        };
        Ok(Checkpoints {
            every,
            fingerprint,
            resume,
        })
    }

    /// The checkpoint with `fingerprint`, if there is one. One of the
    /// `previous` pass, whose result was written, is what a stop between
    /// writing that result and removing the checkpoint leaves: stale, so
    /// skipped.
    fn optional_checkpoint(
        &self,
        fingerprint: &str,
        previous: Pass,
    ) -> anyhow::Result<Option<Checkpoint>> {
        match Checkpoint::load(&self.ctx.output, fingerprint) {
            Ok(checkpoint) => Ok(Some(checkpoint)),
            Err(CheckpointError::Missing(_)) => Ok(None),
            Err(CheckpointError::OtherRun { found, .. }) if found == self.fingerprint(previous) => {
                log::info!(
                    "dedup: ignoring the checkpoint of pass {}, which completed",
                    previous.name()
                );
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the result `pass` wrote when the pass is not accepted after
    /// all (it failed a check made after its Integrator finished).
    pub fn discard(&self, pass: Pass) -> anyhow::Result<()> {
        if let Some(name) = pass.result_file() {
            self.ctx.output.remove_stale(name)?;
        }
        Ok(())
    }

    /// Removes every pass result: the run is complete and its outputs are
    /// committed, nothing is left to resume.
    pub fn remove_all(&self) -> anyhow::Result<()> {
        for name in PASS_FILES.into_iter().chain([REJECTS_FILE]) {
            self.ctx
                .output
                .remove_stale(name)
                .with_context(|| format!("removing {name} after the run completed"))?;
        }
        Ok(())
    }
}

/// Whether `output` holds state a run may resume from: a checkpoint or
/// a pass's result (what keeps the temporary folder, and the draft of an
/// index being saved, when a run ends).
pub fn left_in(output: &OutputDir) -> bool {
    std::iter::once(drainpipe_actors::CHECKPOINT_FILE)
        .chain(PASS_FILES)
        .any(|name| output.file(name).exists())
}
