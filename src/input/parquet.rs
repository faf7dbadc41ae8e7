//! Parquet input: one record per row, streamed row group by row group
//! through the `parquet` crate's column readers, reading only the text
//! column and the id column.
//!
//! Each row is given to the rest of the program as the JSON object
//! `{"<id field>": <id>, "<text field>": "<text>"}` ([`super::FORMAT_JSONL`]), so
//! that the one parser, the jobs and `kept.jsonl` work on it unchanged. An
//! integer id is written as a JSON number, a string id as a JSON string, a
//! null id as `null` (which the parser rejects, as in JSON Lines); without
//! an id column the field is left out, and the record's id is
//! `"<file>:<row>"` as for a JSON Lines line without one. The row (1-based,
//! counted across row groups) is the record's line. Rows have no byte
//! [`Span`](drainpipe_actors::Span): a later pass reads the file again.
//!
//! Memory is bounded by what one chunk of [`CHUNK`] rows needs: the pages
//! of the two columns those rows are in (data pages are 1 MiB by default in
//! the common writers, plus a column's dictionary page) and the rows' values,
//! which point into those pages. Row groups are never read whole, however
//! large they are.
//!
//! The file is decoded on a thread of its own ([`super::prefetch`]), a chunk
//! ahead of the rows handed on: decompressing and decoding the pages and
//! writing the records is most of the cost of a Parquet row, and it then
//! runs beside the Source's hand-over instead of before it. Three chunks'
//! records at most are alive; the order, the errors and their causes are
//! those of reading on one thread.
//!
//! A later pass that needs the contents of a few rows only (dedup's
//! candidates, or none but the rows pass 1 rejected when `kept.parquet`
//! copies rows by their number) says which
//! ([`RecordSource::only_needed`](drainpipe_actors::RecordSource::only_needed)):
//! the other rows are skipped in the column readers (a page none of whose
//! rows is needed is not even decompressed) and handed on as records of no
//! bytes, their row numbers as ever.
//!
//! Further columns named in [`InputOptions::columns`](super::InputOptions)
//! (dedup's `--keep field:NAME`) are read too and written into the record
//! after the id, as JSON values: an integer, boolean or string as such, a
//! float as a JSON number (a NaN or an infinity as `null`), a null or a
//! string that is not UTF-8 as `null`; a file without such a column gives
//! records without the field.
//!
//! A file that lacks the text column, or whose text or id column is of a
//! type that cannot be read, is refused before any work with an
//! [`UnusableInput`] error listing its columns (exit 65). A file that is
//! not Parquet, is corrupt or was cut short is an
//! [`InputError`](drainpipe_actors::InputError) naming it (exit 74).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use drainpipe_actors::{InputError, Needed};
use parquet::basic::{ConvertedType, LogicalType, Type as Physical};
use parquet::column::reader::{get_typed_column_reader, ColumnReader, ColumnReaderImpl};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DataType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::{ColumnDescriptor, SchemaDescriptor};

use super::record::{utf8, write_json_record_with, TextFields};
use super::UnusableInput;

use super::prefetch::Prefetch;

/// Rows decoded at a time, per column.
pub(crate) const CHUNK: usize = 256;

/// Rows not needed skipped at a time, at most: they cost a placeholder
/// each (some 70 bytes) until they are handed on.
const SKIPPED: usize = 1 << 16;

/// How an id column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Int32 { unsigned: bool },
    Int64 { unsigned: bool },
    Str,
}

/// How a further column ([`InputOptions::columns`](super::InputOptions)) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtraKind {
    Id(IdKind),
    Float,
    Double,
    Bool,
}

/// A further column: its index, name, kind and definition level.
#[derive(Debug, Clone)]
struct Extra {
    column: usize,
    name: Arc<str>,
    kind: ExtraKind,
    defined: i16,
}

/// The columns read, by their index in the file's schema.
#[derive(Debug, Clone)]
struct Columns {
    text: usize,
    id: Option<(usize, IdKind)>,
    /// The definition level of a value that is there (0 for a required
    /// column, 1 for an optional one), of the text and id columns.
    defined: (i16, i16),
    /// The further columns the file has.
    extra: Vec<Extra>,
}

/// Opens the Parquet file at `path` and checks that it has the columns
/// `fields` names, of types that can be read: the check made for every
/// Parquet input before a run starts (without further columns).
#[cfg(test)]
pub(crate) fn check(path: &Path, origin: &str, fields: &TextFields) -> Result<(), InputError> {
    check_with(path, origin, fields, &[])
}

/// Opens the Parquet file at `path` and checks that it has the columns
/// `fields` names, and the further `columns` it has, of types that can be
/// read: the check made for every Parquet input before a run starts.
pub(crate) fn check_with(
    path: &Path,
    origin: &str,
    fields: &TextFields,
    columns: &[String],
) -> Result<(), InputError> {
    open(path, origin, fields, columns).map(|_| ())
}

fn open(
    path: &Path,
    origin: &str,
    fields: &TextFields,
    extra: &[String],
) -> Result<(SerializedFileReader<File>, Columns), InputError> {
    let fail = |cause| InputError {
        origin: origin.to_owned(),
        line: 0,
        cause,
    };
    let file = File::open(path).map_err(fail)?;
    let reader = SerializedFileReader::new(file).map_err(|e| fail(invalid(e)))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns = columns(schema, fields, extra).map_err(|message| {
        fail(io::Error::new(
            io::ErrorKind::InvalidData,
            UnusableInput(message),
        ))
    })?;
    Ok((reader, columns))
}

/// A Parquet error as the IO error of an input that cannot be read.
fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a readable Parquet file: {e}"),
    )
}

