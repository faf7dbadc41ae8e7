//! `dedup`: near-duplicate detection in text corpora with MinHash and LSH,
//! verified exactly, on the actor pipeline.
//!
//! Two records are duplicates when the exact Jaccard similarity of their
//! shingle sets (word n-grams of the normalized text, hashed to 64 bits)
//! is at least the threshold. The job runs three passes over the input,
//! each streaming, none holding the corpus:
//!
//! 1. **signatures** ([`lsh`], a pipeline pass): the processors normalize
//!    ([`normalize`]), shingle ([`shingle`]) and compute a MinHash
//!    signature and its LSH band keys ([`minhash`]); the Integrator keeps
//!    the band keys (one list per band) and, at the end of the pass, sorts
//!    them: records sharing a key in a band are candidate pairs, each with
//!    the first record that had it. Banding: [`params`].
//! 2. **verify** ([`verify`], a pipeline pass over the candidate records,
//!    or over the whole input): the processors compute the shingle set of
//!    the records that are in a candidate pair only; the Integrator computes the exact Jaccard
//!    similarity of every candidate pair, keeping a set only until the
//!    record's last partner has arrived. Union-find over the verified
//!    pairs ([`unionfind`]) makes the clusters; a cluster keeps its first
//!    record in input order.
//! 3. **kept** ([`copy`], or [`kept`], a pipeline pass): `kept.jsonl`, the
//!    kept records in input order; `clusters.jsonl` ([`output`]) lists every
//!    removed record with the record it duplicates. Both are committed once
//!    all passes agree. When it copies and pass 2 reads the candidates
//!    only, the copy runs on a thread beside pass 2 ([`follow`]), deciding
//!    each record as soon as pass 2 has settled its fate.
//!
//! Passes 2 and 3 read only what they need when pass 1 noted where every
//! record it integrated is ([`spans`]: uncompressed files): pass 2 reads
//! the candidate records at their places ([`reread`]), and pass 3 copies
//! the kept records' bytes when every input is JSON Lines ([`copy`]).
//! Otherwise they read the whole input again, parse only the records they
//! need (and the records pass 1 rejected, to reject them again with the
//! same reason: every pass that reads the whole input rewrites
//! `rejects.jsonl`, with the same content), and pass 3 is a pipeline pass
//! whose processors format each kept record's output line (removed ones
//! are not even parsed) and whose Integrator appends them to `kept.jsonl`
//! in input order. The outputs are the same either way. A pass that does
//! not complete ends the run there; an input whose size or modification
//! time changed during the run fails it before anything is committed.
//!
//! Passes 1 and 2 take checkpoints, and each keeps its result in the output
//! folder when it completes, so `--resume` skips the completed passes,
//! resumes the interrupted one from its checkpoint and runs the rest, with
//! the outputs of an uninterrupted run; pass 3 always runs again from its
//! start ([`resume`]).
//!
//! On the embedded demo corpus, the result also carries precision and
//! recall against the exact all-pairs ground truth ([`truth`]).
//!
//! Outputs are byte-identical whatever the number of workers, the window
//! or the batch size: the Integrators see records in input order, and
//! every choice (bucket's first record, cluster's kept record) is by
//! input order.

use std::sync::Arc;
use std::time::Instant;

use drainpipe_actors::{ExitCode, RecordSource, RunReport, REJECTS_FILE};
use serde_json::json;

use super::{open_source, run_pass_into, run_pass_with, RunContext};

pub mod bitset;
pub mod copy;
pub mod fold;
pub mod follow;
pub mod kept;
pub mod lsh;
pub mod memory;
pub mod minhash;
pub mod normalize;
pub mod output;
pub mod params;
pub mod reread;
pub mod resume;
pub mod shingle;
pub mod spans;
pub mod state;
pub mod truth;
pub mod unionfind;
pub mod verify;

pub use kept::KEPT_FILE;
pub use output::CLUSTERS_FILE;
pub use params::{explain, Banding, DedupParams};

use bitset::BitSet;
use follow::KeptCopy;
use kept::KeptJob;
use lsh::SignatureJob;
use output::Clusters;
use resume::{Pass, Resume};
use state::{CandidatesForm, VerifiedForm};
use verify::VerifyJob;

/// How the similarity of a removed record is defined (also written into
/// the summary).
pub const SIMILARITY_DEFINITION: &str = "exact Jaccard similarity of the removed record's \
    shingle set with that of its closest verified neighbour in its cluster (>= threshold)";

