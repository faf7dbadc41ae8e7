//! The final report: the counts the Integrator answered with, checked
//! against the processors' own tallies and against the records read
//! (conservation), and every failure met, through [`RunReport::fail`].

use crate::failure::{ExitCode, Failure};
use crate::integrator::{Finished, IntegratorFailure};
use crate::job::Job;
use crate::protocol::StopCause;
use crate::report::{Peaks, Records, RunReport};
use crate::source::RecordSource;

use super::Coordinator;

/// What the Integrator's answer says about the records and outputs.
struct Settled {
    records: Records,
    outputs_written: bool,
    result: serde_json::Value,
    /// The run failed: what was read and not accounted for is abandoned.
    failed: bool,
}

impl<J: Job, S: RecordSource> Coordinator<J, S> {
    /// The run's report: conservation checked, every failure recorded.
    pub(super) fn report(
        &mut self,
        cause: StopCause,
        finished: Option<Result<Finished, IntegratorFailure>>,
    ) -> RunReport {
        let Settled {
            mut records,
            outputs_written,
            result,
            failed,
        } = self.settle(finished);
        let accounted = records.integrated + records.rejected;
        records.abandoned = if failed {
            records.read.saturating_sub(accounted)
        } else {
            0
        };
        let conservation = accounted + records.abandoned == records.read;
        if !conservation {
            self.fail(Failure::DataLoss {
                read: records.read,
                integrated: records.integrated,
                rejected: records.rejected,
                abandoned: records.abandoned,
            });
        }
        let mut report = self.blank_report(&cause, records, conservation);
        report.outputs_written = outputs_written;
        report.result = result;
        for failure in &self.failures {
            report.fail(failure.clone());
        }
        report
    }

    /// Reads the Integrator's answer to `Finish`, recording the failures
    /// it shows.
    fn settle(&mut self, finished: Option<Result<Finished, IntegratorFailure>>) -> Settled {
        let read = self.counts.read;
        match finished {
            Some(Ok(f)) => {
                let failed = self.counts.abandoned_batches > 0;
                if f.integrated_out_of_order > 0 {
                    self.fail(Failure::Internal(format!(
                        "{} batches reached the integrator after a gap",
                        f.integrated_out_of_order
                    )));
                }
                // The processors' answers and the Integrator's counts are
                // independent tallies of the same records.
                let processors = (self.counts.processed, self.counts.rejected);
                if !failed && (f.integrated, f.rejected) != processors {
                    self.fail(Failure::Internal(format!(
                        "processors reported {} processed + {} rejected, integrator counted {} + {}",
                        processors.0, processors.1, f.integrated, f.rejected
                    )));
                }
                Settled {
                    records: Records {
                        read,
                        integrated: f.integrated,
                        rejected: f.rejected,
                        abandoned: 0,
                    },
                    outputs_written: !f.job.is_null(),
                    result: f.job,
                    failed,
                }
            }
            Some(Err(failure)) => {
                self.integrator_failed(failure.cause);
                Settled {
                    records: Records {
                        read,
                        integrated: failure.integrated,
                        rejected: failure.rejected,
                        abandoned: 0,
                    },
                    outputs_written: false,
                    result: serde_json::Value::Null,
                    failed: true,
                }
            }
            None => Settled {
                records: Records {
                    read,
                    integrated: self.counts.processed,
                    rejected: self.counts.rejected,
                    abandoned: 0,
                },
                outputs_written: false,
                result: serde_json::Value::Null,
                failed: true,
            },
        }
    }

    /// Records the Integrator's failure, unless a refused batch already
    /// reported it with an exit code at least as severe.
    fn integrator_failed(&mut self, cause: Failure) {
        let reason = cause.to_string();
        let failure = Failure::Integrator(Box::new(cause));
        let reported = self
            .failures
            .iter()
            .any(|f| f.to_string().contains(&reason));
        let worst = self
            .failures
            .iter()
            .fold(ExitCode::Complete, |code, f| code.worst(f.exit_code()));
        if !reported || worst.worst(failure.exit_code()) != worst {
            self.fail(failure);
        }
    }

    /// The report before failures: complete, or interrupted by a signal.
    fn blank_report(&self, cause: &StopCause, records: Records, conservation: bool) -> RunReport {
        let exit = match cause {
            StopCause::Interrupted => ExitCode::Interrupted,
            StopCause::EndOfInput | StopCause::Failed(_) => ExitCode::Complete,
        };
        let elapsed_s = self.observed.started.elapsed().as_secs_f64();
        RunReport {
            job: self.job_name.clone(),
            fingerprint: self.checkpoints.config.fingerprint.clone(),
            exit: exit.label(),
            exit_code: exit.code(),
            cause: cause.to_string(),
            errors: Vec::new(),
            partial: !cause.complete(),
            outputs_written: false,
            records,
            conservation,
            workers: self.settings.workers,
            window: self.settings.window,
            batch: self.sizing.size,
            batch_adaptive: !self.sizing.fixed,
            elapsed_s,
            phases: self.clock.spent.clone(),
            // Records read by this run (not before the checkpoint resumed).
            records_per_s: (self.counts.read - self.checkpoints.stats.resumed_at) as f64
                / elapsed_s.max(1e-9),
            bytes: self.counts.bytes,
            checkpoints: self.checkpoints.stats.clone(),
            peak_rss_bytes: None,
            peaks: Peaks {
                in_flight: self.observed.in_flight.peak(),
                integrator_mailbox: self.observed.integrator_mailbox.peak(),
                integrator_reorder: self.observed.integrator_reorder.peak(),
            },
            result: serde_json::Value::Null,
            remote: None,
        }
    }
}