/// Finds the text and id columns in `schema`, or says why the file cannot
/// be read, listing its columns.
fn columns(
    schema: &SchemaDescriptor,
    fields: &TextFields,
    extra: &[String],
) -> Result<Columns, String> {
    let find = |name: &str| {
        (0..schema.num_columns()).find(|&i| schema.column(i).path().parts() == [name.to_owned()])
    };
    let listing = || {
        let names: Vec<String> = schema
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| format!("{:?}", f.name()))
            .collect();
        format!("its columns: {}", names.join(", "))
    };
    let Some(text) = find(&fields.text) else {
        return Err(format!(
            "no text column {:?} (--text-field); {}",
            fields.text,
            listing()
        ));
    };
    let descr = schema.column(text);
    if !is_string(&descr) || descr.max_rep_level() > 0 {
        return Err(format!(
            "text column {:?} is {}, not a string; {}",
            fields.text,
            type_name(&descr),
            listing()
        ));
    }
    let id = match find(&fields.id) {
        None => None,
        Some(i) => {
            let descr = schema.column(i);
            let kind = id_kind(&descr).filter(|_| descr.max_rep_level() == 0);
            let Some(kind) = kind else {
                return Err(format!(
                    "id column {:?} is {}, not an integer or a string; {}",
                    fields.id,
                    type_name(&descr),
                    listing()
                ));
            };
            Some((i, kind))
        }
    };
    let defined = (
        schema.column(text).max_def_level(),
        id.map_or(0, |(i, _)| schema.column(i).max_def_level()),
    );
    let mut further = Vec::new();
    // The text and id are written already.
    for name in extra
        .iter()
        .filter(|n| **n != fields.text && **n != fields.id)
    {
        let Some(column) = find(name) else { continue };
        let descr = schema.column(column);
        let kind = extra_kind(&descr).filter(|_| descr.max_rep_level() == 0);
        let Some(kind) = kind else {
            return Err(format!(
                "column {name:?} is {}, not a number, a boolean or a string; {}",
                type_name(&descr),
                listing()
            ));
        };
        further.push(Extra {
            column,
            name: name.as_str().into(),
            kind,
            defined: descr.max_def_level(),
        });
    }
    Ok(Columns {
        text,
        id,
        defined,
        extra: further,
    })
}

fn extra_kind(descr: &ColumnDescriptor) -> Option<ExtraKind> {
    match descr.physical_type() {
        Physical::FLOAT => Some(ExtraKind::Float),
        Physical::DOUBLE => Some(ExtraKind::Double),
        Physical::BOOLEAN => Some(ExtraKind::Bool),
        _ => id_kind(descr).map(ExtraKind::Id),
    }
}

/// Whether a column holds text: a byte array, unannotated or annotated as
/// a string (Arrow's string and large string are both written so).
fn is_string(descr: &ColumnDescriptor) -> bool {
    descr.physical_type() == Physical::BYTE_ARRAY
        && matches!(
            descr.logical_type_ref(),
            None | Some(LogicalType::String | LogicalType::Enum | LogicalType::Json)
        )
        && matches!(
            descr.converted_type(),
            ConvertedType::NONE | ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON
        )
}

fn id_kind(descr: &ColumnDescriptor) -> Option<IdKind> {
    let unsigned = matches!(
        descr.logical_type_ref(),
        Some(LogicalType::Integer(int)) if !int.is_signed
    ) || matches!(
        descr.converted_type(),
        ConvertedType::UINT_8
            | ConvertedType::UINT_16
            | ConvertedType::UINT_32
            | ConvertedType::UINT_64
    );
    let integer = matches!(
        descr.logical_type_ref(),
        None | Some(LogicalType::Integer(_))
    );
    match descr.physical_type() {
        Physical::INT32 if integer => Some(IdKind::Int32 { unsigned }),
        Physical::INT64 if integer => Some(IdKind::Int64 { unsigned }),
        Physical::BYTE_ARRAY if is_string(descr) => Some(IdKind::Str),
        _ => None,
    }
}

fn type_name(descr: &ColumnDescriptor) -> String {
    let mut name = match descr.logical_type_ref() {
        Some(logical) => format!("{} ({logical:?})", descr.physical_type()),
        None => descr.physical_type().to_string(),
    };
    if descr.max_rep_level() > 0 {
        name.push_str(", repeated");
    }
    name
}

/// The reader of one id column.
enum IdReader {
    Int32(ColumnReaderImpl<Int32Type>, bool),
    Int64(ColumnReaderImpl<Int64Type>, bool),
    Str(ColumnReaderImpl<ByteArrayType>),
}

impl IdReader {
    /// Skips `rows` rows: how many there were.
    fn skip(&mut self, rows: usize) -> parquet::errors::Result<usize> {
        match self {
            IdReader::Int32(r, _) => r.skip_records(rows),
            IdReader::Int64(r, _) => r.skip_records(rows),
            IdReader::Str(r) => r.skip_records(rows),
        }
    }
}

/// The reader of a further column.
enum ExtraReader {
    Id(IdReader),
    Float(ColumnReaderImpl<FloatType>),
    Double(ColumnReaderImpl<DoubleType>),
    Bool(ColumnReaderImpl<BoolType>),
}

impl ExtraReader {
    /// Skips `rows` rows: how many there were.
    fn skip(&mut self, rows: usize) -> parquet::errors::Result<usize> {
        match self {
            ExtraReader::Id(r) => r.skip(rows),
            ExtraReader::Float(r) => r.skip_records(rows),
            ExtraReader::Double(r) => r.skip_records(rows),
            ExtraReader::Bool(r) => r.skip_records(rows),
        }
    }
}

