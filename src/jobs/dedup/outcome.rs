//! The steps after the passes: the check that the input did not change
//! under the run, the commit of the outputs as one set, the accuracy
//! against the ground truth (demo corpus) and the summary.
//!
//! Each is a step of its own so that [`super::run_on`] reads as the chain
//! of passes and steps, and so that the order that makes the outputs
//! trustworthy is visible there: nothing is committed before every check
//! has passed, and the pass results are removed only once both outputs are
//! committed.

use std::collections::HashMap;
use std::time::Instant;

use drainpipe_actors::{Records, RunReport, REJECTS_FILE};
use serde_json::json;

use super::chain::{Found, Reads, Verified};
use super::clusters::{Clusters, CLUSTERS_FILE};
use super::keep::KeepKey;
use super::ledger::{combine, fail, per_record, Halt, OpenInput, Run};
use super::params::{Banding, DedupParams};
use super::passes::kept::Outputs;
use super::passes::verify::reread;
use super::resume::{self, Pass};
use super::spill::runs::RunError;
use super::truth;

/// The run's report, written after the set it describes.
const SUMMARY_FILE: &str = "summary.json";

/// How the similarity of a removed record is defined (also written into
/// the summary).
pub const SIMILARITY_DEFINITION: &str = "exact Jaccard similarity of the removed record's \
    shingle set with that of its closest verified neighbour in its cluster (>= threshold)";

/// How precision and recall are defined (also written into the summary).
pub const ACCURACY_DEFINITION: &str = "over pairs of records: predicted = both records in one \
    output cluster; true = both records connected by pairs with exact Jaccard >= threshold \
    (connected components of the exact all-pairs join)";

/// What the passes found, as the summary reports it.
pub struct Findings<'a> {
    /// Pass 1's result.
    pub found: &'a Found,
    /// Pass 2's result.
    pub verified: &'a Verified,
    /// The clustered records' `--keep` keys, by record.
    pub keys: &'a HashMap<u32, KeepKey>,
    /// The clusters.
    pub clusters: &'a Clusters,
    /// Bytes the removed records' set wrote to disk in pass 3 (0: held in
    /// memory).
    pub removed_spilled_bytes: u64,
    /// How passes 2 and 3 read the input.
    pub reads: Reads,
    /// Records of the kept file.
    pub kept: u64,
    /// The kept file's name: `kept.jsonl` or `kept.parquet`.
    pub kept_file: &'static str,
    /// Whether `rejects.jsonl` was committed (the run rejected records).
    pub rejects: bool,
}

