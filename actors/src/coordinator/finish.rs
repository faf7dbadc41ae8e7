//! Finishing: the Integrator runs the job's finish, and the Coordinator
//! waits for its answer with a deadline that counts from the finish's last
//! sign of progress, not from the start.
//!
//! The finish runs on the Integrator's thread, inside the job's code, so
//! the Coordinator cannot see it move; a finish whose work grows with the
//! input (dedup's merge of spilled runs at 10^8 documents) would outlast
//! any fixed deadline while working as it should. So the job reports
//! progress ([`crate::FinishContext::progress`], a beat of
//! `Observed::finish`), the tick looks at the beats, and the run fails
//! only when none came for `Settings::drain_timeout`. A finish that never
//! reports is bounded by the timeout as a whole, as before. The answer is
//! awaited without a timeout of its own: the tick's deadline is the one.

use std::time::Duration;

use actix::prelude::*;

use crate::failure::Failure;
use crate::integrator::{Finish, Finished, IntegratorFailure};
use crate::job::Job;
use crate::protocol::StopCause;
use crate::source::RecordSource;

use super::state::{FinishProgress, State};
use super::Coordinator;

/// The Integrator's answer to `Finish`, as the mailbox gives it.
type FinishReply = Result<Result<Finished, IntegratorFailure>, MailboxError>;

impl<J: Job, S: RecordSource> Coordinator<J, S> {
    /// Finishing: the Integrator writes the outputs (unless the run failed
    /// in a way that makes them untrustworthy) and answers with its counts.
    pub(super) fn finish(&mut self, cause: StopCause, ctx: &mut Context<Self>) {
        let finish = Finish {
            partial: !cause.complete(),
            write: cause.outputs_writable() && self.counts.abandoned_batches == 0,
        };
        let progress = FinishProgress::new(self.observed.finish.beats());
        self.enter(State::Finishing { cause, progress });
        self.integrator
            .send(finish)
            .into_actor(self)
            .map(|reply, act, ctx| act.on_finished(reply, ctx))
            .spawn(ctx);
    }

    /// The Integrator answered: Releasing, unless the deadline passed
    /// first (then the run has failed and moved on, and the answer is
    /// only logged).
    fn on_finished(&mut self, reply: FinishReply, ctx: &mut Context<Self>) {
        if !matches!(self.state, State::Finishing { .. }) {
            log::warn!(
                "the integrator answered after the finishing deadline; its answer is ignored"
            );
            return;
        }
        let finished = match reply {
            Ok(result) => Some(result),
            Err(e) => {
                self.fail(Failure::Internal(format!(
                    "phase finishing: the integrator stopped before it answered: {e}"
                )));
                None
            }
        };
        self.release(finished, ctx);
    }

    /// Finishing's deadline, on the tick: the run fails (exit 70) and
    /// goes on to Releasing once the finish has shown no progress for
    /// `drain_timeout`, the message naming the limit and what the finish
    /// reported.
    pub(super) fn finish_deadline(&mut self, ctx: &mut Context<Self>) {
        let deadline = self.settings.drain_timeout;
        let beats = self.observed.finish.beats();
        let State::Finishing { progress, .. } = &mut self.state else {
            return;
        };
        progress.look(beats);
        if progress.last.elapsed() <= deadline {
            return;
        }
        let message = no_progress(progress, deadline);
        self.fail(Failure::Internal(message));
        self.release(None, ctx);
    }
}

