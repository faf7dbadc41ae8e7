//! Batches: the unit of work, flow control and ordering.
//!
//! A batch keeps its records in one contiguous buffer with an index of
//! entries, so reading, sending and processing a batch allocates a handful
//! of times, not once per record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where a record came from: its input's display name and its line (or, for
/// inputs where every file is one record, the file's position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    /// The input's display name (a path, `-` for stdin, or a path inside a
    /// directory input).
    pub origin: &'a str,
    /// 1-based line number (or record number for whole-file records).
    pub line: u64,
}

impl std::fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.origin, self.line)
    }
}

/// Where a record's bytes lie in its input file, when the reader can say
/// (an uncompressed regular file): a later pass can read the record again,
/// or copy it, without reading the rest of the input. The record's length
/// is that of [`RawRecord::bytes`], which are the file's bytes unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The input the record is in, as the reader numbers its inputs (for
    /// the command-line inputs: their position on the command line).
    pub input: u32,
    /// Offset of the record's first byte in that input.
    pub offset: u64,
}

/// One unparsed record as the processors see it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Position of this record in the whole input, counted from 0. Stable
    /// for a given input whatever the batch size, so jobs use it to order
    /// and identify records.
    pub index: u64,
    /// File and line, for messages.
    pub location: Location<'a>,
    /// An application-defined format tag set by the reader (for example
    /// "JSON line" or "plain text"), passed through untouched.
    pub format: u8,
    /// The record's bytes, without the line terminator.
    pub bytes: &'a [u8],
    /// Where the bytes are in the input, if the reader knows.
    pub span: Option<Span>,
}

#[derive(Debug, Clone)]
struct Entry {
    start: usize,
    end: usize,
    line: u64,
    origin: u32,
    format: u8,
    span: Option<Span>,
    /// Set when the reader already knows the record is unusable (too large,
    /// unreadable); the processor passes it on as a reject.
    rejected: Option<Box<str>>,
}

/// A run of consecutive input records. Built by a [`crate::RecordSource`]
/// through [`BatchBuilder`]; numbered by the Source actor.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) seq: u64,
    pub(crate) first_index: u64,
    data: Vec<u8>,
    entries: Vec<Entry>,
    origins: Vec<Arc<str>>,
    /// Where `data` goes back to when the batch is dropped.
    recycle: Option<BufferPool>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(pool) = self.recycle.take() {
            pool.put(std::mem::take(&mut self.data));
        }
    }
}

/// Buffers of processed batches, handed back for the Source to fill again.
///
/// A fresh buffer of a megabyte is fresh memory: the Source's copy into it
/// takes a page fault, and the kernel zeroes a page, every 4 KiB (two
/// thirds of a dedup run's page faults were those). A recycled buffer is
/// mapped already. Buffers are created only when none is free, so the pool
/// never holds more than the most batches alive at once (the window, and
/// the one being filled); `keep` caps it anyway. A buffer grown past
/// [`BufferPool::keep_capacity_up_to`] (by a record larger than a batch,
/// which travels alone) is freed, not kept.
#[derive(Debug, Clone)]
pub(crate) struct BufferPool {
    shared: Arc<PoolShared>,
}

#[derive(Debug)]
struct PoolShared {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
    max_capacity: AtomicUsize,
    /// Buffers allocated because none was free.
    made: AtomicUsize,
}

impl BufferPool {
    /// A pool that keeps at most `keep` free buffers.
    pub(crate) fn new(keep: usize) -> Self {
        BufferPool {
            shared: Arc::new(PoolShared {
                free: Mutex::new(Vec::new()),
                keep,
                max_capacity: AtomicUsize::new(usize::MAX),
                made: AtomicUsize::new(0),
            }),
        }
    }

    /// From now on, buffers whose capacity is above `bytes` are freed when
    /// given back instead of kept.
    pub(crate) fn keep_capacity_up_to(&self, bytes: usize) {
        self.shared.max_capacity.store(bytes, Ordering::Relaxed);
    }

