//! `dedup`: near-duplicate detection in text corpora with MinHash and LSH,
//! verified exactly, on the actor pipeline.
//!
//! Two records are duplicates when the exact Jaccard similarity of their
//! shingle sets (word n-grams of the normalized text, hashed to 64 bits)
//! is at least the threshold ([`similarity`]). The job runs three passes
//! over the input, each streaming, none holding the corpus:
//!
//! 1. **signatures** ([`passes::signatures`], a pipeline pass): the
//!    processors normalize ([`normalize`]), shingle ([`shingle`]) and
//!    compute a MinHash signature and its LSH band keys ([`minhash`]); the
//!    Integrator keeps the band keys (one list per band) and, at the end of
//!    the pass, sorts them: records sharing a key in a band are candidate
//!    pairs, each with the first record that had it ([`lsh`]). Banding:
//!    [`params`].
//! 2. **verify** ([`passes::verify`], a pipeline pass over the candidate
//!    records, or over the whole input): the processors compute the
//!    shingle set of the records that are in a candidate pair only; the
//!    Integrator computes the exact Jaccard similarity of every candidate
//!    pair, keeping a set only until the record's last partner has
//!    arrived. Union-find over the verified pairs ([`unionfind`]) makes the
//!    clusters ([`clusters`]); a cluster keeps its first record in input
//!    order, or the one `--keep` ranks first ([`keep`]: by the text's
//!    length or a field, the key computed by pass 2's processors).
//! 3. **kept** ([`passes::kept`]: a copy, or a pipeline pass):
//!    `kept.jsonl`, the kept records in input order; `clusters.jsonl`
//!    ([`clusters`]) lists every removed record with the record it
//!    duplicates. Both are committed once all passes agree, in one set
//!    with `rejects.jsonl` ([`outcome::commit`]). When it copies
//!    and pass 2 reads the candidates only, the copy runs on a thread
//!    beside pass 2 ([`passes::kept::follow`]), deciding each record as
//!    soon as pass 2 has settled its fate ([`fates`]).
//!
//! Passes 2 and 3 read only what they need when pass 1 noted where every
//! record it integrated is ([`spans`]: uncompressed files): pass 2 reads
//! the candidate records at their places ([`passes::verify::reread`]), and
//! pass 3 copies the kept records' bytes when every input is JSON Lines
//! ([`passes::kept::copy`]). Otherwise they read the whole input again,
//! parse only the records they need (and the records pass 1 rejected, to
//! reject them again with the same reason, [`records`]: every pass that
//! reads the whole input rewrites the passes' list of rejects,
//! [`resume::REJECTS_FILE`], with the same content),
//! and pass 3 is a pipeline pass whose processors format each kept
//! record's output line (removed ones are not even parsed) and whose
//! Integrator appends them to `kept.jsonl` in input order
//! ([`passes::kept::pipeline`]). The outputs are the same either way. A
//! pass that does not complete ends the run there; an input whose size or
//! modification time changed during the run fails it before anything is
//! committed ([`outcome`]).
//!
//! Under a memory budget (`--max-memory`), pass 1's band lists and id keys
//! spill to sorted runs in the run's temporary space whenever a chunk of
//! records fills their share, and are merged band by band into the same
//! candidate pairs when the pass ends ([`spill`]); the outputs are the same
//! for every budget.
//!
//! Passes 1 and 2 take checkpoints, and each keeps its result in the output
//! folder when it completes, so `--resume` skips the completed passes,
//! resumes the interrupted one from its checkpoint and runs the rest, with
//! the outputs of an uninterrupted run; pass 3 always runs again from its
//! start ([`resume`]).
//!
//! With `--against DIR`, the run joins saved indexes: their records come
//! first in its numbering, their band lists join pass 1's, pass 2 verifies
//! the pairs across, and a record joined to an indexed one is removed as
//! its duplicate; `--save-index DIR` writes the run's own ([`index`]).
//! Such a run resumes as any, but for pass 2, which runs again from its
//! start when it did not complete ([`index::progress`]).
//!
//! On the embedded demo corpus, the result also carries precision and
//! recall against the exact all-pairs ground truth ([`truth`]).
//!
//! Outputs are byte-identical whatever the number of workers, the window
//! or the batch size: the Integrators see records in input order, and
//! every choice (bucket's first record, cluster's kept record) is by
//! input order (a `--keep` policy's by its key, ties by input order).
//!
//! # Layout
//!
//! [`run_on`] reads as the chain: each pass is a function from the state
//! the one before made to the state it makes, then the steps that end a
//! complete run.
//!
//! ```text
//! records -signatures-> Candidates -verify-> Verified -union-find-> Clusters -kept-> Outputs
//!         -> input-change check -> commit (kept.jsonl, clusters.jsonl, rejects.jsonl) -> summary
//! ```
//!
//! Those states are what the next stage moves around: what a checkpoint
//! saves, what spills to disk under a memory budget, what a saved index
//! holds, what a remote worker sends. So each is a named type in one
//! module ([`chain`], with [`clusters::Clusters`]), their serialized forms
//! are in another ([`state`]: through the codec, under one version), and a
//! pass reads and makes those types, never another pass's internals.
//!
//! The modules, by layer. A module imports only from its own layer or the
//! layers above it (within a layer, one way only); nothing imports the job:
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | kernels | [`hash`], [`normalize`], [`shingle`], [`minhash`], [`buckets`], [`lsh`], [`similarity`], [`bitset`], [`unionfind`], [`keep`], [`spans`], [`ids`], [`params`], [`truth`], [`memory`], [`threads`] | text to shingles and signatures, band keys (and which pairs of a bucket) to candidate pairs, the exact similarity, small tables, record ids' keys and their repeats, the parameters, the ground truth, an in-memory source, work shared among threads; nothing of passes or files |
//! | shared types | [`chain`], [`clusters`], [`fates`], [`records`], [`state`], [`resume`], [`ledger`], [`spill`] | the states between passes and their serialized forms; what pass 2 tells the copy beside it; how a pass names a record and rejects again one pass 1 rejected; pass results and checkpoints; the run so far and how a pass ends it; state on disk under a memory budget (sorted runs, their merge, pass 1's chunks) |
//! | passes | [`passes::signatures`], [`passes::verify`], [`passes::kept`] | each pass's steps 1 and 2 (`job.rs`, `pipeline.rs`, ...) and, in its `mod.rs`, the function that runs it or loads its result |
//! | the job | this module, [`outcome`], [`index`] | the chain; the input-change check, the commit, the accuracy and the summary; a saved index, joined through hooks in passes 1 and 2 ([`chain::BandsHook`], [`chain::RecordHook`]) |
//!
//! Why: the next stages change the passes (spilling, remote workers,
//! other formats), and a pass should be changeable, or run elsewhere,
//! without touching the others. Pieces every pass needs (the Jaccard
//! similarity, record ids, the fates pass 2 tells the copy, the states
//! themselves) are leaf modules rather than parts of the pass that first
//! needed them, which once made seven modules import each other in a
//! circle.