/// How precision and recall are defined (also written into the summary).
pub const ACCURACY_DEFINITION: &str = "over pairs of records: predicted = both records in one \
    output cluster; true = both records connected by pairs with exact Jaccard >= threshold \
    (connected components of the exact all-pairs join)";

/// Time and throughput of one pass.
#[derive(Debug, Clone, serde::Serialize)]
struct PassTime {
    pass: &'static str,
    elapsed_s: f64,
    records_per_s: f64,
    /// The pass completed in an earlier run and its result was loaded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    loaded: bool,
    /// The pass it ran beside: its time is then what it took after that
    /// pass ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    beside: Option<&'static str>,
}

impl PassTime {
    fn of(pass: &'static str, report: &RunReport) -> Self {
        PassTime {
            pass,
            elapsed_s: report.elapsed_s,
            records_per_s: report.records_per_s,
            loaded: false,
            beside: None,
        }
    }

    fn loaded(pass: &'static str) -> Self {
        PassTime {
            pass,
            elapsed_s: 0.0,
            records_per_s: 0.0,
            loaded: true,
            beside: None,
        }
    }
}

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

/// Opens the input of a run, once per pass.
pub type OpenInput<'a> = dyn Fn() -> anyhow::Result<Box<dyn RecordSource>> + 'a;

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
    let banding = params.banding().map_err(anyhow::Error::msg)?;
    let resume = Resume::new(ctx)?;
    // What the inputs were when the run started: checked again before the
    // outputs are committed.
    let identities: Vec<String> = ctx
        .inputs
        .iter()
        .map(|p| crate::input::identity(p))
        .collect();
    let mut passes = Vec::new();
    // The reports of the passes this call runs (a resumed run loads the
    // results of the passes an earlier run completed).
    let mut reports: Vec<RunReport> = Vec::new();

    // Pass 1: signatures and candidate pairs.
    let candidates = match resume.load::<CandidatesForm>(Pass::Signatures)? {
        Some(form) => {
            passes.push(PassTime::loaded("signatures"));
            form.into_candidates()
        }
        None => {
            let job = Arc::new(
                SignatureJob::new(ctx.fields.clone(), params.ngram, banding)
                    .keeping_result(resume.result_file(Pass::Signatures))
                    .sorting_on(ctx.settings.workers),
            );
            let checkpoints = resume.checkpoints(Pass::Signatures)?;
            let first = run_pass_with(Arc::clone(&job), open()?, ctx, "signatures", checkpoints)?;
            passes.push(PassTime::of("signatures", &first));
            if first.exit_code != 0 {
                resume.discard(Pass::Signatures)?;
                return incomplete(ctx, first, "signatures", &passes, &[]);
            }
            let candidates = job
                .take_result()
                .ok_or_else(|| anyhow::anyhow!("pass 1 ended without its result"))?;
            reports.push(first);
            candidates
        }
    };
    // What every later pass must read again.
    let first_read = candidates.records + candidates.rejected;
    let bytes_per_record = per_record(candidates.integrator_bytes, candidates.records);
    log::info!(
        "dedup pass 1: {} records, {} candidate pairs, {:.0} integrator bytes per record",
        candidates.records,
        candidates.pairs.len(),
        bytes_per_record
    );
    let candidate_pairs = candidates.pairs.len() as u64;
    let integrated = Arc::new(candidates.integrated);
    let spans = Arc::new(candidates.spans);
    // Pass 3 copies kept.jsonl from the inputs when pass 1 knows where
    // every record is.
    let copying = copy::can_copy(&spans, &ctx.inputs);
    // When pass 2 runs now, over the candidates only, the copy runs beside
    // it ([`follow`]); dropped, it is abandoned.
    let mut copy_beside: Option<KeptCopy> = None;

    // Pass 2: exact verification (skipped when there is no candidate). It
    // reads the candidate records only, at the places pass 1 noted, when
    // it knows them all: then it rejects nothing, unless the input changed.
    let reread = reread::possible(ctx, &spans);
    let verified = if candidates.pairs.is_empty() {
        verify::Verified::default()
    } else if let Some(form) = resume.load::<VerifiedForm<Box<str>>>(Pass::Verify)? {
        passes.push(PassTime::loaded("verify"));
        form.into_verified()
    } else {
        let pairs = Arc::new(candidates.pairs);
        let mut job = VerifyJob::new(
            ctx.fields.clone(),
            params.ngram,
            params.threshold,
            Arc::clone(&integrated),
            Arc::clone(&pairs),
        )
        .keeping_result(resume.result_file(Pass::Verify));
        let (source, to_read, rejects_file) = if reread {
            let reread::CandidateSource { source, records } =
                reread::candidates(ctx, &spans, &job)?;
            let n = records.len() as u64;
            job = job.reading_only(records);
            (source, n, reread::REJECTS_FILE)
        } else {
            (open()?, first_read, REJECTS_FILE)
        };
        if let Some(stopped) = stopped_between(ctx, &reports, "verify", &passes) {
            return stopped;
        }
        if copying && reread && params.copy_beside_verify {
            let target = copy::CopyTarget::of(ctx);
            let checker = follow::Checker::new(
                ctx.inputs.clone(),
                Arc::clone(&spans),
                ctx.fields.clone(),
                params.ngram,
                params.threshold,
            );
            match KeptCopy::start(target, Arc::clone(&integrated), &pairs, checker) {
                Ok(copy) => {
                    job = job.telling(copy.fates());
                    copy_beside = Some(copy);
                }
                // The copy runs after the pass instead.
                Err(e) => log::warn!("dedup: no thread for the copy beside the verify pass: {e}"),
            }
        }
        let job = Arc::new(job);
        let checkpoints = resume.checkpoints(Pass::Verify)?;
        let mut second = run_pass_into(
            Arc::clone(&job),
            source,
            ctx,
            "verify",
            checkpoints,
            rejects_file,
        )?;
        passes.push(PassTime::of("verify", &second));
        if second.exit_code == 0 && second.records.read != to_read {
            let read = second.records.read;
            changed(&mut second, "verify", to_read, read);
        }
        if second.exit_code != 0 {
            resume.discard(Pass::Verify)?;
            let earlier: Vec<&RunReport> = reports.iter().collect();
            return incomplete(ctx, second, "verify", &passes, &earlier);
        }
        let verified = job
            .take_result()
            .ok_or_else(|| anyhow::anyhow!("pass 2 ended without its result"))?;
        reports.push(second);
        verified
    };
    // What pass 2 rejected, when it ran (now or in an earlier run), and
    // what it should have: none when it read the candidates only.
    let verify_rejected = (candidate_pairs > 0).then_some(verified.rejected);
    let verify_should_reject = if reread { 0 } else { candidates.rejected };
    let verify_bytes_per_record = per_record(verified.peak_bytes, candidates.records);
    let clusters = Clusters::from_pairs(&verified.pairs);
    let mut removed = BitSet::new();
    for &(r, _, _) in &clusters.removed {
        removed.insert(r.into());
    }
    let removed = Arc::new(removed);

    if copying {
        // No pipeline pass follows: the batch buffers are freed now, while
        // the copy runs, not as the process exits.
        ctx.buffers.release();
    }

    // Pass 3: kept.jsonl, then both files are committed. It takes no
    // checkpoint: a resumed run runs it again from its start.
    if let Some(stopped) = stopped_between(ctx, &reports, "kept", &passes) {
        return stopped;
    }
    let clusters_file = output::write_clusters(&ctx.output, &clusters, &verified.ids)?;
    if copying && reports.is_empty() {
        // Passes 1 and 2 were loaded: the run's report starts from theirs.
        reports.push(loaded_report(ctx, candidates.records, candidates.rejected));
    }
    let mut inconsistent = Vec::new();
    let beside_verify = copy_beside.is_some();
    let (third, written) = if copying {
        let started = Instant::now();
        let target = copy::CopyTarget::of(ctx);
        let beside = copy_beside
            .take()
            .map(|copy| copy.finish(Arc::clone(&removed)));
        let (copied, copy_time) = match beside {
            Some((Err(copy::NotCopied::Redo(message)), _)) => {
                log::warn!("dedup: {message}; copying kept.jsonl again");
                let copied = copy::copy_kept(&target, &spans, &integrated, &*removed);
                (copied, None)
            }
            Some((copied, time)) => (copied, Some(time)),
            None => (
                copy::copy_kept(&target, &spans, &integrated, &*removed),
                None,
            ),
        };
        // Beside the verify pass, the time the run spent on the copy after
        // that pass ended (what it adds to the run); the rate is over the
        // copy's own time.
        let elapsed_s = started.elapsed().as_secs_f64();
        let copy_s = copy_time.map_or(elapsed_s, |t| t.as_secs_f64());
        passes.push(PassTime {
            pass: "kept",
            elapsed_s,
            records_per_s: first_read as f64 / copy_s.max(1e-9),
            loaded: false,
            beside: beside_verify.then_some("verify"),
        });
        match copied {
            Ok(written) => (None, written),
            Err(not_copied) => {
                // The report of the run so far, stopped or failed here.
                let (first, later) = reports.split_first().expect("a pass ran");
                let later: Vec<&RunReport> = later.iter().collect();
                let mut report = first.clone();
                if let copy::NotCopied::Failed(message) | copy::NotCopied::Redo(message) =
                    not_copied
                {
                    log::error!("{message}");
                    report.cause = message.clone();
                    report.errors.push(message);
                    report.exit = "failed";
                    report.exit_code = ExitCode::Io.code();
                }
                return incomplete(ctx, report, "kept", &passes, &later);
            }
        }
    } else {
        let job = Arc::new(KeptJob::new(
            ctx.fields.clone(),
            Arc::clone(&integrated),
            removed,
            ctx.output.clone(),
        ));
        let checkpoints = resume.checkpoints(Pass::Kept)?;
        let mut third = run_pass_with(Arc::clone(&job), open()?, ctx, "kept", checkpoints)?;
        passes.push(PassTime::of("kept", &third));
        if third.exit_code == 0 && third.records.read != first_read {
            let read = third.records.read;
            changed(&mut third, "kept", first_read, read);
        }
        if third.exit_code != 0 {
            let earlier: Vec<&RunReport> = reports.iter().collect();
            return incomplete(ctx, third, "kept", &passes, &earlier);
        }
        if third.records.rejected != candidates.rejected {
            inconsistent.push(format!(
                "the kept pass rejected {} records, pass 1 {}: the input changed between passes",
                third.records.rejected, candidates.rejected
            ));
        }
        let written = job
            .take_result()
            .ok_or_else(|| anyhow::anyhow!("pass 3 ended without its result"))?;
        (Some(third), written)
    };
    // Checked before anything is committed: a changed input leaves no
    // output, like a changed record count.
    if let Some(rejected) = verify_rejected.filter(|&r| r != verify_should_reject) {
        // When it read the candidates only, they are listed in a file of
        // their own (which stays, to say which and why).
        let listed = if reread {
            format!(" (listed in {})", reread::REJECTS_FILE)
        } else {
            String::new()
        };
        inconsistent.push(format!(
            "the verify pass rejected {rejected} records where {verify_should_reject} were expected{listed}: the input changed between passes"
        ));
    }
    if verified.unverifiable > 0 {
        inconsistent.push(format!(
            "{} candidate pairs could not be verified: the input changed between passes",
            verified.unverifiable
        ));
    }
    for (path, before) in ctx.inputs.iter().zip(&identities) {
        if crate::input::identity(path) != *before {
            inconsistent.push(format!(
                "{} changed while dedup ran (its size or modification time)",
                path.display()
            ));
        }
    }
    if let Some(first) = inconsistent.first() {
        for message in &inconsistent {
            log::error!("{message}");
        }
        let (mut failed, earlier) = match third {
            Some(third) => (third, reports.iter().collect::<Vec<_>>()),
            None => {
                let (first, later) = reports.split_first().expect("a pass ran");
                (first.clone(), later.iter().collect())
            }
        };
        failed.cause = first.clone();
        failed.errors.extend(inconsistent);
        failed.exit = "failed";
        failed.exit_code = ExitCode::Io.code();
        // Results of passes over another input are of no use.
        resume.remove_all()?;
        return incomplete(ctx, failed, "kept", &passes, &earlier);
    }
    let kept = written.kept;
    written.file.commit()?;
    clusters_file.commit()?;
    resume.remove_all()?;
    if let Some(third) = third {
        reports.push(third);
    }

    // Ground truth, for the demo corpus.
    let accuracy = if measure_accuracy {
        demo_accuracy(ctx, open, params, &clusters)?
    } else {
        None
    };

    let mut reports = reports.into_iter();
    let base = reports
        .next()
        .expect("a pass ran, or the loaded passes' report");
    let later: Vec<RunReport> = reports.collect();
    let mut report = combine(ctx, base, &later.iter().collect::<Vec<_>>(), &passes);
    // The whole input's counts, as pass 1 found them (the report may be
    // that of a later pass, which read part of it, when pass 1's result was
    // loaded).
    report.records = drainpipe_actors::Records {
        read: first_read,
        integrated: candidates.records,
        rejected: candidates.rejected,
        abandoned: 0,
    };
    report.records_per_s = if report.elapsed_s > 0.0 {
        first_read as f64 / report.elapsed_s
    } else {
        0.0
    };
    // A list, not an object: JSON object keys would sort "10" before "2".
    let sizes: Vec<serde_json::Value> = clusters
        .sizes
        .iter()
        .map(|(size, n)| json!({ "size": size, "clusters": n }))
        .collect();
    let mut result = json!({
        "parameters": {
            "threshold": params.threshold,
            "ngram": params.ngram,
            "num_perm": params.num_perm,
            "bands": banding.bands,
            "rows": banding.rows,
            "candidate_probability_at_threshold": banding.candidate_probability(params.threshold),
        },
        "records": report.records.integrated,
        "records_without_words": candidates.empty,
        "kept": kept,
        "duplicates_removed": clusters.removed.len(),
        "clusters": clusters.count(),
        "cluster_sizes": sizes,
        "candidate_pairs": candidate_pairs,
        "verified_pairs": verified.pairs.len(),
        "integrator_bytes_per_record": bytes_per_record.max(verify_bytes_per_record),
        "integrator_bytes_per_record_by_pass": {
            "signatures": bytes_per_record,
            "verify": verify_bytes_per_record,
        },
        "similarity": SIMILARITY_DEFINITION,
        "outputs": [KEPT_FILE, CLUSTERS_FILE],
        "passes": passes,
        // How passes 2 and 3 read the input: in full, or only what they
        // need, at the places pass 1 noted.
        "reads": {
            "verify": match (candidate_pairs, reread) {
                (0, _) => "not run (no candidate pair)",
                (_, true) => "candidate records",
                (_, false) => "whole input",
            },
            "kept": if copying { "copied byte ranges" } else { "whole input" },
        },
    });
    if let Some((accuracy, truth_s)) = accuracy {
        log::info!(
            "dedup accuracy on the demo corpus: precision {:.4}, recall {:.4} ({} true pairs, {} predicted)",
            accuracy.precision,
            accuracy.recall,
            accuracy.true_pairs,
            accuracy.predicted_pairs
        );
        let mut value = serde_json::to_value(&accuracy)?;
        value["definition"] = json!(ACCURACY_DEFINITION);
        value["truth_s"] = json!(truth_s);
        result["accuracy"] = value;
    }
    report.result = result;
    Ok(report)
}

