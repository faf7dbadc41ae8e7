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
