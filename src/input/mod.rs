//! Input readers: JSON Lines, Parquet, Common Crawl WET, plain text,
//! directories (of record shards, or of whole-file documents), `.gz` and
//! `.zst` decompressed on the fly, stdin; and the shared parser that turns a
//! raw record into id + text.
//!
//! # Rules
//!
//! - Inputs are read in the order given, lazily: at most one record (bounded
//!   by [`InputOptions::max_record_bytes`]) is held in memory at a time.
//! - The format comes from the file name, case-insensitively, after an
//!   optional `.gz` or `.zst` suffix is removed: `.jsonl`, `.json` and
//!   `.ndjson` are JSON Lines ([`FORMAT_JSONL`]), `.parquet` is Parquet and
//!   `.warc.wet` Common Crawl WET, `.txt` is one text record per line
//!   ([`FORMAT_TEXT`]), and **any other name is read as plain text lines**
//!   too. `-` is stdin, read as (uncompressed) JSON Lines.
//! - A Parquet row or a WET conversion record is given to the parser as a
//!   JSON object of the id, (for WET) `url` and text fields
//!   ([`FORMAT_JSONL`]), so everything downstream reads it as a JSON Lines
//!   record; it has no byte span, so later passes read its file again
//!   (decoding only the records they need, when they say which:
//!   [`RecordSource::only_needed`](drainpipe_actors::RecordSource::only_needed);
//!   the others come with no bytes). Rows
//!   are read a chunk at a time from the text and id columns only (see the
//!   `parquet` module); a file without the text column is refused before
//!   any work ([`UnusableInput`], exit 65, listing its columns); a corrupt
//!   or cut Parquet file, or a malformed WET header, is an `InputError`
//!   naming the file (exit 74). WET records of types other than
//!   `conversion` are skipped and counted, logged once per file.
//! - Lines lose their `\n` or `\r\n` terminator, but for the `\r` of a JSON
//!   Lines record's `\r\n`: JSON takes it for whitespace, and it is kept so
//!   that a kept record is written back byte for byte. A UTF-8 byte order
//!   mark at the start of a file is dropped (it marks the file, not its
//!   first record). Line numbers are 1-based per file.
//! - An empty (or whitespace-only) line of a JSON Lines input is a rejected
//!   record ("empty line"); in plain text it is a record with empty text.
//! - A line longer than the limit is skipped without being held in memory
//!   and becomes a rejected record saying how long it was.
//! - A directory is read as **records** or as **documents**
//!   ([`InputOptions::dir_as`], `--dir-as`). Unless told, it is read as
//!   records when at least one file below it is not hidden and every such
//!   file is a record file by its name (JSON Lines, Parquet or WET,
//!   optionally `.gz` or `.zst`; not `.txt`). A file is hidden when a
//!   component of its path below the directory starts with `.`; hidden
//!   files and empty folders do not count either way. Read as records,
//!   its files are inputs of their own in path order (their records carry
//!   no span), hidden files are left out (logged), and a file that is not
//!   a record file is one rejected record naming it.
//! - A directory read as documents contributes every regular file below it,
//!   recursively, in path order, each as one [`FORMAT_FILE`] record named
//!   `<directory>/<relative path>` with line 1. Hidden files are included.
//!   Symbolic links to files are read; symbolic links to directories are
//!   not followed (they are logged and skipped), so there are no loops.
//!   `.gz` and `.zst` files are decompressed. The folders
//!   [`InputOptions::leave_out`] names (the run's output folder) are left
//!   out, wherever they are below the directory. Files that cannot be read
//!   (a dangling symbolic link, a link to itself, an IO error), fail to
//!   decompress or exceed the limit become rejected records. Anything else
//!   (a FIFO, a socket, a device) is logged and skipped, never opened.
//! - A `.gz` or `.zst` file of records is decompressed on a thread of its
//!   own, a block ahead of the records read from it (`stream::decode_ahead`).
//! - IO errors on line inputs (including truncated compressed files) are
//!   [`InputError`](drainpipe_actors::InputError)s naming the file and the
//!   last line read. So is a regular file that ends before the size it had
//!   when the inputs were opened (it was truncated while being read). A file
//!   deleted while being read stays readable once open, and is read whole.

mod dir;
mod field;
mod inputs;
mod json;
mod lines;
mod pages;
mod parquet;
mod parse;
mod prefetch;
mod record;
mod reread;
mod stream;
#[cfg(test)]
mod testutil;
mod wet;

pub use field::json_field;
pub use inputs::Inputs;

