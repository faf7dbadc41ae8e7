//! The up-front estimate of the temporary disk space a run may need, made
//! before anything is read so that a run that will not fit is refused
//! (exit 74) rather than stopped half-way.
//!
//! The model (`docs/DEDUP.md`, "Temporary space"):
//!
//! - documents: a file's size over [`TYPICAL_RECORD_BYTES`] (a `.gz` or
//!   `.zst` file's times [`COMPRESSION`]), one per file of a directory, the
//!   demo corpus's size as given;
//! - state: dedup's pass-1 state per document
//!   (`jobs::dedup::params::bytes_per_document`); a run whose state fits
//!   in the budget spills nothing;
//! - spill: past the budget, every document's band keys go to sorted
//!   runs: [`SPILL_BYTES_PER_BAND`] per band, plus [`ID_KEY_BYTES`] for the
//!   record's id key and place in the input;
//! - clusters: the verified pairs are unknown before anything is read, so
//!   the model takes [`PAIRS_PER_DOCUMENT`] a document (a corpus made of
//!   duplicates: every record but its cluster's first removed, through
//!   one pair each, as identical records are); past the clusters' share
//!   of the budget (`IN_MEMORY_PAIR_BYTES` a pair in memory), their sorted
//!   runs take `DISK_BYTES_PER_PAIR` a pair at their peak
//!   (`src/jobs/dedup/spill/components.rs`; measured on 1M identical
//!   records under `--max-memory 128M`: 999,999 pairs, 79 MB written by
//!   the clusters in all, 79 bytes a pair, so their peak is below that).
//!
//! Pass 1's band runs are removed when the pass ends, before the clusters
//! are made: the run's peak is the larger of the two stages, not their
//! sum ([`Estimate::peak_bytes`]).
//!
//! It is an estimate, not a bound: shorter records than typical, or more
//! verified pairs than documents (a record of a dense cluster may have
//! several), make it low. The clusters check their room again once pass 2
//! has counted the pairs, and the writer before each run
//! ([`drainpipe_actors::TempSpace::ensure_room`]): they catch what it
//! misses.

use std::path::{Path, PathBuf};

use crate::jobs::dedup::budget::Shares;
use crate::jobs::dedup::clusters::IN_MEMORY_PAIR_BYTES;
use crate::jobs::dedup::spill::components::DISK_BYTES_PER_PAIR;

/// Input bytes per record the estimate assumes (short web documents; the
/// demo corpus's are about 2 KB, so the estimate is high there).
pub const TYPICAL_RECORD_BYTES: u64 = 512;

/// How many times larger than its file a compressed input is assumed to be.
pub const COMPRESSION: u64 = 4;

/// Bytes spilled per band per document: the band key (8) and the record
/// number, with the run's framing.
pub const SPILL_BYTES_PER_BAND: u64 = 16;

/// Bytes spilled per document besides its band keys: its id key and its
/// place in the input.
pub const ID_KEY_BYTES: u64 = 24;

/// Verified pairs a document the estimate assumes: a corpus of
/// duplicates, each removed record joined to its cluster through one
/// pair.
pub const PAIRS_PER_DOCUMENT: u64 = 1;

/// Which stage of a run needs the most temporary disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Pass 1's band runs.
    Bands,
    /// The clusters' sorted runs, made between passes 2 and 3.
    Clusters,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Bands => "pass 1's band runs",
            Stage::Clusters => "the clusters' runs (between passes 2 and 3)",
        })
    }
}

/// What a run is estimated to need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Documents in the input.
    pub documents: u64,
    /// The state those documents make in memory.
    pub state_bytes: u64,
    /// The bytes pass 1 spills to the temporary folder (0 when the state
    /// fits).
    pub spill_bytes: u64,
    /// The verified pairs assumed ([`PAIRS_PER_DOCUMENT`] a document).
    pub pairs: u64,
    /// The most bytes the clusters' runs take at once (0 when they are
    /// made in memory).
    pub clusters_bytes: u64,
}

impl Estimate {
    /// The most bytes the temporary folder holds at once: the larger
    /// stage's (pass 1's runs are gone when the clusters are made).
    pub fn peak_bytes(&self) -> u64 {
        self.spill_bytes.max(self.clusters_bytes)
    }

    /// The stage of [`Estimate::peak_bytes`].
    pub fn peak_stage(&self) -> Stage {
        if self.clusters_bytes > self.spill_bytes {
            Stage::Clusters
        } else {
            Stage::Bands
        }
    }
}