/// A float as its JSON number, a NaN or an infinity as null.
fn float_value<F: Into<f64> + serde::Serialize>(f: Option<F>) -> Id {
    match f {
        Some(f) => {
            let json = serde_json::to_string(&f).unwrap_or_else(|_| "null".into());
            if f.into().is_finite() {
                Id::Json(json)
            } else {
                Id::Null
            }
        }
        None => Id::Null,
    }
}

fn read_extra(reader: &mut ExtraReader, want: usize, defined: i16) -> Result<Vec<Id>, String> {
    Ok(match reader {
        ExtraReader::Id(r) => read_ids(r, want, defined)?,
        ExtraReader::Float(r) => read_column(r, want, defined)?
            .into_iter()
            .map(float_value)
            .collect(),
        ExtraReader::Double(r) => read_column(r, want, defined)?
            .into_iter()
            .map(float_value)
            .collect(),
        ExtraReader::Bool(r) => ids_of(read_column(r, want, defined)?, |b| b.to_string()),
    })
}

/// One row's id, as the JSON record will hold it.
enum Id {
    /// No id column.
    Absent,
    /// A null id.
    Null,
    /// The id's JSON text.
    Json(String),
    /// A string id, not yet checked to be UTF-8.
    Bytes(ByteArray),
}

/// The rows decoded and not yet given out, in reverse order.
#[derive(Default)]
struct Chunk {
    texts: Vec<Option<ByteArray>>,
    ids: Vec<Id>,
    /// Per further column.
    extras: Vec<Vec<Id>>,
    /// Per row: whether it was decoded (else it was skipped, not needed,
    /// and its text and id are placeholders).
    needed: Vec<bool>,
}

/// The decoding of one Parquet file, on the thread of its [`Prefetch`].
struct Decoder {
    reader: SerializedFileReader<File>,
    /// The file, for the checks of its page headers ([`super::pages`]).
    file: File,
    /// The record limit of the first call of [`ParquetInput::next`] (pages
    /// are checked against it; the callers give one limit per run).
    max: usize,
    fields: TextFields,
    columns: Columns,
    /// The next row group to open.
    next_group: usize,
    /// The row group being read: its readers and the rows it has left.
    group: Option<(ColumnReaderImpl<ByteArrayType>, Option<IdReader>, usize)>,
    /// The further columns' readers of the row group being read.
    extras: Vec<ExtraReader>,
    chunk: Chunk,
    /// Stored bytes of the row groups read whole.
    read: u64,
    /// Which rows are needed, when not all are: the test, by input index,
    /// and the input index of the file's first row.
    needed: Option<(Needed, u64)>,
    /// Rows decoded or skipped so far.
    done: u64,
}

/// One chunk's rows, written as records on the decoding thread.
struct Decoded {
    records: Vec<u8>,
    /// Per row, in reverse order: where its record ends in `records`, or
    /// why it is rejected.
    rows: Vec<Result<usize, String>>,
    /// Where the next record starts in `records`.
    at: usize,
    /// [`Decoder::read`] when the chunk was decoded.
    read: u64,
}

/// Where the reading of a file is.
enum State {
    /// Not started: the decoder waits for the record limit of the first
    /// call.
    Ready(Box<Decoder>),
    /// Decoding ahead; the chunk being handed on.
    Reading(Prefetch<Decoded>, Decoded),
    /// Read to the end, or stopped by an error.
    Ended,
}

/// One Parquet file being read.
pub(crate) struct ParquetInput {
    origin: Arc<str>,
    state: State,
    /// Rows given out so far.
    row: u64,
    /// Stored bytes of the row groups read whole (the file's size at the end).
    read: u64,
    size: u64,
}

/// What [`ParquetInput::next`] gives.
pub(crate) enum Row {
    /// A record, appended to the buffer (`Ok`) or rejected (`Err`), and its row.
    Record(Result<(), String>, u64),
    /// The file is read.
    End,
}

impl ParquetInput {
    /// Opens the file at `path`, named `origin` in records and messages,
    /// reading the further `columns` it has too.
    pub fn open(
        path: &Path,
        origin: Arc<str>,
        fields: &TextFields,
        columns: &[String],
    ) -> Result<Self, InputError> {
        let (reader, columns) = open(path, &origin, fields, columns)?;
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let file = File::open(path).map_err(|e| InputError {
            origin: origin.to_string(),
            line: 0,
            cause: e,
        })?;
        let decoder = Decoder {
            reader,
            file,
            max: super::DEFAULT_MAX_RECORD_BYTES,
            fields: fields.clone(),
            columns,
            next_group: 0,
            group: None,
            extras: Vec::new(),
            chunk: Chunk::default(),
            read: 0,
            needed: None,
            done: 0,
        };
        Ok(ParquetInput {
            origin,
            state: State::Ready(Box::new(decoder)),
            row: 0,
            read: 0,
            size,
        })
    }

    /// Only the rows `needed` accepts are decoded (by input index, the
    /// file's first row being `first`): the others are handed on with no
    /// bytes ([`drainpipe_actors::RecordSource::only_needed`]), their
    /// pages skipped undecoded where whole pages are not needed. Said
    /// before the first row is read; later, it is ignored.
    pub fn needing(&mut self, needed: Needed, first: u64) {
        if let State::Ready(decoder) = &mut self.state {
            decoder.needed = Some((needed, first));
        }
    }

    /// The file's name in records and messages.
    pub fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    /// Stored bytes read so far, by row group.
    pub fn read(&self) -> u64 {
        self.read
    }