use drainpipe_actors::RunReport;

use crate::jobs::pass::{open_source, RunContext, StageProgress, StageShow};

pub mod bitset;
pub mod buckets;
pub mod budget;
pub mod chain;
pub mod clusters;
pub mod crash;
pub mod fates;
pub mod hash;
pub mod ids;
pub mod index;
pub mod keep;
pub mod ledger;
pub mod lsh;
pub mod memory;
pub mod minhash;
pub mod normalize;
pub mod outcome;
pub mod params;
pub mod passes;
pub mod records;
pub mod resume;
pub mod shingle;
pub mod similarity;
pub mod spans;
pub mod spill;
pub mod state;
#[cfg(test)]
pub(crate) mod testing;
pub mod threads;
pub mod truth;
pub mod unionfind;

pub use chain::{KEPT_FILE, KEPT_PARQUET_FILE};
pub use clusters::CLUSTERS_FILE;
pub use ledger::OpenInput;
pub use outcome::{ACCURACY_DEFINITION, SIMILARITY_DEFINITION};
pub use params::{explain, Banding, DedupParams, KeptFormat};

use chain::{Found, Verified};
use clusters::Clusters;
use index::IndexRun;
use ledger::{Halt, Run};
use outcome::Findings;
use passes::{kept, signatures, verify};
use std::collections::HashMap;

