//! How a run fails: the typed cause of every failure ([`Failure`]) and the
//! exit code each maps to ([`ExitCode`]), in one place.
//!
//! A leaf module: the actors' messages carry a [`Failure`] (not a message
//! and a flag beside it), the Coordinator keeps the ones it meets, and
//! [`crate::RunReport::fail`] is the one way a report fails. The exit code
//! of a run is the most severe code of everything that went wrong
//! ([`ExitCode::severity`]).

use std::sync::Arc;

use crate::error::{InputError, OutputError};

/// Process exit codes, following BSD `sysexits.h` and the shell's
/// convention for SIGINT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// Every record was integrated or rejected; rejects are reported, not
    /// fatal.
    Complete = 0,
    /// Bad command line (`EX_USAGE`).
    Usage = 2,
    /// More rejected records than `--max-rejects`, every record read
    /// rejected, or more records than the run can number (`EX_DATAERR`).
    TooManyRejects = 65,
    /// A service the run needs (the NATS broker of a distributed run)
    /// cannot be reached at start (`EX_UNAVAILABLE`).
    Unavailable = 69,
    /// Records lost, or an internal failure such as an Integrator error
    /// (`EX_SOFTWARE`).
    Software = 70,
    /// An input or output file could not be read or written (`EX_IOERR`).
    Io = 74,
    /// Stopped by SIGINT or SIGTERM after draining (128 + SIGINT).
    Interrupted = 130,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit code with this number, if it is one of ours.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        [
            ExitCode::Complete,
            ExitCode::Usage,
            ExitCode::TooManyRejects,
            ExitCode::Unavailable,
            ExitCode::Software,
            ExitCode::Io,
            ExitCode::Interrupted,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// Which code wins when several apply: losing data or an internal
    /// failure outranks an IO error, which outranks a bad command line and
    /// too many rejects, which outrank an interruption.
    pub fn severity(self) -> u8 {
        match self {
            ExitCode::Complete => 0,
            ExitCode::Interrupted => 1,
            ExitCode::TooManyRejects => 2,
            ExitCode::Usage | ExitCode::Unavailable => 3,
            ExitCode::Io => 4,
            ExitCode::Software => 5,
        }
    }

    /// The more severe of `self` and `other` (`self` on a tie).
    pub fn worst(self, other: ExitCode) -> ExitCode {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// How `summary.json` names a run that ends with this code:
    /// `complete`, `interrupted` or `failed`.
    pub fn label(self) -> &'static str {
        match self {
            ExitCode::Complete => "complete",
            ExitCode::Interrupted => "interrupted",
            _ => "failed",
        }
    }
}