/// The report a run builds on when it loaded the results of passes 1 and
/// 2 and copies `kept.jsonl` (no pipeline pass runs): pass 1's counts and
/// this run's settings, no time spent yet.
fn loaded_report(ctx: &RunContext, integrated: u64, rejected: u64) -> RunReport {
    RunReport {
        job: "dedup".into(),
        fingerprint: ctx.fingerprint.clone(),
        exit: "complete",
        exit_code: 0,
        cause: "end of input".into(),
        errors: Vec::new(),
        partial: false,
        outputs_written: false,
        records: drainpipe_actors::Records {
            read: integrated + rejected,
            integrated,
            rejected,
            abandoned: 0,
        },
        conservation: true,
        workers: ctx.settings.workers,
        window: ctx.settings.window,
        batch: ctx.settings.batch.unwrap_or(0),
        batch_adaptive: ctx.settings.batch.is_none(),
        elapsed_s: 0.0,
        phases: Default::default(),
        records_per_s: 0.0,
        bytes: 0,
        peaks: Default::default(),
        peak_rss_bytes: None,
        checkpoints: Default::default(),
        result: serde_json::Value::Null,
    }
}

fn per_record(bytes: u64, records: u64) -> f64 {
    if records == 0 {
        0.0
    } else {
        bytes as f64 / records as f64
    }
}

