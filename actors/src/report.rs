//! What a run reports: the progress snapshots it publishes while running and
//! the final report written as `summary.json`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::failure::{ExitCode, Failure};
use crate::output::OutputDir;
use crate::protocol::Phase;

/// A snapshot of a running pipeline, handed to the progress callback.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The current phase.
    pub phase: Phase,
    /// Records read so far.
    pub read: u64,
    /// Records whose batch was answered.
    pub done: u64,
    /// Records rejected so far.
    pub rejected: u64,
    /// Bytes of record data read.
    pub bytes: u64,
    /// The Source's position (usually bytes of input consumed).
    pub position: u64,
    /// The input's size in the unit of `position`, if known.
    pub total: Option<u64>,
    /// Batches in flight.
    pub in_flight: usize,
    /// Seconds since the run started.
    pub elapsed_s: f64,
}

/// Record counts and the conservation check.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Records {
    /// Records handed to the Coordinator by the Source.
    pub read: u64,
    /// Records the Integrator integrated.
    pub integrated: u64,
    /// Records rejected, each listed in `rejects.jsonl`.
    pub rejected: u64,
    /// Records abandoned by a failed run (read, but neither integrated nor
    /// rejected because the run failed); always 0 in a run that did not fail.
    pub abandoned: u64,
}

/// Peaks of the bounded quantities, observed during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Peaks {
    /// Most batches in flight at once (bounded by the window).
    pub in_flight: u64,
    /// Most deliveries waiting in the Integrator's mailbox (bounded by the
    /// number of workers).
    pub integrator_mailbox: u64,
    /// Most batches held in the Integrator's reorder buffer (bounded by the
    /// window).
    pub integrator_reorder: u64,
}

/// The final report of a run, written as `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The job's name.
    pub job: String,
    /// What identifies the run's result (job, parameters, inputs).
    pub fingerprint: String,
    /// `complete`, `interrupted` or `failed`.
    pub exit: &'static str,
    /// The process exit code this run maps to.
    pub exit_code: i32,
    /// Why the run stopped.
    pub cause: String,
    /// Every error met, in order.
    pub errors: Vec<String>,
    /// True when the outputs cover only part of the input.
    pub partial: bool,
    /// Whether the job's outputs were written.
    pub outputs_written: bool,
    /// Record counts.
    pub records: Records,
    /// `read == integrated + rejected + abandoned`, and nothing abandoned
    /// unless the run failed. False means DATA LOSS.
    pub conservation: bool,
    /// Processor threads.
    pub workers: usize,
    /// Most batches in flight.
    pub window: usize,
    /// Records per batch (the last size chosen when adaptive).
    pub batch: usize,
    /// Whether the batch size was chosen adaptively.
    pub batch_adaptive: bool,
    /// Wall-clock seconds from start to stop.
    pub elapsed_s: f64,
    /// Seconds spent in each phase.
    pub phases: BTreeMap<&'static str, f64>,
    /// Records read per second.
    pub records_per_s: f64,
    /// Bytes of record data read.
    pub bytes: u64,
    /// Peaks of the bounded quantities.
    pub peaks: Peaks,
    /// Peak resident memory of the whole process, in bytes (Linux `VmHWM`),
    /// measured by the program when the run is over; `None` if unknown.
    pub peak_rss_bytes: Option<u64>,
    /// What checkpoints cost.
    pub checkpoints: crate::checkpoint::CheckpointStats,
    /// The job's own summary.
    pub result: serde_json::Value,
    /// What the broker did, for a run whose step 1 ran on worker hosts
    /// (`crate::remote::RemoteStats`); absent from a single-process run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<serde_json::Value>,
}

impl RunReport {
    /// Marks the run failed because of `failure`, found after the report
    /// was made: its message joins `errors`, and `exit_code` (with `exit`)
    /// becomes the failure's when that is more severe. The one way a report
    /// fails; the Coordinator builds its own report the same way.
    pub fn fail(&mut self, failure: Failure) {
        let now = ExitCode::from_code(self.exit_code).unwrap_or(ExitCode::Software);
        let code = now.worst(failure.exit_code());
        self.errors.push(failure.to_string());
        self.exit_code = code.code();
        self.exit = code.label();
    }

    /// Writes the report as `summary.json`, atomically.
    pub fn write(&self, output: &OutputDir) -> Result<(), crate::error::OutputError> {
        let mut json = serde_json::to_vec_pretty(self).expect("a report serializes");
        json.push(b'\n');
        output.write_all("summary.json", &json).map(|_| ())
    }

    /// A short human summary, a few lines.
    pub fn human(&self) -> String {
        let r = &self.records;
        let mut s = format!(
            "{job}: {exit} ({cause}) in {t:.2}s: {read} records read, {int} integrated, {rej} rejected",
            job = self.job,
            exit = self.exit,
            cause = self.cause,
            t = self.elapsed_s,
            read = r.read,
            int = r.integrated,
            rej = r.rejected,
        );
        if r.abandoned > 0 {
            s += &format!(", {} abandoned", r.abandoned);
        }
        s += &format!(
            "; {:.0} records/s with {} workers, window {}, batch {}{}",
            self.records_per_s,
            self.workers,
            self.window,
            self.batch,
            if self.batch_adaptive {
                " (adaptive)"
            } else {
                ""
            }
        );
        if !self.conservation {
            s += &format!(
                "\nDATA LOSS: read {} != integrated {} + rejected {} + abandoned {}",
                r.read, r.integrated, r.rejected, r.abandoned
            );
        }
        for e in &self.errors {
            s += &format!("\nerror: {e}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(exit: ExitCode) -> RunReport {
        RunReport {
            job: "test".into(),
            fingerprint: String::new(),
            exit: exit.label(),
            exit_code: exit.code(),
            cause: "end of input".into(),
            errors: Vec::new(),
            partial: false,
            outputs_written: true,
            records: Records::default(),
            conservation: true,
            workers: 1,
            window: 1,
            batch: 1,
            batch_adaptive: false,
            elapsed_s: 0.0,
            phases: BTreeMap::new(),
            records_per_s: 0.0,
            bytes: 0,
            peaks: Peaks::default(),
            peak_rss_bytes: None,
            checkpoints: crate::checkpoint::CheckpointStats::default(),
            result: serde_json::Value::Null,
            remote: None,
        }
    }

    #[test]
    fn a_failed_report_names_every_failure_and_keeps_the_worst_exit_code() {
        let mut r = report(ExitCode::Interrupted);
        r.fail(Failure::Io("the input changed between passes".into()));
        assert_eq!((r.exit, r.exit_code), ("failed", 74));
        r.fail(Failure::Internal("a thread did not exit".into()));
        assert_eq!(r.exit_code, 70);
        r.fail(Failure::Io("another".into()));
        assert_eq!(r.exit_code, 70, "a milder failure does not lower the code");
        assert_eq!(
            r.errors,
            [
                "the input changed between passes",
                "a thread did not exit",
                "another"
            ]
        );
    }

    #[test]
    fn a_complete_report_that_fails_on_too_many_rejects_exits_65() {
        let mut r = report(ExitCode::Complete);
        r.fail(Failure::TooManyRejects { limit: 3 });
        assert_eq!((r.exit, r.exit_code), ("failed", 65));
        assert_eq!(r.errors, ["more than 3 rejected records (--max-rejects)"]);
    }
}