    /// Appends the next row's record to `buf` (unless it is rejected: then
    /// `buf` is left as it was).
    pub fn next(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Row, InputError> {
        let fail = |row, cause| InputError {
            origin: self.origin.to_string(),
            line: row,
            cause,
        };
        loop {
            match &mut self.state {
                State::Ready(_) => {
                    let State::Ready(mut decoder) =
                        std::mem::replace(&mut self.state, State::Ended)
                    else {
                        unreachable!("matched Ready")
                    };
                    decoder.max = max;
                    let ahead =
                        Prefetch::spawn(Arc::clone(&self.origin), "drainpipe-parquet", move || {
                            decoder.produce()
                        })
                        .map_err(|e| fail(0, e))?;
                    let empty = Decoded {
                        records: Vec::new(),
                        rows: Vec::new(),
                        at: 0,
                        read: 0,
                    };
                    self.state = State::Reading(ahead, empty);
                }
                State::Reading(ahead, chunk) => {
                    if let Some(row) = chunk.rows.pop() {
                        self.row += 1;
                        let outcome = row.map(|end| {
                            buf.extend_from_slice(&chunk.records[chunk.at..end]);
                            chunk.at = end;
                        });
                        return Ok(Row::Record(outcome, self.row));
                    }
                    match ahead.next() {
                        Ok(Some(next)) => {
                            self.read = next.read;
                            *chunk = next;
                        }
                        Ok(None) => {
                            self.state = State::Ended;
                            self.read = self.size;
                        }
                        Err(message) => {
                            self.state = State::Ended;
                            let cause = io::Error::new(io::ErrorKind::InvalidData, message);
                            return Err(fail(self.row, cause));
                        }
                    }
                }
                State::Ended => return Ok(Row::End),
            }
        }
    }
}

impl Decoder {
    /// Decodes the next chunk of rows and writes their records; `None`
    /// when every row group is read.
    fn produce(&mut self) -> Result<Option<Decoded>, String> {
        if !self.decode()? {
            return Ok(None);
        }
        let mut chunk = Decoded {
            records: Vec::new(),
            rows: Vec::with_capacity(self.chunk.texts.len()),
            at: 0,
            read: self.read,
        };
        while let Some(text) = self.chunk.texts.pop() {
            let id = self.chunk.ids.pop().unwrap_or(Id::Absent);
            let extras: Vec<(&str, Id)> = (self.columns.extra.iter())
                .zip(&mut self.chunk.extras)
                .map(|(extra, values)| (&*extra.name, values.pop().unwrap_or(Id::Absent)))
                .collect();
            let buf = &mut chunk.records;
            if !self.chunk.needed.pop().unwrap_or(true) {
                // Not needed: a record of no bytes.
                chunk.rows.push(Ok(buf.len()));
                continue;
            }
            let start = buf.len();
            let outcome = record(buf, &self.fields, id, &extras, text.as_ref(), self.max);
            if outcome.is_err() {
                buf.truncate(start);
            }
            chunk.rows.push(outcome.map(|()| buf.len()));
        }
        chunk.rows.reverse();
        Ok(Some(chunk))
    }

    /// Decodes the next chunk of rows, opening the next row group when one
    /// ends; `false` when every row group is read.
    fn decode(&mut self) -> Result<bool, String> {
        loop {
            let left = match &self.group {
                Some((_, _, 0)) => {
                    let done = self.reader.metadata().row_group(self.next_group - 1);
                    self.read += u64::try_from(done.compressed_size()).unwrap_or(0);
                    self.group = None;
                    continue;
                }
                Some((_, _, left)) => *left,
                None => {
                    if self.next_group == self.reader.num_row_groups() {
                        return Ok(false);
                    }
                    self.group = Some(self.open_group(self.next_group)?);
                    self.extras = self.open_extras(self.next_group)?;
                    self.next_group += 1;
                    continue;
                }
            };
            let (want, runs) = self.runs(left);
            let mut chunk = Chunk {
                texts: Vec::with_capacity(want),
                ids: Vec::with_capacity(want),
                extras: self
                    .extras
                    .iter()
                    .map(|_| Vec::with_capacity(want))
                    .collect(),
                needed: Vec::with_capacity(want),
            };
            for (needed, rows) in runs {
                self.rows(needed, rows, &mut chunk)?;
            }
            if chunk.texts.len() != want
                || (self.columns.id.is_some() && chunk.ids.len() != want)
                || chunk.extras.iter().any(|e| e.len() != want)
            {
                return Err(format!(
                    "row group {} ends {left} rows early: the file is cut short or corrupt",
                    self.next_group - 1
                ));
            }
            if let Some((_, _, left)) = &mut self.group {
                *left -= want;
            }
            self.done += want as u64;
            chunk.texts.reverse();
            chunk.ids.reverse();
            chunk.extras.iter_mut().for_each(|e| e.reverse());
            chunk.needed.reverse();
            self.chunk = chunk;
            return Ok(true);
        }
    }

    /// The rows of the next chunk, of the `left` of the row group, as
    /// runs of needed and not needed rows: [`CHUNK`] rows, or when the
    /// next row is not needed, every row up to the next needed one (at most
    /// [`SKIPPED`]), so that the column readers skip whole pages.
    fn runs(&self, left: usize) -> (usize, Vec<(bool, usize)>) {
        let Some((needed, first)) = &self.needed else {
            let want = left.min(CHUNK);
            return (want, vec![(true, want)]);
        };
        let at = first + self.done;
        let skipped = (0..left.min(SKIPPED) as u64)
            .take_while(|&k| !needed(at + k))
            .count();
        if skipped > 0 {
            return (skipped, vec![(false, skipped)]);
        }
        let want = left.min(CHUNK);
        let mut runs: Vec<(bool, usize)> = Vec::new();
        for k in 0..want as u64 {
            let this = needed(at + k);
            match runs.last_mut() {
                Some((was, n)) if *was == this => *n += 1,
                _ => runs.push((this, 1)),
            }
        }
        (want, runs)
    }

