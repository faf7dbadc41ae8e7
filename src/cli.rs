//! The command line: clap definitions and their translation into a
//! [`RunContext`]. Nothing here runs a job.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use drainpipe::input::{DirAs, InputOptions, TextFields};
use drainpipe::jobs::RunContext;
use drainpipe::memory_budget::Budget;
use drainpipe_actors::{OutputDir, RunHandle, Settings, TempSpace};

/// Run CPU-heavy work over more data than fits in memory, on an actor
/// pipeline that stops without losing a record or hanging.
///
/// With no INPUT a job runs on an embedded, deterministic demo corpus.
/// Inputs: JSON Lines (.jsonl/.json/.ndjson), Parquet (.parquet, one record
/// per row), Common Crawl WET (.warc.wet), plain text (.txt, one record per
/// line), directories (of record files: their records; else every regular
/// file is one record; see --dir-as), any of them but Parquet compressed as
/// .gz or .zst; `-` reads JSON Lines from stdin.
///
/// Exit codes: 0 complete, 2 usage, 65 too many rejects (or every record
/// rejected), an unusable
/// input (a Parquet file without the text column, Parquet inputs of two
/// schemas for one kept.parquet) or a damaged dedup index, 70 data loss or internal error, 74 IO error, 129 hung up
/// (SIGHUP), 130 interrupted (SIGINT/SIGTERM); each after draining, with
/// partial outputs.
#[derive(Debug, Parser)]
#[command(name = "drainpipe", version, about, long_about)]
pub struct Cli {
    /// The job to run.
    #[command(subcommand)]
    pub job: JobCommand,
}

/// `--dir-as`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirAsArg {
    /// Each file holds records.
    Records,
    /// Each file is one document.
    Documents,
}

/// `--kept-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeptFormatArg {
    /// kept.jsonl.
    Jsonl,
    /// kept.parquet.
    Parquet,
}

