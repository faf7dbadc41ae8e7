//! The Source actor: reads input lazily on a thread of its own and answers
//! the Coordinator's pulls with numbered batches. Input IO never runs on the
//! System thread, and nothing is read before it is asked for, so the input
//! can be far larger than memory.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use crate::batch::{Batch, BatchBuffers, BatchBuilder, BufferPool};
use crate::error::InputError;

/// A reader of records, implemented by the application for its input formats.
pub trait RecordSource: Send + 'static {
    /// Appends records to `batch` until it holds `max_records` records or
    /// `max_bytes` bytes (a single record larger than `max_bytes` still goes
    /// in, alone), or the input ends. Returns `Ok(false)` once the input is
    /// exhausted and nothing was appended.
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError>;

    /// Input consumed so far, in the unit of [`RecordSource::total`]
    /// (usually bytes of the input files as stored).
    fn position(&self) -> u64;

    /// The input's size in the unit of [`RecordSource::position`], if known.
    fn total(&self) -> Option<u64>;

    /// Skips the next `records` records (to resume after a checkpoint).
    /// Returns how many were skipped: fewer only if the input ended. The
    /// default reads and discards them.
    fn skip(&mut self, records: u64) -> Result<u64, InputError> {
        let mut skipped = 0;
        while skipped < records {
            let mut scratch = BatchBuilder::default();
            let want = (records - skipped).min(4096) as usize;
            if !self.fill(&mut scratch, want, usize::MAX)? {
                break;
            }
            skipped += scratch.len() as u64;
        }
        Ok(skipped)
    }

    /// Tells the source that the job reads the bytes of only the records
    /// whose input index `needed` accepts (a later pass of a multi-pass
    /// job that needs a few records' contents but every record's place).
    /// A source may then hand the others on with no bytes, their index,
    /// location and format as ever, and save decoding them. The default
    /// ignores it: every record whole is always correct.
    fn only_needed(&mut self, needed: Needed) {
        let _ = needed;
    }
}

/// Which records' bytes a job reads, by input index
/// ([`RecordSource::only_needed`]).
pub type Needed = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// Asks the Source for the next batch.
#[derive(Debug, Message)]
#[rtype(result = "Result<Pulled, InputError>")]
pub struct Pull {
    /// At most this many records.
    pub max_records: usize,
    /// At most about this many bytes of record data.
    pub max_bytes: usize,
}

/// The Source's answer to a [`Pull`].
#[derive(Debug)]
pub struct Pulled {
    /// The next batch, or `None` at end of input.
    pub batch: Option<Batch>,
    /// The source's position after this batch.
    pub position: u64,
}

/// The Source actor. Runs on a one-thread `SyncArbiter`.
pub struct Source<S: RecordSource> {
    // Boxed so the actor is `Unpin` whatever the reader is.
    reader: Box<S>,
    next_seq: u64,
    next_index: u64,
    /// Records to skip before the first batch (resuming).
    skip: u64,
    /// Records and bytes of record data this Source has handed out: their
    /// average sizes the next batch's buffer.
    records_read: u64,
    bytes_read: u64,
    /// The buffers of processed batches, filled again.
    buffers: BufferPool,
    /// Dropped with the actor: the Coordinator waits for every such sender
    /// to be gone before it reports the threads as exited.
    _alive: mpsc::Sender<()>,
}

impl<S: RecordSource> Source<S> {
    /// Starts the Source on its own thread. `alive` is disconnected when the
    /// thread has dropped the actor. `resume_at` is `(records, batches)`
    /// already done by the run being resumed: that many records are skipped
    /// and numbering continues after them. Batches are filled in `buffers`'
    /// free buffers, and given back to them.
    pub(crate) fn start(
        reader: S,
        alive: mpsc::Sender<()>,
        resume_at: (u64, u64),
        buffers: BatchBuffers,
    ) -> Addr<Self> {
        // The factory may in principle be called again; the reader moves into
        // the first instance only, a second instance would be a bug.
        let slot = Arc::new(Mutex::new(Some((reader, alive, buffers.0))));
        SyncArbiter::start_with_thread_builder(
            1,
            || std::thread::Builder::new().name("drainpipe-source".into()),
            move || {
                let (reader, alive, buffers) = slot
                    .lock()
                    .expect("source slot poisoned")
                    .take()
                    .expect("the Source actor is created once");
                Source {
                    reader: Box::new(reader),
                    next_seq: resume_at.1,
                    next_index: resume_at.0,
                    skip: resume_at.0,
                    records_read: 0,
                    bytes_read: 0,
                    buffers,
                    _alive: alive,
                }
            },
        )
    }
}

impl<S: RecordSource> Actor for Source<S> {
    type Context = SyncContext<Self>;
}

impl<S: RecordSource> Handler<Pull> for Source<S> {
    type Result = Result<Pulled, InputError>;

    fn handle(&mut self, pull: Pull, _: &mut SyncContext<Self>) -> Self::Result {
        if self.skip > 0 {
            let wanted = std::mem::take(&mut self.skip);
            let skipped = self.reader.skip(wanted)?;
            if skipped < wanted {
                return Err(InputError {
                    origin: "input".into(),
                    line: 0,
                    cause: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the input has {skipped} records, the checkpoint was taken after {wanted}: has it changed?"),
                    ),
                });
            }
        }
        // Room for the batch's bytes up front, from the records so far: a
        // buffer grown by doubling copies its bytes again at each step.
        let expected = self
            .bytes_read
            .checked_div(self.records_read)
            .unwrap_or(0)
            .saturating_mul(pull.max_records as u64 + pull.max_records as u64 / 8);
        let bytes = expected.min(pull.max_bytes as u64) as usize;
        // A buffer that a record larger than a batch grew is not kept.
        self.buffers
            .keep_capacity_up_to(pull.max_bytes.saturating_mul(2));
        let mut builder = BatchBuilder::recycling(&self.buffers, pull.max_records, bytes);
        let more = self
            .reader
            .fill(&mut builder, pull.max_records.max(1), pull.max_bytes)?;
        let batch = if !more && builder.is_empty() {
            None
        } else {
            let mut batch = builder.finish();
            batch.seq = self.next_seq;
            batch.first_index = self.next_index;
            self.next_seq += 1;
            self.next_index += batch.len() as u64;
            self.records_read += batch.len() as u64;
            self.bytes_read += batch.data_bytes() as u64;
            Some(batch)
        };
        Ok(Pulled {
            batch,
            position: self.reader.position(),
        })
    }
}

impl<S: RecordSource + ?Sized> RecordSource for Box<S> {
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        (**self).fill(batch, max_records, max_bytes)
    }
    fn position(&self) -> u64 {
        (**self).position()
    }
    fn total(&self) -> Option<u64> {
        (**self).total()
    }
    fn skip(&mut self, records: u64) -> Result<u64, InputError> {
        // Forwarded, so a source's own faster skip is not lost in a box.
        (**self).skip(records)
    }
    fn only_needed(&mut self, needed: Needed) {
        (**self).only_needed(needed);
    }
}
