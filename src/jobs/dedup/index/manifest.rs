//! An index's manifest: the parameters that decide its band keys and its
//! verification, how many records it numbers, and the names and sizes of
//! its files. Written last, through the codec, so a folder with a manifest
//! that decodes is a complete index.

use std::fmt::Write as _;
use std::path::Path;

use drainpipe_actors::codec;
use serde::{Deserialize, Serialize};

use super::IndexError;
use crate::jobs::dedup::normalize::NORMALIZATION_VERSION;
use crate::jobs::dedup::params::{Banding, DedupParams};
use crate::jobs::dedup::passes::signatures::PERMUTATION_SEED;
use crate::jobs::dedup::spill::runs::RunInfo;

/// The manifest's file name in the index folder.
pub const MANIFEST_FILE: &str = "manifest.bin";

/// Version of every file of an index (1: band runs, roots, segments of
/// words and ids in blocks; 2: band runs in the sorted-run format with
/// each entry's twin fingerprint, streamed into pass 1's merge, and roots
/// in blocks, streamed).
pub const INDEX_VERSION: u32 = 2;

/// What decides which pairs are candidates and which are duplicates: two
/// runs agree on an index only when all of them are equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexParams {
    /// `--threshold`.
    pub threshold: f64,
    /// `--ngram`.
    pub ngram: u32,
    /// `--num-perm`.
    pub num_perm: u32,
    /// LSH bands.
    pub bands: u32,
    /// Rows per band.
    pub rows: u32,
    /// The MinHash permutations' seed.
    pub permutation_seed: u64,
    /// [`NORMALIZATION_VERSION`].
    pub normalization: u32,
}

impl IndexParams {
    /// The parameters of a run with `params` and `banding`.
    pub fn of(params: &DedupParams, banding: Banding) -> Self {
        IndexParams {
            threshold: params.threshold,
            ngram: params.ngram as u32,
            num_perm: params.num_perm as u32,
            bands: banding.bands as u32,
            rows: banding.rows as u32,
            permutation_seed: PERMUTATION_SEED,
            normalization: NORMALIZATION_VERSION,
        }
    }

    /// Each parameter that differs, as `threshold 0.8 in the index, 0.7
    /// here`.
    pub fn differences(&self, here: &IndexParams) -> Vec<String> {
        let mut out = Vec::new();
        let mut differ = |name: &str, index: String, run: String| {
            if index != run {
                out.push(format!("{name} {index} in the index, {run} here"));
            }
        };
        differ(
            "threshold",
            self.threshold.to_string(),
            here.threshold.to_string(),
        );
        differ("ngram", self.ngram.to_string(), here.ngram.to_string());
        differ(
            "num_perm",
            self.num_perm.to_string(),
            here.num_perm.to_string(),
        );
        differ("bands", self.bands.to_string(), here.bands.to_string());
        differ("rows", self.rows.to_string(), here.rows.to_string());
        differ(
            "permutation seed",
            format!("{:#x}", self.permutation_seed),
            format!("{:#x}", here.permutation_seed),
        );
        differ(
            "normalization version",
            self.normalization.to_string(),
            here.normalization.to_string(),
        );
        out
    }
}

/// A file of the index: its name in the folder and its size, checked when
/// the index is opened (each file's frames carry their own checksums).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Name in the index folder.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A range of records whose words and ids are stored in blocks of
/// [`super::files::BLOCK_RECORDS`] records, one codec frame per block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The index's number of the segment's first record.
    pub first: u64,
    /// Records in the segment.
    pub records: u64,
    /// The words' file ([`crate::jobs::dedup::normalize::normalized_words`]).
    pub words: FileRef,
    /// The ids' file.
    pub ids: FileRef,
    /// Where each block starts in `words`, then the file's end.
    pub word_blocks: Vec<u64>,
    /// Where each block starts in `ids`, then the file's end.
    pub id_blocks: Vec<u64>,
}

/// What an index holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The index's name (its folder's name when it was written): what
    /// `clusters.jsonl` says a record matched in.
    pub name: String,
    /// The parameters its band keys and words were made with.
    pub params: IndexParams,
    /// Records it numbers, `0..records`, in the order the indexed runs
    /// read them (rejected records included, with no keys, set or id).
    pub records: u64,
    /// The band runs, one file per band, in the sorted-run format
    /// ([`crate::jobs::dedup::spill::runs`]: entries with fingerprints),
    /// with their entries and checksums.
    pub bands: Vec<RunInfo>,
    /// Each record's cluster root.
    pub roots: FileRef,
    /// The records' words and ids, in record order.
    pub segments: Vec<Segment>,
    /// A digest of everything above: two indexes with the same
    /// fingerprint hold the same records.
    pub fingerprint: String,
}

impl Manifest {
    /// Every file the manifest names, as `(name, bytes)`.
    pub fn files(&self) -> impl Iterator<Item = (&str, u64)> {
        let bands = self.bands.iter().map(|b| (b.name.as_str(), b.bytes));
        let rest = [&self.roots].into_iter().chain(
            self.segments
                .iter()
                .flat_map(|s| [&s.words, &s.ids].into_iter()),
        );
        bands.chain(rest.map(|f| (f.name.as_str(), f.bytes)))
    }

    /// Computes [`Manifest::fingerprint`] over the rest.
    pub fn seal(mut self) -> Self {
        self.fingerprint = String::new();
        let bytes = codec::encode(&self, INDEX_VERSION).expect("a manifest serializes");
        let mut digest = String::new();
        for seed in [0xCBF2_9CE4_8422_2325u64, 0x9E37_79B9_7F4A_7C15] {
            // FNV-1a, twice with other seeds: 128 bits, stable everywhere.
            let h = bytes.iter().fold(seed, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
            });
            let _ = write!(digest, "{h:016x}");
        }
        self.fingerprint = digest;
        self
    }

    /// Reads and checks the manifest of the index in `dir`: decoded
    /// through the codec, every file it names present with its size.
    pub fn read(dir: &Path) -> Result<Manifest, IndexError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| IndexError::read(dir, MANIFEST_FILE, e))?;
        let manifest: Manifest = codec::decode(&bytes, INDEX_VERSION)
            .map_err(|e| IndexError::undecodable(dir, MANIFEST_FILE, &e))?;
        for (name, bytes) in manifest.files() {
            let meta =
                std::fs::metadata(dir.join(name)).map_err(|e| IndexError::read(dir, name, e))?;
            if meta.len() != bytes {
                let why = format!("{} bytes, the manifest says {bytes}", meta.len());
                return Err(IndexError::damaged(dir, name, why));
            }
        }
        Ok(manifest)
    }

    /// Refuses an index made with other parameters than `here`, naming
    /// each difference.
    pub fn check(&self, dir: &Path, here: &IndexParams) -> Result<(), IndexError> {
        let differences = self.params.differences(here);
        if differences.is_empty() {
            Ok(())
        } else {
            Err(IndexError::Mismatch {
                dir: dir.to_path_buf(),
                differences,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_differing_parameter_is_named_with_both_values() {
        let here = IndexParams::of(&DedupParams::default(), Banding { bands: 18, rows: 6 });
        let mut index = here.clone();
        index.threshold = 0.7;
        index.rows = 5;
        assert_eq!(
            index.differences(&here),
            [
                "threshold 0.7 in the index, 0.8 here",
                "rows 5 in the index, 6 here"
            ]
        );
        assert!(here.differences(&here).is_empty());
    }
}