/// Runs `dedup` over the context's input (the demo corpus when there is
/// none, with precision and recall against the exact ground truth up to
/// [`MAX_TRUTH_DOCS`] documents) and returns the report of the whole run: record counts are those
/// of pass 1; times add up every pass (`phases` sums each phase over the
/// pipeline passes, `result.passes` has each pass); `result` is the job's
/// summary. When a pass does not complete (interrupted, failed), the run
/// stops there and returns that pass's report, marked partial, with no
/// dedup output written (stale `kept.jsonl`/`clusters.jsonl` of an earlier
/// run are removed); `ctx.resume` continues it ([`resume`]).
/// A resumed run reports the passes it ran: record counts are those of the
/// first of them.
pub fn run(ctx: &RunContext, params: &DedupParams) -> anyhow::Result<RunReport> {
    if ctx.inputs.iter().any(|p| p.as_os_str() == "-") {
        anyhow::bail!(
            "dedup reads its input three times and stdin (`-`) only once: save it to a file first"
        );
    }
    // `--keep field:NAME` ranks by a column Parquet rows must carry.
    let keep_ctx;
    let ctx = match params.keep.field() {
        Some(name) => {
            let mut with_column = ctx.clone();
            with_column.input_options.columns.push(name.to_owned());
            keep_ctx = with_column;
            &keep_ctx
        }
        None => ctx,
    };
    let demo = ctx.inputs.is_empty();
    if demo && ctx.demo_docs > MAX_TRUTH_DOCS {
        log::info!(
            "dedup: no precision/recall for a demo corpus of more than {MAX_TRUTH_DOCS} documents"
        );
    }
    run_on(
        ctx,
        params,
        &|| open_source(ctx),
        demo && ctx.demo_docs <= MAX_TRUTH_DOCS,
    )
}

/// The largest demo corpus whose ground truth is computed: the exact join
/// holds every shingle set (about 2.4 KB per document, 3.4 KB at peak:
/// 170 MB for the default 50,000 documents).
pub const MAX_TRUTH_DOCS: u64 = 100_000;

/// [`run`] over the records `open` yields (called once for each pass that
/// reads the whole input: every call must yield the same records; a pass
/// that reads a different number of records fails the run with exit code
/// 74 and no output), with the accuracy against the exact ground truth in
/// the summary when `measure_accuracy` is true (it holds every shingle set
/// in memory: for the demo corpus and tests). Passes 2 and 3 read the
/// run's input files themselves when pass 1's records carry their places.
pub fn run_on(
    ctx: &RunContext,
    params: &DedupParams,
    open: &OpenInput<'_>,
    measure_accuracy: bool,
) -> anyhow::Result<RunReport> {
    match chain(ctx, params, open, measure_accuracy) {
        Ok(report) => Ok(report),
        Err(Halt::Ended(report)) => Ok(*report),
        Err(Halt::Failed(e)) => Err(e),
    }
}

/// The run's parameters: with indexes, or under a keep policy other than
/// `first`, the kept records are copied after pass 2, not beside it.
fn for_run(params: &DedupParams, index: Option<&IndexRun>) -> DedupParams {
    // The copy beside pass 2 knows nothing of the pairs across, nor of a
    // keep policy under which a later record may win: it would settle a
    // record's fate too early (the copy runs after pass 2).
    let beside = params.copy_beside_verify && index.is_none() && params.keep.is_first();
    DedupParams {
        copy_beside_verify: beside,
        ..params.clone()
    }
}

/// The run's context: records are numbered with 32 bits, the indexes'
/// first, so every pass stops before a record's number passes what they
/// leave ([`records::record_limit`]). An index run's state spills under
/// the budget like any run's (the indexes' band runs join pass 1's
/// merge), and resumes like any run's but for pass 2, which runs again
/// from its start ([`index::progress`]).
fn context_for_run(ctx: &RunContext, index: Option<&IndexRun>) -> RunContext {
    let indexed = index.map_or(0, IndexRun::indexed_records);
    RunContext {
        settings: drainpipe_actors::Settings {
            max_records: Some(records::record_limit(indexed)),
            ..ctx.settings.clone()
        },
        ..ctx.clone()
    }
}