/// The jobs.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Count word frequencies; writes vocab.tsv (word, count; by count
    /// descending, then word).
    Vocab {
        /// Options shared by every job.
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Near-duplicate detection (MinHash + LSH, candidates verified with the
    /// exact Jaccard similarity of word n-gram shingles). Writes the kept
    /// records (kept.jsonl, or kept.parquet: see --kept-format), clusters.jsonl (each removed record, the record
    /// it duplicates and their similarity) and the summary. With no input it
    /// runs on a demo corpus with planted near-duplicates and prints
    /// precision and recall against exact ground truth.
    Dedup {
        /// Options shared by every job.
        #[command(flatten)]
        common: CommonArgs,
        /// The job's parameters.
        #[command(flatten)]
        params: DedupArgs,
    },
    /// Run step 1 of distributed runs (`--nats`) on this host: takes
    /// batches of any run on the broker until SIGINT or SIGTERM, then
    /// finishes the batches it holds and exits 0. Not a job.
    Worker(WorkerArgs),
    /// Write the demo corpus as JSON Lines (`{"id": N, "text": ...}`) or
    /// Parquet (columns id and text), to benchmark or compare tools and
    /// formats on the same data. Not a job.
    Generate(GenerateArgs),
}

/// Parameters of `dedup`.
#[derive(Debug, Args)]
pub struct DedupArgs {
    /// Jaccard similarity at or above which two records are duplicates:
    /// above 0, at most 1.
    #[arg(long, allow_negative_numbers = true, value_name = "J", default_value_t = 0.8, value_parser = parse_threshold)]
    pub threshold: f64,
    /// Words per shingle (word n-grams): 1 to 100.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=bounds::NGRAM))]
    pub ngram: u32,
    /// MinHash permutations per signature: 1 to 1024 (each costs work on
    /// every shingle of every record).
    #[arg(long, allow_negative_numbers = true, value_name = "P", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=bounds::PERMUTATIONS))]
    pub num_perm: u32,
    /// LSH bands, at least 1; bands x rows at most --num-perm [default:
    /// chosen so a pair at the threshold becomes a candidate with
    /// probability >= 0.95].
    #[arg(long, allow_negative_numbers = true, value_name = "B", requires = "rows",
          value_parser = clap::value_parser!(u32).range(1..=bounds::PERMUTATIONS))]
    pub bands: Option<u32>,
    /// Rows per LSH band, at least 1 [default: chosen with --bands].
    #[arg(long, allow_negative_numbers = true, value_name = "R", requires = "bands",
          value_parser = clap::value_parser!(u32).range(1..=bounds::PERMUTATIONS))]
    pub rows: Option<u32>,
    /// Print the chosen bands and rows, the probability of becoming a
    /// candidate at J = 0.5 ... 1.0 and an estimate of the memory a run
    /// needs, then exit.
    #[arg(long)]
    pub explain: bool,
    /// Copy kept.jsonl after the verify pass, not during it (the outputs
    /// are the same; for inputs on a rotating disk, where the copy's reads
    /// and the verify pass's would compete for the head).
    #[arg(long)]
    pub copy_after_verify: bool,
    /// The kept records' file: `jsonl` (kept.jsonl: JSON Lines records
    /// byte for byte, any other record as {"id", "text"}, WET records with
    /// their "url") or `parquet` (kept.parquet: the schema of the Parquet
    /// inputs, every column, when every input is Parquet of one schema;
    /// else columns id and text) [default: parquet when every input is a
    /// Parquet file, else jsonl].
    #[arg(long, value_name = "FORMAT")]
    pub kept_format: Option<KeptFormatArg>,
    /// Write the run's index into DIR (a new folder): every record's band
    /// keys, id, cluster and shingle set, so that later runs dedup
    /// against it with --against. With --against, the new index covers
    /// the old indexes' records and this run's.
    #[arg(long, value_name = "DIR")]
    pub save_index: Option<PathBuf>,
    /// Dedup the input against the index in DIR (repeatable): a record
    /// that is a near-duplicate of an indexed record is removed, and
    /// clusters.jsonl names that record and the index. The index must
    /// have been made with the same parameters.
    #[arg(long, value_name = "DIR")]
    pub against: Vec<PathBuf>,
    /// Which record of a cluster is kept (the others are removed as its
    /// duplicates; the clusters are the same whatever the choice):
    /// `first` in input order; `longest` or `shortest` text, in characters;
    /// `field:NAME[:asc|desc]`, the highest (`desc`, the default:
    /// `field:score` keeps the best-scored) or lowest (`asc`) value of a
    /// JSON field or Parquet column; numbers compare numerically, strings
    /// by code points, a number ranks before a string, and a record
    /// without the field (or with null, a boolean, an array or an object
    /// there) ranks last. Ties go to the first in input order. A cluster
    /// with a record of an --against index keeps that record.
    #[arg(long, value_name = "POLICY", default_value = "first", value_parser = parse_keep)]
    pub keep: drainpipe::jobs::dedup::keep::KeepPolicy,
}

/// `--keep`.
fn parse_keep(s: &str) -> Result<drainpipe::jobs::dedup::keep::KeepPolicy, String> {
    s.parse()
}

/// The bounds of the numeric options. Each is far beyond any useful value
/// and well below one that would exhaust the machine (four billion
/// permutations took 24 GB, a batch of four billion records aborted on
/// allocation, 65,535 threads aborted the process): a value outside them is
/// refused with exit 2 before anything is read or written. (clap checks
/// the ranges of the smaller integer types as `i64`.) Every numeric
/// option takes a negative number as its value (`allow_negative_numbers`),
/// so that `--workers -1` is refused naming the option and its bounds, not
/// as an unknown argument `-1`.
pub mod bounds {
    /// Words per shingle.
    pub const NGRAM: i64 = 100;
    /// MinHash permutations (and so bands, rows and their product).
    pub const PERMUTATIONS: i64 = 1024;
    /// Processor threads.
    pub const WORKERS: i64 = 1024;
    /// Batches in flight.
    pub const WINDOW: i64 = 4096;
    /// Records per batch.
    pub const BATCH: i64 = 1_000_000;
    /// The largest record limit (1 GiB).
    pub const RECORD_BYTES: u64 = 1 << 30;
    /// Timeouts and the checkpoint interval (a week).
    pub const SECONDS: u64 = 7 * 24 * 3600;
    /// Words of a generated document.
    pub const DOC_WORDS: i64 = 100_000;
    /// Documents of the demo corpus (dedup numbers records with 32 bits).
    pub const DEMO_DOCS: u64 = 4_000_000_000;
}

