//! Packing a batch into work messages, off the pool's thread.
//!
//! Packing (serializing and compressing a few MB of records) took a third
//! of the coordinating process's time; on the System arbiter it also held
//! up the broker client that runs there, so answers waited behind it. It
//! runs on a blocking thread instead ([`Packer`] is shared with it).
//!
//! Parts are cut by their compressed size, not their raw one: the broker
//! limits the message, and text compresses 2-3x, so cutting at the raw
//! limit made two or three messages (each a publication, a fetch, an answer
//! and their acks) where one would do. The cut aims at the limit through
//! the ratio the previous batch compressed at; a part that still comes out
//! too large is halved, as before. The answer must fit a message too, and
//! some answers are larger than their work (dedup's verify pass answers
//! with shingle sets): until answers have been seen the cut stays at the
//! raw limit, and after, it aims the largest answer-to-work ratio seen at
//! the limit as well.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::Batch;
use crate::integrator::RejectedRecord;

use super::wire::{pack, Work};

/// The job's [`super::RemoteJob::context`] of a part's records (here, with
/// the packer that calls it, so the pool depends on this file and not the
/// other way round).
pub(crate) type ContextFn = std::sync::Arc<dyn Fn(std::ops::Range<u64>) -> Vec<u8> + Send + Sync>;

/// The share of the limit a part aims at: batches vary, and a part that
/// overshoots is compressed again in halves.
const AIM: f64 = 0.8;
/// The most raw bytes a part holds, as a multiple of the message limit
/// (bounds what a worker decompresses for one message).
const MOST_RAW: usize = 8;

/// What packing needs, shared by the pool and its packing threads.
pub(crate) struct Packer {
    pub job: String,
    pub params: Vec<u8>,
    /// The job's context of a part's records
    /// ([`super::RemoteJob::context`]).
    pub context: ContextFn,
    /// The largest message the broker takes, less headroom.
    pub limit: usize,
    /// Raw bytes per compressed byte of the last batch, in thousandths.
    ratio_milli: AtomicU64,
    /// The largest answer seen, per byte of its work message, in
    /// thousandths; 0 until an answer is seen.
    answer_milli: AtomicU64,
}

impl Packer {
    pub(crate) fn new(job: String, params: Vec<u8>, context: ContextFn, limit: usize) -> Self {
        Packer {
            job,
            params,
            context,
            limit,
            ratio_milli: AtomicU64::new(1000),
            answer_milli: AtomicU64::new(0),
        }
    }

    /// An answer of `answer` bytes came for a work message of `work` bytes.
    pub(crate) fn answered(&self, work: usize, answer: usize) {
        if let Some(milli) = (answer as u64)
            .saturating_mul(1000)
            .checked_div(work as u64)
        {
            self.answer_milli.fetch_max(milli, Ordering::Relaxed);
        }
    }

    /// The raw bytes a part may hold: the raw limit until answers are
    /// seen; then the limit through the last compression ratio, less by
    /// the largest answer-to-work ratio when answers are the larger.
    fn raw_cap(&self) -> usize {
        let answers = self.answer_milli.load(Ordering::Relaxed);
        if answers == 0 {
            return self.limit;
        }
        let ratio = self.ratio_milli.load(Ordering::Relaxed) as f64 / 1000.0;
        let growth = (answers as f64 / 1000.0).max(1.0);
        let aimed = (self.limit as f64 * ratio * AIM / growth) as usize;
        aimed.clamp(self.limit / MOST_RAW, self.limit.saturating_mul(MOST_RAW))
    }

    /// The packed work messages of `batch`, each under the broker's
    /// largest message; a record too large for one even compressed is
    /// answered here, rejected with the reason.
    pub(crate) fn pack_parts(&self, batch: &Batch) -> Vec<Result<Vec<u8>, RejectedRecord>> {
        let limit = self.limit;
        let mut ranges: Vec<_> = batch.parts(self.raw_cap()).into_iter().rev().collect();
        let mut packed = Vec::new();
        let (mut raw, mut compressed) = (0u64, 0u64);
        while let Some(range) = ranges.pop() {
            let wire = batch.to_wire(range.clone());
            let bytes_in = wire.data_len() as u64;
            let first = wire.first_index;
            let work = Work {
                job: self.job.clone(),
                params: self.params.clone(),
                context: (self.context)(first..first + range.len() as u64),
                batch: wire,
            };
            match pack(&work) {
                Ok(bytes) if bytes.len() <= limit => {
                    raw += bytes_in;
                    compressed += bytes.len() as u64;
                    packed.push(Ok(bytes));
                }
                Ok(_) | Err(_) if range.len() > 1 => {
                    // Halve it: it compressed worse than the last batch,
                    // or entries and framing outgrew the bytes.
                    let mid = range.start + range.len() / 2;
                    ranges.push(mid..range.end);
                    ranges.push(range.start..mid);
                }
                other => packed.push(Err(too_large(batch, range.start, other, limit))),
            }
        }
        if let Some(milli) = raw.saturating_mul(1000).checked_div(compressed) {
            self.ratio_milli.store(milli.max(1000), Ordering::Relaxed);
        }
        packed
    }
}

