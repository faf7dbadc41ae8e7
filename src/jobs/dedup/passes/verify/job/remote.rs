//! Pass 2's step 1 on worker hosts (`--nats`, `docs/DISTRIBUTED.md`).
//!
//! Step 1 depends on per-run state a worker does not have: which records
//! pass 1 integrated, which are candidates, whose shingle set is needed,
//! and, when the pass reads the candidates only, which record each one
//! read is. The run's job ([`VerifyJob`]) turns that state into one tag
//! per record of each part ([`RemoteJob::context`]), which travels inside
//! the part; the worker's job ([`VerifyStep`]) reads the tag instead of
//! the run's sets and runs the same step 1 ([`VerifyJob::process`]). The
//! answer is the pass's [`Member`] output, as a local processor sends it.

use std::ops::Range;
use std::sync::Arc;

use drainpipe_actors::codec;
use drainpipe_actors::remote::{RemoteJob, StepOnly};
use drainpipe_actors::{Job, RawRecord, RecordError};

use super::{original, Member, PairsIn, SetSpace, VerifyJob};
use crate::input::{parse_text_record, TextFields};
use crate::jobs::dedup::keep::KeepPolicy;
use crate::jobs::dedup::records::rejected_again;
use crate::jobs::dedup::spill::record_sets::RecordSet;

/// The name workers know pass 2 by (`src/jobs/registry.rs`).
pub const REMOTE_NAME: &str = "dedup-verify";
/// Version of the parameters and the context below (2: the `--keep`
/// policy, whose key step 1 computes).
const VERSION: u32 = 2;

/// `(text field, id field, ngram, send the words, --keep policy)`.
type Params = (String, String, u64, bool, String);
/// One [`Tag`] per record of the part, and how many records the pass
/// reads when it reads some only (for the message of a record past them).
type Context = (Vec<u8>, Option<u64>);

/// What step 1 does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Tag {
    /// Pass 1 did not integrate it: rejected again, with pass 1's reason.
    Rejected = 0,
    /// Not a candidate: not even parsed.
    Skipped = 1,
    /// A candidate whose shingle set is needed.
    Shingled = 2,
    /// A record read for its words only (a saved index's hook).
    WordsOnly = 3,
    /// Past the records a pass reading some only reads.
    Past = 4,
}

impl Tag {
    fn of(byte: u8) -> Option<Tag> {
        [
            Tag::Rejected,
            Tag::Skipped,
            Tag::Shingled,
            Tag::WordsOnly,
            Tag::Past,
        ]
        .into_iter()
        .find(|t| *t as u8 == byte)
    }
}

impl RemoteJob for VerifyJob {
    fn params(&self) -> Vec<u8> {
        let params: Params = (
            self.fields.text.clone(),
            self.fields.id.clone(),
            self.ngram as u64,
            self.words,
            self.keep.to_string(),
        );
        codec::encode(&params, VERSION).expect("strings and numbers always encode")
    }

    fn remote_name(&self) -> &str {
        REMOTE_NAME
    }

    fn context(&self, records: Range<u64>) -> Vec<u8> {
        let tags: Vec<u8> = records.map(|index| self.tag(index) as u8).collect();
        let reading = self.reread.as_ref().map(|r| r.len() as u64);
        codec::encode(&(tags, reading), VERSION).expect("bytes always encode")
    }
}

impl VerifyJob {
    /// What step 1 does with the record at `index` (as [`Job::parse`]
    /// decides it).
    fn tag(&self, index: u64) -> Tag {
        let Ok(index) = original(self.reread.as_ref(), index) else {
            return Tag::Past;
        };
        if !self.integrated.contains(index) {
            Tag::Rejected
        } else if !self.candidates.contains(index) {
            Tag::Skipped
        } else if self.shingled.as_ref().is_none_or(|s| s.contains(index)) {
            Tag::Shingled
        } else {
            Tag::WordsOnly
        }
    }
}

/// Pass 2's step 1 on a worker: built from the run's parameters, then for
/// each part from its context.
#[derive(Debug)]
pub struct VerifyStep {
    /// Step 1 itself (its sets are empty: the tags stand for them).
    job: Arc<VerifyJob>,
    /// The part's first record and its records' tags.
    part: Option<(u64, Vec<u8>, Option<u64>)>,
}

impl VerifyStep {
    /// The step [`RemoteJob::params`] of a [`VerifyJob`] describes.
    pub fn from_params(params: &[u8]) -> Result<Self, String> {
        let (text, id, ngram, words, keep): Params =
            codec::decode(params, VERSION).map_err(|e| e.to_string())?;
        let keep: KeepPolicy = keep
            .parse()
            .map_err(|e| format!("unusable parameters: {e}"))?;
        if ngram == 0 || ngram > 1 << 16 {
            return Err(format!("unusable parameters: {ngram}-word shingles"));
        }
        let fields = TextFields { text, id };
        let mut job = VerifyJob::new(
            fields,
            ngram as usize,
            1.0,
            Arc::new(RecordSet::default()),
            (PairsIn::Memory(Arc::default()), SetSpace::default()),
        )
        .map_err(|e| e.to_string())?;
        job.words = words;
        let job = job.keeping(keep);
        Ok(VerifyStep {
            job: Arc::new(job),
            part: None,
        })
    }
}

impl Job for VerifyStep {
    type Parsed<'a> = <VerifyJob as Job>::Parsed<'a>;
    type Output = Option<Member>;
    type Integrator = StepOnly<Option<Member>>;

    fn name(&self) -> &str {
        "dedup"
    }

    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<Self::Parsed<'a>, RecordError> {
        let Some((first, tags, reading)) = &self.part else {
            return Err("pass 2 on a worker: the batch carries no context".into());
        };
        let tag = usize::try_from(raw.index.wrapping_sub(*first))
            .ok()
            .and_then(|at| tags.get(at))
            .and_then(|&t| Tag::of(t))
            .ok_or_else(|| format!("record {} has no tag in its batch", raw.index))?;
        let fields = &self.job.fields;
        match tag {
            Tag::Rejected => Err(rejected_again(raw, fields)),
            Tag::Skipped => Ok(None),
            Tag::Shingled | Tag::WordsOnly => parse_text_record(raw, fields)
                .map(|record| self.job.candidate(raw, record, tag == Tag::Shingled)),
            Tag::Past => Err(format!(
                "record {} is past the {} to read",
                raw.index,
                reading.unwrap_or(0)
            )
            .into()),
        }
    }

    fn process(&self, record: Self::Parsed<'_>) -> Result<Option<Member>, RecordError> {
        self.job.process(record)
    }

    fn integrator(&self) -> StepOnly<Option<Member>> {
        StepOnly::default()
    }
}

impl RemoteJob for VerifyStep {
    fn params(&self) -> Vec<u8> {
        self.job.params()
    }

    fn remote_name(&self) -> &str {
        REMOTE_NAME
    }

    fn with_context(&self, records: Range<u64>, context: &[u8]) -> Result<Option<Self>, String> {
        let (tags, reading): Context =
            codec::decode(context, VERSION).map_err(|e| format!("pass 2's context: {e}"))?;
        if tags.len() as u64 != records.end - records.start {
            return Err(format!(
                "pass 2's context has {} tags for {} records",
                tags.len(),
                records.end - records.start
            ));
        }
        Ok(Some(VerifyStep {
            job: Arc::clone(&self.job),
            part: Some((records.start, tags, reading)),
        }))
    }
}