/// `--threshold`: a number above 0 and at most 1 (NaN is neither).
fn parse_threshold(s: &str) -> Result<f64, String> {
    let t: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if t > 0.0 && t <= 1.0 {
        Ok(t)
    } else {
        Err(format!("{s} is not above 0 and at most 1"))
    }
}

/// A size in bytes: a number, optionally followed by `K`, `M`, `G` or `T`
/// (powers of 1024, with or without a trailing `B` or `iB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        if number.is_empty() {
            format!("{s:?} is not a size (a number of bytes, or with K, M, G or T)")
        } else {
            // Digits only: too many of them for a count of bytes.
            format!("{s} is more bytes than can be counted")
        }
    })?;
    if suffix.starts_with(['.', ',']) {
        return Err(format!(
            "{s:?} is not a whole number of bytes, K, M, G or T (for 1.5G write 1536M)"
        ));
    }
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        other => return Err(format!("{other:?} in {s:?} is not K, M, G or T")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is more bytes than can be counted"))
}

impl Cli {
    /// The checks no single option can make on its own, made before anything
    /// is read or written; an error exits 2 like clap's own.
    pub fn validate(&self) -> Result<(), clap::Error> {
        use clap::CommandFactory;
        let refuse = |message: String| {
            Cli::command().error(clap::error::ErrorKind::ValueValidation, message)
        };
        let nats = match &self.job {
            JobCommand::Worker(worker) => Some(&worker.nats),
            job => job.common().and_then(|c| c.nats.nats.as_ref()),
        };
        if let Some(url) = nats {
            drainpipe_actors::remote::Broker::new(url.clone())
                .check_url()
                .map_err(refuse)?;
        }
        if let Some(common) = self.job.common() {
            not_in_an_index(&common.output).map_err(refuse)?;
            if let Some(tmp) = &common.tmp_dir {
                not_below_a_file("--tmp-dir", tmp).map_err(refuse)?;
            }
            // Only a given budget is checked here: the default is never
            // below the least one.
            if let Some(given) = common.max_memory {
                Budget::resolve(Some(given), &common.settings())
                    .map_err(|too_small| refuse(too_small.to_string()))?;
            }
        }
        let JobCommand::Dedup { common, params } = &self.job else {
            return Ok(());
        };
        if let (Some(bands), Some(rows)) = (params.bands, params.rows) {
            let needed = u64::from(bands) * u64::from(rows);
            if needed > u64::from(params.num_perm) {
                return Err(refuse(format!(
                    "--bands {bands} x --rows {rows} need {needed} MinHash values, more than --num-perm {}",
                    params.num_perm
                )));
            }
        }
        if common.inputs.iter().any(|p| p.as_os_str() == "-") {
            return Err(refuse(
                "dedup reads its input three times and stdin (`-`) only once: save it to a file first"
                    .to_owned(),
            ));
        }
        // A pipe (`<(cmd)`, a FIFO) or a device reads once too: the later
        // passes would wait for a writer that never comes.
        if let Some(once) = common.inputs.iter().find(|p| reads_once(p)) {
            return Err(refuse(format!(
                "dedup reads its input three times and {} is a pipe or a device, read only once: save it to a file first",
                once.display()
            )));
        }
        params
            .validate_index(&common.output, &common.inputs)
            .map_err(refuse)
    }
}