/// The documents of `inputs` (the demo corpus's `demo_docs` when there are
/// none), as the model counts them. An input that cannot be read counts
/// none: the run reports it when it reads it.
pub fn documents(inputs: &[PathBuf], demo_docs: u64) -> u64 {
    if inputs.is_empty() {
        return demo_docs;
    }
    inputs.iter().map(|path| documents_in(path)).sum()
}

fn documents_in(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        return files_below(path);
    }
    let compressed = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "gz" || e == "zst");
    let bytes = if compressed {
        meta.len().saturating_mul(COMPRESSION)
    } else {
        meta.len()
    };
    bytes.div_ceil(TYPICAL_RECORD_BYTES)
}

/// Regular files below `dir` (links not followed, as the reader does).
fn files_below(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => files_below(&entry.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// The estimate for `documents` with `bands` LSH bands (`None`: a job that
/// never spills), `state_per_document` bytes of state each, under a
/// budget of `budget` bytes.
pub fn estimate(
    documents: u64,
    bands: Option<u64>,
    state_per_document: u64,
    budget: u64,
) -> Estimate {
    let state_bytes = documents.saturating_mul(state_per_document);
    let spill_bytes = match bands {
        Some(bands) if state_bytes > budget => {
            documents.saturating_mul(SPILL_BYTES_PER_BAND * bands + ID_KEY_BYTES)
        }
        _ => 0,
    };
    let pairs = match bands {
        Some(_) => documents.saturating_mul(PAIRS_PER_DOCUMENT),
        None => 0,
    };
    let share = Shares { max_memory: budget }.clusters();
    let clusters_bytes = if pairs.saturating_mul(IN_MEMORY_PAIR_BYTES) > share {
        pairs.saturating_mul(DISK_BYTES_PER_PAIR)
    } else {
        0
    };
    Estimate {
        documents,
        state_bytes,
        spill_bytes,
        pairs,
        clusters_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_within_the_budget_spills_nothing_and_past_it_every_band_key() {
        let fits = estimate(1000, Some(18), 196, 1 << 20);
        assert_eq!((fits.state_bytes, fits.spill_bytes), (196_000, 0));
        let spills = estimate(1_000_000, Some(18), 196, 64 << 20);
        assert_eq!(spills.spill_bytes, 1_000_000 * (16 * 18 + 24));
        assert_eq!(estimate(1_000_000, None, 196, 1).spill_bytes, 0);
    }

    #[test]
    fn clusters_past_their_share_add_their_runs_and_the_peak_is_the_larger_stage() {
        // 1000 pairs in memory take 120 kB: within a quarter of 1 MiB.
        let fits = estimate(1000, Some(18), 196, 1 << 20);
        assert_eq!((fits.pairs, fits.clusters_bytes), (1000, 0));
        assert_eq!(fits.peak_bytes(), 0);
        // 100k documents: a state of 19.6 MB within 28 MiB, spilling no
        // band key, but 100k pairs (12 MB) past the clusters' 7 MiB.
        let clusters = estimate(100_000, Some(18), 196, 28 << 20);
        assert_eq!(clusters.spill_bytes, 0);
        assert_eq!(clusters.clusters_bytes, 100_000 * DISK_BYTES_PER_PAIR);
        assert_eq!(
            (clusters.peak_bytes(), clusters.peak_stage()),
            (100_000 * DISK_BYTES_PER_PAIR, Stage::Clusters)
        );
        // Past both, the band runs are the larger stage.
        let both = estimate(1_000_000, Some(18), 196, 64 << 20);
        assert_eq!(both.clusters_bytes, 1_000_000 * DISK_BYTES_PER_PAIR);
        assert_eq!(
            (both.peak_bytes(), both.peak_stage()),
            (both.spill_bytes, Stage::Bands)
        );
        assert_eq!(estimate(1_000_000, None, 196, 1).peak_bytes(), 0);
    }

    #[test]
    fn documents_are_counted_from_sizes_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.jsonl");
        std::fs::write(&plain, vec![b'x'; 1024]).unwrap();
        let packed = dir.path().join("b.jsonl.gz");
        std::fs::write(&packed, vec![b'x'; 512]).unwrap();
        let folder = dir.path().join("docs");
        std::fs::create_dir_all(folder.join("inner")).unwrap();
        for name in ["1.txt", "2.txt", "inner/3.txt"] {
            std::fs::write(folder.join(name), "text").unwrap();
        }
        assert_eq!(documents(std::slice::from_ref(&plain), 0), 2);
        assert_eq!(documents(&[packed], 0), COMPRESSION);
        assert_eq!(documents(&[folder, plain], 0), 3 + 2);
        assert_eq!(documents(&[], 7), 7);
        assert_eq!(documents(&[dir.path().join("missing")], 7), 0);
    }
}
