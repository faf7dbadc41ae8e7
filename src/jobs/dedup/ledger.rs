//! What a dedup run has done so far, as every pass sees it: the run's
//! context, the pass results it may resume from ([`Resume`]), the time of
//! each pass and the reports of the pipeline passes it ran; and the report
//! the run ends with when a pass does not complete ([`Halt`]).
//!
//! A shared piece below the passes: each pass records itself here and
//! ends the run through here, so the job ([`super::run_on`]) reads as the
//! chain of the passes, and a pass never needs another to report.

use drainpipe_actors::{ExitCode, Failure, RecordSource, Records, RunReport, REJECTS_FILE};
use serde_json::json;

use crate::jobs::pass::RunContext;

use super::chain::{KEPT_FILE, KEPT_PARQUET_FILE};
use super::clusters::CLUSTERS_FILE;
use super::params::DedupParams;
use super::resume::{Pass, Resume};

/// Opens the input of a run, once per pass.
pub type OpenInput<'a> = dyn Fn() -> anyhow::Result<Box<dyn RecordSource>> + 'a;

/// Why the chain of passes stopped before the end.
#[derive(Debug)]
pub enum Halt {
    /// A pass did not complete (interrupted, failed, or the input
    /// changed): the run's report, partial, with no dedup output (boxed:
    /// the chain's functions return it as their error).
    Ended(Box<RunReport>),
    /// An error outside the passes' reports (the output folder, a pass
    /// result file, an input that cannot be opened).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Halt {
    fn from(e: anyhow::Error) -> Self {
        Halt::Failed(e)
    }
}

impl From<anyhow::Result<RunReport>> for Halt {
    fn from(ended: anyhow::Result<RunReport>) -> Self {
        match ended {
            Ok(report) => Halt::Ended(Box::new(report)),
            Err(e) => Halt::Failed(e),
        }
    }
}

/// Time and throughput of one pass.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PassTime {
    pass: &'static str,
    /// Seconds it took.
    pub elapsed_s: f64,
    records_per_s: f64,
    /// The pass completed in an earlier run and its result was loaded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    loaded: bool,
    /// The pass it ran beside: its time is then what it took after that
    /// pass ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    beside: Option<&'static str>,
    /// Pass 1: the times its state spilled to sorted runs under the memory
    /// budget, and the bytes they hold (0 and 0 when it fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    spill_runs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_spilled: Option<u64>,
    /// Pass 1: bytes of the records' places written to disk past their
    /// share of the budget (0 when they fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    places_spilled_bytes: Option<u64>,
    /// Pass 1: bytes of the repeated ids' run, written past their share
    /// ([`crate::jobs::dedup::spill::repeats`]; 0 when they fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    repeated_ids_spilled_bytes: Option<u64>,
    /// Pass 2: the most bytes the candidates' ids held
    /// ([`crate::jobs::dedup::budget::Shares::candidate_ids`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_ids_peak_bytes: Option<u64>,
    /// Pass 2: bytes of the candidates' ids written to disk past their
    /// share ([`crate::jobs::dedup::spill::ids`]; 0 when they fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_ids_spilled_bytes: Option<u64>,
    /// Pass 1 under a budget: the candidate pairs its merge made (each
    /// band's, repeats included), the most bytes their lists held
    /// ([`crate::jobs::dedup::budget::Shares::pairs`]), and the bytes of
    /// their sorted runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_pairs_made: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_pairs_peak_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_pairs_bytes_spilled: Option<u64>,
    /// Past pass 2's share of the budget
    /// ([`crate::jobs::dedup::budget::Shares::verify_pairs`]): pass 1
    /// handed the candidate pairs on disk, pass 2 read them from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_pairs_on_disk: Option<bool>,
    /// Pass 2: the most bytes its verified pairs held in memory
    /// ([`crate::jobs::dedup::budget::Shares::verified_pairs`]), and the
    /// bytes of their runs past it ([`crate::jobs::dedup::spill::verified`];
    /// 0 when they fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_pairs_peak_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_pairs_spilled_bytes: Option<u64>,
    /// Pass 2 handed the clustered records' ids on disk (the candidates'
    /// ids went there).
    #[serde(skip_serializing_if = "Option::is_none")]
    clustered_ids_on_disk: Option<bool>,
    /// Bytes on disk of the sets of records past their share
    /// ([`crate::jobs::dedup::spill::record_sets`]): pass 1's integrated
    /// records; pass 2's candidates, with an index hook the records it
    /// shingled, and the clustered records (the most of one), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    integrated_records_spilled_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_records_spilled_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shingled_records_spilled_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clustered_records_spilled_bytes: Option<u64>,
}