impl DedupArgs {
    /// The checks of `--save-index` and `--against` made before any work:
    /// the folder to save must not exist, and each index must have been
    /// made with this run's parameters (a damaged index is refused when the
    /// run opens it, exit 65). A resumed run is checked the same way; an
    /// index changed since the interrupted run is refused by the run's
    /// fingerprint, which holds each index's.
    fn validate_index(&self, output: &std::path::Path, inputs: &[PathBuf]) -> Result<(), String> {
        use drainpipe::jobs::dedup::index::{self, IndexError};
        let options = self.params().index;
        if options.is_empty() {
            return Ok(());
        }
        if let Some(dir) = &options.save {
            validate_save_index(dir, output, inputs)?;
        }
        let mut seen: Vec<(std::path::PathBuf, &std::path::PathBuf)> = Vec::new();
        for dir in &options.against {
            // The same index twice would number its records twice, and an
            // index saved from the run would hold them twice.
            let Ok(real) = dir.canonicalize() else {
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(r, _)| *r == real) {
                return Err(format!(
                    "--against {} is given twice (also as --against {}): name each index once",
                    dir.display(),
                    first.display()
                ));
            }
            seen.push((real, dir));
        }
        let params = self.params();
        let Ok(banding) = params.banding() else {
            return Ok(());
        };
        let here = index::IndexParams::of(&params, banding);
        for dir in &options.against {
            if !dir.is_dir() {
                return Err(format!("--against {}: no such folder", dir.display()));
            }
            // A damaged index is refused when the run opens it (exit 65).
            if let Err(e @ IndexError::Mismatch { .. }) = index::run::open_checked(dir, &here) {
                return Err(e.to_string());
            }
        }
        Ok(())
    }

    /// The job's parameters.
    pub fn params(&self) -> drainpipe::jobs::dedup::DedupParams {
        drainpipe::jobs::dedup::DedupParams {
            threshold: self.threshold,
            ngram: self.ngram as usize,
            num_perm: self.num_perm as usize,
            bands: self.bands.map(|b| b as usize),
            rows: self.rows.map(|r| r as usize),
            copy_beside_verify: !self.copy_after_verify,
            kept_format: self.kept_format.map(|format| match format {
                KeptFormatArg::Jsonl => drainpipe::jobs::dedup::KeptFormat::Jsonl,
                KeptFormatArg::Parquet => drainpipe::jobs::dedup::KeptFormat::Parquet,
            }),
            index: drainpipe::jobs::dedup::index::IndexOptions {
                save: self.save_index.clone(),
                against: self.against.clone(),
            },
            keep: self.keep.clone(),
        }
    }
}

/// Whether the input at `path` is a pipe, a socket or a character
/// device: something that gives its bytes once. Only looked at (`stat`
/// does not open it, so a FIFO without a writer does not block here).
fn reads_once(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| {
        let t = m.file_type();
        t.is_fifo() || t.is_socket() || t.is_char_device()
    })
}

/// `--save-index DIR`: a new folder (one that exists is refused), not the
/// output folder nor inside it (which the run makes before it writes the
/// index, and which holds one run's outputs), not inside an input
/// directory (a later run over it would read the index as input), in a
/// folder (not below a file).
fn validate_save_index(
    dir: &std::path::Path,
    output: &std::path::Path,
    inputs: &[PathBuf],
) -> Result<(), String> {
    if dir.exists() {
        return Err(format!(
            "--save-index {}: the folder exists (an index is written as a new folder; remove it or name another)",
            dir.display()
        ));
    }
    let index = resolved(dir);
    if index.starts_with(resolved(output)) {
        return Err(format!(
            "--save-index {} is the output folder (-o) or inside it: an index is a folder of its own; name another",
            dir.display()
        ));
    }
    let below = |input: &&PathBuf| input.is_dir() && index.starts_with(resolved(input));
    if let Some(input) = inputs.iter().find(below) {
        return Err(format!(
            "--save-index {} is inside the input directory {}: a later run over it would read the index as input; name another",
            dir.display(),
            input.display()
        ));
    }
    not_below_a_file("--save-index", dir)
}