/// Record `at` of `batch`, alone and still not packable into one message,
/// rejected with why.
fn too_large(
    batch: &Batch,
    at: usize,
    packed: Result<Vec<u8>, super::wire::WireError>,
    limit: usize,
) -> RejectedRecord {
    let raw = batch.records().nth(at).expect("in the batch");
    let (index, location) = match raw {
        Ok(r) => (r.index, r.location),
        Err(r) => (r.index, r.location),
    };
    let why = match packed {
        Ok(bytes) => format!(
            "too large for one broker message: {} bytes compressed, the broker takes {limit}",
            bytes.len()
        ),
        Err(e) => format!("cannot be packed for the broker: {e}"),
    };
    RejectedRecord::new(index, location, why)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::batch::BatchBuilder;
    use crate::remote::wire::{unpack, UNPACKED_LIMIT};

    fn no_context() -> ContextFn {
        Arc::new(|_| Vec::new())
    }

    /// 400 records of 1,000 compressible bytes each (400 KB raw).
    fn batch() -> Batch {
        let origin: Arc<str> = Arc::from("in.jsonl");
        let mut b = BatchBuilder::default();
        for i in 0..400u64 {
            let text = format!("record {i:06} ").repeat(100);
            b.push(&origin, i + 1, 0, &text.as_bytes()[..1000]);
        }
        b.finish_numbered(3, 1000)
    }

    fn records_of(packed: &[Result<Vec<u8>, RejectedRecord>]) -> Vec<(u64, Vec<u8>)> {
        let mut all = Vec::new();
        for p in packed {
            let work: Work = unpack(p.as_ref().unwrap(), UNPACKED_LIMIT).unwrap();
            let batch = work.batch.into_batch().unwrap();
            for r in batch.records() {
                let r = r.unwrap();
                all.push((r.index, r.bytes.to_vec()));
            }
        }
        all
    }

    #[test]
    fn parts_are_cut_by_their_compressed_size_and_each_fits_the_broker_message() {
        let batch = batch();
        let limit = 64 << 10;
        let packer = Packer::new("job".into(), vec![1, 2], no_context(), limit);
        let first = packer.pack_parts(&batch);
        // No answer seen yet: cut at the raw limit.
        assert_eq!(first.len(), 7, "400 KB raw in parts of at most 64 KiB");
        packer.answered(limit, limit / 10);
        let second = packer.pack_parts(&batch);
        assert!(
            second.len() < first.len() / 2,
            "with the ratio learnt, parts fill the message: {} parts",
            second.len()
        );
        for p in first.iter().chain(&second) {
            assert!(p.as_ref().unwrap().len() <= limit);
        }
        // Every record, once, in order, with its index and bytes.
        let expected: Vec<(u64, Vec<u8>)> = batch
            .records()
            .map(|r| r.unwrap())
            .map(|r| (r.index, r.bytes.to_vec()))
            .collect();
        assert_eq!(records_of(&first), expected);
        assert_eq!(records_of(&second), expected);
    }

    #[test]
    fn answers_larger_than_their_work_make_parts_smaller() {
        let batch = batch();
        let limit = 64 << 10;
        let small = Packer::new("job".into(), Vec::new(), no_context(), limit);
        let large = Packer::new("job".into(), Vec::new(), no_context(), limit);
        small.pack_parts(&batch);
        large.pack_parts(&batch);
        small.answered(1000, 100);
        // Answers 20 times their work message.
        large.answered(1000, 20_000);
        let (few, many) = (small.pack_parts(&batch), large.pack_parts(&batch));
        assert!(
            many.len() > few.len(),
            "{} against {}",
            many.len(),
            few.len()
        );
        let ratio = large.ratio_milli.load(Ordering::Relaxed) as f64 / 1000.0;
        let answer = large.raw_cap() as f64 / ratio * 20.0;
        assert!(answer <= limit as f64, "an answer of {answer} bytes fits");
    }

    #[test]
    fn a_part_that_compresses_worse_than_the_last_batch_is_halved_until_it_fits() {
        let limit = 64 << 10;
        let packer = Packer::new("job".into(), Vec::new(), no_context(), limit);
        packer.pack_parts(&batch());
        packer.answered(limit, limit / 10);
        // Bytes that do not compress, cut as if they did.
        let origin: Arc<str> = Arc::from("noise");
        let mut b = BatchBuilder::default();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..200u64 {
            let bytes: Vec<u8> = (0..1000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            b.push(&origin, i + 1, 0, &bytes);
        }
        let noise = b.finish_numbered(4, 0);
        let packed = packer.pack_parts(&noise);
        assert!(packed.iter().all(|p| p.as_ref().unwrap().len() <= limit));
        assert_eq!(records_of(&packed).len(), 200);
    }
}
