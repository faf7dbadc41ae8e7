//! What a parsed text record is, and the field names it is read from: the
//! leaf module the format parsers ([`super::json`]) and the dispatch by
//! format tag ([`super::parse`]) both build on, so neither imports the
//! other's internals.

use std::borrow::Cow;

/// The fields of a JSON record that hold the text and the id.
#[derive(Debug, Clone)]
pub struct TextFields {
    /// Name of the text field.
    pub text: String,
    /// Name of the id field.
    pub id: String,
}

impl Default for TextFields {
    /// `text` and `id`.
    fn default() -> Self {
        TextFields {
            text: "text".into(),
            id: "id".into(),
        }
    }
}

/// A parsed text record.
#[derive(Debug, Clone)]
pub struct TextRecord<'a> {
    /// The id as JSON value text (`"abc"`, `42`), ready to be written out.
    pub id: Cow<'a, str>,
    /// The text.
    pub text: Cow<'a, str>,
}

/// `bytes` as UTF-8, or an error saying where it is not.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8 at byte {}", e.valid_up_to()))
}

/// Appends to `buf` the JSON object a record of a non-JSON container
/// (a Parquet row, a WET record) is given to the parser as: the id field
/// (if any) with `id`, already JSON text; the `extra` string fields; then
/// the text field.
pub(crate) fn write_json_record(
    buf: &mut Vec<u8>,
    fields: &TextFields,
    id: Option<&str>,
    extra: &[(&str, &str)],
    text: &str,
) {
    write_json_record_with(buf, fields, id, extra, &[], text);
}

/// [`write_json_record`], with `values` (fields whose values are already
/// JSON text: a Parquet row's further columns) after the `extra` strings.
pub(crate) fn write_json_record_with(
    buf: &mut Vec<u8>,
    fields: &TextFields,
    id: Option<&str>,
    extra: &[(&str, &str)],
    values: &[(&str, &str)],
    text: &str,
) {
    let string = |buf: &mut Vec<u8>, s: &str| {
        serde_json::to_writer(&mut *buf, s).expect("writing to a Vec does not fail");
    };
    buf.push(b'{');
    if let Some(id) = id {
        string(buf, &fields.id);
        buf.push(b':');
        buf.extend_from_slice(id.as_bytes());
        buf.push(b',');
    }
    for (name, value) in extra {
        string(buf, name);
        buf.push(b':');
        string(buf, value);
        buf.push(b',');
    }
    for (name, json) in values {
        string(buf, name);
        buf.push(b':');
        buf.extend_from_slice(json.as_bytes());
        buf.push(b',');
    }
    string(buf, &fields.text);
    buf.push(b':');
    string(buf, text);
    buf.push(b'}');
}
