//! `kept.parquet`, written by the Integrator of pass 3
//! ([`super::pipeline`]) as the kept records arrive in input order.
//!
//! With the inputs' schema ([`RowCopier`]) each kept row is copied from its
//! file, every column of it, values and levels as they are stored (so any
//! type and any nesting is copied without being understood): the
//! Integrator is told which rows of a row group are kept, and once the
//! records go past that row group, its kept rows are copied into one row
//! group of the output, column by column, `CHUNK` rows at a time. Row
//! groups without a kept row are not read.
//!
//! Decoding and encoding the rows again (compressing the pages above all)
//! is the cost of the pass, so a row group's copy runs on a thread of its
//! own, [`ENCODING`] row groups at a time: each is encoded, with the
//! output's writer properties, into an anonymous temporary file beside the
//! output, and the Integrator splices the finished column chunks into the
//! output in input order (the bytes are those the writer would have written
//! itself). Memory holds the kept row numbers of the row groups in flight
//! (4 bytes a row), one chunk of one column and the pages of the column
//! being written per thread, whatever the size of the file; the temporary
//! files hold those row groups' output, on disk.
//!
//! For records that are not all Parquet rows ([`IdTextWriter`]), each kept
//! record is two strings, `id` and `text`, written a row group at a time.
//!
//! Both write into an [`AtomicFile`] handed back uncommitted: the run
//! commits it with the other outputs, and a file left by a crash is a
//! temporary one, never `kept.parquet`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use drainpipe_actors::AtomicFile;
use parquet::basic::Compression;
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::column::writer::{
    get_column_writer, get_typed_column_writer_mut, ColumnCloseResult, ColumnWriter,
};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DataType, DoubleType, FixedLenByteArrayType, FloatType,
    Int32Type, Int64Type, Int96Type,
};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::SchemaDescPtr;

/// Rows read from a column at a time.
const CHUNK: usize = 1024;
/// Row groups encoded at a time, each on a thread of its own.
pub const ENCODING: usize = 2;
/// Rows of a row group of [`IdTextWriter`]'s output, at most.
const ID_TEXT_ROWS: usize = 65_536;
/// Bytes of text of a row group of [`IdTextWriter`]'s output, at most.
const ID_TEXT_BYTES: usize = 64 << 20;

/// A Parquet error on the input `path`, or on the output, as the IO error
/// that fails pass 3 (exit 74).
fn failed(path: &std::path::Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {e}", path.display()))
}

/// The input file whose rows are being copied, and its row group that
/// holds the rows being marked.
struct Open {
    file: u32,
    reader: SerializedFileReader<File>,
    /// The row group, its first row (1-based, as records number rows) and
    /// its rows.
    group: usize,
    first_row: u64,
    rows: u64,
    /// The kept rows of the row group, from its start.
    kept: Vec<u32>,
}

/// Writes the kept rows of Parquet inputs that share one schema, with that
/// schema.
pub struct RowCopier {
    files: Arc<[(PathBuf, Arc<str>)]>,
    /// The record limit pages are checked against.
    max_record_bytes: usize,
    target: PathBuf,
    writer: SerializedFileWriter<AtomicFile>,
    /// The output's schema and writer properties, for the row groups
    /// encoded apart.
    schema: SchemaDescPtr,
    props: WriterPropertiesPtr,
    open: Option<Open>,
    /// The row groups being encoded, in output order.
    encoding: VecDeque<JoinHandle<io::Result<Encoded>>>,
}

impl std::fmt::Debug for RowCopier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCopier")
            .field("target", &self.target)
            .field("file", &self.open.as_ref().map(|o| o.file))
            .finish_non_exhaustive()
    }
}

impl RowCopier {
    /// A copier of rows of `files` (which have one schema) into `out`, with
    /// the first file's schema, key-value metadata (Arrow's schema, if it
    /// is there) and each column's compression; the pages it reads are
    /// checked first ([`crate::input::check_parquet_pages`]).
    pub fn new(
        files: Arc<[(PathBuf, Arc<str>)]>,
        max_record_bytes: usize,
        out: AtomicFile,
    ) -> io::Result<Self> {
        let target = out.target().to_owned();
        let (first, _) = files
            .first()
            .ok_or_else(|| io::Error::other("no Parquet input to take the schema from"))?;
        let reader = open(first)?;
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr_ptr();
        let mut props = WriterProperties::builder()
            .set_key_value_metadata(meta.file_metadata().key_value_metadata().cloned())
            .set_compression(Compression::SNAPPY);
        if let Some(group) = meta.row_groups().first() {
            for column in group.columns() {
                props = props
                    .set_column_compression(column.column_path().clone(), column.compression());
            }
        }
        let props = Arc::new(props.build());
        let writer = SerializedFileWriter::new(out, schema.root_schema_ptr(), Arc::clone(&props))
            .map_err(|e| failed(&target, e))?;
        Ok(RowCopier {
            files,
            max_record_bytes,
            target,
            writer,
            schema,
            props,
            open: None,
            encoding: VecDeque::new(),
        })
    }