/// `-o DIR`: not the folder of a saved index (`dedup --save-index`), nor a
/// folder inside one: the run's outputs, lock and summary would be mixed
/// with the index's files.
fn not_in_an_index(output: &std::path::Path) -> Result<(), String> {
    use drainpipe::jobs::dedup::index::is_index_folder;
    match resolved(output).ancestors().find(|dir| is_index_folder(dir)) {
        Some(index) => Err(format!(
            "-o {}: {} is a saved dedup index (--save-index): outputs go to a folder of their own; name another",
            output.display(),
            index.display()
        )),
        None => Ok(()),
    }
}

/// `path` made absolute, through its links where it exists (the part that
/// does not exist yet is appended as given), so that two names of one
/// folder compare equal.
fn resolved(path: &std::path::Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let absolute: PathBuf = absolute.components().collect();
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Refuses a folder option whose path is, or is below, a file: it could
/// never be made (`--save-index f/IDX`, `--tmp-dir f`).
fn not_below_a_file(option: &str, dir: &std::path::Path) -> Result<(), String> {
    // Not only a regular file: a device (`/dev/null`) or a FIFO is no
    // folder either, and a run would find it out only when it spills.
    let not_a_folder = |a: &std::path::Path| a.exists() && !a.is_dir();
    match dir
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && not_a_folder(a))
    {
        Some(file) => Err(format!(
            "{option} {}: {} is a {}, not a folder",
            dir.display(),
            file.display(),
            if file.is_file() {
                "file"
            } else {
                "device or pipe"
            }
        )),
        None => Ok(()),
    }
}

/// Options of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of documents.
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 50_000
    )]
    pub docs: u64,
    /// Output file (written atomically); `-` for stdout.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    /// `jsonl`, or `parquet` (columns id and text; needs --output).
    #[arg(long, value_name = "FORMAT", default_value = "jsonl", value_parser = ["jsonl", "parquet"])]
    pub format: String,
    /// Rows per row group of the Parquet form.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub row_group: u64,
    /// Fewest words per document: 1 to 100,000 (short documents make
    /// large corpora that fit the disk: `--min-words 20 --max-words 40` is
    /// about 250 bytes a document, the default about 2 KB).
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=bounds::DOC_WORDS))]
    pub min_words: u32,
    /// Most words per document, at least --min-words: up to 100,000.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 400,
          value_parser = clap::value_parser!(u32).range(1..=bounds::DOC_WORDS))]
    pub max_words: u32,
}

impl JobCommand {
    /// The options shared by every job.
    pub fn common(&self) -> Option<&CommonArgs> {
        match self {
            JobCommand::Vocab { common } | JobCommand::Dedup { common, .. } => Some(common),
            JobCommand::Generate(_) | JobCommand::Worker(_) => None,
        }
    }

    /// The job and the parameters that change its result, for the run's
    /// fingerprint.
    pub fn identity(&self) -> String {
        match self {
            JobCommand::Vocab { .. } => "vocab".to_owned(),
            JobCommand::Dedup { params, .. } => {
                let p = params.params();
                let mut identity = match p.banding() {
                    Ok(b) => format!(
                        "dedup (threshold {}, {}-word shingles, {} permutations, {} bands x {} rows)",
                        p.threshold, p.ngram, p.num_perm, b.bands, b.rows
                    ),
                    Err(_) => format!("dedup {p:?}"),
                };
                // A run against indexes, or saving one, is another run; so
                // is one against an index that changed since (a resumed
                // run against it is refused).
                for dir in &p.index.against {
                    identity.push_str(&format!(" against {}", dir.display()));
                    let manifest = drainpipe::jobs::dedup::index::Manifest::read(dir);
                    if let Ok(manifest) = manifest {
                        identity.push_str(&format!(" ({})", manifest.fingerprint));
                    }
                }
                if let Some(dir) = &p.index.save {
                    identity.push_str(&format!(" saving an index into {}", dir.display()));
                }
                // Another kept record is another result (`first` is left
                // out: the fingerprint of a default run is unchanged).
                if !p.keep.is_first() {
                    identity.push_str(&format!(" keeping {}", p.keep));
                }
                identity
            }
            JobCommand::Generate(_) => "generate".to_owned(),
            JobCommand::Worker(_) => "worker".to_owned(),
        }
    }
}

