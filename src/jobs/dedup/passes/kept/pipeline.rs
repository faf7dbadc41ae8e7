//! Pass 3 ([`super`]) as a pipeline pass over the whole input: the kept
//! records, every record that is neither rejected nor removed, in input
//! order, in the run's [`KeptForm`].
//!
//! For `kept.jsonl`, the processors turn each kept record into its output
//! line (a JSON Lines record byte for byte, the `\r` of a `\r\n` included,
//! and a `\n`; any other record as `{"id": <id>, "text": <text>}`, the
//! costly JSON escaping done in parallel) and a removed one into nothing,
//! without parsing it; the Integrator appends the lines to the file in
//! input order. For `kept.parquet` with the inputs' schema, a kept record
//! is the file and row it came from, and the Integrator copies the rows
//! ([`RowCopier`]); with `id` and `text` columns, the processors parse it
//! and the Integrator writes the two strings ([`IdTextWriter`]). The file
//! is handed back uncommitted: the run commits it with `clusters.jsonl`
//! once every pass has checked out.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use drainpipe_actors::{
    AtomicFile, FinishContext, Integrate, Job, Needed, OutputDir, OutputError, RawRecord,
    RecordError,
};

use crate::input::{parse_text_record, TextFields, FORMAT_JSONL};
use crate::jobs::dedup::chain::Written;
use crate::jobs::dedup::records::rejected_again;
use crate::jobs::dedup::spill::record_sets::RecordSet;

use super::form::KeptForm;
use super::rows::{IdTextWriter, RowCopier};

mod remote;

pub use remote::{KeptStep, REMOTE_NAME};

/// Steps 1 and 2 of pass 3.
#[derive(Debug)]
pub struct KeptJob {
    fields: TextFields,
    integrated: Arc<RecordSet>,
    removed: Arc<RecordSet>,
    /// The removed set through a cursor of its own, for the reader
    /// ([`KeptJob::needed`]), which goes ahead of the processors.
    removed_ahead: Arc<RecordSet>,
    output: OutputDir,
    form: KeptForm,
    /// For [`KeptForm::InputSchema`]: the Parquet files' numbers, by the
    /// origin their records carry.
    files: HashMap<Arc<str>, u32>,
    slot: Arc<Mutex<Option<Written>>>,
}

impl KeptJob {
    /// Pass 3 for the records pass 1 `integrated`, less the `removed` ones,
    /// writing into `output` in the `form` given.
    pub fn new(
        fields: TextFields,
        integrated: Arc<RecordSet>,
        removed: Arc<RecordSet>,
        output: OutputDir,
        form: KeptForm,
    ) -> Self {
        let files = match &form {
            KeptForm::InputSchema(files, _) => files
                .iter()
                .enumerate()
                .map(|(i, (_, origin))| (Arc::clone(origin), i as u32))
                .collect(),
            _ => HashMap::new(),
        };
        KeptJob {
            fields,
            integrated,
            removed_ahead: Arc::new(removed.apart()),
            removed,
            output,
            form,
            files,
            slot: Arc::default(),
        }
    }

    /// The records whose bytes the pass reads: those pass 1 rejected (to
    /// reject them again with the same reason) and, unless the kept
    /// records are copied as rows of their Parquet files (which needs their
    /// place only), the kept ones.
    pub fn needed(&self) -> Needed {
        let integrated = Arc::clone(&self.integrated);
        let removed = Arc::clone(&self.removed_ahead);
        let contents = !matches!(self.form, KeptForm::InputSchema(..));
        Arc::new(move |i| !integrated.contains(i) || (contents && !removed.contains(i)))
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

/// A kept record, as the Integrator writes it (and as a worker sends it
/// back: only lines, pass 3 runs on workers for `kept.jsonl` only).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum KeptOut {
    /// A line of `kept.jsonl`, `\n` included.
    Line(Vec<u8>),
    /// A row of a Parquet input: the file's number and the row (1-based).
    Row(u32, u64),
    /// The id (a string's value, a number's digits) and the text.
    IdText(String, String),
}

impl Job for KeptJob {
    type Parsed<'a> = Kept<'a>;
    /// The kept record; `None` for a removed one.
    type Output = Option<KeptOut>;
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

    fn process(&self, record: Kept<'_>) -> Result<Option<KeptOut>, RecordError> {
        let Kept::Record(raw) = record else {
            return Ok(None);
        };
        match &self.form {
            KeptForm::Jsonl => line(&raw, &self.fields).map(|l| Some(KeptOut::Line(l))),
            KeptForm::InputSchema(..) => match self.files.get(raw.location.origin) {
                Some(&file) if raw.format == FORMAT_JSONL => {
                    Ok(Some(KeptOut::Row(file, raw.location.line)))
                }
                _ => Err(format!(
                    "{} is not one of the Parquet inputs kept.parquet is made of",
                    raw.location.origin
                )
                .into()),
            },
            KeptForm::IdText => {
                let record = parse_text_record(&raw, &self.fields)?;
                let id = match serde_json::from_str::<String>(&record.id) {
                    Ok(string) => string,
                    Err(_) => record.id.into_owned(),
                };
                Ok(Some(KeptOut::IdText(id, record.text.into_owned())))
            }
        }
    }