impl PassTime {
    fn of(pass: Pass, report: &RunReport) -> Self {
        PassTime {
            pass: pass.name(),
            elapsed_s: report.elapsed_s,
            records_per_s: report.records_per_s,
            loaded: false,
            beside: None,
            spill_runs: report.result["spill_runs"].as_u64(),
            bytes_spilled: report.result["bytes_spilled"].as_u64(),
            places_spilled_bytes: report.result["places_spilled_bytes"].as_u64(),
            repeated_ids_spilled_bytes: report.result["repeated_ids_spilled_bytes"].as_u64(),
            candidate_ids_peak_bytes: report.result["candidate_ids_peak_bytes"].as_u64(),
            candidate_ids_spilled_bytes: report.result["candidate_ids_spilled_bytes"].as_u64(),
            candidate_pairs_made: report.result["candidate_pairs_made"].as_u64(),
            candidate_pairs_peak_bytes: report.result["candidate_pairs_peak_bytes"].as_u64(),
            candidate_pairs_bytes_spilled: report.result["candidate_pairs_bytes_spilled"].as_u64(),
            candidate_pairs_on_disk: report.result["candidate_pairs_on_disk"]
                .as_bool()
                .filter(|&on_disk| on_disk),
            verified_pairs_peak_bytes: report.result["verified_pairs_peak_bytes"].as_u64(),
            verified_pairs_spilled_bytes: report.result["verified_pairs_spilled_bytes"].as_u64(),
            clustered_ids_on_disk: report.result["clustered_ids_on_disk"]
                .as_bool()
                .filter(|&on_disk| on_disk),
            integrated_records_spilled_bytes: report.result["integrated_records_spilled_bytes"]
                .as_u64(),
            candidate_records_spilled_bytes: report.result["candidate_records_spilled_bytes"]
                .as_u64(),
            shingled_records_spilled_bytes: (report.result["shingled_records_spilled_bytes"])
                .as_u64()
                .filter(|&bytes| bytes > 0),
            clustered_records_spilled_bytes: (report.result["clustered_records_spilled_bytes"])
                .as_u64()
                .filter(|&bytes| bytes > 0),
        }
    }

    fn loaded(pass: Pass) -> Self {
        PassTime {
            pass: pass.name(),
            elapsed_s: 0.0,
            records_per_s: 0.0,
            loaded: true,
            beside: None,
            spill_runs: None,
            bytes_spilled: None,
            places_spilled_bytes: None,
            repeated_ids_spilled_bytes: None,
            candidate_ids_peak_bytes: None,
            candidate_ids_spilled_bytes: None,
            candidate_pairs_made: None,
            candidate_pairs_peak_bytes: None,
            candidate_pairs_bytes_spilled: None,
            candidate_pairs_on_disk: None,
            verified_pairs_peak_bytes: None,
            verified_pairs_spilled_bytes: None,
            clustered_ids_on_disk: None,
            integrated_records_spilled_bytes: None,
            candidate_records_spilled_bytes: None,
            shingled_records_spilled_bytes: None,
            clustered_records_spilled_bytes: None,
        }
    }

    /// A pass that ran outside the pipeline: `elapsed_s` is what it added
    /// to the run, `records_per_s` its rate, `beside` the pass it ran
    /// beside, if any.
    pub fn outside(pass: Pass, elapsed_s: f64, records_per_s: f64, beside: Option<Pass>) -> Self {
        PassTime {
            pass: pass.name(),
            elapsed_s,
            records_per_s,
            loaded: false,
            beside: beside.map(Pass::name),
            spill_runs: None,
            bytes_spilled: None,
            places_spilled_bytes: None,
            repeated_ids_spilled_bytes: None,
            candidate_ids_peak_bytes: None,
            candidate_ids_spilled_bytes: None,
            candidate_pairs_made: None,
            candidate_pairs_peak_bytes: None,
            candidate_pairs_bytes_spilled: None,
            candidate_pairs_on_disk: None,
            verified_pairs_peak_bytes: None,
            verified_pairs_spilled_bytes: None,
            clustered_ids_on_disk: None,
            integrated_records_spilled_bytes: None,
            candidate_records_spilled_bytes: None,
            shingled_records_spilled_bytes: None,
            clustered_records_spilled_bytes: None,
        }
    }
}