/// Options shared by every job.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Input files or directories (`-` for stdin); none: the demo corpus.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Output folder (created if needed).
    #[arg(short, long, value_name = "DIR", default_value = "drainpipe-out")]
    pub output: PathBuf,

    /// Processor threads, 1 to 1024 [default: number of cores].
    #[arg(short, long, allow_negative_numbers = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=bounds::WORKERS))]
    pub workers: Option<u16>,

    /// Most batches in flight, 1 to 4096 [default: 2 x workers].
    #[arg(long, allow_negative_numbers = true, value_name = "W",
          value_parser = clap::value_parser!(u32).range(1..=bounds::WINDOW))]
    pub window: Option<u32>,

    /// Records per batch, 1 to 1,000,000 [default: adaptive, about 8 ms of
    /// work per batch].
    #[arg(long, allow_negative_numbers = true, value_name = "B",
          value_parser = clap::value_parser!(u32).range(1..=bounds::BATCH))]
    pub batch: Option<u32>,

    /// JSON field (or Parquet column) holding the text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    pub text_field: String,

    /// JSON field (or Parquet column) holding the record id (else the
    /// line or row number).
    #[arg(long, value_name = "NAME", default_value = "id")]
    pub id_field: String,

    /// How a directory input is read: `records` (each file holds records,
    /// by its name's format) or `documents` (each file is one document)
    /// [default: records when every file below it, hidden ones aside, is
    /// .jsonl/.ndjson/.json/.parquet/.warc.wet, optionally .gz or .zst].
    #[arg(long, value_enum, value_name = "HOW")]
    pub dir_as: Option<DirAsArg>,

    /// Records larger than this many bytes are rejected: 1 to 1 GiB
    /// (1073741824); a record up to this size is held in memory whole.
    #[arg(long, allow_negative_numbers = true, value_name = "BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(1..=bounds::RECORD_BYTES))]
    pub max_record_bytes: u64,

    /// Stop (exit 65) once more than N records are rejected [default: no limit].
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub max_rejects: Option<u64>,

    /// Deadline in seconds of each wait of a stopping run: the drain of
    /// the batches in flight, the release of the threads, and the job's
    /// finish (dedup's final merge), which may take as long as it needs
    /// while it reports progress: for it, this is the most time between
    /// two reports, so large inputs need no larger value. 1 to 604800 (a
    /// week).
    #[arg(long, allow_negative_numbers = true, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=bounds::SECONDS))]
    pub drain_timeout: u64,

    /// Log a stall report when no batch completes for this many seconds:
    /// 1 to 604800 (a week).
    #[arg(long, allow_negative_numbers = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=bounds::SECONDS))]
    pub stall_timeout: u64,

    /// Documents in the demo corpus (used when no INPUT is given): at most
    /// 4,000,000,000 (records are numbered with 32 bits).
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(0..=bounds::DEMO_DOCS))]
    pub demo_docs: u64,

    /// Take a checkpoint this often, in seconds (0: only when interrupted):
    /// at most 604800 (a week).
    #[arg(long, allow_negative_numbers = true, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=bounds::SECONDS))]
    pub checkpoint_every: u64,

    /// Continue from the checkpoint in the output folder; the final outputs
    /// are those an uninterrupted run would have written.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,

    /// Overwrite an output folder that holds results of another run.
    #[arg(long)]
    pub force: bool,

    /// No progress bar or progress lines.
    #[arg(long)]
    pub no_progress: bool,

    /// The most memory the run's state may hold, in bytes or with a suffix
    /// (`256M`, `4G`); past it, state spills to disk in --tmp-dir. At least
    /// the memory the run holds whatever its input (batch buffers of the
    /// window, threads; a smaller value is refused naming it) [default:
    /// half of the memory available to the process, cgroup limits
    /// included].
    #[arg(long, allow_negative_numbers = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,

    /// Where state that passes --max-memory spills: a folder of this run's
    /// own is made inside DIR, named for the output folder, and removed
    /// when the run ends, unless a checkpoint may need it for --resume
    /// [default: inside the output folder].
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,

    /// More on stderr: -v each pass's phases and results, -vv debug, -vvv
    /// trace. By default only progress, warnings, errors and the summary.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors (and the summary of a run that failed).
    #[arg(short, long)]
    pub quiet: bool,

    /// Distributed runs (`--nats`).
    #[command(flatten)]
    pub nats: NatsArgs,
}

