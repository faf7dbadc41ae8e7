//! Checkpoints: a run's state at a quiescent moment (nothing in flight),
//! written atomically into the output folder so `--resume` can continue with
//! exactly the result an uninterrupted run would give.
//!
//! A checkpoint holds the input position (records read and batches
//! numbered), the Integrator's counts, the rejects written so far and the
//! job's own state, all through [`crate::codec`]. It also holds the run's
//! fingerprint (job, inputs, parameters): a checkpoint of another run is
//! refused, never silently used.
//!
//! A job of several passes over its input keeps each completed pass's
//! result in a [`PassResult`] file beside the checkpoint, with the same
//! header and checks, so a resumed run skips the passes already done.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::CodecError;
use crate::output::OutputDir;

/// The checkpoint file in the output folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// Version of the checkpoint format; bump on any change of [`Checkpoint`]
/// or of a job's serialized state.
pub const FORMAT_VERSION: u32 = 1;

/// A run's saved state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Identifies the job, its inputs and its parameters.
    pub fingerprint: String,
    /// Records read (and all integrated or rejected).
    pub read: u64,
    /// Batches numbered so far.
    pub batches: u64,
    /// Records integrated.
    pub integrated: u64,
    /// Records rejected.
    pub rejected: u64,
    /// `rejects.jsonl` as written so far.
    pub rejects: Vec<u8>,
    /// The job's state, from [`crate::Integrate::save`].
    pub job: Vec<u8>,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// There is none.
    #[error("no checkpoint in {0} to resume from")]
    Missing(String),
    /// It cannot be read.
    #[error("cannot read checkpoint {path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// It is damaged or of another format version.
    #[error("checkpoint {path} refused: {cause}")]
    Codec {
        /// The file.
        path: String,
        /// Why.
        cause: CodecError,
    },
    /// It belongs to another run.
    #[error(
        "checkpoint {path} is for another run: it was written for {found}, this run is {expected}"
    )]
    OtherRun {
        /// The file.
        path: String,
        /// The checkpoint's fingerprint.
        found: String,
        /// This run's fingerprint.
        expected: String,
    },
}

impl Checkpoint {
    /// Serializes the checkpoint.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self, FORMAT_VERSION)
    }

    /// Loads the checkpoint in `output` and checks it belongs to the run
    /// with `fingerprint`.
    pub fn load(output: &OutputDir, fingerprint: &str) -> Result<Checkpoint, CheckpointError> {
        match load_checked(output, CHECKPOINT_FILE, fingerprint, |c: &Checkpoint| {
            &c.fingerprint
        })? {
            Some(checkpoint) => Ok(checkpoint),
            None => Err(CheckpointError::Missing(
                output.path().display().to_string(),
            )),
        }
    }
}

/// The result of a completed pass of a multi-pass job, in a file of the
/// output folder named by the job, so that a resumed run skips the pass.
///
/// It is written through [`crate::codec`] like a [`Checkpoint`] (magic,
/// [`FORMAT_VERSION`], checksum) and refused the same way when damaged or
/// foreign. Its fingerprint should name the pass as well as the run, so
/// one pass's result is never taken for another's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassResult {
    /// Identifies the run and the pass.
    pub fingerprint: String,
    /// The job's encoding of the pass's result.
    pub state: Vec<u8>,
}

impl PassResult {
    /// Serializes the pass result.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self, FORMAT_VERSION)
    }

    /// Loads the pass result `name` in `output`, checking it belongs to
    /// `fingerprint`; `None` when there is no such file (the pass did not
    /// complete).
    pub fn load(
        output: &OutputDir,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<PassResult>, CheckpointError> {
        load_checked(output, name, fingerprint, |r: &PassResult| &r.fingerprint)
    }

    /// Loads the pass result `name` in `output` whatever run wrote it
    /// (its fingerprint is not checked): for a run that starts over and
    /// removes what an earlier one left, which that result may name.
    pub fn load_any(output: &OutputDir, name: &str) -> Result<Option<PassResult>, CheckpointError> {
        load_file(output, name)
    }
}

/// Reads and decodes the file `name` of `output`; `None` when it does not
/// exist.
fn load_file<T: DeserializeOwned>(
    output: &OutputDir,
    name: &str,
) -> Result<Option<T>, CheckpointError> {
    let path = output.file(name);
    let shown = path.display().to_string();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => return Err(CheckpointError::Io { path: shown, cause }),
    };
    codec::decode(&bytes, FORMAT_VERSION)
        .map(Some)
        .map_err(|cause| CheckpointError::Codec { path: shown, cause })
}

/// Reads and decodes the file `name` of `output` and checks its
/// fingerprint; `None` when the file does not exist.
fn load_checked<T: DeserializeOwned>(
    output: &OutputDir,
    name: &str,
    fingerprint: &str,
    fingerprint_of: impl Fn(&T) -> &String,
) -> Result<Option<T>, CheckpointError> {
    let Some(value) = load_file::<T>(output, name)? else {
        return Ok(None);
    };
    let shown = output.file(name).display().to_string();
    let found = fingerprint_of(&value);
    if found != fingerprint {
        return Err(CheckpointError::OtherRun {
            path: shown,
            found: found.clone(),
            expected: fingerprint.to_owned(),
        });
    }
    Ok(Some(value))
}

/// Checkpointing settings of a run.
#[derive(Debug, Clone, Default)]
pub struct Checkpoints {
    /// Take one this often while running (`None`: only on a stop request).
    pub every: Option<Duration>,
    /// The run's fingerprint, stored in and checked against checkpoints.
    pub fingerprint: String,
    /// The checkpoint to resume from.
    pub resume: Option<Checkpoint>,
}

/// What checkpointing cost, for `summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckpointStats {
    /// Checkpoints written.
    pub count: u64,
    /// Seconds spent quiescing and writing them.
    pub seconds: f64,
    /// Bytes of the last checkpoint.
    pub bytes: u64,
    /// Whether this run resumed from a checkpoint.
    pub resumed: bool,
    /// Records read before the resumed checkpoint (0 if not resumed).
    pub resumed_at: u64,
}
