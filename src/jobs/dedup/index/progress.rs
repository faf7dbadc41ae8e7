//! What a run with indexes has done besides its passes' results, kept for
//! `--resume` in [`crate::jobs::dedup::resume::INDEX_FILE`] until the run
//! completes.
//!
//! Pass 1 and 2's results say nothing of the indexes: pass 1's hook made
//! the candidate pairs across and wrote the joined bands into the index
//! being saved; pass 2's verified the pairs across and wrote the run's
//! words and ids into it. [`IndexProgress`] names all of that, as a
//! checkpoint names the spill runs: the pairs in memory, or the runs in
//! the run's temporary space; the draft folder of the index being saved
//! and the files in it. Nothing is copied.
//!
//! The order of the writes makes any stop safe:
//! - pass 1's hook writes [`IndexProgress`] before pass 1's Integrator
//!   writes the pass's result: a pass 1 result always has its pairs
//!   across (a stop between the two resumes pass 1 from its checkpoint,
//!   and the hook writes the state again);
//! - once pass 2 has completed (its result written), the run finishes the
//!   verification of the pairs across and writes the state again with
//!   [`VerifiedAcross`]: a pass 2 result without it is discarded, and
//!   pass 2 runs again from its start. Pass 2 takes no checkpoint with an
//!   index ([`crate::jobs::dedup::chain::RecordHook`] state is not saved):
//!   a stop in it resumes it from its start.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use drainpipe_actors::{codec, OutputDir, PassResult};

use crate::jobs::dedup::resume::{ResultFile, INDEX_FILE};
use crate::jobs::dedup::spill::across::CrossPairs;
use crate::jobs::dedup::spill::runs::{RunError, RunInfo};
use crate::jobs::dedup::spill::verified::VerifiedPairs;
use crate::jobs::dedup::state::STATE_VERSION;

use super::manifest::Segment;

/// A run's part in its indexes so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexProgress {
    /// The draft folder of the index being saved (`None`: none is saved).
    pub draft: Option<PathBuf>,
    /// Pass 1's candidate pairs across.
    pub cross: CrossPairs,
    /// The joined bands' runs, in the draft (none when no index is saved).
    pub bands: Vec<RunInfo>,
    /// What pass 2 made of the pairs across, once it completed.
    pub verified: Option<VerifiedAcross>,
}

/// Pass 2's part, once it completed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedAcross {
    /// The verified pairs across, by record, then indexed record.
    pub pairs: VerifiedPairs,
    /// The run's words and ids, written into the draft.
    pub segment: Option<Segment>,
    /// Candidate pairs across pass 1 made.
    pub cross_pairs: u64,
    /// Pairs across whose similarity pass 2 computed.
    pub checked: u64,
    /// Records pass 2 read for the hook (for the summary's reads).
    pub hooked: u64,
    /// Bytes the indexed records' sets went to disk with, and the most
    /// they held in memory.
    pub sets_spilled: (u64, u64),
    /// Bytes the sort of the indexed records whose sets pass 2 needed
    /// wrote.
    pub wanted_spilled: u64,
}

/// Where the state goes: the output folder's [`IndexProgress`] file.
#[derive(Debug, Clone)]
pub struct ProgressFile {
    output: OutputDir,
    file: ResultFile,
}

impl ProgressFile {
    /// The state file of the run writing into `output`.
    pub fn new(output: OutputDir, file: ResultFile) -> Self {
        ProgressFile { output, file }
    }

    /// The output folder it is kept in.
    pub fn output(&self) -> &OutputDir {
        &self.output
    }

    /// Writes `progress` atomically (an IO error ends the pass that
    /// writes it, exit 74).
    pub fn write(&self, progress: &IndexProgress) -> Result<(), RunError> {
        self.file
            .write(&self.output, progress)
            .map_err(|e| RunError::Failed {
                kind: std::io::ErrorKind::Other,
                message: format!("writing the index run's state for --resume: {e}"),
            })
    }
}

/// Removes the draft of the index an interrupted run was saving, named by
/// the state it left in `output` (whatever run that was), before a run
/// that starts over (`--force`) removes that state: nothing of the
/// interrupted run is left behind, even when the new run saves no index
/// (one saving the same index removes it anyway). Only a folder of a
/// draft's shape (`.NAME.XXXXXX.tmp`) is removed; a state that cannot be
/// read is left to the refusal that reads it.
pub fn remove_left_draft(output: &OutputDir) {
    let Ok(Some(result)) = PassResult::load_any(output, INDEX_FILE) else {
        return;
    };
    let Ok(progress) = codec::decode::<IndexProgress>(&result.state, STATE_VERSION) else {
        return;
    };
    let Some(draft) = progress.draft else {
        return;
    };
    let name = draft.file_name().map(|n| n.to_string_lossy().into_owned());
    let shaped = name.is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
    if !(shaped && draft.is_dir()) {
        return;
    }
    match std::fs::remove_dir_all(&draft) {
        Ok(()) => log::warn!(
            "removed {}, the draft of the index an interrupted run was saving",
            draft.display()
        ),
        Err(e) => log::warn!(
            "could not remove {}, the draft of an index: {e}",
            draft.display()
        ),
    }
}
