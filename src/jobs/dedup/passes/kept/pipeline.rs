//! Pass 3 ([`super`]) as a pipeline pass over the whole input:
//! `kept.jsonl`, every record that is neither rejected nor removed, in
//! input order.
//!
//! The processors turn each kept record into its output line (a JSON Lines
//! record byte for byte, the `\r` of a `\r\n` included, and a `\n`; any
//! other record as `{"id": <id>, "text": <text>}`, the costly JSON escaping
//! done in parallel) and a removed one
//! into nothing, without parsing it; the Integrator appends the lines to
//! the file in input order. The file is handed back uncommitted: the run
//! commits it with `clusters.jsonl` once every pass has checked out.

use std::io::Write;
use std::sync::{Arc, Mutex};

use drainpipe_actors::{
    AtomicFile, FinishContext, Integrate, Job, OutputDir, OutputError, RawRecord, RecordError,
};

use crate::input::{parse_text_record, TextFields, FORMAT_JSONL};
use crate::jobs::dedup::bitset::BitSet;
use crate::jobs::dedup::chain::{Written, KEPT_FILE};
use crate::jobs::dedup::records::rejected_again;

mod remote;

pub use remote::{KeptStep, REMOTE_NAME};

/// Steps 1 and 2 of pass 3.
#[derive(Debug)]
pub struct KeptJob {
    fields: TextFields,
    integrated: Arc<BitSet>,
    removed: Arc<BitSet>,
    output: OutputDir,
    slot: Arc<Mutex<Option<Written>>>,
}

impl KeptJob {
    /// Pass 3 for the records pass 1 `integrated`, less the `removed` ones,
    /// writing into `output`.
    pub fn new(
        fields: TextFields,
        integrated: Arc<BitSet>,
        removed: Arc<BitSet>,
        output: OutputDir,
    ) -> Self {
        KeptJob {
            fields,
            integrated,
            removed,
            output,
            slot: Arc::default(),
        }
    }

    /// The written file, once the pass has finished (not when it was
    /// interrupted).
    pub fn take_result(&self) -> Option<Written> {
        self.slot.lock().expect("result slot poisoned").take()
    }
}

/// A record as pass 3 sees it.
#[derive(Debug)]
pub enum Kept<'a> {
    /// A removed duplicate: nothing to write.
    Removed,
    /// A kept record and its format tag.
    Record(RawRecord<'a>),
}

impl Job for KeptJob {
    type Parsed<'a> = Kept<'a>;
    /// The output line, `\n` included; `None` for a removed record.
    type Output = Option<Vec<u8>>;
    type Integrator = KeptWriter;

    fn name(&self) -> &str {
        "dedup"
    }

    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<Kept<'a>, RecordError> {
        if !self.integrated.contains(raw.index) {
            return Err(rejected_again(raw, &self.fields));
        }
        if self.removed.contains(raw.index) {
            return Ok(Kept::Removed);
        }
        Ok(Kept::Record(*raw))
    }

    fn process(&self, record: Kept<'_>) -> Result<Option<Vec<u8>>, RecordError> {
        let Kept::Record(raw) = record else {
            return Ok(None);
        };
        line(&raw, &self.fields).map(Some)
    }

    fn integrator(&self) -> KeptWriter {
        KeptWriter {
            output: self.output.clone(),
            file: None,
            error: None,
            kept: 0,
            slot: Arc::clone(&self.slot),
        }
    }
}

/// The output line of a kept record, `\n` included: a JSON Lines record
/// byte for byte, any other as `{"id": <id>, "text": <text>}`.
fn line(raw: &RawRecord<'_>, fields: &TextFields) -> Result<Vec<u8>, RecordError> {
    if raw.format == FORMAT_JSONL {
        let mut line = Vec::with_capacity(raw.bytes.len() + 1);
        line.extend_from_slice(raw.bytes);
        line.push(b'\n');
        return Ok(line);
    }
    let record = parse_text_record(raw, fields)?;
    let mut line = Vec::with_capacity(record.text.len() + record.id.len() + 24);
    line.extend_from_slice(b"{\"id\":");
    line.extend_from_slice(record.id.as_bytes());
    line.extend_from_slice(b",\"text\":");
    serde_json::to_writer(&mut line, &*record.text)?;
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// Step 2 of pass 3: appends the lines to `kept.jsonl` in input order.
#[derive(Debug)]
pub struct KeptWriter {
    output: OutputDir,
    file: Option<AtomicFile>,
    /// The first write error: reported by `finish`, so that it counts as an
    /// output error (exit code 74), not a failure of step 2.
    error: Option<OutputError>,
    kept: u64,
    slot: Arc<Mutex<Option<Written>>>,
}

impl KeptWriter {
    fn write(&mut self, line: &[u8]) -> Result<(), OutputError> {
        if self.file.is_none() {
            self.file = Some(self.output.atomic(KEPT_FILE)?);
        }
        let file = self.file.as_mut().expect("just opened");
        file.write_all(line)
            .map_err(|e| OutputError::new(file.target(), e))
    }
}

impl Integrate for KeptWriter {
    type Output = Option<Vec<u8>>;

    fn integrate(&mut self, _index: u64, line: Option<Vec<u8>>) -> Result<(), RecordError> {
        let Some(line) = line else {
            return Ok(());
        };
        if self.error.is_none() {
            if let Err(e) = self.write(&line) {
                self.error = Some(e);
            }
        }
        self.kept += 1;
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        // The pass's rejects first, before the pass result (a resumed run
        // loads that and finds them in place); the run commits them as
        // `rejects.jsonl` with its outputs.
        run.commit_rejects()?;
        if let Some(e) = self.error.take() {
            return Err(e.into());
        }
        if run.partial {
            // Interrupted: the file is dropped, nothing is written.
            self.file = None;
            return Ok(serde_json::json!({ "pass": "kept", "partial": true }));
        }
        let file = match self.file.take() {
            Some(file) => file,
            None => self.output.atomic(KEPT_FILE)?,
        };
        *self.slot.lock().expect("result slot poisoned") = Some(Written {
            file,
            kept: self.kept,
        });
        Ok(serde_json::json!({ "pass": "kept", "kept": self.kept }))
    }
}