    /// Row `row` (1-based) of input file `file` is kept: rows come in
    /// input order.
    pub fn keep(&mut self, file: u32, row: u64) -> io::Result<()> {
        loop {
            match &mut self.open {
                Some(open) if open.file == file => {
                    if row < open.first_row {
                        return Err(io::Error::other(format!(
                            "{}: row {row} came after row {}",
                            self.files[file as usize].0.display(),
                            open.first_row
                        )));
                    }
                    if row < open.first_row + open.rows {
                        open.kept.push((row - open.first_row) as u32);
                        return Ok(());
                    }
                    self.next_group()?;
                }
                _ => {
                    self.flush()?;
                    let (path, _) = self.files.get(file as usize).ok_or_else(|| {
                        io::Error::other(format!("input file {file} is not one of the run's"))
                    })?;
                    let reader = open(path)?;
                    self.open = Some(Open {
                        file,
                        reader,
                        group: 0,
                        first_row: 1,
                        rows: 0,
                        kept: Vec::new(),
                    });
                    self.open_group(0)?;
                }
            }
        }
    }

    /// Copies the kept rows of the row group, then moves to the next.
    fn next_group(&mut self) -> io::Result<()> {
        self.flush()?;
        let open = self.open.as_mut().expect("a file is open");
        let next = open.group + 1;
        open.first_row += open.rows;
        self.open_group(next)
    }

    fn open_group(&mut self, group: usize) -> io::Result<()> {
        let path = self.path();
        let open = self.open.as_mut().expect("a file is open");
        if group >= open.reader.num_row_groups() {
            return Err(io::Error::other(format!(
                "{}: has {} rows, fewer than pass 1 read: the input changed",
                path.display(),
                open.first_row - 1
            )));
        }
        open.group = group;
        open.rows =
            u64::try_from(open.reader.metadata().row_group(group).num_rows()).map_err(|_| {
                failed(
                    &path,
                    format!("row group {group} has a negative number of rows"),
                )
            })?;
        Ok(())
    }

    fn path(&self) -> PathBuf {
        self.open
            .as_ref()
            .map(|o| self.files[o.file as usize].0.clone())
            .unwrap_or_default()
    }

    /// Starts copying the kept rows of the open row group, if any, into a
    /// row group of the output, on a thread of its own; first, while
    /// [`ENCODING`] row groups are being encoded, the oldest one is waited
    /// for and written.
    fn flush(&mut self) -> io::Result<()> {
        let path = self.path();
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if open.kept.is_empty() {
            return Ok(());
        }
        let job = Encode {
            group: open.group,
            rows: usize::try_from(open.rows).unwrap_or(usize::MAX),
            kept: std::mem::take(&mut open.kept),
            path,
            schema: Arc::clone(&self.schema),
            props: Arc::clone(&self.props),
            max_record_bytes: self.max_record_bytes,
            target: self.target.clone(),
        };
        while self.encoding.len() >= ENCODING {
            self.write_next()?;
        }
        let thread = std::thread::Builder::new()
            .name("drainpipe-kept-parquet".into())
            .spawn(move || job.run())
            .map_err(|e| failed(&self.target, format!("no thread to encode rows: {e}")))?;
        self.encoding.push_back(thread);
        Ok(())
    }

    /// Waits for the oldest row group being encoded and splices its column
    /// chunks into a row group of the output.
    fn write_next(&mut self) -> io::Result<()> {
        let Some(thread) = self.encoding.pop_front() else {
            return Ok(());
        };
        let encoded = thread
            .join()
            .map_err(|_| failed(&self.target, "the encoding of a row group panicked"))??;
        let fail = |e| failed(&self.target, e);
        let mut out = self.writer.next_row_group().map_err(fail)?;
        for close in encoded.columns {
            out.append_column(&encoded.file, close).map_err(fail)?;
        }
        out.close().map_err(fail)?;
        Ok(())
    }

    /// Copies what is left to copy and writes the file's footer: the file,
    /// complete and uncommitted.
    pub fn finish(mut self) -> io::Result<AtomicFile> {
        self.flush()?;
        while !self.encoding.is_empty() {
            self.write_next()?;
        }
        self.writer
            .into_inner()
            .map_err(|e| failed(&self.target, e))
    }
}

/// A row group's kept rows, to encode.
struct Encode {
    group: usize,
    /// Rows of the row group.
    rows: usize,
    kept: Vec<u32>,
    path: PathBuf,
    schema: SchemaDescPtr,
    props: WriterPropertiesPtr,
    max_record_bytes: usize,
    target: PathBuf,
}