/// The run's indexes opened ([`IndexRun::open`]), with what an
/// interrupted run left of its part in them when resuming.
fn open_indexes(
    ctx: &RunContext,
    params: &DedupParams,
    banding: Banding,
) -> anyhow::Result<Option<IndexRun>> {
    if params.index.is_empty() {
        return Ok(None);
    }
    let resume = resume::Resume::new(ctx)?;
    let file = (resume.index_file())
        .map(|file| index::progress::ProgressFile::new(ctx.output.clone(), file));
    let loaded = resume.load_index().map_err(|e| {
        let other_run = e.chain().any(|cause| {
            matches!(
                cause.downcast_ref(),
                Some(drainpipe_actors::CheckpointError::OtherRun { .. })
            )
        });
        match other_run {
            // Said first: the fingerprints that follow are long.
            true => e.context(
                "--resume: the interrupted run had other indexes (one saved again since?), \
                 inputs or parameters: run it again with --force",
            ),
            false => e,
        }
    })?;
    let resumable = index::run::Resumable {
        file,
        loaded,
        temp: std::sync::Arc::clone(&ctx.temp),
    };
    Ok(IndexRun::open(&params.index, params, banding, resumable)?)
}

/// The passes, each from the state the one before made, then the steps
/// that end a complete run. A pass or a check that fails ends the chain
/// with the run's report ([`Halt::Ended`]).
fn chain(
    ctx: &RunContext,
    params: &DedupParams,
    open: &OpenInput<'_>,
    measure_accuracy: bool,
) -> Result<RunReport, Halt> {
    let banding = params.banding().map_err(anyhow::Error::msg)?;
    // Before any work: the indexes' parameters and files checked.
    let mut index = open_indexes(ctx, params, banding)?;
    let params = &for_run(params, index.as_ref());
    let measure_accuracy = measure_accuracy && index.is_none();
    let ctx = &context_for_run(ctx, index.as_ref());
    // Before any work: inputs that cannot give the kept records' form.
    let form = passes::kept::form::decide(ctx, params.kept_format).map_err(anyhow::Error::new)?;
    let mut run = Run::start(ctx, params, open)?;
    let bands_hook = index.as_ref().map(IndexRun::bands_hook);
    let signed = signatures::run(&mut run, banding, bands_hook);
    // A band run of an index that could not be read ended pass 1: said as
    // the index's damage (exit 65) or IO error (exit 74).
    let signed = match (signed, index.as_ref().and_then(IndexRun::damage)) {
        (Err(_), Some(damage)) => return Err(anyhow::Error::new(damage).into()),
        (signed, _) => signed?,
    };
    let mut signed = signed;
    // Named by pass 1's result: removed once the outputs are in.
    let repeats_file = std::mem::take(&mut signed.repeated_ids);
    let (found, pairs) = signed.split();
    // A run of the integrated records that cannot be read stops the
    // pass reading it there, failed (exit 74).
    found.integrated.stop_on_failure(ctx.handle.clone());
    // Named before pass 2 takes them: removed once the outputs are in.
    let pair_files = match &pairs {
        spill::pair_files::CandidatePairs::Disk(files) => Some(files.clone()),
        spill::pair_files::CandidatePairs::Memory(_) => None,
    };
    // Pass 1's band runs, merge buffers and signatures are freed: pass 2
    // starts from what it holds, not from pass 1's peak.
    crate::allocator::give_back_freed();
    let shares = ctx
        .max_memory
        .map(|max_memory| budget::Shares { max_memory });
    let sets_share = shares.map(budget::Shares::indexed_sets);
    let across_share = (shares.map(budget::Shares::verified_pairs_across))
        .map(|share| spill::across::lowered_share().unwrap_or(share));
    // An interrupted run that completed pass 2 left what it made of the
    // pairs across: no hook, pass 2 is loaded. Else a pass 2 result it
    // left is discarded: pass 2 runs again with the hook.
    let verified_before = index.as_ref().and_then(IndexRun::verified_before);
    if index.is_some() && verified_before.is_none() {
        run.resume.discard(resume::Pass::Verify)?;
    }
    let record_hook = (index.as_mut())
        .filter(|_| verified_before.is_none())
        .map(|index| {
            let set_share = shares.map(budget::Shares::record_set);
            index.after_signatures((sets_share, &ctx.temp), (across_share, set_share))
        })
        .transpose()?;
    let hooked = match &record_hook {
        Some(hook) if hook.wants_words() => found.read(),
        Some(hook) => hook.records().count(),
        None => verified_before.unwrap_or(0),
    };
    let reads = passes::reads(ctx, &found, &form, hooked);
    let (verified, beside) = verify::run(&mut run, &found, pairs, &reads, record_hook)?;
    if let Some(index) = &mut index {
        index.after_verify(found.read(), hooked)?;
    }
    crash::here("dedup::before_clusters");
    // Pass 2's held sets, candidates' pairs and last-partner table freed.
    crate::allocator::give_back_freed();
    let ids = &verified.ids;
    let no_keys = HashMap::new();
    let keys = ids.keys().unwrap_or(&no_keys);
    let clusters = clusters_of(&mut run, index.as_mut(), &found, &verified)?;
    let outputs = kept::run(&mut run, &found, (&clusters, ids), &reads, &form, beside)?;
    outcome::check_unchanged(&run, &found, &verified, &reads, &outputs)?;
    let removed_spilled_bytes = outputs.removed_spilled_bytes;
    let (kept, rejects) = outcome::commit(&mut run, outputs, found.rejected)?;
    // Nothing is left to resume: the places on disk are of no more use
    // (a file that stays goes with the temporary folder).
    if let Err(e) = spill::places::remove_runs(&ctx.temp, &found.spans) {
        log::warn!("dedup: the outputs are committed, but {e}");
    }
    if let Err(e) = found.integrated.remove_runs() {
        log::warn!("dedup: the outputs are committed, but {e}");
    }
    if let Some(Err(e)) = pair_files.map(|files| files.remove(&ctx.temp)) {
        log::warn!(
            "dedup: the outputs are committed, but removing the candidate pairs' files: {e}"
        );
    }
    if let Err(e) = repeats_file.remove(&ctx.temp) {
        log::warn!("dedup: the outputs are committed, but removing the repeated ids' run: {e}");
    }
    if let Err(e) = verified.remove_files(&ctx.temp) {
        log::warn!("dedup: the outputs are committed, but removing pass 2's result files: {e}");
    }
    // The saved index is written once the outputs are committed.
    let indexes = index
        .map(|index| index.finish(&clusters, found.read()))
        .transpose()?;
    let accuracy = if measure_accuracy {
        outcome::demo_accuracy(ctx, open, params, &clusters)?
    } else {
        None
    };
    let findings = Findings {
        found: &found,
        verified: &verified,
        keys,
        clusters: &clusters,
        removed_spilled_bytes,
        reads,
        kept,
        kept_file: form.file_name(),
        rejects,
    };
    let mut report = outcome::summary(run, banding, &findings, accuracy)?;
    if let (Some(indexes), Some(result)) = (indexes, report.result.as_object_mut()) {
        result.insert("index".into(), indexes);
    }
    Ok(report)
}