    /// An empty buffer with room for `bytes` bytes, recycled if one is free.
    fn take(&self, bytes: usize) -> Vec<u8> {
        // A poisoned lock only means a thread panicked while pushing or
        // popping a buffer: a fresh one does as well.
        let recycled = self.shared.free.lock().ok().and_then(|mut free| free.pop());
        match recycled {
            Some(mut buffer) => {
                buffer.clear();
                buffer.reserve(bytes);
                buffer
            }
            None => {
                self.shared.made.fetch_add(1, Ordering::Relaxed);
                Vec::with_capacity(bytes)
            }
        }
    }

    fn put(&self, buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity == 0 || capacity > self.shared.max_capacity.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut free) = self.shared.free.lock() {
            if free.len() < self.shared.keep {
                free.push(buffer);
            }
        }
    }

    /// Free buffers now.
    fn free(&self) -> usize {
        self.shared.free.lock().map_or(0, |free| free.len())
    }

    /// Buffers allocated so far because none was free.
    fn made(&self) -> usize {
        self.shared.made.load(Ordering::Relaxed)
    }

    /// Frees the free buffers (outside the lock: unmapping takes time).
    fn release(&self) {
        let free = self
            .shared
            .free
            .lock()
            .map(|mut free| std::mem::take(&mut *free));
        drop(free);
    }
}

/// Free batch buffers that several pipeline runs share.
///
/// A run's Source keeps the buffers of processed batches to fill them
/// again (`BufferPool`). Given one `BatchBuffers`
/// ([`crate::Pipeline::sharing_buffers`]), the runs of a job of several
/// passes share them: a pass starts with buffers the pass before it has
/// already faulted in, and a pass that ends frees none. Freeing them was
/// most of the end of a short pass: the Source's thread took 1.5-2 ms to
/// unmap four 4 MB buffers before it exited, and Releasing waits for that
/// thread. The buffers are freed when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct BatchBuffers(pub(crate) BufferPool);

impl BatchBuffers {
    /// Keeps at most [`BatchBuffers::KEPT`] free buffers.
    pub fn new() -> Self {
        BatchBuffers(BufferPool::new(Self::KEPT))
    }

    /// Free buffers kept at most. A window of more batches (the default is
    /// two per core) works as well, with the buffers past these freed and
    /// allocated again.
    pub const KEPT: usize = 16;

    /// Buffers free now (at most [`BatchBuffers::KEPT`]).
    pub fn free(&self) -> usize {
        self.0.free()
    }

    /// Frees the buffers kept now, when no run needs them any more: a job
    /// whose last pass has ended frees them while it does other work
    /// rather than as the process exits.
    pub fn release(&self) {
        self.0.release();
    }

    /// Buffers allocated so far because none was free.
    pub fn made(&self) -> usize {
        self.0.made()
    }
}

impl Default for BatchBuffers {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// The batch, after checking that no record lies past the end of its
    /// bytes (which a reader could cause by truncating
    /// [`BatchBuilder::buffer`] below a record it had pushed).
    fn checked(self) -> Self {
        let end = self.entries.last().map_or(0, |e| e.end);
        assert!(
            end <= self.data.len(),
            "the batch's records end at byte {end}, past its {} bytes: the reader truncated its buffer below a record",
            self.data.len()
        );
        self
    }

    /// Sequence number of the batch in the run, from 0.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Number of records in the batch, rejected ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of record data the batch carries.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    /// The records, each either readable or already rejected by the reader.
    pub fn records(&self) -> impl Iterator<Item = Result<RawRecord<'_>, Rejected<'_>>> + '_ {
        self.entries.iter().enumerate().map(move |(i, e)| {
            let location = Location {
                origin: &self.origins[e.origin as usize],
                line: e.line,
            };
            let index = self.first_index + i as u64;
            match &e.rejected {
                Some(reason) => Err(Rejected {
                    index,
                    location,
                    reason,
                }),
                None => Ok(RawRecord {
                    index,
                    location,
                    format: e.format,
                    bytes: &self.data[e.start..e.end],
                    span: e.span,
                }),
            }
        })
    }
}

/// One entry of a batch as it travels to a worker host ([`WireBatch`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct WireEntry {
    len: u32,
    line: u64,
    origin: u32,
    format: u8,
    span: Option<(u32, u64)>,
    rejected: Option<Box<str>>,
}

