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
//!   record's id key and place in the input.
//!
//! It is an estimate, not a bound: shorter records than typical make it
//! low. The writer's check before each run ([`drainpipe_actors::TempSpace::ensure_room`])
//! catches what it misses.

use std::path::{Path, PathBuf};

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

/// What a run is estimated to need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Documents in the input.
    pub documents: u64,
    /// The state those documents make in memory.
    pub state_bytes: u64,
    /// The bytes spilled to the temporary folder (0 when the state fits).
    pub spill_bytes: u64,
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
    Estimate {
        documents,
        state_bytes,
        spill_bytes,
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