/// The clusters of pass 2's verified pairs, ranked by the clustered
/// records' `keys` under a `--keep` policy other than `first`. Without
/// an index, the pairs are streamed into [`Clusters::from_pair_stream`]
/// under `first`, else into [`Clusters::from_pair_stream_keeping`] with
/// the clustered records' keys (each on disk past its share); with an
/// index, into [`IndexRun::clusters`] (likewise, with the keys under a
/// policy other than `first`). A stop seen while they are made
/// ends the run as a stop before pass 3 does ([`stopped_in_clusters`]).
fn clusters_of(
    run: &mut Run<'_>,
    index: Option<&mut IndexRun>,
    found: &Found,
    verified: &Verified,
) -> Result<Clusters, Halt> {
    let (ctx, params) = (run.ctx, run.params);
    let share = clusters_share(ctx);
    let asked = || ctx.handle.stop_requested();
    let shown = ShownStage::new(ctx, "clusters");
    let watch = |done: spill::components::Steps| shown.show(done, false);
    let stop = clusters::StopCheck::watched(&asked, &watch);
    let made = match index {
        Some(index) => {
            let keep = (!params.keep.is_first()).then_some((&verified.ids, &params.keep));
            let within = (share, &ctx.temp);
            index.clusters(&verified.pairs, within, (keep, &stop))
        }
        None => clusters_streamed(ctx, params, verified, (share, &stop)),
    };
    shown.show(stop.done(), true);
    match made {
        Err(e) if matches!(e.downcast_ref(), Some(spill::runs::RunError::Stopped)) => {
            Err(stopped_in_clusters(run, found))
        }
        made => Ok(made?),
    }
}