/// A run of a batch's records in a form that serializes (for the remote
/// pool): the records' bytes back to back, their entries and origins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct WireBatch {
    pub seq: u64,
    pub first_index: u64,
    origins: Vec<String>,
    entries: Vec<WireEntry>,
    /// As one byte string, not a sequence of numbers: serde's `Vec<u8>`
    /// goes byte by byte, which cost workers a fifth of their time.
    #[serde(with = "byte_string")]
    data: Vec<u8>,
}

/// A `Vec<u8>` serialized as bytes (one length and a copy) rather than as
/// a sequence of `u8` (one call per byte), for [`WireBatch::data`].
mod byte_string {
    use serde::{de, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

impl Batch {
    /// The records `range` (positions in the batch) as a [`WireBatch`]:
    /// its first record keeps its input index, every record its location.
    pub(crate) fn to_wire(&self, range: std::ops::Range<usize>) -> WireBatch {
        let entries = &self.entries[range.clone()];
        let mut origins: Vec<String> = Vec::new();
        let mut ids: Vec<Option<u32>> = vec![None; self.origins.len()];
        let mut data = Vec::new();
        let wire = entries
            .iter()
            .map(|e| {
                let origin = *ids[e.origin as usize].get_or_insert_with(|| {
                    origins.push(self.origins[e.origin as usize].to_string());
                    (origins.len() - 1) as u32
                });
                data.extend_from_slice(&self.data[e.start..e.end]);
                WireEntry {
                    len: (e.end - e.start) as u32,
                    line: e.line,
                    origin,
                    format: e.format,
                    span: e.span.map(|s| (s.input, s.offset)),
                    rejected: e.rejected.clone(),
                }
            })
            .collect();
        WireBatch {
            seq: self.seq,
            first_index: self.first_index + range.start as u64,
            origins,
            entries: wire,
            data,
        }
    }

    /// Cuts the batch into consecutive runs of records, each with at most
    /// `max_bytes` of record bytes (a larger record alone).
    pub(crate) fn parts(&self, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
        let mut parts = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, e) in self.entries.iter().enumerate() {
            let len = e.end - e.start;
            if i > start && bytes + len > max_bytes {
                parts.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += len;
        }
        if start < self.entries.len() || parts.is_empty() {
            parts.push(start..self.entries.len());
        }
        parts
    }
}

impl WireBatch {
    /// The records as a [`Batch`] again; `None` when the entries do not
    /// fit the bytes or name an origin that is not there (a damaged
    /// message).
    pub(crate) fn into_batch(self) -> Option<Batch> {
        let mut entries = Vec::with_capacity(self.entries.len());
        let mut at = 0usize;
        for e in self.entries {
            let end = at.checked_add(e.len as usize)?;
            if end > self.data.len() || e.origin as usize >= self.origins.len() {
                return None;
            }
            entries.push(Entry {
                start: at,
                end,
                line: e.line,
                origin: e.origin,
                format: e.format,
                span: e.span.map(|(input, offset)| Span { input, offset }),
                rejected: e.rejected,
            });
            at = end;
        }
        Some(Batch {
            seq: self.seq,
            first_index: self.first_index,
            data: self.data,
            entries,
            origins: self.origins.into_iter().map(Arc::from).collect(),
            recycle: None,
        })
    }

    /// Records in this part.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of the records in this part.
    pub(crate) fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A record the reader could not hand over, with why.
#[derive(Debug, Clone, Copy)]
pub struct Rejected<'a> {
    /// Position in the whole input.
    pub index: u64,
    /// File and line.
    pub location: Location<'a>,
    /// Why it was rejected.
    pub reason: &'a str,
}

/// Fills a [`Batch`]; used by [`crate::RecordSource`] implementations.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    batch: Batch,
}

impl BatchBuilder {
    /// An empty builder with room for `records` records of `bytes` bytes.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        BatchBuilder {
            batch: Batch {
                seq: 0,
                first_index: 0,
                data: Vec::with_capacity(bytes),
                entries: Vec::with_capacity(records),
                origins: Vec::new(),
                recycle: None,
            },
        }
    }

    /// [`BatchBuilder::with_capacity`] with a buffer from `pool`, to which
    /// the batch returns it when dropped.
    pub(crate) fn recycling(pool: &BufferPool, records: usize, bytes: usize) -> Self {
        BatchBuilder {
            batch: Batch {
                seq: 0,
                first_index: 0,
                data: pool.take(bytes),
                entries: Vec::with_capacity(records),
                origins: Vec::new(),
                recycle: Some(pool.clone()),
            },
        }
    }

    fn origin_id(&mut self, origin: &Arc<str>) -> u32 {
        match self.batch.origins.last() {
            Some(last) if Arc::ptr_eq(last, origin) || **last == **origin => {}
            _ => self.batch.origins.push(Arc::clone(origin)),
        }
        (self.batch.origins.len() - 1) as u32
    }

    /// Appends a readable record: its origin, 1-based line, the reader's
    /// format tag and its bytes (copied into the batch's buffer).
    pub fn push(&mut self, origin: &Arc<str>, line: u64, format: u8, bytes: &[u8]) {
        self.push_at(origin, line, format, bytes, None);
    }

    /// [`BatchBuilder::push`] for a record whose place in the input file is
    /// known ([`Span`]).
    pub fn push_at(
        &mut self,
        origin: &Arc<str>,
        line: u64,
        format: u8,
        bytes: &[u8],
        span: Option<Span>,
    ) {
        let origin = self.origin_id(origin);
        let start = self.batch.data.len();
        self.batch.data.extend_from_slice(bytes);
        self.batch.entries.push(Entry {
            start,
            end: self.batch.data.len(),
            line,
            origin,
            format,
            span,
            rejected: None,
        });
    }

    /// The batch's record bytes, for a reader that reads a record straight
    /// into them instead of into a buffer of its own (one copy fewer):
    /// append the record's bytes, then make them a record with
    /// [`BatchBuilder::push_appended`], or truncate the buffer back to the
    /// length it had. Bytes appended and never pushed belong to no record
    /// but count in [`BatchBuilder::data_bytes`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.batch.data
    }

    /// Makes the bytes appended to [`BatchBuilder::buffer`] from `start` on
    /// a readable record, like [`BatchBuilder::push_at`] with them.
    ///
    /// # Panics
    ///
    /// If `start` is past the buffer's end or before the end of the last
    /// record pushed.
    pub fn push_appended(
        &mut self,
        start: usize,
        origin: &Arc<str>,
        line: u64,
        format: u8,
        span: Option<Span>,
    ) {
        let end = self.batch.data.len();
        let last_end = self.batch.entries.last().map_or(0, |e| e.end);
        assert!(
            last_end <= start && start <= end,
            "appended bytes {start}..{end} overlap the records before (which end at {last_end})"
        );
        let origin = self.origin_id(origin);
        self.batch.entries.push(Entry {
            start,
            end,
            line,
            origin,
            format,
            span,
            rejected: None,
        });
    }

    /// Appends a record the reader rejects (for example: larger than the
    /// record size limit, or not readable), with the reason.
    pub fn push_rejected(&mut self, origin: &Arc<str>, line: u64, reason: impl Into<Box<str>>) {
        let origin = self.origin_id(origin);
        let at = self.batch.data.len();
        self.batch.entries.push(Entry {
            start: at,
            end: at,
            line,
            origin,
            format: 0,
            span: None,
            rejected: Some(reason.into()),
        });
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.batch.entries.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.batch.entries.is_empty()
    }

    /// Bytes of record data pushed so far.
    pub fn data_bytes(&self) -> usize {
        self.batch.data.len()
    }

    /// The finished batch (the Source actor numbers it).
    pub fn finish(self) -> Batch {
        self.batch.checked()
    }

    /// The finished batch, numbered `seq`, its first record at input index
    /// `first_index`: for running batches without the Source actor (the
    /// no-actor baseline of the benchmarks, tests).
    pub fn finish_numbered(self, seq: u64, first_index: u64) -> Batch {
        let mut batch = self.batch.checked();
        batch.seq = seq;
        batch.first_index = first_index;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_appended_to_the_buffer_become_a_record_when_pushed() {
        let origin: Arc<str> = "in".into();
        let mut builder = BatchBuilder::default();
        builder.push(&origin, 1, 0, b"copied");
        let start = builder.data_bytes();
        builder.buffer().extend_from_slice(b"read in place");
        builder.push_appended(start, &origin, 2, 3, None);
        // Appended, then given up: truncated away, no record.
        let start = builder.data_bytes();
        builder.buffer().extend_from_slice(b"dropped");
        builder.buffer().truncate(start);
        builder.push_rejected(&origin, 3, "bad");
        let start = builder.data_bytes();
        builder.buffer().extend_from_slice(b"");
        builder.push_appended(start, &origin, 4, 3, None);
        let batch = builder.finish();
        let got: Vec<(u64, Option<Vec<u8>>)> = batch
            .records()
            .map(|r| match r {
                Ok(r) => (r.location.line, Some(r.bytes.to_vec())),
                Err(r) => (r.location.line, None),
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, Some(b"copied".to_vec())),
                (2, Some(b"read in place".to_vec())),
                (3, None),
                (4, Some(Vec::new())),
            ]
        );
    }

    #[test]
    #[should_panic(expected = "overlap the records before")]
    fn appended_bytes_cannot_overlap_a_pushed_record() {
        let origin: Arc<str> = "in".into();
        let mut builder = BatchBuilder::default();
        builder.push(&origin, 1, 0, b"record");
        builder.push_appended(2, &origin, 2, 0, None);
    }

    #[test]
    fn a_dropped_batch_gives_its_buffer_back_for_the_next_one() {
        let pool = BufferPool::new(2);
        let origin: Arc<str> = "in".into();
        let mut builder = BatchBuilder::recycling(&pool, 4, 1 << 20);
        builder.push(&origin, 1, 0, b"first");
        let batch = builder.finish();
        let buffer = batch.data.as_ptr();
        assert_eq!(pool.free(), 0);
        drop(batch);
        assert_eq!(pool.free(), 1, "given back");
        let mut builder = BatchBuilder::recycling(&pool, 4, 16);
        assert_eq!(pool.free(), 0, "taken again");
        builder.push(&origin, 1, 0, b"second");
        let batch = builder.finish();
        assert_eq!(batch.data.as_ptr(), buffer, "the same memory");
        let records: Vec<&[u8]> = batch.records().map(|r| r.unwrap().bytes).collect();
        assert_eq!(
            records,
            [b"second".as_slice()],
            "nothing of the first batch left"
        );
        // Never more than `keep` free buffers.
        let batches: Vec<Batch> = (0..5)
            .map(|_| BatchBuilder::recycling(&pool, 1, 64).finish())
            .collect();
        drop(batches);
        drop(batch);
        assert_eq!(pool.free(), 2);
        // A buffer grown past the limit is freed, not kept.
        let pool = BufferPool::new(2);
        pool.keep_capacity_up_to(1 << 10);
        drop(BatchBuilder::recycling(&pool, 1, 4 << 10).finish());
        assert_eq!(pool.free(), 0);
        drop(BatchBuilder::recycling(&pool, 1, 1 << 10).finish());
        assert_eq!(pool.free(), 1);
    }

    #[test]
    fn records_keep_their_order_location_and_bytes() {
        let a: Arc<str> = Arc::from("a.jsonl");
        let b: Arc<str> = Arc::from("b.txt");
        let mut builder = BatchBuilder::default();
        builder.push(&a, 1, 1, b"one");
        builder.push_rejected(&a, 2, "too large");
        builder.push(&b, 1, 2, b"two");
        let mut batch = builder.finish();
        batch.first_index = 10;
        let got: Vec<String> = batch
            .records()
            .map(|r| match r {
                Ok(r) => format!(
                    "{} {} {} {}",
                    r.index,
                    r.location,
                    r.format,
                    String::from_utf8_lossy(r.bytes)
                ),
                Err(r) => format!("{} {} rejected: {}", r.index, r.location, r.reason),
            })
            .collect();
        assert_eq!(
            got,
            [
                "10 a.jsonl:1 1 one",
                "11 a.jsonl:2 rejected: too large",
                "12 b.txt:1 2 two"
            ]
        );
    }
}