/// A row group's kept rows, encoded: its column chunks, in an anonymous
/// temporary file, and what the writer needs to splice them in.
struct Encoded {
    file: File,
    columns: Vec<ColumnCloseResult>,
}

impl Encode {
    /// Opens the file, checks the row group's page headers, then copies
    /// the kept rows of each column into a column chunk of a temporary
    /// file beside the output.
    fn run(self) -> io::Result<Encoded> {
        let path = &self.path;
        // Files of its own: handles cloned from one another would share
        // their offset with the other threads'.
        let reader = open(path)?;
        let handle = File::open(path).map_err(|e| failed(path, e))?;
        let group = reader
            .get_row_group(self.group)
            .map_err(|e| failed(path, e))?;
        for column in group.metadata().columns() {
            crate::input::check_parquet_pages(&handle, column, self.max_record_bytes)
                .map_err(|e| failed(path, format!("row group {}, {e}", self.group)))?;
        }
        let beside = self.target.parent().unwrap_or(Path::new("."));
        let file = tempfile::tempfile_in(beside).map_err(|e| failed(&self.target, e))?;
        let out = file.try_clone().map_err(|e| failed(&self.target, e))?;
        let mut sink = TrackedWrite::new(out);
        let mut columns = Vec::with_capacity(self.schema.num_columns());
        for c in 0..self.schema.num_columns() {
            let descr = self.schema.column(c);
            let levels = (descr.max_def_level(), descr.max_rep_level());
            let reader = group.get_column_reader(c).map_err(|e| failed(path, e))?;
            let pages = Box::new(SerializedPageWriter::new(&mut sink));
            let mut writer = get_column_writer(descr, Arc::clone(&self.props), pages);
            let copy = Copy {
                levels,
                rows: self.rows,
                kept: &self.kept,
            };
            copy_column(reader, &mut writer, &copy).map_err(|e| match e {
                Side::Input(e) => failed(path, e),
                Side::Output(e) => failed(&self.target, e),
            })?;
            columns.push(writer.close().map_err(|e| failed(&self.target, e))?);
        }
        sink.flush().map_err(|e| failed(&self.target, e))?;
        drop(sink);
        Ok(Encoded { file, columns })
    }
}

fn open(path: &std::path::Path) -> io::Result<SerializedFileReader<File>> {
    let file = File::open(path).map_err(|e| failed(path, e))?;
    SerializedFileReader::new(file).map_err(|e| failed(path, e))
}

/// Which side of a copy failed.
enum Side {
    Input(ParquetError),
    Output(ParquetError),
}

/// What a column's copy needs to know.
struct Copy<'a> {
    /// The column's highest definition and repetition levels.
    levels: (i16, i16),
    /// Rows of the row group.
    rows: usize,
    /// The kept rows, in order.
    kept: &'a [u32],
}

/// Copies the kept rows of one column chunk, by its physical type.
fn copy_column(
    reader: ColumnReader,
    column: &mut ColumnWriter<'_>,
    copy: &Copy<'_>,
) -> Result<(), Side> {
    let w = column;
    match reader {
        ColumnReader::BoolColumnReader(r) => copy_typed::<BoolType>(r, typed(w), copy),
        ColumnReader::Int32ColumnReader(r) => copy_typed::<Int32Type>(r, typed(w), copy),
        ColumnReader::Int64ColumnReader(r) => copy_typed::<Int64Type>(r, typed(w), copy),
        ColumnReader::Int96ColumnReader(r) => copy_typed::<Int96Type>(r, typed(w), copy),
        ColumnReader::FloatColumnReader(r) => copy_typed::<FloatType>(r, typed(w), copy),
        ColumnReader::DoubleColumnReader(r) => copy_typed::<DoubleType>(r, typed(w), copy),
        ColumnReader::ByteArrayColumnReader(r) => copy_typed::<ByteArrayType>(r, typed(w), copy),
        ColumnReader::FixedLenByteArrayColumnReader(r) => {
            copy_typed::<FixedLenByteArrayType>(r, typed(w), copy)
        }
    }
}

/// The writer of a column of the physical type `T`: the reader's, as the
/// schemas are one (a mismatch is a bug, and the crate panics).
fn typed<'a, 'b, T: DataType>(
    column: &'a mut ColumnWriter<'b>,
) -> &'a mut parquet::column::writer::ColumnWriterImpl<'b, T> {
    get_typed_column_writer_mut(column)
}

/// The values and levels of the kept rows of one chunk of a column.
struct Picked<T> {
    values: Vec<T>,
    def: Vec<i16>,
    rep: Vec<i16>,
}