/// A step between passes shown as the passes are (`RunContext::stages`),
/// from what its [`clusters::StopCheck`] counts and the bytes the run's
/// temporary space was written since it started.
struct ShownStage<'a> {
    ctx: &'a RunContext,
    before: u64,
    show: std::cell::RefCell<StageShow>,
}

impl<'a> ShownStage<'a> {
    fn new(ctx: &'a RunContext, name: &str) -> Self {
        ShownStage {
            ctx,
            before: ctx.temp.bytes_spilled(),
            show: std::cell::RefCell::new((ctx.stages)(name)),
        }
    }

    /// Shows `steps`; `done`: the step is over, its display goes.
    fn show(&self, steps: spill::components::Steps, done: bool) {
        let progress = StageProgress {
            steps: steps.steps,
            round: steps.round,
            bytes_written: self.ctx.temp.bytes_spilled().saturating_sub(self.before),
            done,
        };
        (self.show.borrow_mut())(&progress);
    }
}

/// The clusters without an index, from pass 2's verified pairs read
/// front to back, within their share of the run's budget
/// ([`budget::Shares::clusters`]): past it, made with sorted runs in the
/// run's temporary space ([`spill::components`], and under a `--keep`
/// policy other than `first` [`spill::ranked`], with the clustered
/// records' keys). A pair source that fails, or a run that cannot be
/// written or read, ends the run as an IO error (exit 74); a stop
/// request, with [`spill::runs::RunError::Stopped`].
fn clusters_streamed(
    ctx: &RunContext,
    params: &DedupParams,
    verified: &Verified,
    (share, stop): (Option<u64>, &clusters::StopCheck<'_>),
) -> anyhow::Result<Clusters> {
    let (pairs, count) = (verified.pairs.reader(&ctx.temp), verified.pairs.len());
    let within = (share, &ctx.temp);
    let made = if params.keep.is_first() {
        Clusters::from_pair_stream(pairs, count, within, stop)
    } else {
        let keeping = (&verified.ids, &params.keep);
        Clusters::from_pair_stream_keeping(pairs, count, keeping, within, stop)
    };
    made.map_err(|e| match e {
        spill::runs::RunError::Stopped => anyhow::Error::new(e),
        e => anyhow::Error::new(e.into_io())
            .context("dedup: making the clusters of the verified pairs"),
    })
}

/// The clusters' share of the run's budget ([`budget::Shares::clusters`];
/// `None`: no budget).
fn clusters_share(ctx: &RunContext) -> Option<u64> {
    let share = ctx
        .max_memory
        .map(|max_memory| budget::Shares { max_memory }.clusters());
    // Tests lower the share (feature `failpoints`):
    // `dedup::clusters_share=return(BYTES)`.
    #[cfg(feature = "failpoints")]
    let share = fail::eval("dedup::clusters_share", |bytes| {
        bytes.and_then(|b| b.parse::<u64>().ok())
    })
    .flatten()
    .or(share);
    share
}

/// The run stopped while its clusters were made, after pass 2 completed:
/// ended as a stop before pass 3 is, pass 2's result kept for `--resume`
/// (the clusters' runs went as they dropped). A run that loaded passes 1
/// and 2 ran no pass: its report is built from their counts.
fn stopped_in_clusters(run: &mut Run<'_>, found: &Found) -> Halt {
    log::warn!("dedup: stopped while making the clusters; --resume goes on from pass 2's result");
    if run.reports.is_empty() {
        let report = run.loaded_report(found.records, found.rejected);
        run.reports.push(report);
    }
    run.ended_in(resume::Pass::Kept, |_| {})
}