/// Why a run failed, typed by what went wrong; [`Failure::exit_code`] is
/// the one place a failure becomes an exit code. Its message is what the
/// log, `summary.json`'s `errors` and its `cause` show.
///
/// Cheap to clone (the IO errors are shared), because a failure travels:
/// the Integrator keeps its own and hands it to every later request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// An input could not be read (exit 74).
    #[error("input error: {0}")]
    Input(Arc<InputError>),
    /// An output file could not be written, committed or removed (exit 74).
    #[error("{0}")]
    Output(Arc<OutputError>),
    /// An IO failure known by its description: a job's output error, an
    /// input that changed while the run read it (exit 74).
    #[error("{0}")]
    Io(String),
    /// A checkpoint could not be taken, for the reason inside (exit 74:
    /// the run cannot be resumed as promised).
    #[error("output error: checkpoint failed: {0}")]
    Checkpoint(Box<Failure>),
    /// More records were rejected than the limit (exit 65).
    #[error("more than {limit} rejected records (--max-rejects)")]
    TooManyRejects {
        /// The limit (`Settings::max_rejects`).
        limit: u64,
    },
    /// The input holds more records than the run may read
    /// (`Settings::max_records`); the records past the limit were read but
    /// not processed (exit 65).
    #[error("the input holds more than {limit} records, the most this run can number (records past it are not processed)")]
    TooManyRecords {
        /// The limit (`Settings::max_records`).
        limit: u64,
    },
    /// Records were read and every one was rejected: nothing was
    /// integrated, so the outputs say nothing of the input (exit 65).
    #[error("every record read was rejected ({rejected} of {rejected}), none integrated: the reasons are in rejects.jsonl")]
    AllRejected {
        /// The records read, all rejected.
        rejected: u64,
    },
    /// The job's step 2 (`integrate`, `finish` or `save`) returned an
    /// error or panicked (exit 70).
    #[error("{0}")]
    Step2(String),
    /// The Integrator failed, for the reason inside; the run exits with
    /// that reason's code.
    #[error("integrator failed: {0}")]
    Integrator(Box<Failure>),
    /// The Integrator refused a batch (it had failed, for the reason
    /// inside, or could not be reached): the batch's records are abandoned
    /// and the run exits 70 whatever the reason.
    #[error("integrator failed: {0}")]
    Refused(Box<Failure>),
    /// A message between actors was lost: a mailbox closed because a thread
    /// died (exit 70).
    #[error("internal error: {0}")]
    Lost(String),
    /// A service the run depends on (a distributed run's broker) stayed
    /// unreachable past its deadline (exit 70). The run drains and takes a
    /// checkpoint first, so `--resume` goes on once the service is back.
    #[error("{0}")]
    Unavailable(String),
    /// The protocol could not keep a promise: a deadline passed, a thread
    /// did not exit, two tallies of the same records differ (exit 70).
    #[error("{0}")]
    Internal(String),
    /// Records were lost: the counts do not add up (exit 70).
    #[error("DATA LOSS: read {read} != integrated {integrated} + rejected {rejected} + abandoned {abandoned}")]
    DataLoss {
        /// Records read.
        read: u64,
        /// Records integrated.
        integrated: u64,
        /// Records rejected.
        rejected: u64,
        /// Records abandoned.
        abandoned: u64,
    },
}

impl Failure {
    /// The exit code this failure gives a run.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Input(_) | Failure::Output(_) | Failure::Io(_) | Failure::Checkpoint(_) => {
                ExitCode::Io
            }
            Failure::TooManyRejects { .. }
            | Failure::AllRejected { .. }
            | Failure::TooManyRecords { .. } => ExitCode::TooManyRejects,
            Failure::Integrator(cause) => cause.exit_code(),
            Failure::Step2(_)
            | Failure::Refused(_)
            | Failure::Lost(_)
            | Failure::Unavailable(_)
            | Failure::Internal(_)
            | Failure::DataLoss { .. } => ExitCode::Software,
        }
    }
}

impl From<OutputError> for Failure {
    fn from(e: OutputError) -> Self {
        Failure::Output(Arc::new(e))
    }
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Self {
        Failure::Input(Arc::new(e))
    }
}

/// Turns a panic payload into its message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_exits_70_even_when_the_integrator_failed_on_io() {
        let io = Failure::Io("disk full".into());
        assert_eq!(io.exit_code(), ExitCode::Io);
        assert_eq!(
            Failure::Integrator(Box::new(io.clone())).exit_code(),
            ExitCode::Io
        );
        assert_eq!(
            Failure::Refused(Box::new(io)).exit_code(),
            ExitCode::Software
        );
    }

    #[test]
    fn the_worst_exit_code_wins_whatever_the_order() {
        use ExitCode::*;
        let all = [Complete, Interrupted, TooManyRejects, Usage, Io, Software];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i..] {
                assert_eq!(a.worst(*b), *b);
                assert_eq!(b.worst(*a), *b);
            }
        }
    }

    #[test]
    fn every_exit_code_is_found_by_its_number() {
        for code in [0, 2, 65, 70, 74, 130] {
            assert_eq!(ExitCode::from_code(code).map(ExitCode::code), Some(code));
        }
        assert_eq!(ExitCode::from_code(1), None);
    }
}
