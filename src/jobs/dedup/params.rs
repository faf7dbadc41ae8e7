//! The job's parameters and the LSH banding chosen from them: how many
//! bands of how many rows a signature is cut into, and the probability
//! that a pair of a given Jaccard similarity becomes a candidate.

use std::fmt::Write as _;

/// What `drainpipe dedup` is asked to do (its command-line arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct DedupParams {
    /// Two records are duplicates when the exact Jaccard similarity of
    /// their shingle sets is at least this (in `(0, 1]`).
    pub threshold: f64,
    /// Words per shingle (the `n` of the word n-grams), at least 1.
    pub ngram: usize,
    /// MinHash permutations available to the signature, at least 1; the
    /// banding uses `bands * rows <= num_perm` of them.
    pub num_perm: usize,
    /// LSH bands; chosen automatically when `None`.
    pub bands: Option<usize>,
    /// Rows (MinHash values) per band; chosen automatically when `None`.
    pub rows: Option<usize>,
    /// Copy `kept.jsonl` while pass 2 runs, when both read the input at the
    /// places pass 1 noted ([`super::passes::kept::follow`]); else after
    /// it. The outputs are the same.
    pub copy_beside_verify: bool,
    /// The form of the kept records (`--kept-format`); `None`: Parquet
    /// when every input is a Parquet file, else JSON Lines
    /// ([`super::passes::kept::form`]).
    pub kept_format: Option<KeptFormat>,
    /// `--save-index` and `--against` ([`super::index`]).
    pub index: IndexOptions,
    /// `--keep`: which record of a cluster is kept ([`super::keep`]).
    pub keep: super::keep::KeepPolicy,
}

impl Default for DedupParams {
    fn default() -> Self {
        DedupParams {
            threshold: 0.8,
            ngram: 5,
            num_perm: 128,
            bands: None,
            rows: None,
            copy_beside_verify: true,
            kept_format: None,
            index: IndexOptions::default(),
            keep: super::keep::KeepPolicy::First,
        }
    }
}

/// The file the kept records are written to (`--kept-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFormat {
    /// `kept.jsonl`.
    Jsonl,
    /// `kept.parquet`.
    Parquet,
}

/// `--save-index` and `--against`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexOptions {
    /// Write the run's index into this folder (which must not exist).
    pub save: Option<std::path::PathBuf>,
    /// Deduplicate against these indexes, in this order.
    pub against: Vec<std::path::PathBuf>,
}

impl IndexOptions {
    /// True when neither option is given: the run is the plain one.
    pub fn is_empty(&self) -> bool {
        self.save.is_none() && self.against.is_empty()
    }
}

/// The candidate probability the automatic choice guarantees for a pair
/// exactly at the threshold.
pub const TARGET_AT_THRESHOLD: f64 = 0.95;

/// The LSH banding: a signature of `bands * rows` MinHash values cut into
/// `bands` bands of `rows` values. Two records become a candidate pair when
/// all the rows of at least one band agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banding {
    /// Number of bands (`b`).
    pub bands: usize,
    /// MinHash values per band (`r`).
    pub rows: usize,
}

impl Banding {
    /// The probability that a pair with Jaccard similarity `j` becomes a
    /// candidate: `1 - (1 - j^r)^b` (each MinHash value agrees with
    /// probability `j`, independently).
    pub fn candidate_probability(&self, j: f64) -> f64 {
        1.0 - (1.0 - j.powi(self.rows as i32)).powi(self.bands as i32)
    }

    /// MinHash values the signature needs (`bands * rows`).
    pub fn signature_len(&self) -> usize {
        self.bands * self.rows
    }

    /// The automatic choice for `threshold` with `num_perm` permutations.
    ///
    /// The rows per band set how steep the S-curve is, so the largest `r`
    /// for which `b = num_perm / r` bands still make a pair at the threshold
    /// a candidate with probability >= [`TARGET_AT_THRESHOLD`] is chosen:
    /// it makes false positives (pairs below the threshold becoming
    /// candidates) as rare as the target allows. Then every band that fits
    /// is used (`b = num_perm / r`, more than the fewest that reach the
    /// target): false positives cost only verification work, since every
    /// candidate pair is verified exactly, while each extra band raises
    /// recall just above the threshold (at 0.8 with 128 permutations:
    /// 18 x 7, 0.986 at the threshold, instead of 13 x 7 and 0.950).
    ///
    /// When no `r` reaches the target (a low threshold with few
    /// permutations), one row per band and `num_perm` bands, the most
    /// sensitive banding, is returned.
    pub fn choose(threshold: f64, num_perm: usize) -> Banding {
        let num_perm = num_perm.max(1);
        (1..=num_perm)
            .rev()
            .map(|rows| Banding {
                bands: num_perm / rows,
                rows,
            })
            .find(|b| b.candidate_probability(threshold) >= TARGET_AT_THRESHOLD)
            .unwrap_or(Banding {
                bands: num_perm,
                rows: 1,
            })
    }
}

impl DedupParams {
    /// Checks the parameters and returns the banding to use: the automatic
    /// choice ([`Banding::choose`]) or the one given by `bands`/`rows`.
    /// With only one of them given, the other is `num_perm / given`.
    pub fn banding(&self) -> Result<Banding, String> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!(
                "the threshold must be in (0, 1], not {}",
                self.threshold
            ));
        }
        if self.ngram == 0 {
            return Err("the n-gram size must be at least 1".into());
        }
        if self.num_perm == 0 {
            return Err("the number of permutations must be at least 1".into());
        }
        let banding = match (self.bands, self.rows) {
            (None, None) => Banding::choose(self.threshold, self.num_perm),
            (Some(bands), None) => Banding {
                bands,
                rows: self.num_perm / bands.max(1),
            },
            (None, Some(rows)) => Banding {
                bands: self.num_perm / rows.max(1),
                rows,
            },
            (Some(bands), Some(rows)) => Banding { bands, rows },
        };
        if banding.bands == 0 || banding.rows == 0 {
            return Err(format!(
                "bands and rows must be at least 1 (got {} x {} with {} permutations)",
                banding.bands, banding.rows, self.num_perm
            ));
        }
        if banding.signature_len() > self.num_perm {
            return Err(format!(
                "{} bands x {} rows need {} permutations, more than --num-perm {}",
                banding.bands,
                banding.rows,
                banding.signature_len(),
                self.num_perm
            ));
        }
        Ok(banding)
    }
}

