//! Writing Parquet fixtures with the `parquet` crate the reader uses.
#![allow(dead_code)]

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// One column's values.
pub enum Column {
    /// `required int64`.
    Int64(Vec<i64>),
    /// `required binary (UTF8)`.
    Str(Vec<String>),
    /// `optional binary (UTF8)`: `None` is null.
    OptStr(Vec<Option<String>>),
    /// `optional double`: `None` is null.
    OptDouble(Vec<Option<f64>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Int64(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::OptStr(v) => v.len(),
            Column::OptDouble(v) => v.len(),
        }
    }

    fn schema(&self, name: &str) -> String {
        match self {
            Column::Int64(_) => format!("required int64 {name};"),
            Column::Str(_) => format!("required binary {name} (UTF8);"),
            Column::OptStr(_) => format!("optional binary {name} (UTF8);"),
            Column::OptDouble(_) => format!("optional double {name};"),
        }
    }
}

/// Writes `columns` (name, values) to `path`, `group` rows per row group,
/// snappy-compressed.
pub fn write(path: &Path, columns: &[(&str, Column)], group: usize) {
    let fields: Vec<String> = columns.iter().map(|(n, c)| c.schema(n)).collect();
    let schema = parse_message_type(&format!("message m {{ {} }}", fields.join(" "))).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let rows = columns.first().map_or(0, |(_, c)| c.len());
    let mut start = 0;
    while start < rows {
        let end = (start + group).min(rows);
        let mut row_group = writer.next_row_group().unwrap();
        for (_, column) in columns {
            let mut out = row_group.next_column().unwrap().unwrap();
            match column {
                Column::Int64(v) => {
                    out.typed::<Int64Type>()
                        .write_batch(&v[start..end], None, None)
                        .unwrap();
                }
                Column::Str(v) => {
                    let values: Vec<ByteArray> =
                        v[start..end].iter().map(|s| s.as_str().into()).collect();
                    out.typed::<ByteArrayType>()
                        .write_batch(&values, None, None)
                        .unwrap();
                }
                Column::OptStr(v) => {
                    let values: Vec<ByteArray> = v[start..end]
                        .iter()
                        .flatten()
                        .map(|s| s.as_str().into())
                        .collect();
                    let levels: Vec<i16> = v[start..end]
                        .iter()
                        .map(|s| i16::from(s.is_some()))
                        .collect();
                    out.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&levels), None)
                        .unwrap();
                }
                Column::OptDouble(v) => {
                    let values: Vec<f64> = v[start..end].iter().flatten().copied().collect();
                    let levels: Vec<i16> = v[start..end]
                        .iter()
                        .map(|s| i16::from(s.is_some()))
                        .collect();
                    out.typed::<DoubleType>()
                        .write_batch(&values, Some(&levels), None)
                        .unwrap();
                }
            }
            out.close().unwrap();
        }
        row_group.close().unwrap();
        start = end;
    }
    writer.close().unwrap();
}

/// The schema and every row of the Parquet file at `path`, read with the
/// `parquet` crate's row API.
pub fn read_rows(path: &Path) -> (parquet::schema::types::Type, Vec<parquet::record::Row>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let schema = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .clone();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| row.unwrap())
        .collect();
    (schema, rows)
}

/// The ids of the records of an output folder's kept file, `kept.jsonl`
/// or `kept.parquet` (its `id` column), as JSON text (`12`, `"a"`).
pub fn kept_ids(out: &Path) -> Vec<String> {
    let jsonl = out.join("kept.jsonl");
    if jsonl.exists() {
        return std::fs::read_to_string(jsonl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .collect();
    }
    let (_, rows) = read_rows(&out.join("kept.parquet"));
    rows.iter()
        .map(|row| {
            let (_, id) = row
                .get_column_iter()
                .find(|(name, _)| name.as_str() == "id")
                .expect("an id column");
            match id {
                parquet::record::Field::Long(n) => n.to_string(),
                parquet::record::Field::Int(n) => n.to_string(),
                parquet::record::Field::Str(s) => serde_json::to_string(s).unwrap(),
                other => panic!("an id of another type: {other:?}"),
            }
        })
        .collect()
}