/// What a finish cut at its deadline did: never reported progress (the
/// timeout bounded all of it), or reported and then stopped.
fn no_progress(progress: &FinishProgress, deadline: Duration) -> String {
    match progress.reports() {
        0 => format!(
            "phase finishing: the integrator did not finish within the drain timeout \
             ({deadline:?}, --drain-timeout), and its finish reported no progress"
        ),
        reports => format!(
            "phase finishing: the integrator did not finish: its finish reported no progress \
             for {:.1}s, past the drain timeout ({deadline:?}, --drain-timeout: the most a \
             finish may go without progress), after {reports} progress reports in {:.1}s",
            progress.last.elapsed().as_secs_f64(),
            progress.began.elapsed().as_secs_f64(),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The Finishing deadline against jobs whose finish takes several
    //! timeouts: it reports progress all along, stops reporting, or never
    //! reports.

    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::batch::{BatchBuilder, RawRecord};
    use crate::error::InputError;
    use crate::job::{FinishContext, Integrate, Job, RecordError};
    use crate::output::OutputDir;
    use crate::pipeline::Pipeline;
    use crate::report::RunReport;
    use crate::settings::Settings;
    use crate::source::RecordSource;

    /// The deadline of the tests: short, so they are quick.
    const TIMEOUT: Duration = Duration::from_millis(300);
    /// A step of a finish: a sixth of the timeout, so a finish that
    /// reports after each is far from its deadline, on a loaded machine
    /// too.
    const STEP: Duration = Duration::from_millis(50);

    /// 100 records.
    struct Hundred {
        next: u64,
        origin: Arc<str>,
    }

    impl RecordSource for Hundred {
        fn fill(&mut self, b: &mut BatchBuilder, max: usize, _: usize) -> Result<bool, InputError> {
            while self.next < 100 && b.len() < max {
                self.next += 1;
                b.push(&self.origin, self.next, 0, b"record");
            }
            Ok(!b.is_empty())
        }
        fn position(&self) -> u64 {
            self.next
        }
        fn total(&self) -> Option<u64> {
            Some(100)
        }
    }

    /// How a finish goes: `steps` steps of [`STEP`], progress reported
    /// after each when `reports`; then, with `stall`, it waits (without
    /// reporting) until the test lets it go.
    #[derive(Clone)]
    struct Slow {
        steps: u32,
        reports: bool,
        stall: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
    }

    struct SlowState {
        how: Slow,
        count: u64,
    }

    impl Job for Slow {
        type Parsed<'a> = ();
        type Output = ();
        type Integrator = SlowState;
        fn name(&self) -> &str {
            "slow finish"
        }
        fn parse<'a>(&self, _: &RawRecord<'a>) -> Result<(), RecordError> {
            Ok(())
        }
        fn process(&self, _: ()) -> Result<(), RecordError> {
            Ok(())
        }
        fn integrator(&self) -> SlowState {
            SlowState {
                how: self.clone(),
                count: 0,
            }
        }
    }

    impl Integrate for SlowState {
        type Output = ();
        fn integrate(&mut self, _: u64, _: ()) -> Result<(), RecordError> {
            self.count += 1;
            Ok(())
        }
        fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
            for _ in 0..self.how.steps {
                std::thread::sleep(STEP);
                if self.how.reports {
                    run.progress();
                }
            }
            if let Some(stall) = &self.how.stall {
                // Until the test has the report (a minute at most: a run
                // that waited for this would then end complete, and fail
                // the test).
                let _ = stall
                    .lock()
                    .expect("the stall's lock")
                    .recv_timeout(Duration::from_secs(60));
            }
            let mut file = run.output.atomic("count.txt")?;
            std::io::Write::write_all(&mut file, self.count.to_string().as_bytes())?;
            run.commit_set(vec![file], &[])?;
            Ok(serde_json::json!({ "count": self.count, "steps": self.how.steps }))
        }
    }

    /// A run of `job` with the Finishing deadline [`TIMEOUT`]; its report
    /// and whether the output was written.
    fn run(job: Slow) -> (RunReport, bool) {
        let dir = tempfile::tempdir().unwrap();
        let source = Hundred {
            next: 0,
            origin: "memory".into(),
        };
        let report = Pipeline::new(job, source, OutputDir::create(dir.path()).unwrap())
            .settings(Settings {
                workers: 2,
                window: 4,
                batch: Some(10),
                drain_timeout: TIMEOUT,
                ..Settings::default()
            })
            .run()
            .unwrap();
        (report, dir.path().join("count.txt").exists())
    }

    #[test]
    fn a_finish_that_reports_progress_is_never_cut_by_the_drain_timeout() {
        // 30 steps: five times the timeout in all.
        let job = Slow {
            steps: 30,
            reports: true,
            stall: None,
        };
        let (report, written) = run(job);
        assert_eq!(report.exit_code, 0, "{}", report.human());
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.outputs_written && written, "{}", report.human());
        assert_eq!(report.result["count"], 100);
        assert_eq!(report.result["steps"], 30);
    }

    #[test]
    fn a_finish_that_stops_reporting_progress_times_out_naming_the_phase() {
        let (release, stall) = mpsc::channel();
        let job = Slow {
            steps: 8,
            reports: true,
            stall: Some(Arc::new(Mutex::new(stall))),
        };
        let (report, written) = run(job);
        // The finish may go on now (it writes into a folder the run no
        // longer answers for).
        drop(release);
        assert_eq!(report.exit_code, 70, "{}", report.human());
        let cut = report
            .errors
            .iter()
            .find(|e| e.contains("phase finishing"))
            .unwrap_or_else(|| panic!("no finishing failure in {:?}", report.errors));
        assert!(
            cut.contains("no progress") && cut.contains("--drain-timeout"),
            "{cut}"
        );
        assert!(cut.contains("after 8 progress reports"), "{cut}");
        assert!(!report.outputs_written && !written, "{}", report.human());
    }

    #[test]
    fn a_finish_that_never_reports_progress_is_bounded_by_the_drain_timeout_as_a_whole() {
        // Each step well within the timeout, all of them four times past it.
        let (release, stall) = mpsc::channel();
        let job = Slow {
            steps: 24,
            reports: false,
            stall: Some(Arc::new(Mutex::new(stall))),
        };
        let (report, written) = run(job);
        drop(release);
        assert_eq!(report.exit_code, 70, "{}", report.human());
        assert!(
            report.errors.iter().any(|e| e.contains("phase finishing")
                && e.contains("did not finish within the drain timeout")
                && e.contains("reported no progress")),
            "{:?}",
            report.errors
        );
        assert!(!report.outputs_written && !written, "{}", report.human());
    }
}