/// Fails the run, before anything is committed, when anything says the
/// input changed between passes: a pass that rejected other records than
/// pass 1, candidate pairs that could not be verified, an input whose
/// size or modification time changed. A changed input leaves no output,
/// like a changed record count, and no pass result.
pub fn check_unchanged(
    run: &Run<'_>,
    found: &Found,
    verified: &Verified,
    reads: &Reads,
    outputs: &Outputs,
) -> Result<(), Halt> {
    let mut inconsistent = Vec::new();
    if let Some(third) = outputs
        .report
        .as_ref()
        .filter(|third| third.records.rejected != found.rejected)
    {
        inconsistent.push(format!(
            "the kept pass rejected {} records, pass 1 {}: the input changed between passes",
            third.records.rejected, found.rejected
        ));
    }
    // What pass 2 rejected, when it ran (now or in an earlier run), and
    // what it should have: none when it read the candidates only.
    let verify_rejected = (found.candidate_pairs > 0).then_some(verified.rejected);
    let verify_should_reject = if reads.candidates_only {
        0
    } else {
        found.rejected
    };
    if let Some(rejected) = verify_rejected.filter(|&r| r != verify_should_reject) {
        // When it read the candidates only, they are listed in a file of
        // their own (which stays, to say which and why).
        let listed = if reads.candidates_only {
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
    let ctx = run.ctx;
    for (path, before) in ctx.inputs.iter().zip(&run.inputs_at_start) {
        if crate::input::identity(path, &ctx.input_options) != *before {
            inconsistent.push(format!(
                "{} changed while dedup ran (its size or modification time)",
                path.display()
            ));
        }
    }
    let Some(first) = inconsistent.first().cloned() else {
        return Ok(());
    };
    for message in &inconsistent {
        log::error!("{message}");
    }
    // Results of passes over another input are of no use.
    run.resume.remove_all()?;
    let mark = |report: &mut RunReport| fail(report, first, inconsistent);
    Err(match outputs.report.clone() {
        Some(mut third) => {
            mark(&mut third);
            run.ended(third, Pass::Kept)
        }
        None => run.ended_in(Pass::Kept, mark),
    })
}

/// Commits the outputs as one set: `kept.jsonl` (or `kept.parquet`, and
/// an earlier run's other kept file removed), `clusters.jsonl` and the
/// passes' rejected records as `rejects.jsonl` (or, with none, the removal
/// of an earlier run's), then removes the pass results (nothing is left to
/// resume); returns the lines of `kept.jsonl` and whether `rejects.jsonl`
/// is one of the outputs. `rejected` is how many records pass 1 rejected.
pub fn commit(run: &mut Run<'_>, outputs: Outputs, rejected: u64) -> anyhow::Result<(u64, bool)> {
    let kept = outputs.kept.kept;
    let output = &run.ctx.output;
    let (moved, mut stale) = rejects_in_the_set(output, rejected)?;
    stale.extend(crate::jobs::outputs::others(&[
        outputs.kept.name,
        CLUSTERS_FILE,
    ]));
    let files = vec![outputs.kept.file, outputs.clusters];
    output.commit_set(files, moved, &stale)?;
    run.resume.remove_all()?;
    if let Some(third) = outputs.report {
        run.reports.push(third);
    }
    Ok((kept, rejected > 0))
}

/// What the commit set does with the list of rejected records: moves the
/// passes' list into place, or, with no rejects, removes an earlier run's
/// (with the earlier run's summary, which no longer describes the folder,
/// in both cases). A resumed run whose passes rejected records may find the
/// passes' list already in place: the commit of the run it resumes had
/// moved it before it was interrupted, and the journal was completed when
/// this run started. Rejected records whose list is nowhere fail the run,
/// rather than leave them unlisted.
type RejectsStep = (&'static [(&'static str, &'static str)], Vec<&'static str>);

fn rejects_in_the_set(
    output: &drainpipe_actors::OutputDir,
    rejected: u64,
) -> anyhow::Result<RejectsStep> {
    const MOVE: &[(&str, &str)] = &[(resume::REJECTS_FILE, REJECTS_FILE)];
    if output.file(resume::REJECTS_FILE).exists() {
        Ok((MOVE, vec![SUMMARY_FILE]))
    } else if rejected == 0 {
        Ok((&[], vec![SUMMARY_FILE, REJECTS_FILE]))
    } else if output.file(REJECTS_FILE).exists() {
        Ok((&[], vec![SUMMARY_FILE]))
    } else {
        anyhow::bail!(
            "{rejected} records were rejected but their list ({}) is missing from {}",
            resume::REJECTS_FILE,
            output.path().display()
        )
    }
}

/// Precision and recall of `clusters` against the exact ground truth of
/// the demo corpus, and the seconds it took; `None` when interrupted.
pub fn demo_accuracy(
    ctx: &crate::jobs::pass::RunContext,
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
    let accuracy = truth::accuracy(&pairs, &clusters.roots().map_err(RunError::into_io)?);
    Ok(Some((accuracy, started.elapsed().as_secs_f64())))
}

/// The report of the whole, complete run: the first pass's (or the loaded
/// passes'), with every pass's time, the whole input's counts as pass 1
/// found them, and the job's summary as its result.
pub fn summary(
    run: Run<'_>,
    banding: Banding,
    findings: &Findings<'_>,
    accuracy: Option<(truth::Accuracy, f64)>,
) -> anyhow::Result<RunReport> {
    let ctx = run.ctx;
    let mut reports = run.reports.into_iter();
    let base = reports
        .next()
        .expect("a pass ran, or the loaded passes' report");
    let later: Vec<RunReport> = reports.collect();
    let mut report = combine(ctx, base, &later.iter().collect::<Vec<_>>(), &run.passes);
    // Committed (`commit` came first), also when no pipeline pass ran and
    // the base is the loaded passes' report.
    report.outputs_written = true;
    // The whole input's counts, as pass 1 found them (the report may be
    // that of a later pass, which read part of it, when pass 1's result was
    // loaded).
    let found = findings.found;
    report.records = Records {
        read: found.read(),
        integrated: found.records,
        rejected: found.rejected,
        abandoned: 0,
    };
    report.records_per_s = if report.elapsed_s > 0.0 {
        found.read() as f64 / report.elapsed_s
    } else {
        0.0
    };
    let skipped = ctx.input_options.skipped.by_type();
    let mut result = result(
        run.params,
        banding,
        findings,
        (&run.passes, skipped),
        &report,
    )?;
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

/// `result.keep`: the policy, and under `field:` how many clustered
/// records had no usable value (ranked last): counted as the clusters
/// were made, or (an index run's) from the `keys` in memory.
fn keep_summary(
    params: &DedupParams,
    keys: &HashMap<u32, KeepKey>,
    clusters: &Clusters,
) -> anyhow::Result<serde_json::Value> {
    let mut keep = json!({ "policy": params.keep.to_string() });
    if params.keep.field().is_some() {
        let missing = match clusters.missing_keys {
            Some(missing) => missing,
            None => {
                let clustered = clusters.roots().map_err(RunError::into_io)?.into_keys();
                params.keep.missing(keys, clustered)
            }
        };
        keep["missing_field"] = json!(missing);
    }
    Ok(keep)
}

/// The job's summary (`result` in `summary.json`).
fn result(
    params: &DedupParams,
    banding: Banding,
    findings: &Findings<'_>,
    (passes, skipped): (&[super::ledger::PassTime], crate::input::SkippedByType),
    report: &RunReport,
) -> anyhow::Result<serde_json::Value> {
    let Findings {
        found,
        verified,
        keys,
        clusters,
        removed_spilled_bytes,
        reads,
        kept,
        kept_file,
        rejects,
    } = findings;
    let bytes_per_record = per_record(found.integrator_bytes, found.records);
    let verify_bytes_per_record = per_record(verified.peak_bytes, found.records);
    // A list, not an object: JSON object keys would sort "10" before "2".
    let mut outputs = vec![*kept_file, CLUSTERS_FILE];
    if *rejects {
        outputs.push(REJECTS_FILE);
    }
    let sizes: Vec<serde_json::Value> = clusters
        .sizes
        .iter()
        .map(|(size, n)| json!({ "size": size, "clusters": n }))
        .collect();
    Ok(json!({
        "parameters": {
            "threshold": params.threshold,
            "ngram": params.ngram,
            "num_perm": params.num_perm,
            "bands": banding.bands,
            "rows": banding.rows,
            "candidate_probability_at_threshold": banding.candidate_probability(params.threshold),
        },
        "records": report.records.integrated,
        // Records of the inputs that are not documents (WET records other
        // than conversions), by type: skipped, neither read nor rejected.
        "records_skipped": skipped,
        "records_without_words": found.empty,
        "kept": kept,
        "duplicates_removed": clusters.removed_count(),
        "keep": keep_summary(params, keys, clusters)?,
        "repeated_ids": found.repeated_ids,
        "clusters": clusters.count(),
        "cluster_sizes": sizes,
        "clusters_spilled_bytes": clusters.spilled_bytes,
        "removed_records_spilled_bytes": removed_spilled_bytes,
        "candidate_pairs": found.candidate_pairs,
        "verified_pairs": verified.pairs.len(),
        "integrator_bytes_per_record": bytes_per_record.max(verify_bytes_per_record),
        "integrator_bytes_per_record_by_pass": {
            "signatures": bytes_per_record,
            "verify": verify_bytes_per_record,
        },
        "similarity": SIMILARITY_DEFINITION,
        "outputs": outputs,
        "passes": passes,
        // How passes 2 and 3 read the input: in full, or only what they
        // need, at the places pass 1 noted.
        "reads": {
            "verify": match (found.candidate_pairs, reads.candidates_only) {
                (0, _) => "not run (no candidate pair)",
                (_, true) => "candidate records",
                (_, false) => "whole input",
            },
            "kept": if reads.copy { "copied byte ranges" } else { "whole input" },
        },
    }))
}
