//! The form of the kept records, decided before any pass runs, so that a
//! run that cannot write them as asked is refused before any work.
//!
//! | inputs | `--kept-format` | kept records |
//! |---|---|---|
//! | all Parquet, one schema | none or `parquet` | `kept.parquet`, the inputs' schema ([`KeptForm::InputSchema`]) |
//! | all Parquet, schemas differ | none or `parquet` | refused, exit 65, naming two files and the difference |
//! | any other | none or `jsonl` | `kept.jsonl` ([`KeptForm::Jsonl`]) |
//! | any other | `parquet` | `kept.parquet` of `id` and `text` ([`KeptForm::IdText`]) |
//! | all Parquet | `jsonl` | `kept.jsonl`, each row as `{"id": ..., "text": ...}` |
//!
//! The inputs' schema is the whole of it: every column, in order, of the
//! same types, repetitions and annotations. Two schemas that differ in any
//! of these would need a rule to merge them; rather than guess one, the run
//! is refused and `--kept-format jsonl` named as the way through.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use drainpipe_actors::InputError;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::{ColumnDescriptor, SchemaDescPtr, SchemaDescriptor};

use crate::input::{Inputs, UnusableInput};
use crate::jobs::dedup::chain::{KEPT_FILE, KEPT_PARQUET_FILE};
use crate::jobs::dedup::params::KeptFormat;
use crate::jobs::pass::RunContext;

/// How pass 3 writes the kept records.
#[derive(Debug, Clone)]
pub enum KeptForm {
    /// `kept.jsonl`: a JSON Lines record byte for byte, any other record
    /// as the JSON object it is given as (`{"id": ..., "text": ...}`; a WET
    /// record with its `url`).
    Jsonl,
    /// `kept.parquet` with the schema of the Parquet inputs, every one of
    /// which has it: these files, in reading order, with the origin their
    /// records carry; and the record limit their pages are checked against
    /// (`--max-record-bytes`).
    InputSchema(Arc<[(PathBuf, Arc<str>)]>, usize),
    /// `kept.parquet` of two string columns, `id` (a string id without
    /// its quotes, a number as its digits) and `text`.
    IdText,
}

impl KeptForm {
    /// The output file's name.
    pub fn file_name(&self) -> &'static str {
        match self {
            KeptForm::Jsonl => KEPT_FILE,
            KeptForm::InputSchema(..) | KeptForm::IdText => KEPT_PARQUET_FILE,
        }
    }

    /// Whether the kept records are `kept.jsonl`, which pass 3 can copy
    /// from JSON Lines inputs.
    pub fn is_jsonl(&self) -> bool {
        matches!(self, KeptForm::Jsonl)
    }
}

/// The form of the run's kept records: `asked` (`--kept-format`), or by
/// default Parquet when every input is a Parquet file, else JSON Lines.
/// Parquet inputs of different schemas written as one `kept.parquet` are an
/// [`UnusableInput`] (exit 65).
pub fn decide(ctx: &RunContext, asked: Option<KeptFormat>) -> Result<KeptForm, InputError> {
    if asked == Some(KeptFormat::Jsonl) {
        return Ok(KeptForm::Jsonl);
    }
    let parquet = if ctx.inputs.is_empty() {
        // The demo corpus.
        None
    } else {
        Inputs::open(&ctx.inputs, ctx.input_options.clone())?
            .parquet_files()
            .filter(|files| !files.is_empty())
    };
    match (parquet, asked) {
        (Some(files), _) => {
            one_schema(&files)?;
            let max = ctx.input_options.max_record_bytes;
            Ok(KeptForm::InputSchema(files.into(), max))
        }
        (None, Some(KeptFormat::Parquet)) => Ok(KeptForm::IdText),
        (None, _) => Ok(KeptForm::Jsonl),
    }
}

/// Checks that every file has the first one's schema.
fn one_schema(files: &[(PathBuf, Arc<str>)]) -> Result<(), InputError> {
    let Some(((_, first_origin), rest)) = files.split_first() else {
        return Ok(());
    };
    let first = schema_of(&files[0].0, first_origin)?;
    for (path, origin) in rest {
        let schema = schema_of(path, origin)?;
        if let Some(difference) = difference(&first, &schema) {
            return Err(InputError {
                origin: origin.to_string(),
                line: 0,
                cause: io::Error::new(
                    io::ErrorKind::InvalidData,
                    UnusableInput(format!(
                        "its schema is not that of {first_origin} ({difference}): kept.parquet \
                         has one schema; write the kept records with --kept-format jsonl"
                    )),
                ),
            });
        }
    }
    Ok(())
}

fn schema_of(path: &std::path::Path, origin: &str) -> Result<SchemaDescPtr, InputError> {
    let fail = |cause| InputError {
        origin: origin.to_owned(),
        line: 0,
        cause,
    };
    let file = File::open(path).map_err(fail)?;
    let reader = SerializedFileReader::new(file).map_err(|e| {
        fail(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a readable Parquet file: {e}"),
        ))
    })?;
    Ok(reader.metadata().file_metadata().schema_descr_ptr())
}

/// How `other` differs from `first`, said of the first column that differs;
/// `None` when they are the same.
pub fn difference(first: &SchemaDescriptor, other: &SchemaDescriptor) -> Option<String> {
    if first.root_schema() == other.root_schema() {
        return None;
    }
    let columns = first.num_columns().max(other.num_columns());
    for i in 0..columns {
        let a = (i < first.num_columns()).then(|| first.column(i));
        let b = (i < other.num_columns()).then(|| other.column(i));
        let same = match (&a, &b) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if !same {
            let say =
                |c: &Option<Arc<ColumnDescriptor>>| c.as_deref().map_or("none".into(), column);
            return Some(format!(
                "column {}: {} there, {} here",
                i + 1,
                say(&a),
                say(&b)
            ));
        }
    }
    Some("their columns are grouped or named otherwise".into())
}

/// A leaf column as a message says it: its path, type and repetition.
fn column(c: &ColumnDescriptor) -> String {
    let mut out = format!("{:?} {}", c.path().string(), c.physical_type());
    match (c.converted_type(), c.logical_type_ref()) {
        (parquet::basic::ConvertedType::NONE, Some(logical)) => {
            out.push_str(&format!(" ({logical:?})"))
        }
        (parquet::basic::ConvertedType::NONE, None) => {}
        (converted, _) => out.push_str(&format!(" ({converted})")),
    }
    let repetition = c.self_type().get_basic_info().repetition();
    out.push_str(&format!(" {repetition}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::schema::parser::parse_message_type;

    fn descr(message: &str) -> SchemaDescriptor {
        SchemaDescriptor::new(Arc::new(parse_message_type(message).unwrap()))
    }

    #[test]
    fn a_schema_difference_names_the_first_column_that_differs() {
        let a = descr("message m { required int64 id; required binary text (UTF8); }");
        assert_eq!(difference(&a, &a.clone()), None);
        let b = descr("message m { required int64 id; optional binary text (UTF8); }");
        assert_eq!(
            difference(&a, &b).unwrap(),
            r#"column 2: "text" BYTE_ARRAY (UTF8) REQUIRED there, "text" BYTE_ARRAY (UTF8) OPTIONAL here"#
        );
        let c = descr(
            "message m { required int64 id; required binary text (UTF8); optional int32 n; }",
        );
        assert_eq!(
            difference(&a, &c).unwrap(),
            r#"column 3: none there, "n" INT32 OPTIONAL here"#
        );
    }
}