/// Precision and recall of `clusters` against the exact ground truth of
/// the demo corpus, and the seconds it took; `None` when interrupted.
fn demo_accuracy(
    ctx: &RunContext,
    open: &OpenInput<'_>,
    params: &DedupParams,
    clusters: &Clusters,
) -> anyhow::Result<Option<(truth::Accuracy, f64)>> {
    let started = Instant::now();
    let mut source = open()?;
    let stop = || ctx.handle.stop_requested();
    let Some(sets) = truth::read_sets(&mut source, &ctx.fields, params.ngram, &stop)? else {
        return Ok(None);
    };
    let pairs = truth::all_pairs(&sets, params.threshold);
    drop(sets);
    let accuracy = truth::accuracy(&pairs, &clusters.roots());
    Ok(Some((accuracy, started.elapsed().as_secs_f64())))
}

/// The report of the whole run: the first pass's, with the time of every
/// pass, under the run's fingerprint (each pass has its own).
fn combine(
    ctx: &RunContext,
    mut report: RunReport,
    others: &[&RunReport],
    passes: &[PassTime],
) -> RunReport {
    report.fingerprint = ctx.fingerprint.clone();
    for other in others {
        let (stats, theirs) = (&mut report.checkpoints, &other.checkpoints);
        stats.count += theirs.count;
        stats.seconds += theirs.seconds;
        stats.bytes = stats.bytes.max(theirs.bytes);
        stats.resumed |= theirs.resumed;
        for (phase, seconds) in &other.phases {
            *report.phases.entry(phase).or_default() += seconds;
        }
        report.errors.extend(other.errors.iter().cloned());
        report.peaks.in_flight = report.peaks.in_flight.max(other.peaks.in_flight);
        report.peaks.integrator_mailbox = report
            .peaks
            .integrator_mailbox
            .max(other.peaks.integrator_mailbox);
        report.peaks.integrator_reorder = report
            .peaks
            .integrator_reorder
            .max(other.peaks.integrator_reorder);
    }
    report.elapsed_s = passes.iter().map(|p| p.elapsed_s).sum();
    report.records_per_s = if report.elapsed_s > 0.0 {
        report.records.read as f64 / report.elapsed_s
    } else {
        0.0
    };
    report
}