/// A dedup run as its passes see it.
pub struct Run<'a> {
    /// The run's context.
    pub ctx: &'a RunContext,
    /// The job's parameters.
    pub params: &'a DedupParams,
    /// Opens the whole input again, for a pass that reads it all.
    pub open: &'a OpenInput<'a>,
    /// Checkpoints and pass results.
    pub resume: Resume<'a>,
    /// What the inputs were when the run started (size and modification
    /// time): checked again before the outputs are committed.
    pub inputs_at_start: Vec<String>,
    /// Each pass's time, loaded passes included, in order.
    pub passes: Vec<PassTime>,
    /// The reports of the passes this call ran (a resumed run loads the
    /// results of the passes an earlier run completed).
    pub reports: Vec<RunReport>,
}

impl<'a> Run<'a> {
    /// A run of `ctx`: without `--resume`, the pass results an earlier
    /// run left are removed first ([`Resume::new`]).
    pub fn start(
        ctx: &'a RunContext,
        params: &'a DedupParams,
        open: &'a OpenInput<'a>,
    ) -> anyhow::Result<Self> {
        let resume = Resume::new(ctx)?;
        let inputs_at_start = ctx
            .inputs
            .iter()
            .map(|p| crate::input::identity(p, &ctx.input_options))
            .collect();
        Ok(Run {
            ctx,
            params,
            open,
            resume,
            inputs_at_start,
            passes: Vec::new(),
            reports: Vec::new(),
        })
    }

    /// `pass` ran as a pipeline pass and gave `report`.
    pub fn ran(&mut self, pass: Pass, report: &RunReport) {
        self.passes.push(PassTime::of(pass, report));
    }

    /// `pass` was loaded from the result an earlier run left.
    pub fn loaded(&mut self, pass: Pass) {
        self.passes.push(PassTime::loaded(pass));
    }

    /// The run ended in `pass`, whose pipeline gave `report`, after the
    /// passes of [`Run::reports`].
    pub fn ended(&self, report: RunReport, pass: Pass) -> Halt {
        let earlier: Vec<&RunReport> = self.reports.iter().collect();
        incomplete(self.ctx, report, pass, &self.passes, &earlier).into()
    }

    /// The run ended in `pass`, which has no report of its own (it had not
    /// started, or it ran outside the pipeline): the report of the passes
    /// so far, as `mark` leaves it. Panics when no pass ran: the caller
    /// knows one did.
    pub fn ended_in(&self, pass: Pass, mark: impl FnOnce(&mut RunReport)) -> Halt {
        let (first, later) = self.reports.split_first().expect("a pass ran");
        let later: Vec<&RunReport> = later.iter().collect();
        let mut report = first.clone();
        mark(&mut report);
        incomplete(self.ctx, report, pass, &self.passes, &later).into()
    }

    /// When a stop was requested before `pass` started, the run stopped
    /// there. `None` when none was, or when this call has run no pass yet:
    /// then the pass's pipeline sees the stop and stops at once (taking a
    /// checkpoint if the pass takes them).
    pub fn stopped_before(&self, pass: Pass) -> Option<Halt> {
        if !self.ctx.handle.stop_requested() || self.reports.is_empty() {
            return None;
        }
        Some(self.ended_in(pass, |_| {}))
    }

