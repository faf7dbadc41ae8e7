//! Pass 3's step 1 on worker hosts, when the pass is a pipeline pass
//! (`--nats`, `docs/DISTRIBUTED.md`): a worker has neither the records
//! pass 1 integrated nor those pass 2 removed, so the run's job
//! ([`KeptJob`]) sends one tag per record inside each part
//! ([`RemoteJob::context`]), and the worker's job ([`KeptStep`]) formats
//! the kept records' lines as a local processor does ([`line`]). Only for
//! `kept.jsonl`: `kept.parquet` is written by a pass run on this host.

use std::ops::Range;

use drainpipe_actors::codec;
use drainpipe_actors::remote::{RemoteJob, StepOnly};
use drainpipe_actors::{Job, RawRecord, RecordError};

use super::{line, Kept, KeptJob, KeptOut};
use crate::input::TextFields;
use crate::jobs::dedup::records::rejected_again;

/// The name workers know pass 3 by (`src/jobs/registry.rs`).
pub const REMOTE_NAME: &str = "dedup-kept";
/// Version of the parameters and the context below.
const VERSION: u32 = 1;

/// `(text field, id field)`.
type Params = (String, String);

/// A record pass 1 did not integrate (rejected again), one pass 2 removed,
/// one kept.
const REJECTED: u8 = 0;
const REMOVED: u8 = 1;
const KEPT: u8 = 2;

impl RemoteJob for KeptJob {
    fn params(&self) -> Vec<u8> {
        let params: Params = (self.fields.text.clone(), self.fields.id.clone());
        codec::encode(&params, VERSION).expect("strings always encode")
    }

    fn remote_name(&self) -> &str {
        REMOTE_NAME
    }

    fn context(&self, records: Range<u64>) -> Vec<u8> {
        let tags: Vec<u8> = records
            .map(|index| {
                if !self.integrated.contains(index) {
                    REJECTED
                } else if self.removed.contains(index) {
                    REMOVED
                } else {
                    KEPT
                }
            })
            .collect();
        codec::encode(&tags, VERSION).expect("bytes always encode")
    }
}

/// Pass 3's step 1 on a worker: built from the run's parameters, then for
/// each part from its context.
#[derive(Debug)]
pub struct KeptStep {
    fields: TextFields,
    /// The part's first record and its records' tags.
    part: Option<(u64, Vec<u8>)>,
}

impl KeptStep {
    /// The step [`RemoteJob::params`] of a [`KeptJob`] describes.
    pub fn from_params(params: &[u8]) -> Result<Self, String> {
        let (text, id): Params = codec::decode(params, VERSION).map_err(|e| e.to_string())?;
        Ok(KeptStep {
            fields: TextFields { text, id },
            part: None,
        })
    }
}

impl Job for KeptStep {
    type Parsed<'a> = Kept<'a>;
    type Output = Option<KeptOut>;
    type Integrator = StepOnly<Option<KeptOut>>;

    fn name(&self) -> &str {
        "dedup"
    }

    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<Kept<'a>, RecordError> {
        let Some((first, tags)) = &self.part else {
            return Err("pass 3 on a worker: the batch carries no context".into());
        };
        let tag = usize::try_from(raw.index.wrapping_sub(*first))
            .ok()
            .and_then(|at| tags.get(at))
            .ok_or_else(|| format!("record {} has no tag in its batch", raw.index))?;
        match *tag {
            REJECTED => Err(rejected_again(raw, &self.fields)),
            REMOVED => Ok(Kept::Removed),
            KEPT => Ok(Kept::Record(*raw)),
            other => Err(format!("record {}: unknown tag {other}", raw.index).into()),
        }
    }

    fn process(&self, record: Kept<'_>) -> Result<Option<KeptOut>, RecordError> {
        match record {
            Kept::Removed => Ok(None),
            Kept::Record(raw) => line(&raw, &self.fields).map(|l| Some(KeptOut::Line(l))),
        }
    }

    fn integrator(&self) -> StepOnly<Option<KeptOut>> {
        StepOnly::default()
    }
}

impl RemoteJob for KeptStep {
    fn params(&self) -> Vec<u8> {
        let params: Params = (self.fields.text.clone(), self.fields.id.clone());
        codec::encode(&params, VERSION).expect("strings always encode")
    }

    fn remote_name(&self) -> &str {
        REMOTE_NAME
    }

    fn with_context(&self, records: Range<u64>, context: &[u8]) -> Result<Option<Self>, String> {
        let tags: Vec<u8> =
            codec::decode(context, VERSION).map_err(|e| format!("pass 3's context: {e}"))?;
        if tags.len() as u64 != records.end - records.start {
            return Err(format!(
                "pass 3's context has {} tags for {} records",
                tags.len(),
                records.end - records.start
            ));
        }
        Ok(Some(KeptStep {
            fields: self.fields.clone(),
            part: Some((records.start, tags)),
        }))
    }
}
