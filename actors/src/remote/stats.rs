//! What the broker did during a distributed run, counted by the pool and
//! written into `summary.json` (`remote`): the figures that show
//! redelivery, duplicates and the bytes a document costs on the wire.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the broker did during a run, for `summary.json`.
#[derive(Debug, Default)]
pub struct RemoteStats {
    /// Work messages published (parts of batches).
    pub parts: AtomicU64,
    /// Bytes published as work (compressed).
    pub work_bytes: AtomicU64,
    /// Bytes received as answers (compressed).
    pub answer_bytes: AtomicU64,
    /// Answers of a work message the broker had delivered more than once
    /// (a worker died or was too slow with it).
    pub redelivered: AtomicU64,
    /// Answers dropped because their part was already answered.
    pub duplicates: AtomicU64,
    /// Answers that could not be read (damaged or foreign).
    pub unreadable: AtomicU64,
    /// Publications the broker did not confirm at once and that were tried
    /// again.
    pub publish_retries: AtomicU64,
    /// Parts delivered the most times allowed without an answer (poison
    /// batches: every worker that took one died or gave up); their records
    /// were rejected.
    pub poisoned: AtomicU64,
}

impl RemoteStats {
    /// The counts as JSON (no URL, no credential).
    pub fn to_json(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "parts": get(&self.parts),
            "work_bytes": get(&self.work_bytes),
            "answer_bytes": get(&self.answer_bytes),
            "redelivered": get(&self.redelivered),
            "duplicates": get(&self.duplicates),
            "unreadable": get(&self.unreadable),
            "publish_retries": get(&self.publish_retries),
            "poisoned": get(&self.poisoned),
        })
    }
}
