//! The tuning and limits of a run. A leaf module, so the Coordinator and
//! the pipeline that starts it both read the settings without importing
//! each other.

use std::time::Duration;

/// Tuning and limits of a run. `Settings::default()` suits most uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Processor threads (N).
    pub workers: usize,
    /// Most batches in flight (W); bounds memory with `max_batch_bytes`.
    pub window: usize,
    /// Records per batch; `None` adapts it so a batch is about eight
    /// milliseconds of step-1 work.
    pub batch: Option<usize>,
    /// Most bytes of record data per batch (a larger record travels alone).
    pub max_batch_bytes: usize,
    /// Deadline of each wait after Running. For Finishing, the most time
    /// the job's finish may go without reporting progress
    /// ([`crate::FinishContext::progress`]), not a bound on all of it.
    pub drain_timeout: Duration,
    /// A stall report is logged when no batch completes for this long.
    pub stall_timeout: Duration,
    /// Stop (exit code 65) once more records than this are rejected.
    pub max_rejects: Option<u64>,
    /// The most records the run reads (a job whose tables number records
    /// with fewer bits than `u64` says how many it can number). No record
    /// past it is dispatched: an input that holds more stops the run
    /// (exit 65) before any record's number passes the limit.
    pub max_records: Option<u64>,
    /// How often the progress callback is called.
    pub progress_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Settings {
            workers,
            window: 2 * workers,
            batch: None,
            max_batch_bytes: 4 << 20,
            drain_timeout: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(30),
            max_rejects: None,
            max_records: None,
            progress_every: Duration::from_millis(500),
        }
    }
}