/// When a stop was requested before `pass` started, the report of the run
/// stopped there. `None` when none was, or when this call has run no pass
/// yet: then the pass's pipeline sees the stop and stops at once (taking a
/// checkpoint if the pass takes them).
fn stopped_between(
    ctx: &RunContext,
    reports: &[RunReport],
    pass: &'static str,
    passes: &[PassTime],
) -> Option<anyhow::Result<RunReport>> {
    if !ctx.handle.stop_requested() {
        return None;
    }
    let (first, later) = reports.split_first()?;
    let later: Vec<&RunReport> = later.iter().collect();
    Some(incomplete(ctx, first.clone(), pass, passes, &later))
}

/// Marks `report` failed because the `pass` pass read `read` records
/// where pass 1 read `first`.
fn changed(report: &mut RunReport, pass: &str, first: u64, read: u64) {
    let message = format!(
        "the input changed between passes: pass 1 read {first} records, the {pass} pass {read}"
    );
    log::error!("{message}");
    report.errors.push(message.clone());
    report.cause = message;
    report.exit = "failed";
    report.exit_code = ExitCode::Io.code();
}

/// The report of a run that stopped in `pass`: that pass's report (or the
/// last complete one when the stop came between passes), marked partial,
/// with no dedup output (earlier ones removed).
fn incomplete(
    ctx: &RunContext,
    report: RunReport,
    pass: &'static str,
    passes: &[PassTime],
    earlier: &[&RunReport],
) -> anyhow::Result<RunReport> {
    ctx.output.remove_stale(KEPT_FILE)?;
    ctx.output.remove_stale(CLUSTERS_FILE)?;
    let mut report = combine(ctx, report, earlier, passes);
    if report.exit_code == 0 {
        // Stopped between passes (or during the kept pass).
        report.exit = "interrupted";
        report.exit_code = ExitCode::Interrupted.code();
        report.cause = format!("interrupted by signal before the end of the {pass} pass");
    }
    report.partial = true;
    report.outputs_written = false;
    report.result = json!({
        "incomplete": true,
        "stopped_in_pass": pass,
        "outputs": [],
        "note": "dedup needs every pass to complete; no kept.jsonl or clusters.jsonl was written; --resume continues from the completed passes and the checkpoint",
        "passes": passes,
    });
    Ok(report)
}
