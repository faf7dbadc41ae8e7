//! Reusable actix actors for a pipeline that reads more data than fits in
//! memory, runs CPU-heavy work on every record in parallel (step 1),
//! integrates every result in one place (step 2), and stops without losing
//! a record or hanging.
//!
//! # Layout
//!
//! The crate is shaped around the stop protocol: each actor is one file with
//! its messages beside it (the Coordinator, which has no messages of its
//! own, one folder), and the protocol's vocabulary is separate so it can be
//! read on its own. Imports run one way: the leaf modules (`error`,
//! `failure`, `batch`, `output`, `codec`, `observe`) first, then
//! `protocol`, `settings`, `job`, `checkpoint`, `report`, then the actors (`source`,
//! `integrator`, then `processor`, which delivers to the Integrator), then
//! `coordinator` and `pipeline`.
//!
//! - [`job`]: the traits a user implements ([`Job`], [`Integrate`]).
//! - [`batch`]: [`Batch`], the unit of work, flow control and ordering.
//! - [`source`]: the Source actor and the [`RecordSource`] trait readers
//!   implement. Runs on its own thread.
//! - [`processor`]: the Processor actor, N of them on a `SyncArbiter`.
//! - [`integrator`]: the Integrator actor, on its own `Arbiter`.
//! - [`coordinator`]: the Coordinator actor: flow control and the stop
//!   protocol, on the System arbiter. A folder: the protocol's state as
//!   one enum with the counters (`state.rs`), Running's pulls, dispatches
//!   and batch sizes (`flow.rs`), checkpoints (`checkpoint.rs`), Draining,
//!   Releasing and Stopped (`drain.rs`), Finishing (`finish.rs`), the
//!   tick's deadlines, stall reports and progress (`watch.rs`), and the
//!   final report (`summary.rs`).
//! - [`protocol`]: phases, stop causes, the [`RunHandle`].
//! - [`failure`]: [`Failure`], the typed cause of every way a run fails, and
//!   the [`ExitCode`] each maps to.
//! - [`pipeline`]: wiring and running it all ([`Pipeline`]).
//! - [`settings`]: the tuning and limits of a run ([`Settings`]).
//! - [`report`]: progress snapshots and the final [`RunReport`].
//! - [`observe`]: what actors publish for stall reports and bound checks,
//!   and the [`Heartbeat`] a job's finish reports its progress on.
//! - [`output`]: the output folder and atomic writes.
//! - [`checkpoint`]: checkpoints, the results of completed passes, and
//!   `--resume`.
//! - [`codec`]: the one place state is serialized (checkpoints).
//! - [`error`]: the input, output and codec error types.
//!
//! In the repository, `docs/ARCHITECTURE.md` maps the actors, their messages
//! and threads and where the memory bounds come from; `docs/PROTOCOL.md` is
//! the stop protocol as a contract; `examples/custom_job.rs` and
//! `examples/custom_actor.rs` show how to add a job and an actor.
//!
//! # Example
//!
//! A job that sums the lengths of its records:
//!
//! ```
//! use drainpipe_actors::{
//!     Batch, BatchBuilder, FinishContext, InputError, Integrate, Job, OutputDir, Pipeline,
//!     RawRecord, RecordError, RecordSource, Settings,
//! };
//! use std::sync::Arc;
//!
//! struct Lengths;
//! struct Sum(u64);
//!
//! impl Job for Lengths {
//!     type Parsed<'a> = &'a [u8];
//!     type Output = u64;
//!     type Integrator = Sum;
//!     fn name(&self) -> &str { "lengths" }
//!     fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<&'a [u8], RecordError> { Ok(raw.bytes) }
//!     fn process(&self, bytes: &[u8]) -> Result<u64, RecordError> { Ok(bytes.len() as u64) }
//!     fn integrator(&self) -> Sum { Sum(0) }
//! }
//!
//! impl Integrate for Sum {
//!     type Output = u64;
//!     fn integrate(&mut self, _index: u64, len: u64) -> Result<(), RecordError> {
//!         self.0 += len;
//!         Ok(())
//!     }
//!     fn finish(&mut self, _: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
//!         Ok(serde_json::json!({ "total_length": self.0 }))
//!     }
//! }
//!
//! /// Ten records "x", "xx", ... in memory.
//! struct Ten { next: u64, origin: Arc<str> }
//!
//! impl RecordSource for Ten {
//!     fn fill(&mut self, batch: &mut BatchBuilder, max: usize, _: usize) -> Result<bool, InputError> {
//!         while self.next < 10 && batch.len() < max {
//!             self.next += 1;
//!             batch.push(&self.origin, self.next, 0, "x".repeat(self.next as usize).as_bytes());
//!         }
//!         Ok(!batch.is_empty())
//!     }
//!     fn position(&self) -> u64 { self.next }
//!     fn total(&self) -> Option<u64> { Some(10) }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let report = Pipeline::new(Lengths, Ten { next: 0, origin: "memory".into() }, OutputDir::create(dir.path()).unwrap())
//!     .settings(Settings { workers: 2, window: 4, batch: Some(3), ..Settings::default() })
//!     .run()
//!     .unwrap();
//! assert_eq!(report.exit_code, 0, "{}", report.human());
//! assert_eq!(report.records.read, 10);
//! assert_eq!(report.result["total_length"], 55);
//! ```

#![warn(missing_docs)]

pub mod batch;
pub mod checkpoint;
pub mod codec;
pub mod commit;
pub mod coordinator;
pub mod error;
pub mod failure;
pub mod integrator;
pub mod job;
pub mod lock;
pub mod observe;
pub mod output;
pub mod pipeline;
pub mod processor;
pub mod protocol;
pub mod remote;
pub mod report;
pub mod settings;
pub mod source;
pub mod temp_space;

pub use batch::{Batch, BatchBuffers, BatchBuilder, Location, RawRecord, Rejected, Span};
pub use checkpoint::{Checkpoint, CheckpointError, Checkpoints, PassResult, CHECKPOINT_FILE};
pub use commit::COMMIT_JOURNAL;
pub use error::{CodecError, InputError, OutputError};
pub use failure::ExitCode;
pub use failure::Failure;
pub use integrator::{RejectedRecord, REJECTS_FILE};
pub use job::{FinishContext, Integrate, Job, PendingRejects, RecordError};
pub use lock::{FolderLock, LockError, LOCK_FILE};
pub use observe::Heartbeat;
pub use output::{AtomicFile, OutputDir};
pub use pipeline::{Pipeline, PipelineError};
pub use protocol::{Phase, RunHandle, StopCause};
pub use report::{Progress, Records, RunReport};
pub use settings::Settings;
pub use source::{Needed, RecordSource};
pub use temp_space::{NoRoom, TempSpace, TEMP_FOLDER, TEMP_RECORD};