/// Copies the kept rows of a column chunk, `CHUNK` rows at a time: levels
/// mark where each row starts (a repetition level of 0) and whether a
/// level has a value (its definition level at the highest).
fn copy_typed<T: DataType>(
    mut reader: ColumnReaderImpl<T>,
    writer: &mut parquet::column::writer::ColumnWriterImpl<'_, T>,
    copy: &Copy<'_>,
) -> Result<(), Side> {
    let (max_def, max_rep) = copy.levels;
    let mut kept = copy.kept.iter().copied().peekable();
    let mut row = 0usize;
    while row < copy.rows && kept.peek().is_some() {
        let want = (copy.rows - row).min(CHUNK);
        let mut values = Vec::with_capacity(want);
        let (mut def, mut rep) = (Vec::new(), Vec::new());
        let (rows, _, levels) = reader
            .read_records(
                want,
                (max_def > 0).then_some(&mut def),
                (max_rep > 0).then_some(&mut rep),
                &mut values,
            )
            .map_err(Side::Input)?;
        if rows == 0 {
            return Err(Side::Input(ParquetError::General(format!(
                "the column chunk ends {} rows early",
                copy.rows - row
            ))));
        }
        let mut picked = Picked {
            values: Vec::new(),
            def: Vec::new(),
            rep: Vec::new(),
        };
        let mut is_kept = |r: usize| {
            while kept.next_if(|&k| (k as usize) < r).is_some() {}
            kept.peek().is_some_and(|&k| k as usize == r)
        };
        if max_def == 0 && max_rep == 0 {
            // One value a row.
            for (i, value) in values.into_iter().enumerate() {
                if is_kept(row + i) {
                    picked.values.push(value);
                }
            }
        } else {
            let mut values = values.into_iter();
            let mut r = row;
            for i in 0..levels {
                if i > 0 && (max_rep == 0 || rep[i] == 0) {
                    r += 1;
                }
                let has_value = max_def == 0 || def[i] == max_def;
                let value = if has_value { values.next() } else { None };
                if is_kept(r) {
                    if max_def > 0 {
                        picked.def.push(def[i]);
                    }
                    if max_rep > 0 {
                        picked.rep.push(rep[i]);
                    }
                    picked.values.extend(value);
                }
            }
        }
        row += rows;
        let def = (max_def > 0).then_some(&picked.def[..]);
        let rep = (max_rep > 0).then_some(&picked.rep[..]);
        writer
            .write_batch(&picked.values, def, rep)
            .map_err(Side::Output)?;
    }
    Ok(())
}

/// Writes kept records as rows of two string columns, `id` and `text`.
pub struct IdTextWriter {
    target: PathBuf,
    writer: SerializedFileWriter<AtomicFile>,
    ids: Vec<ByteArray>,
    texts: Vec<ByteArray>,
    bytes: usize,
}

impl std::fmt::Debug for IdTextWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTextWriter")
            .field("target", &self.target)
            .field("rows", &self.ids.len())
            .finish_non_exhaustive()
    }
}

/// The schema of [`IdTextWriter`]'s output.
pub const ID_TEXT_SCHEMA: &str =
    "message kept { required binary id (UTF8); required binary text (UTF8); }";

impl IdTextWriter {
    /// A writer into `out`.
    pub fn new(out: AtomicFile) -> io::Result<Self> {
        let target = out.target().to_owned();
        let schema = parquet::schema::parser::parse_message_type(ID_TEXT_SCHEMA)
            .map_err(|e| failed(&target, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))
            .map_err(|e| failed(&target, e))?;
        Ok(IdTextWriter {
            target,
            writer,
            ids: Vec::new(),
            texts: Vec::new(),
            bytes: 0,
        })
    }

    /// Adds a row.
    pub fn push(&mut self, id: String, text: String) -> io::Result<()> {
        self.bytes += id.len() + text.len();
        self.ids.push(id.into_bytes().into());
        self.texts.push(text.into_bytes().into());
        if self.ids.len() >= ID_TEXT_ROWS || self.bytes >= ID_TEXT_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let fail = |e: ParquetError| failed(&self.target, e);
        let mut group = self.writer.next_row_group().map_err(fail)?;
        for values in [&self.ids, &self.texts] {
            let mut column = group
                .next_column()
                .map_err(fail)?
                .ok_or_else(|| failed(&self.target, "two columns expected"))?;
            column
                .typed::<ByteArrayType>()
                .write_batch(values, None, None)
                .map_err(fail)?;
            column.close().map_err(fail)?;
        }
        group.close().map_err(fail)?;
        self.ids.clear();
        self.texts.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Writes what is left and the footer: the file, complete and
    /// uncommitted.
    pub fn finish(mut self) -> io::Result<AtomicFile> {
        self.flush()?;
        self.writer
            .into_inner()
            .map_err(|e| failed(&self.target, e))
    }
}
