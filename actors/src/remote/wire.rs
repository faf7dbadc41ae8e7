//! What travels through the broker, and how it is packed: serialized
//! through [`crate::codec`] (versioned, checksummed) and compressed with
//! zstd, so a damaged or foreign message is refused, never misread.
//!
//! A work message is one part of a batch: the pool cuts a batch into
//! parts whose packed form fits the broker's largest message, and each
//! part is processed and answered on its own (a worker may take any
//! part), so no message needs another to be read.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::batch::WireBatch;
use crate::integrator::RejectedRecord;

/// The format version of [`Work`] and [`Answer`] (2: a part carries its
/// records' context; 3: record bytes as one byte string).
const VERSION: u32 = 3;
/// zstd level: the fastest; batches are text, already 3-4x smaller.
const LEVEL: i32 = 1;

/// Why a message could not be packed or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("encoding: {0}")]
    Codec(#[from] crate::error::CodecError),
    #[error("compression: {0}")]
    Zstd(#[from] std::io::Error),
}

/// One part of a batch, for a worker: the job to run and its records.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Work {
    /// The job's name, which the worker's registry knows it by.
    pub job: String,
    /// The job's parameters ([`super::RemoteJob::params`]).
    pub params: Vec<u8>,
    /// What step 1 needs to know about this part's records
    /// ([`super::RemoteJob::context`]); empty for most jobs.
    pub context: Vec<u8>,
    /// The records (which part of the batch they are travels in the
    /// [`PART_HEADER`] header, set once the batch is cut).
    pub batch: WireBatch,
}

/// The header naming a work message's part of its batch (from 0).
pub(crate) const PART_HEADER: &str = "Drainpipe-Part";

/// A worker's answer for one part: step 1's outputs and rejects.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer<O> {
    pub seq: u64,
    pub part: u32,
    /// How many times the broker had delivered the work (1: the first).
    pub delivered: u64,
    /// Time step 1 took, in nanoseconds (the Coordinator sizes batches by
    /// it).
    pub busy_ns: u64,
    pub outputs: Vec<(u64, O)>,
    pub rejects: Vec<RejectedRecord>,
}

/// `value`, serialized and compressed.
pub(crate) fn pack<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let encoded = crate::codec::encode(value, VERSION)?;
    Ok(zstd::bulk::compress(&encoded, LEVEL)?)
}

/// What [`pack`] made of a `T`. `limit` bounds the decompressed size (a
/// bomb is refused, not allocated).
pub(crate) fn unpack<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    let encoded = zstd::bulk::decompress(bytes, limit)?;
    Ok(crate::codec::decode(&encoded, VERSION)?)
}

/// Every record of the packed [`Work`] in `work`, rejected with `why`;
/// `None` if `work` cannot be read.
pub(crate) fn rejecting(work: &[u8], why: &str) -> Option<Vec<RejectedRecord>> {
    let work = unpack::<Work>(work, UNPACKED_LIMIT).ok()?;
    let batch = work.batch.into_batch()?;
    let rejects = batch
        .records()
        .map(|r| {
            let (index, location) = match r {
                Ok(r) => (r.index, r.location),
                Err(r) => (r.index, r.location),
            };
            RejectedRecord::new(index, location, why.to_owned())
        })
        .collect();
    Some(rejects)
}

/// The most a packed message may hold decompressed: a record may be a GiB
/// (`--max-record-bytes`) and travels alone, so this is generous; it only
/// stops a corrupt size header from allocating without bound.
pub(crate) const UNPACKED_LIMIT: usize = 2 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_round_trips_and_a_damaged_one_is_refused() {
        let answer = Answer {
            seq: 7,
            part: 1,
            delivered: 2,
            busy_ns: 5,
            outputs: vec![(3u64, "words\n".to_owned())],
            rejects: vec![],
        };
        let packed = pack(&answer).unwrap();
        let back: Answer<String> = unpack(&packed, UNPACKED_LIMIT).unwrap();
        assert_eq!((back.seq, back.part, back.outputs), (7, 1, answer.outputs));
        let mut damaged = packed.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xff;
        assert!(unpack::<Answer<String>>(&damaged, UNPACKED_LIMIT).is_err());
    }
}
