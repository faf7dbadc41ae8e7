//! What the actors publish about themselves for the stall report and for the
//! bounds the tests assert: plain atomics, written by the actor that owns the
//! fact and read by the Coordinator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Sentinel for "no batch": the processor is idle.
const IDLE: u64 = u64::MAX;

/// What one processor thread is doing.
#[derive(Debug)]
pub struct ProcessorStatus {
    batch: AtomicU64,
    record: AtomicU64,
    since_ms: AtomicU64,
}

impl Default for ProcessorStatus {
    fn default() -> Self {
        ProcessorStatus {
            batch: AtomicU64::new(IDLE),
            record: AtomicU64::new(0),
            since_ms: AtomicU64::new(0),
        }
    }
}

/// A snapshot of [`ProcessorStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Waiting for a batch.
    Idle,
    /// Working on record `record` (its input index) of batch `batch` since
    /// `since_ms` milliseconds into the run.
    Busy {
        /// Batch sequence number.
        batch: u64,
        /// Input index of the current record.
        record: u64,
        /// When the batch was started, in ms since the run started.
        since_ms: u64,
    },
    /// Waiting for the Integrator to accept batch `batch`.
    Delivering {
        /// Batch sequence number.
        batch: u64,
        /// When delivery started, in ms since the run started.
        since_ms: u64,
    },
}

const DELIVERING: u64 = u64::MAX - 1;

impl ProcessorStatus {
    pub(crate) fn start_batch(&self, batch: u64, now_ms: u64) {
        self.since_ms.store(now_ms, Ordering::Relaxed);
        self.batch.store(batch, Ordering::Relaxed);
    }
    pub(crate) fn at_record(&self, index: u64) {
        self.record.store(index, Ordering::Relaxed);
    }
    pub(crate) fn delivering(&self, now_ms: u64) {
        self.since_ms.store(now_ms, Ordering::Relaxed);
        self.record.store(DELIVERING, Ordering::Relaxed);
    }
    pub(crate) fn idle(&self) {
        self.batch.store(IDLE, Ordering::Relaxed);
    }

    /// What the processor is doing now.
    pub fn activity(&self) -> Activity {
        let batch = self.batch.load(Ordering::Relaxed);
        let record = self.record.load(Ordering::Relaxed);
        let since_ms = self.since_ms.load(Ordering::Relaxed);
        match (batch, record) {
            (IDLE, _) => Activity::Idle,
            (batch, DELIVERING) => Activity::Delivering { batch, since_ms },
            (batch, record) => Activity::Busy {
                batch,
                record,
                since_ms,
            },
        }
    }
}

/// A gauge that remembers its peak: the bounds the protocol promises are
/// asserted on these peaks.
#[derive(Debug, Default)]
pub struct PeakGauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl PeakGauge {
    pub(crate) fn inc(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
    pub(crate) fn dec(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    pub(crate) fn set(&self, v: u64) {
        self.now.store(v, Ordering::SeqCst);
        self.peak.fetch_max(v, Ordering::SeqCst);
    }
    /// The current value.
    pub fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    /// The highest value seen.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

/// A sign of life of work the Coordinator cannot see into: the job's
/// finish ([`crate::Integrate::finish`]) runs on the Integrator's thread,
/// inside the job's code, and tells it moves on by beating
/// ([`crate::FinishContext::progress`]). The Coordinator's Finishing
/// deadline (`--drain-timeout`) then bounds the time between two beats,
/// not the whole finish.
///
/// A clone beats the same heart: hand one to every thread of the work.
/// A beat is one relaxed atomic add on a value the threads share: beat
/// per piece of work (a file written, a list merged, some thousands of
/// entries), not per item.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// Says the work moved on.
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The beats so far (the Coordinator looks whether they changed).
    pub fn beats(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything the actors of one run publish.
#[derive(Debug)]
pub struct Observed {
    /// When the run started; times above are relative to it.
    pub started: Instant,
    /// One entry per processor thread.
    pub processors: Vec<ProcessorStatus>,
    /// Deliveries sent to the Integrator and not yet handled by it.
    pub integrator_mailbox: PeakGauge,
    /// Batches the Integrator holds because an earlier batch has not arrived.
    pub integrator_reorder: PeakGauge,
    /// Batches dispatched and not yet answered.
    pub in_flight: PeakGauge,
    /// A distributed run's broker, while it is unreachable (the remote
    /// pool says so; the stall report names it, and the Coordinator stops
    /// the run once it is gone for good).
    pub broker: Mutex<Option<BrokerTrouble>>,
    /// The job's finish beats here ([`crate::FinishContext::progress`]);
    /// the Coordinator's Finishing deadline counts from the last beat.
    pub finish: Heartbeat,
}

/// A broker that cannot be reached, as the remote pool sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerTrouble {
    /// What the stall report and the run's failure say: the broker's URL
    /// (without credentials) and for how long it has been unreachable.
    pub message: String,
    /// Past the run's deadline (`--nats-deadline`): the run must stop.
    pub gone: bool,
}

impl Observed {
    pub(crate) fn new(workers: usize) -> Self {
        Observed {
            started: Instant::now(),
            processors: (0..workers).map(|_| ProcessorStatus::default()).collect(),
            integrator_mailbox: PeakGauge::default(),
            integrator_reorder: PeakGauge::default(),
            in_flight: PeakGauge::default(),
            broker: Mutex::new(None),
            finish: Heartbeat::default(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}