/// The `--explain` text: the banding chosen for `params` and the
/// probability that a pair becomes a candidate at J = 0.5, 0.6, ..., 1.0.
pub fn explain(params: &DedupParams) -> String {
    let mut s = String::new();
    let banding = match params.banding() {
        Ok(b) => b,
        Err(e) => return format!("invalid parameters: {e}\n"),
    };
    let how = if params.bands.is_none() && params.rows.is_none() {
        "chosen automatically: the most rows per band that still reach \
         P >= 0.95 at the threshold, with every band that fits"
    } else {
        "given on the command line"
    };
    let _ = writeln!(
        s,
        "dedup: threshold {t}, {n}-word shingles, {p} permutations",
        t = params.threshold,
        n = params.ngram,
        p = params.num_perm
    );
    let _ = writeln!(
        s,
        "LSH banding: {b} bands x {r} rows = {used} MinHash values ({how})",
        b = banding.bands,
        r = banding.rows,
        used = banding.signature_len(),
    );
    let _ = writeln!(
        s,
        "P(candidate | J) = 1 - (1 - J^{r})^{b}; every candidate pair is then \
         verified with the exact Jaccard similarity of its shingle sets",
        r = banding.rows,
        b = banding.bands
    );
    let _ = writeln!(
        s,
        "records sharing a band key: every pair is a candidate in buckets of up to {all}; \
         in larger ones identical signatures are paired with their first, and distinct \
         ones with the bucket's first and the {window} before them",
        all = super::buckets::ALL_PAIRS_UP_TO,
        window = super::buckets::WINDOW,
    );
    let at = banding.candidate_probability(params.threshold);
    let _ = writeln!(s, "P at the threshold {}: {at:.4}", params.threshold);
    if at < TARGET_AT_THRESHOLD {
        let _ = writeln!(
            s,
            "warning: below the {TARGET_AT_THRESHOLD} target; expect missed duplicates \
             near the threshold (more permutations or fewer rows raise it)"
        );
    }
    let _ = writeln!(s, "   J   P(candidate)");
    for tenth in 5..=10 {
        let j = tenth as f64 / 10.0;
        let _ = writeln!(s, "  {j:.1}  {:.4}", banding.candidate_probability(j));
    }
    s + &memory_estimate(&banding)
}

/// What the Integrator's state costs per document with `banding`, in bytes:
/// 8 bytes per band key, about a quarter more for the band lists' growth
/// and the sort's scratch, the record's place in the input (12 bytes) and
/// its bits. An estimate, calibrated on the demo corpus: 18 bands gave 197
/// bytes per document in `summary.json`'s `integrator_bytes_per_record`.
pub fn bytes_per_document(banding: &Banding) -> u64 {
    10 * banding.bands as u64 + 16
}

/// The `--explain` lines on memory: the estimate per document and for a
/// few corpus sizes.
fn memory_estimate(banding: &Banding) -> String {
    let per_doc = bytes_per_document(banding);
    let mib = |docs: u64| (per_doc * docs) as f64 / f64::from(1 << 20);
    format!(
        "memory (an estimate, not a bound): about {per_doc} bytes per document for pass 1's \
         band index ({b} bands), e.g. {m1:.0} MiB for 1 million documents, {m100:.1} GiB for \
         100 million; pass 2 then holds the shingle sets of candidate records only, and the \
         processors one batch each, besides\n",
        b = banding.bands,
        m1 = mib(1_000_000),
        m100 = mib(100_000_000) / 1024.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_eighteen_bands_of_seven_rows() {
        let b = DedupParams::default().banding().unwrap();
        assert_eq!(b, Banding { bands: 18, rows: 7 });
        assert!(b.candidate_probability(0.8) >= 0.95);
        // One more row per band would miss the target with the bands left.
        let steeper = Banding { bands: 16, rows: 8 };
        assert!(steeper.candidate_probability(0.8) < 0.95);
    }

    #[test]
    fn overrides_are_checked() {
        let p = |bands, rows| DedupParams {
            bands,
            rows,
            ..DedupParams::default()
        };
        assert_eq!(
            p(Some(16), None).banding().unwrap(),
            Banding { bands: 16, rows: 8 }
        );
        assert_eq!(
            p(None, Some(4)).banding().unwrap(),
            Banding { bands: 32, rows: 4 }
        );
        assert!(p(Some(20), Some(7)).banding().is_err());
        assert!(p(Some(0), None).banding().is_err());
        let bad = DedupParams {
            threshold: 0.0,
            ..DedupParams::default()
        };
        assert!(bad.banding().is_err());
    }

    #[test]
    fn explain_shows_the_table() {
        let text = explain(&DedupParams::default());
        assert!(text.contains("18 bands x 7 rows"), "{text}");
        assert!(text.contains("  1.0  1.0000"), "{text}");
        assert!(text.contains("  0.5  "), "{text}");
        assert!(
            text.contains("memory (an estimate, not a bound): about 196 bytes per document"),
            "{text}"
        );
        assert!(text.contains("187 MiB for 1 million documents"), "{text}");
    }
}
