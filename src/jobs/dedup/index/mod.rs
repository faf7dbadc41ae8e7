//! A saved index (`--save-index DIR`), and a run against saved indexes
//! (`--against DIR`, repeatable): new data deduplicated against old data
//! without processing the old data again.
//!
//! # The guarantee
//!
//! Deduplicating B against the index of A removes exactly the records of
//! B that one run over A followed by B removes
//! (`tests/guarantees/dedup_against_an_index_removes_what_one_run_over_both_would.rs`).
//! So the index holds what such a run needs of A: every record of A (kept
//! and removed, numbered as the run over A read them), its band keys, its
//! cluster root, its id, and its normalized words, from which its shingle
//! set is recomputed exactly for verification.
//!
//! A run against indexes numbers the indexed records first (index after
//! index, in the order given), then its own. Pass 1 merges the indexes'
//! band runs before its own ([`hooks::JoinedBands`]: one k-way merge per
//! band, the index's run read a block at a time beside the run's spilled
//! runs, so nothing of the index is held whole and the run keeps its
//! `--max-memory`), so every bucket,
//! twin and window is that of the single run; of the pairs, those of two
//! indexed records are dropped as they are made (their clusters are in
//! the index), those
//! across go to pass 2, which verifies them exactly against the indexed
//! records' shingle sets, recomputed from their words, read in one
//! sequential sweep of the blocks that hold them ([`hooks::Joiner`]);
//! past their share of `--max-memory` ([`hooks::IndexedSets`]), written
//! to sorted runs in the order pass 2 reads the records and read back
//! front to back beside it. Union-find then joins this run's verified
//! pairs and those across, each indexed record standing for its cluster's
//! root ([`super::clusters::Clusters::with_index`]; past the clusters'
//! share of `--max-memory` under `--keep first`, the components of the
//! same pairs made with sorted runs,
//! [`super::clusters::Clusters::with_index_stream`]): a record of this run
//! is removed exactly when its cluster has an earlier record, as in the
//! single run, since every path from it to an earlier record reaches the
//! first indexed record on it through this run's own pairs.
//!
//! # Layout
//!
//! An index is a folder, written as one set: into a temporary folder
//! beside it (`.NAME.XXXXXX.tmp`), then renamed; a folder that exists is
//! never written over. Every file is made of codec frames (magic, version
//! [`INDEX_VERSION`], checksum), but the band runs, which are in the
//! sorted-run format of the spills (magic `DPSORTED`, version, a CRC-32
//! per block, [`crate::jobs::dedup::spill::runs`]) so that they join
//! pass 1's merge as they are:
//!
//! | file | holds |
//! |---|---|
//! | `manifest.bin` | [`Manifest`]: the parameters ([`IndexParams`]: threshold, n-gram, permutations, bands, rows, permutation seed, normalization version), the record count, every file's name and size (and each band run's entries and checksum), a fingerprint; written last |
//! | `band-NNN.bin` | one sorted run per band: `(key, record, twin fingerprint)` by key, written as pass 1 merges the band ([`files::band_name`]) |
//! | `roots.bin` | each record's cluster root: the record its cluster keeps (the first under `--keep first`), a frame per [`files::ROOT_BLOCK`] records, written and read in record order |
//! | `words-NNN.bin`, `ids-NNN.bin` | a segment: the normalized words (zstd) and ids of a range of records, in blocks of [`files::BLOCK_RECORDS`] |
//!
//! An index grown with `--against OLD --save-index NEW` numbers OLD's
//! records first, then every record of the run (kept and removed): its
//! band runs are the joined bands, written as pass 1 merges them; its roots those of the joined
//! clusters; its segments OLD's files (hard-linked, or copied across
//! file systems) followed by the run's.

use std::fmt;
use std::path::{Path, PathBuf};

pub mod files;
pub mod hooks;
pub mod manifest;
pub mod progress;
pub mod run;

pub use crate::jobs::dedup::params::IndexOptions;
pub use manifest::{IndexParams, Manifest, INDEX_VERSION, MANIFEST_FILE};
pub use run::IndexRun;

/// Whether `dir` is the folder of a saved index: it holds the index's
/// manifest and roots (an index is renamed into place whole, so a folder
/// with both is one, complete or damaged). Other runs' outputs are refused
/// there.
pub fn is_index_folder(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file() && dir.join(files::ROOTS_FILE).is_file()
}

/// Why an index cannot be used or written.
#[derive(Debug)]
pub enum IndexError {
    /// The index was made with other parameters (exit 2).
    Mismatch {
        /// The index's folder.
        dir: PathBuf,
        /// Each difference, as `threshold 0.8 in the index, 0.7 here`.
        differences: Vec<String>,
    },
    /// The index is not what it says: a frame that does not decode, a
    /// missing file, a size or count that does not match (exit 65).
    Damaged {
        /// The index's folder.
        dir: PathBuf,
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// A file of the index could not be read (exit 74).
    Read {
        /// The file's path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `--save-index` names a folder that exists, or the run cannot use
    /// an index as asked (exit 2).
    Refused(String),
    /// The indexed records' sets could not be written to the run's
    /// temporary folder past their share of the budget (exit 74).
    Spill(std::io::Error),
}

impl IndexError {
    /// A file that could not be read: a missing one is a damaged index.
    pub fn read(dir: &Path, file: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            IndexError::damaged(dir, file, "missing".into())
        } else {
            IndexError::Read {
                path: dir.join(file),
                source,
            }
        }
    }

    /// A file whose frame the codec refused, said as an index's file.
    pub fn undecodable(dir: &Path, file: &str, e: &drainpipe_actors::CodecError) -> Self {
        use drainpipe_actors::CodecError;
        let why = match e {
            CodecError::BadMagic => "not an index file (bad magic number)".to_owned(),
            CodecError::Version { found, expected } => {
                format!("format version {found}, this build reads version {expected}")
            }
            CodecError::Checksum => "corrupt or truncated (checksum mismatch)".to_owned(),
            CodecError::Payload(e) => format!("undecodable: {e}"),
        };
        IndexError::damaged(dir, file, why)
    }

    /// A damaged file.
    pub fn damaged(dir: &Path, file: &str, why: String) -> Self {
        IndexError::Damaged {
            dir: dir.to_path_buf(),
            file: file.to_owned(),
            why,
        }
    }

    /// The sysexits code of a run that fails with this error: 2 (usage)
    /// for a mismatch or a refusal, 65 (data) for a damaged index, 74 (IO)
    /// for one that cannot be read.
    pub fn exit_code(&self) -> i32 {
        match self {
            IndexError::Mismatch { .. } | IndexError::Refused(_) => 2,
            IndexError::Damaged { .. } => 65,
            IndexError::Read { .. } | IndexError::Spill(_) => 74,
        }
    }
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Mismatch { dir, differences } => write!(
                f,
                "the index {} was made with other parameters: {}",
                dir.display(),
                differences.join(", ")
            ),
            IndexError::Damaged { dir, file, why } => write!(
                f,
                "the index {} is damaged: {file}: {why} (write it again with --save-index)",
                dir.display()
            ),
            IndexError::Read { path, source } => {
                write!(f, "reading the index file {}: {source}", path.display())
            }
            IndexError::Refused(why) => f.write_str(why),
            IndexError::Spill(e) => {
                write!(f, "writing the indexed records' sets to disk: {e}")
            }
        }
    }
}

impl std::error::Error for IndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IndexError::Read { source, .. } | IndexError::Spill(source) => Some(source),
            _ => None,
        }
    }
}
