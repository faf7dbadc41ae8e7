//! Error types of the library. The binary turns them into messages and exit
//! codes at its edge.

use std::path::{Path, PathBuf};

/// An IO error on an output path, with the path.
///
/// The message includes the cause, so the cause is not also exposed as
/// `source()` (which would print it twice in an error chain).
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {cause}", path.display())]
pub struct OutputError {
    /// The file or folder concerned.
    pub path: PathBuf,
    /// The underlying error.
    pub cause: std::io::Error,
}

impl OutputError {
    /// An error on `path`.
    pub fn new(path: &Path, cause: std::io::Error) -> Self {
        OutputError {
            path: path.to_owned(),
            cause,
        }
    }
}

/// An error reading input, naming where it happened.
///
/// The message includes the cause (see [`OutputError`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {origin}{}: {cause}", near_line(*line))]
pub struct InputError {
    /// The input's display name.
    pub origin: String,
    /// The last line read before the error (0 if none).
    pub line: u64,
    /// The underlying error.
    pub cause: std::io::Error,
}

fn near_line(line: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" after line {line}")
    }
}

/// An error from the checkpoint codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a checkpoint of this program.
    #[error("not a drainpipe checkpoint (bad magic number)")]
    BadMagic,
    /// The checkpoint was written by another format version.
    #[error("checkpoint format version {found}, this build reads version {expected}")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The checksum does not match: the file is corrupt or truncated.
    #[error("checkpoint is corrupt or truncated (checksum mismatch)")]
    Checksum,
    /// The payload could not be encoded or decoded.
    #[error("checkpoint payload: {0}")]
    Payload(String),
}