    /// Decodes the next `rows` rows into `chunk`, or skips them when they
    /// are not `needed` (placeholders then stand for them): fewer when
    /// the row group ends early.
    fn rows(&mut self, needed: bool, rows: usize, chunk: &mut Chunk) -> Result<(), String> {
        let (text_defined, id_defined) = self.columns.defined;
        let Some((text, id, _)) = &mut self.group else {
            return Ok(());
        };
        let got = if needed {
            let texts = read_column(text, rows, text_defined)?;
            let got = texts.len();
            chunk.texts.extend(texts);
            if let Some(id) = id {
                chunk.ids.extend(read_ids(id, rows, id_defined)?);
            }
            let columns = self.extras.iter_mut().zip(&self.columns.extra);
            for ((reader, extra), out) in columns.zip(&mut chunk.extras) {
                out.extend(read_extra(reader, rows, extra.defined)?);
            }
            got
        } else {
            let skip = |n: parquet::errors::Result<usize>| n.map_err(|e| e.to_string());
            let got = skip(text.skip_records(rows))?;
            chunk.texts.extend((0..got).map(|_| None));
            if let Some(id) = id {
                let n = skip(id.skip(rows))?;
                chunk.ids.extend((0..n).map(|_| Id::Absent));
            }
            for (reader, out) in self.extras.iter_mut().zip(&mut chunk.extras) {
                let n = skip(reader.skip(rows))?;
                out.extend((0..n).map(|_| Id::Absent));
            }
            got
        };
        chunk.needed.extend(std::iter::repeat_n(needed, got));
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn open_group(
        &self,
        i: usize,
    ) -> Result<(ColumnReaderImpl<ByteArrayType>, Option<IdReader>, usize), String> {
        let group = self.reader.get_row_group(i).map_err(|e| e.to_string())?;
        let rows = usize::try_from(group.metadata().num_rows())
            .map_err(|_| format!("row group {i} has a negative number of rows"))?;
        // Before the crate reads a page: what its headers declare.
        let limit = super::pages::page_limit(self.max);
        for c in std::iter::once(self.columns.text).chain(self.columns.id.map(|(c, _)| c)) {
            super::pages::check_column(&self.file, group.metadata().column(c), limit, false)
                .map_err(|e| format!("row group {i}, {e}"))?;
        }
        let column = |c: usize| group.get_column_reader(c).map_err(|e| e.to_string());
        let text = typed::<ByteArrayType>(column(self.columns.text)?);
        let id = match self.columns.id {
            None => None,
            Some((c, IdKind::Int32 { unsigned })) => {
                Some(IdReader::Int32(typed(column(c)?), unsigned))
            }
            Some((c, IdKind::Int64 { unsigned })) => {
                Some(IdReader::Int64(typed(column(c)?), unsigned))
            }
            Some((c, IdKind::Str)) => Some(IdReader::Str(typed(column(c)?))),
        };
        Ok((text, id, rows))
    }
}

impl Decoder {
    /// The further columns' readers of row group `i`.
    fn open_extras(&self, i: usize) -> Result<Vec<ExtraReader>, String> {
        if self.columns.extra.is_empty() {
            return Ok(Vec::new());
        }
        let group = self.reader.get_row_group(i).map_err(|e| e.to_string())?;
        let column = |c: usize| group.get_column_reader(c).map_err(|e| e.to_string());
        let mut readers = Vec::with_capacity(self.columns.extra.len());
        for extra in &self.columns.extra {
            let c = column(extra.column)?;
            readers.push(match extra.kind {
                ExtraKind::Id(IdKind::Int32 { unsigned }) => {
                    ExtraReader::Id(IdReader::Int32(typed(c), unsigned))
                }
                ExtraKind::Id(IdKind::Int64 { unsigned }) => {
                    ExtraReader::Id(IdReader::Int64(typed(c), unsigned))
                }
                ExtraKind::Id(IdKind::Str) => ExtraReader::Id(IdReader::Str(typed(c))),
                ExtraKind::Float => ExtraReader::Float(typed(c)),
                ExtraKind::Double => ExtraReader::Double(typed(c)),
                ExtraKind::Bool => ExtraReader::Bool(typed(c)),
            });
        }
        Ok(readers)
    }
}

/// The typed reader of a column whose physical type was checked.
fn typed<T: DataType>(reader: ColumnReader) -> ColumnReaderImpl<T> {
    get_typed_column_reader(reader)
}

/// Reads up to `want` rows of a column, nulls as `None`.
fn read_column<T: DataType>(
    reader: &mut ColumnReaderImpl<T>,
    want: usize,
    defined: i16,
) -> Result<Vec<Option<T::T>>, String> {
    let mut values = Vec::with_capacity(want);
    let mut levels = Vec::with_capacity(want);
    let (rows, _, read_levels) = reader
        .read_records(want, Some(&mut levels), None, &mut values)
        .map_err(|e| e.to_string())?;
    if defined == 0 {
        return Ok(values.into_iter().take(rows).map(Some).collect());
    }
    let mut values = values.into_iter();
    let out: Option<Vec<_>> = levels[..read_levels.min(levels.len())]
        .iter()
        .map(|&level| {
            if level == defined {
                values.next().map(Some)
            } else {
                Some(None)
            }
        })
        .collect();
    out.ok_or_else(|| "fewer values than the definition levels say".to_owned())
}

/// Integer ids as their JSON text (`text` says how an unsigned column's
/// bits read), a null as [`Id::Null`].
fn ids_of<N>(values: Vec<Option<N>>, text: impl Fn(N) -> String) -> Vec<Id> {
    values
        .into_iter()
        .map(|v| v.map_or(Id::Null, |n| Id::Json(text(n))))
        .collect()
}

fn read_ids(reader: &mut IdReader, want: usize, defined: i16) -> Result<Vec<Id>, String> {
    Ok(match reader {
        IdReader::Int32(r, unsigned) => {
            let unsigned = *unsigned;
            ids_of(read_column(r, want, defined)?, |n| {
                if unsigned {
                    (n as u32).to_string()
                } else {
                    n.to_string()
                }
            })
        }
        IdReader::Int64(r, unsigned) => {
            let unsigned = *unsigned;
            ids_of(read_column(r, want, defined)?, |n| {
                if unsigned {
                    (n as u64).to_string()
                } else {
                    n.to_string()
                }
            })
        }
        IdReader::Str(r) => read_column(r, want, defined)?
            .into_iter()
            .map(|v| v.map_or(Id::Null, Id::Bytes))
            .collect(),
    })
}

/// Appends one row's JSON record to `buf`, or says why it is rejected.
fn record(
    buf: &mut Vec<u8>,
    fields: &TextFields,
    id: Id,
    extras: &[(&str, Id)],
    text: Option<&ByteArray>,
    max: usize,
) -> Result<(), String> {
    let Some(text) = text else {
        return Err(format!("text column {:?} is null", fields.text));
    };
    let text = utf8(text.data())?;
    let id_json;
    let id = match &id {
        Id::Absent => None,
        Id::Null => Some("null"),
        Id::Json(json) => Some(json.as_str()),
        Id::Bytes(bytes) => {
            let id = utf8(bytes.data()).map_err(|e| format!("id column: {e}"))?;
            id_json = serde_json::to_string(id).expect("a string serializes");
            Some(id_json.as_str())
        }
    };
    if text.len() > max {
        return Err(format!(
            "record of at least {} bytes exceeds --max-record-bytes {max}",
            text.len()
        ));
    }
    // A further column's value that cannot be read is null: the record
    // then lacks the value, which the job counts.
    let extras: Vec<(&str, String)> = extras
        .iter()
        .filter_map(|(name, value)| {
            let json = match value {
                Id::Absent => return None,
                Id::Null => "null".to_owned(),
                Id::Json(json) => json.clone(),
                Id::Bytes(bytes) => utf8(bytes.data()).map_or_else(
                    |_| "null".to_owned(),
                    |s| serde_json::to_string(s).expect("a string serializes"),
                ),
            };
            Some((*name, json))
        })
        .collect();
    let extras: Vec<(&str, &str)> = extras.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let start = buf.len();
    write_json_record_with(buf, fields, id, &[], &extras, text);
    let len = buf.len() - start;
    if len > max {
        return Err(format!(
            "record of {len} bytes exceeds --max-record-bytes {max}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::testutil::drain;
    use crate::input::{InputOptions, Inputs};
    use parquet::data_type::Int32Type;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    /// Values of one column of a row group: values and definition levels.
    enum Values {
        I32(Vec<i32>),
        I64(Vec<i64>),
        Bytes(Vec<&'static str>),
    }

    /// Writes a file of `schema` whose row groups are lists of columns.
    fn write(path: &Path, schema: &str, groups: Vec<Vec<(Values, Option<Vec<i16>>)>>) {
        let schema = Arc::new(parse_message_type(schema).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let file = File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        for group in groups {
            let mut rows = writer.next_row_group().unwrap();
            for (values, levels) in group {
                let mut column = rows.next_column().unwrap().unwrap();
                let levels = levels.as_deref();
                match values {
                    Values::I32(v) => column.typed::<Int32Type>().write_batch(&v, levels, None),
                    Values::I64(v) => column.typed::<Int64Type>().write_batch(&v, levels, None),
                    Values::Bytes(v) => {
                        let v: Vec<ByteArray> = v.into_iter().map(ByteArray::from).collect();
                        column
                            .typed::<ByteArrayType>()
                            .write_batch(&v, levels, None)
                    }
                }
                .unwrap();
                column.close().unwrap();
            }
            rows.close().unwrap();
        }
        writer.close().unwrap();
    }

    fn read(path: &Path, max: usize) -> Result<Vec<String>, String> {
        let options = InputOptions {
            max_record_bytes: max,
            ..InputOptions::default()
        };
        let mut inputs = Inputs::open(&[path.to_path_buf()], options).map_err(|e| e.to_string())?;
        Ok(drain(&mut inputs))
    }

    #[test]
    fn further_columns_are_carried_into_the_records_as_json_values() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.parquet");
        let schema = "message m { required binary text (UTF8); optional int32 n; \
                      required binary tag (UTF8); optional int64 id; }";
        let rows = |n| (0..2).map(|_| n).collect::<Vec<i16>>();
        write(
            &path,
            schema,
            vec![vec![
                (Values::Bytes(vec!["a", "b"]), None),
                (Values::I32(vec![-5]), Some(vec![1, 0])),
                (Values::Bytes(vec!["x\"", "y"]), None),
                (Values::I64(vec![]), Some(rows(0))),
            ]],
        );
        let options = InputOptions {
            // `text` is written once; a column the file lacks is left out.
            columns: vec!["tag".into(), "absent".into(), "n".into(), "text".into()],
            ..InputOptions::default()
        };
        let mut inputs = Inputs::open(&[path], options).unwrap();
        let records: Vec<String> = drain(&mut inputs)
            .iter()
            .map(|r| r[r.find('{').unwrap()..].to_owned())
            .collect();
        assert_eq!(
            records,
            [
                r#"{"id":null,"tag":"x\"","n":-5,"text":"a"}"#,
                r#"{"id":null,"tag":"y","n":null,"text":"b"}"#,
            ]
        );
    }

    #[test]
    fn rows_are_json_records_with_their_ids_in_order_across_row_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.parquet");
        let schema = "message m { optional binary text (UTF8); required int64 id (INTEGER(64,false)); optional int32 n; }";
        let many: Vec<&'static str> = vec!["x"; CHUNK + 5];
        write(
            &path,
            schema,
            vec![
                vec![
                    (
                        Values::Bytes(vec!["a \"q\"", "\u{e9}"]),
                        Some(vec![1, 0, 1]),
                    ),
                    (Values::I64(vec![1, -1, 3]), None),
                    (Values::I32(vec![]), Some(vec![0, 0, 0])),
                ],
                vec![
                    (Values::Bytes(many.clone()), Some(vec![1; many.len()])),
                    (Values::I64((0..many.len() as i64).collect()), None),
                    (Values::I32(vec![]), Some(vec![0; many.len()])),
                ],
            ],
        );
        let got = read(&path, 100).unwrap();
        let p = path.display();
        assert_eq!(got.len(), 3 + CHUNK + 5);
        assert_eq!(got[0], format!(r#"{p}:1 1 {{"id":1,"text":"a \"q\""}}"#));
        assert_eq!(
            got[1],
            format!(r#"{p}:2 rejected: text column "text" is null"#)
        );
        assert_eq!(got[2], format!(r#"{p}:3 1 {{"id":3,"text":"é"}}"#));
        // An unsigned id is read as unsigned.
        let path2 = tmp.path().join("u.parquet");
        write(
            &path2,
            "message m { required binary text (UTF8); required int64 id (INTEGER(64,false)); }",
            vec![vec![
                (Values::Bytes(vec!["t"]), None),
                (Values::I64(vec![-1]), None),
            ]],
        );
        assert_eq!(
            read(&path2, 100).unwrap()[0],
            format!(
                r#"{}:1 1 {{"id":18446744073709551615,"text":"t"}}"#,
                path2.display()
            )
        );
        assert_eq!(
            got[3 + CHUNK + 4],
            format!(
                r#"{p}:{} 1 {{"id":{},"text":"x"}}"#,
                3 + CHUNK + 5,
                CHUNK + 4
            )
        );
    }

    #[test]
    fn string_ids_null_ids_and_no_id_column_follow_json_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.parquet");
        write(
            &path,
            "message m { required binary id (UTF8); required binary text (UTF8); }",
            vec![vec![
                (Values::Bytes(vec!["a\"b"]), None),
                (Values::Bytes(vec!["t"]), None),
            ]],
        );
        let p = path.display();
        assert_eq!(
            read(&path, 100).unwrap(),
            [format!(r#"{p}:1 1 {{"id":"a\"b","text":"t"}}"#)]
        );
        let path = tmp.path().join("n.parquet");
        write(
            &path,
            "message m { optional int32 id; required binary text; }",
            vec![vec![
                (Values::I32(vec![7]), Some(vec![0, 1])),
                (Values::Bytes(vec!["t", "u"]), None),
            ]],
        );
        let p = path.display();
        assert_eq!(
            read(&path, 100).unwrap(),
            [
                format!(r#"{p}:1 1 {{"id":null,"text":"t"}}"#),
                format!(r#"{p}:2 1 {{"id":7,"text":"u"}}"#)
            ]
        );
        let path = tmp.path().join("t.parquet");
        write(
            &path,
            "message m { required binary text (UTF8); }",
            vec![vec![(Values::Bytes(vec!["t"]), None)]],
        );
        let p = path.display();
        assert_eq!(
            read(&path, 100).unwrap(),
            [format!(r#"{p}:1 1 {{"text":"t"}}"#)]
        );
        // Longer than the limit: rejected.
        let got = read(&path, 5).unwrap();
        assert_eq!(
            got,
            [format!(
                "{p}:1 rejected: record of 12 bytes exceeds --max-record-bytes 5"
            )]
        );
    }

    #[test]
    fn a_file_without_a_readable_text_column_is_unusable_and_lists_its_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.parquet");
        write(
            &path,
            "message m { required int64 content; required double id; }",
            vec![vec![
                (Values::I64(vec![1]), None),
                (Values::I64(vec![]), None),
            ]]
            .into_iter()
            .take(0)
            .collect(),
        );
        let fields = TextFields::default();
        let e = check(&path, "a.parquet", &fields).unwrap_err();
        assert!(e.cause.get_ref().unwrap().is::<UnusableInput>());
        assert_eq!(
            e.to_string(),
            r#"cannot read a.parquet: no text column "text" (--text-field); its columns: "content", "id""#
        );
        let fields = TextFields {
            text: "content".into(),
            id: "id".into(),
        };
        let e = check(&path, "a.parquet", &fields).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"cannot read a.parquet: text column "content" is INT64, not a string; its columns: "content", "id""#
        );
        let fields = TextFields {
            text: "content".into(),
            id: "x".into(),
        };
        let e = check(&path, "a.parquet", &fields).unwrap_err();
        assert!(e.to_string().contains("not a string"), "{e}");
    }

    #[test]
    fn rows_of_several_row_groups_decoded_ahead_keep_their_order_and_a_later_error_names_the_file()
    {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("g.parquet");
        let rows = CHUNK + 3;
        let texts: Vec<Vec<&'static str>> = (0..4)
            .map(|g| {
                (0..rows)
                    .map(|i| &*Box::leak(format!("group {g} row {i}").into_boxed_str()))
                    .collect()
            })
            .collect();
        let groups = (0..4)
            .map(|g| {
                vec![
                    (Values::Bytes(texts[g].clone()), None),
                    (
                        Values::I64((0..rows as i64).map(|i| g as i64 * 1000 + i).collect()),
                        None,
                    ),
                ]
            })
            .collect();
        write(
            &path,
            "message m { required binary text (UTF8); required int64 id; }",
            groups,
        );
        let p = path.display();
        let expected: Vec<String> = (0..4 * rows)
            .map(|n| {
                let (g, i) = (n / rows, n % rows);
                format!(
                    r#"{p}:{} 1 {{"id":{},"text":"group {g} row {i}"}}"#,
                    n + 1,
                    g * 1000 + i
                )
            })
            .collect();
        assert_eq!(read(&path, 1000).unwrap(), expected);
        // The last row group's text column damaged: the rows before it,
        // in order, then an error naming the file at the last good row.
        let meta = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let (start, len) = meta.metadata().row_group(3).column(0).byte_range();
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[start as usize..(start + len) as usize] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut inputs =
            Inputs::open(std::slice::from_ref(&path), InputOptions::default()).unwrap();
        let mut records = 0;
        let e = loop {
            let mut batch = drainpipe_actors::BatchBuilder::default();
            let filled =
                drainpipe_actors::RecordSource::fill(&mut inputs, &mut batch, 100, usize::MAX);
            records += batch.len();
            match filled {
                Ok(true) => {}
                Ok(false) => panic!("the damage was not found"),
                Err(e) => break e,
            }
        };
        assert_eq!(records, 3 * rows);
        assert_eq!(e.origin, path.display().to_string());
        assert_eq!(e.line, 3 * rows as u64);
        assert_eq!(e.cause.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn rows_not_needed_come_in_their_places_with_no_bytes_and_the_others_whole() {
        use drainpipe_actors::RecordSource;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("n.parquet");
        // Three row groups, one larger than SKIPPED, a null text and an
        // extra column; a JSON Lines file before it, so that the Parquet
        // rows' input indices do not start at 0.
        let big = SKIPPED + 300;
        let texts: Vec<&'static str> = (0..big)
            .map(|i| &*Box::leak(format!("text {i}").into_boxed_str()))
            .collect();
        let group = |range: std::ops::Range<usize>| {
            let mut levels = vec![1i16; range.len()];
            if range.start == 0 {
                levels[7] = 0;
            }
            let present: Vec<&'static str> = range
                .clone()
                .zip(&levels)
                .filter(|(_, &l)| l == 1)
                .map(|(i, _)| texts[i])
                .collect();
            vec![
                (Values::Bytes(present), Some(levels)),
                (Values::I64(range.clone().map(|i| i as i64).collect()), None),
                (Values::I32(range.map(|i| i as i32).collect()), None),
            ]
        };
        write(
            &path,
            "message m { optional binary text (UTF8); required int64 id; required int32 n; }",
            vec![
                group(0..CHUNK + 5),
                group(CHUNK + 5..1000),
                group(1000..big),
            ],
        );
        let lines = tmp.path().join("a.jsonl");
        std::fs::write(&lines, "{\"text\":\"x\"}\n{\"text\":\"y\"}\n").unwrap();
        let options = InputOptions {
            columns: vec!["n".into()],
            ..InputOptions::default()
        };
        let inputs = [lines, path];
        let all = drain(&mut Inputs::open(&inputs, options.clone()).unwrap());
        // Needed: the second line, the row of the null text (the passes
        // ask for the records pass 1 rejected), a few scattered rows, a run
        // across the first two row groups' border, and the last row.
        let wanted = move |i: u64| {
            i == 1 || i == 9 || i % 97 == 3 || (250..270).contains(&i) || i == big as u64 + 1
        };
        let mut inputs = Inputs::open(&inputs, options).unwrap();
        inputs.only_needed(Arc::new(wanted));
        let some = drain(&mut inputs);
        assert_eq!(some.len(), all.len());
        for (i, (got, whole)) in some.iter().zip(&all).enumerate() {
            if wanted(i as u64) {
                assert_eq!(got, whole, "record {i}");
            } else {
                // Its place and format, no bytes.
                let place = &whole[..whole.find(' ').unwrap()];
                assert_eq!(*got, format!("{place} 1 "), "record {i}");
            }
        }
    }

    #[test]
    fn a_cut_or_corrupt_file_is_an_io_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.parquet");
        // Distinct texts, so that the pages (not a dictionary) hold them.
        let texts: Vec<&'static str> = (0..5000)
            .map(|i| &*Box::leak(format!("some text {i} to fill the pages").into_boxed_str()))
            .collect();
        write(
            &path,
            "message m { required binary text (UTF8); }",
            vec![vec![(Values::Bytes(texts), None)]],
        );
        let bytes = std::fs::read(&path).unwrap();
        let fields = TextFields::default();
        for (name, damaged) in [
            ("cut.parquet", bytes[..bytes.len() / 2].to_vec()),
            ("empty.parquet", Vec::new()),
            ("text.parquet", b"not parquet at all, no magic".to_vec()),
        ] {
            let path = tmp.path().join(name);
            std::fs::write(&path, damaged).unwrap();
            let e = check(&path, name, &fields).unwrap_err();
            assert!(
                !e.cause.get_ref().is_some_and(|c| c.is::<UnusableInput>()),
                "{e}"
            );
            assert!(
                e.to_string().starts_with(&format!("cannot read {name}: ")),
                "{e}"
            );
        }
        // Pages damaged after the footer was read: an error, not a panic.
        let mut damaged = bytes.clone();
        for b in &mut damaged[4..bytes.len() / 2] {
            *b = 0xA5;
        }
        let path = tmp.path().join("pages.parquet");
        std::fs::write(&path, &damaged).unwrap();
        let mut inputs =
            Inputs::open(std::slice::from_ref(&path), InputOptions::default()).unwrap();
        let e = loop {
            let mut batch = drainpipe_actors::BatchBuilder::default();
            match drainpipe_actors::RecordSource::fill(&mut inputs, &mut batch, 1000, usize::MAX) {
                Ok(true) => {}
                Ok(false) => panic!("the damage was not found"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.origin, path.display().to_string());
    }
}