impl CommonArgs {
    /// The log level the flags ask for. Log lines are detail: by default a
    /// run shows progress and its summary (printed, not logged) and only
    /// the log lines that need a reader, warnings and errors.
    pub fn log_level(&self) -> log::LevelFilter {
        match (self.quiet, self.verbose) {
            (true, _) | (false, 0) => log::LevelFilter::Warn,
            (false, 1) => log::LevelFilter::Info,
            (false, 2) => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }

    /// The pipeline settings the flags ask for.
    pub fn settings(&self) -> Settings {
        let defaults = Settings::default();
        let workers = self.workers.map_or(defaults.workers, usize::from);
        Settings {
            workers,
            window: self.window.map_or(2 * workers, |w| w as usize),
            batch: self.batch.map(|b| b as usize),
            drain_timeout: Duration::from_secs(self.drain_timeout),
            stall_timeout: Duration::from_secs(self.stall_timeout),
            max_rejects: self.max_rejects,
            ..defaults
        }
    }

    /// The run context, given the output folder (already created), the
    /// stop handle, the memory budget and the temporary space.
    pub fn context(
        &self,
        job: &str,
        output: OutputDir,
        handle: RunHandle,
        (progress, stages): (
            drainpipe::jobs::ProgressFactory,
            drainpipe::jobs::StageFactory,
        ),
        (budget, temp): (&Budget, std::sync::Arc<TempSpace>),
    ) -> RunContext {
        let input_options = InputOptions {
            max_record_bytes: usize::try_from(self.max_record_bytes).unwrap_or(usize::MAX),
            // The temporary folder too: `--tmp-dir` inside an input
            // directory read as documents would have the later passes read
            // the spilled runs as records, and fail the run.
            leave_out: vec![output.path().to_path_buf(), temp.folder().to_path_buf()],
            fields: TextFields {
                text: self.text_field.clone(),
                id: self.id_field.clone(),
            },
            dir_as: self.dir_as.map(|how| match how {
                DirAsArg::Records => DirAs::Records,
                DirAsArg::Documents => DirAs::Documents,
            }),
            ..InputOptions::default()
        };
        RunContext {
            inputs: self.inputs.clone(),
            fingerprint: self.fingerprint(job, &input_options),
            input_options,
            fields: TextFields {
                text: self.text_field.clone(),
                id: self.id_field.clone(),
            },
            settings: self.settings(),
            handle,
            progress,
            stages,
            demo_docs: self.demo_docs,
            checkpoint_every: (self.checkpoint_every > 0)
                .then(|| Duration::from_secs(self.checkpoint_every)),
            resume: self.resume,
            engine: drainpipe::jobs::Engine::Actors,
            buffers: drainpipe_actors::BatchBuffers::new(),
            max_memory: Some(budget.bytes),
            remote: self.nats.settings(),
            temp,
            output,
        }
    }

    /// What identifies a run's result: the job and its parameters, the
    /// input-reading options and each input's path, size and modification
    /// time (or the demo corpus's size). Tuning (workers, window, batch)
    /// is not part of it: it never changes the result.
    pub fn fingerprint(&self, job: &str, input_options: &InputOptions) -> String {
        let inputs: Vec<String> = if self.inputs.is_empty() {
            vec![format!("demo corpus of {} documents", self.demo_docs)]
        } else {
            self.inputs
                .iter()
                .map(|path| drainpipe::input::identity(path, input_options))
                .collect()
        };
        // The version: another release may hash or serialize differently,
        // so its checkpoints are refused rather than resumed.
        format!(
            "drainpipe {}; job {job}; text field {:?}, id field {:?}, max record {} bytes; directories as {:?}; inputs: {}",
            env!("CARGO_PKG_VERSION"),
            self.text_field,
            self.id_field,
            self.max_record_bytes,
            input_options.dir_as,
            inputs.join(", ")
        )
    }
}

// Distributed runs: step 1 on worker hosts through NATS JetStream
// (`docs/DISTRIBUTED.md`).

/// Options of a run whose step 1 runs on worker hosts.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// Run step 1 on `drainpipe worker` hosts through the NATS server at
    /// URL (`nats://host:4222`, `tls://...`; JetStream on). This process
    /// reads the input and integrates; exit 69 if the server cannot be
    /// reached.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// A NATS credentials file.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_creds: Option<PathBuf>,
    /// PEM certificates of the authorities that sign the server's TLS
    /// certificate, trusted in place of the system's (TLS then required).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_ca: Option<PathBuf>,
    /// The run's name on the broker (letters, digits, - and _) [default:
    /// made of the process id and the time].
    #[arg(long, value_name = "NAME", requires = "nats",
          value_parser = parse_run_name)]
    pub run: Option<String>,
    /// Seconds a worker may hold a batch without news before the broker
    /// gives it to another: 1 to 604800.
    #[arg(long, allow_negative_numbers = true, value_name = "SECS", default_value_t = 30, requires = "nats",
          value_parser = clap::value_parser!(u64).range(1..=bounds::SECONDS))]
    pub nats_ack_wait: u64,
    /// Deliveries of a batch at most, 1 to 100; past them (every worker
    /// that took it died) its records are rejected with the reason.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 5, requires = "nats",
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub nats_max_deliver: u16,
    /// Seconds the broker may stay unreachable during the run, 1 to
    /// 604800: past them the run stops (exit 70) after a checkpoint, so
    /// `--resume` goes on once the broker is back.
    #[arg(long, allow_negative_numbers = true, value_name = "SECS", default_value_t = 60, requires = "nats",
          value_parser = clap::value_parser!(u64).range(1..=bounds::SECONDS))]
    pub nats_deadline: u64,
}