    /// The report a run builds on when it loaded the results of passes 1
    /// and 2 and copies `kept.jsonl` (no pipeline pass runs): pass 1's
    /// counts and this run's settings, no time spent yet.
    pub fn loaded_report(&self, integrated: u64, rejected: u64) -> RunReport {
        let ctx = self.ctx;
        RunReport {
            job: "dedup".into(),
            fingerprint: ctx.fingerprint.clone(),
            exit: "complete",
            exit_code: 0,
            cause: "end of input".into(),
            errors: Vec::new(),
            partial: false,
            outputs_written: false,
            records: Records {
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
            remote: None,
        }
    }
}

/// Bytes per record, 0 for no record.
pub fn per_record(bytes: u64, records: u64) -> f64 {
    if records == 0 {
        0.0
    } else {
        bytes as f64 / records as f64
    }
}

/// Marks `report` failed with exit code 74 (an input or an output): its
/// cause is `cause`, and `errors` join its errors (the cause is the error
/// when there is none), each through [`RunReport::fail`].
pub fn fail(report: &mut RunReport, cause: String, errors: impl IntoIterator<Item = String>) {
    let mut errors = errors.into_iter().peekable();
    if errors.peek().is_none() {
        report.fail(Failure::Io(cause.clone()));
    }
    for message in errors {
        report.fail(Failure::Io(message));
    }
    report.cause = cause;
}

/// Marks `report` failed because the `pass` pass read `read` records
/// where pass 1 read `first`.
pub fn changed(report: &mut RunReport, pass: Pass, first: u64, read: u64) {
    let message = format!(
        "the input changed between passes: pass 1 read {first} records, the {} pass {read}",
        pass.name()
    );
    log::error!("{message}");
    fail(report, message.clone(), [message]);
}

/// The report of the whole run: the first pass's, with the time of every
/// pass, under the run's fingerprint (each pass has its own).
pub fn combine(
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
    report.remote = remote_by_pass(&report, others);
    report.elapsed_s = passes.iter().map(|p| p.elapsed_s).sum();
    report.records_per_s = if report.elapsed_s > 0.0 {
        report.records.read as f64 / report.elapsed_s
    } else {
        0.0
    };
    report
}

/// What the broker did in the passes that ran distributed (`--nats`): the
/// counts summed, and each pass's under `by_pass` (named by its pass);
/// `None` when no pass did.
fn remote_by_pass(first: &RunReport, others: &[&RunReport]) -> Option<serde_json::Value> {
    let mut total = serde_json::Map::new();
    let mut by_pass = serde_json::Map::new();
    for report in std::iter::once(first).chain(others.iter().copied()) {
        let Some(serde_json::Value::Object(counts)) = &report.remote else {
            continue;
        };
        let pass = report.result["pass"].as_str().unwrap_or("signatures");
        for (name, count) in counts {
            let sum = total.get(name).and_then(serde_json::Value::as_u64);
            let count = count.as_u64().unwrap_or(0);
            total.insert(name.clone(), json!(sum.unwrap_or(0) + count));
        }
        by_pass.insert(pass.to_owned(), serde_json::Value::Object(counts.clone()));
    }
    if by_pass.is_empty() {
        return None;
    }
    total.insert("by_pass".into(), serde_json::Value::Object(by_pass));
    Some(serde_json::Value::Object(total))
}

/// The report of a run that stopped in `pass`: that pass's report (or the
/// last complete one when the stop came between passes), marked partial,
/// with no dedup output (earlier ones removed).
fn incomplete(
    ctx: &RunContext,
    report: RunReport,
    pass: Pass,
    passes: &[PassTime],
    earlier: &[&RunReport],
) -> anyhow::Result<RunReport> {
    // An earlier run's outputs, with its `rejects.jsonl` (this run's list
    // is in the pass file until the outputs are committed): the folder
    // holds one run's whole set or none.
    ctx.output.remove_stale(KEPT_FILE)?;
    ctx.output.remove_stale(KEPT_PARQUET_FILE)?;
    ctx.output.remove_stale(CLUSTERS_FILE)?;
    ctx.output.remove_stale(REJECTS_FILE)?;
    let mut report = combine(ctx, report, earlier, passes);
    if report.exit_code == 0 {
        // Stopped between passes (or during the kept pass).
        report.exit = "interrupted";
        report.exit_code = ExitCode::Interrupted.code();
        report.cause = format!(
            "interrupted by signal before the end of the {} pass",
            pass.name()
        );
    }
    report.partial = true;
    report.outputs_written = false;
    report.result = json!({
        "incomplete": true,
        "stopped_in_pass": pass.name(),
        "outputs": [],
        "note": "dedup needs every pass to complete; no kept.jsonl, kept.parquet, clusters.jsonl or rejects.jsonl was written; --resume continues from the completed passes and the checkpoint",
        "passes": passes,
    });
    Ok(report)
}