/// Checks the page headers of a Parquet column chunk of `file` before it is
/// read, for records of at most `max_record_bytes`: a page whose header
/// declares more than a page may hold, or a dictionary of more values than
/// its bytes can hold, is refused (the message names the column and page)
/// rather than allocated.
pub fn check_parquet_pages(
    file: &std::fs::File,
    column: &::parquet::file::metadata::ColumnChunkMetaData,
    max_record_bytes: usize,
) -> Result<(), String> {
    let boolean = column.column_type() == ::parquet::basic::Type::BOOLEAN;
    pages::check_column(file, column, pages::page_limit(max_record_bytes), boolean)
}
pub use parse::{line_id, parse_text_record};
pub use record::{TextFields, TextRecord};
pub use reread::{Reread, Wanted};

/// The format tag of the records of the file at `path` (from its name, see
/// the rules above).
pub fn format_of(path: &std::path::Path) -> u8 {
    stream::kind_of(path).format
}

/// How the input at `path` appears in a run's fingerprint (checkpoints of
/// another fingerprint are refused): a file's size and modification time;
/// for a directory, those of every file below it but in the folders
/// `options` leaves out.
pub fn identity(path: &std::path::Path, options: &InputOptions) -> String {
    let meta = std::fs::metadata(path).ok();
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        let left_out = dir::LeftOut::of(&options.leave_out);
        return format!("{} ({})", path.display(), dir::identity(path, &left_out));
    }
    let size = meta.as_ref().map_or(0, |m| m.len());
    let modified = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} ({size} bytes, modified {modified})", path.display())
}

/// Format tag: one JSON object per line.
pub const FORMAT_JSONL: u8 = 1;
/// Format tag: one plain-text record per line.
pub const FORMAT_TEXT: u8 = 2;
/// Format tag: a whole file is one record.
pub const FORMAT_FILE: u8 = 3;
/// Format tag: a document of the demo corpus, as the recipe
/// `<documents>:<index>`; the parser generates its text (so generation
/// runs on the processors, in parallel). See [`crate::corpus::DemoSource`].
pub const FORMAT_DEMO: u8 = 4;

/// The default of [`InputOptions::max_record_bytes`]: 16 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

/// An input that cannot be read as records at all, though it can be read:
/// a Parquet file without the text column, or with columns of types that
/// cannot be read. The cause of the [`InputError`](drainpipe_actors::InputError)
/// naming the file, found before any work; the run exits 65 (the data is
/// not what the command says it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableInput(pub String);

impl std::fmt::Display for UnusableInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnusableInput {}

/// How a directory input is read (`--dir-as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirAs {
    /// Each file below it is a file of records, read by its name's format.
    Records,
    /// Each file below it is one document.
    Documents,
}

/// Reader options.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// Records larger than this are rejected without being held in memory.
    pub max_record_bytes: usize,
    /// Folders never read as part of a directory input: the run's output
    /// folder, so that a run started inside its input (`cd corpus &&
    /// drainpipe dedup .`) reads neither its outputs nor their temporaries.
    pub leave_out: Vec<std::path::PathBuf>,
    /// The Parquet columns (and the field names of the JSON objects that
    /// Parquet rows and WET records are given as) of the text and the id.
    pub fields: TextFields,
    /// How directories are read; `None`: as records when every file below
    /// them is a record file, else as documents (see the rules above).
    pub dir_as: Option<DirAs>,
    /// The records of WET files that are not documents, counted as each
    /// file ends; shared by the clones of these options, so a run's
    /// summary can report them.
    pub skipped: std::sync::Arc<Skipped>,
    /// Further Parquet columns each row carries into its JSON record,
    /// when the file has them: the field `dedup --keep field:NAME` ranks
    /// by (JSON Lines records carry every field already).
    pub columns: Vec<String>,
}

/// Records of the inputs skipped, not rejected (WET records of types other
/// than `conversion`), by file then type. A file read again (each pass of a
/// run reads its inputs) replaces its counts, so they are a file's, not a
/// sum over the reads.
#[derive(Debug, Default)]
pub struct Skipped(std::sync::Mutex<std::collections::BTreeMap<String, SkippedByType>>);

/// Records skipped, by type.
pub type SkippedByType = std::collections::BTreeMap<String, u64>;

impl Skipped {
    /// The file `origin` ended, having skipped `counts`.
    pub fn record(&self, origin: &str, counts: SkippedByType) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin.to_owned(), counts);
    }

    /// Records skipped by every file read, by type.
    pub fn by_type(&self) -> SkippedByType {
        let files = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = SkippedByType::new();
        for counts in files.values() {
            for (kind, n) in counts {
                *total.entry(kind.clone()).or_default() += n;
            }
        }
        total
    }
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            leave_out: Vec::new(),
            fields: TextFields::default(),
            dir_as: None,
            skipped: std::sync::Arc::default(),
            columns: Vec::new(),
        }
    }
}