/// `--run`: a name a stream can take.
fn parse_run_name(s: &str) -> Result<String, String> {
    if drainpipe_actors::remote::valid_run_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: use 1 to 64 letters, digits, '-' or '_'"))
    }
}

impl NatsArgs {
    /// The broker settings, if the run is distributed.
    pub fn settings(&self) -> Option<drainpipe_actors::remote::RemoteSettings> {
        let url = self.nats.as_ref()?;
        let mut broker = drainpipe_actors::remote::Broker::new(url.clone());
        broker.creds = self.nats_creds.clone();
        broker.ca = self.nats_ca.clone();
        let run = self.run.clone().unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            format!("run-{}-{now}", std::process::id())
        });
        let mut settings = drainpipe_actors::remote::RemoteSettings::new(broker, run);
        settings.ack_wait = Duration::from_secs(self.nats_ack_wait);
        settings.max_deliver = i64::from(self.nats_max_deliver);
        settings.deadline = Duration::from_secs(self.nats_deadline);
        Some(settings)
    }
}

/// Options of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The NATS server (JetStream on).
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// A NATS credentials file.
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// PEM certificates of the authorities that sign the server's TLS
    /// certificate, trusted in place of the system's (TLS then required).
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Batches processed at once, 1 to 1024 [default: number of cores].
    #[arg(short, long, allow_negative_numbers = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=bounds::WORKERS))]
    pub workers: Option<u16>,
    /// More on stderr: -v each batch taken, -vv debug, -vvv trace.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl WorkerArgs {
    /// The worker's settings.
    pub fn settings(&self) -> drainpipe_actors::remote::worker::WorkerSettings {
        let mut broker = drainpipe_actors::remote::Broker::new(self.nats.clone());
        broker.creds = self.nats_creds.clone();
        broker.ca = self.nats_ca.clone();
        drainpipe_actors::remote::worker::WorkerSettings {
            broker,
            workers: self
                .workers
                .map_or_else(|| Settings::default().workers, usize::from),
        }
    }
}