    fn integrator(&self) -> KeptWriter {
        KeptWriter {
            output: self.output.clone(),
            form: self.form.clone(),
            sink: Sink::None,
            error: None,
            kept: 0,
            removed: [Arc::clone(&self.removed), Arc::clone(&self.removed_ahead)],
            slot: Arc::clone(&self.slot),
        }
    }
}

/// The `kept.jsonl` line of a kept record.
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

/// Where the kept records go, opened at the first one.
#[derive(Debug)]
enum Sink {
    /// Nothing written yet.
    None,
    Jsonl(AtomicFile),
    Rows(Box<RowCopier>),
    IdText(Box<IdTextWriter>),
}

/// Step 2 of pass 3: writes the kept records in input order.
#[derive(Debug)]
pub struct KeptWriter {
    output: OutputDir,
    form: KeptForm,
    sink: Sink,
    /// The first write error: reported by `finish`, so that it counts as an
    /// output error (exit code 74), not a failure of step 2.
    error: Option<std::io::Error>,
    kept: u64,
    /// The removed set as the processors and the reader read it: a run of
    /// it that could not be read fails the pass (exit code 74), as its
    /// records were taken for kept.
    removed: [Arc<RecordSet>; 2],
    slot: Arc<Mutex<Option<Written>>>,
}

impl KeptWriter {
    /// The sink, opened if it was not.
    fn sink(&mut self) -> std::io::Result<&mut Sink> {
        if matches!(self.sink, Sink::None) {
            let file = self
                .output
                .atomic(self.form.file_name())
                .map_err(std::io::Error::other)?;
            let target = file.target().to_owned();
            let opened = match &self.form {
                KeptForm::Jsonl => Ok(Sink::Jsonl(file)),
                KeptForm::InputSchema(files, max) => {
                    RowCopier::new(Arc::clone(files), *max, file).map(|c| Sink::Rows(Box::new(c)))
                }
                KeptForm::IdText => IdTextWriter::new(file).map(|w| Sink::IdText(Box::new(w))),
            };
            self.sink = opened.map_err(|e| std::io::Error::other(OutputError::new(&target, e)))?;
        }
        Ok(&mut self.sink)
    }

    fn write(&mut self, out: KeptOut) -> std::io::Result<()> {
        match (self.sink()?, out) {
            (Sink::Jsonl(file), KeptOut::Line(line)) => file.write_all(&line).map_err(|e| {
                std::io::Error::new(e.kind(), format!("{}: {e}", file.target().display()))
            }),
            (Sink::Rows(rows), KeptOut::Row(file, row)) => rows.keep(file, row),
            (Sink::IdText(writer), KeptOut::IdText(id, text)) => writer.push(id, text),
            (sink, out) => Err(std::io::Error::other(format!(
                "a kept record of the wrong form: {out:?} for {sink:?}"
            ))),
        }
    }

    /// The complete file, uncommitted.
    fn complete(&mut self) -> std::io::Result<AtomicFile> {
        if matches!(self.sink, Sink::None) {
            self.sink()?;
        }
        match std::mem::replace(&mut self.sink, Sink::None) {
            Sink::Jsonl(file) => Ok(file),
            Sink::Rows(rows) => rows.finish(),
            Sink::IdText(writer) => writer.finish(),
            Sink::None => unreachable!("opened above"),
        }
    }
}

impl Integrate for KeptWriter {
    type Output = Option<KeptOut>;

    fn integrate(&mut self, _index: u64, out: Option<KeptOut>) -> Result<(), RecordError> {
        let Some(out) = out else {
            return Ok(());
        };
        if self.error.is_none() {
            if let Err(e) = self.write(out) {
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
            self.sink = Sink::None;
            return Ok(serde_json::json!({ "pass": "kept", "partial": true }));
        }
        for set in &self.removed {
            set.check().map_err(|e| {
                let e = e.into_io();
                std::io::Error::new(e.kind(), format!("dedup pass 3: the removed records: {e}"))
            })?;
        }
        let file = self.complete()?;
        *self.slot.lock().expect("result slot poisoned") = Some(Written {
            file,
            name: self.form.file_name(),
            kept: self.kept,
        });
        Ok(serde_json::json!({ "pass": "kept", "kept": self.kept }))
    }
}
