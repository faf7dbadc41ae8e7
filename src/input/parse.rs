//! Turning a raw record into id + text, by its format tag: the one parser
//! every text job shares.

use std::borrow::Cow;

use drainpipe_actors::{RawRecord, RecordError};

use super::record::{utf8, TextFields, TextRecord};
use super::{json, FORMAT_DEMO, FORMAT_FILE, FORMAT_JSONL, FORMAT_TEXT};

/// Parses a raw record into id and text, by its format tag:
///
/// - [`FORMAT_JSONL`]: a UTF-8 JSON object whose text field is a string;
///   the id is the id field's JSON text, exactly as the input gave it, if
///   it is a string or a number (any other id field is an error), else the
///   [`line_id`]. Other fields are skipped unread.
/// - [`FORMAT_TEXT`]: the line is the text (UTF-8), the [`line_id`] the id.
/// - [`FORMAT_FILE`]: the file is the text (UTF-8, so binary files are
///   rejected), its origin (`<directory>/<relative path>`) the id, as a JSON
///   string.
/// - [`FORMAT_DEMO`]: a document of the demo corpus; its number (the line)
///   the id.
pub fn parse_text_record<'a>(
    raw: &RawRecord<'a>,
    fields: &TextFields,
) -> Result<TextRecord<'a>, RecordError> {
    match raw.format {
        FORMAT_JSONL => {
            let record = json::parse(raw.bytes, fields)?;
            let id = match record.id {
                Some(id) => Cow::Borrowed(id),
                None => Cow::Owned(line_id(raw.location.origin, raw.location.line)),
            };
            Ok(TextRecord {
                id,
                text: record.text,
            })
        }
        FORMAT_TEXT => Ok(TextRecord {
            id: Cow::Owned(line_id(raw.location.origin, raw.location.line)),
            text: Cow::Borrowed(utf8(raw.bytes)?),
        }),
        FORMAT_FILE => Ok(TextRecord {
            id: Cow::Owned(serde_json::to_string(raw.location.origin)?),
            text: Cow::Borrowed(utf8(raw.bytes)?),
        }),
        FORMAT_DEMO => {
            let recipe = utf8(raw.bytes)?;
            let (docs, index) = recipe
                .split_once(':')
                .and_then(|(d, i)| Some((d.parse().ok()?, i.parse().ok()?)))
                .ok_or_else(|| format!("not a demo record: {recipe:?}"))?;
            Ok(TextRecord {
                id: Cow::Owned(raw.location.line.to_string()),
                text: Cow::Owned(crate::corpus::demo_corpus(docs).doc(index).text),
            })
        }
        other => Err(format!("unknown record format {other}").into()),
    }
}

/// The id of a line without an id of its own: `"<file>:<line>"`, a JSON
/// string naming the input as given and the 1-based line, so that lines
/// of different inputs never share an id.
pub fn line_id(origin: &str, line: u64) -> String {
    serde_json::to_string(&format!("{origin}:{line}")).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use drainpipe_actors::Location;

    fn parse(format: u8, origin: &str, bytes: &[u8]) -> Result<(String, String), String> {
        let raw = RawRecord {
            index: 0,
            location: Location { origin, line: 3 },
            format,
            bytes,
            span: None,
        };
        parse_text_record(&raw, &TextFields::default())
            .map(|r| (r.id.into_owned(), r.text.into_owned()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_format_has_its_id_and_text() {
        assert_eq!(
            parse(FORMAT_JSONL, "a.jsonl", br#"{"text":"t"}"#),
            Ok((r#""a.jsonl:3""#.into(), "t".into()))
        );
        assert_eq!(
            parse(FORMAT_JSONL, "a.jsonl", br#"{"text":"t","id":1.0}"#),
            Ok(("1.0".into(), "t".into()))
        );
        assert_eq!(
            parse(FORMAT_TEXT, "a.txt", b"plain line"),
            Ok((r#""a.txt:3""#.into(), "plain line".into()))
        );
        assert_eq!(
            parse(FORMAT_FILE, "corpus/a \"b\".txt", b"whole\nfile\n"),
            Ok((r#""corpus/a \"b\".txt""#.into(), "whole\nfile\n".into()))
        );
    }

    #[test]
    fn line_ids_are_json_strings_naming_the_input() {
        for origin in [
            "a.txt",
            "dir/a \"b\".txt",
            "back\\slash",
            "tab\there",
            "é\u{1}",
        ] {
            let id = line_id(origin, 12);
            let decoded: String = serde_json::from_str(&id).unwrap();
            assert_eq!(decoded, format!("{origin}:12"));
            assert_eq!(id, serde_json::to_string(&decoded).unwrap());
        }
    }

    #[test]
    fn invalid_utf8_is_rejected_in_every_format() {
        for format in [FORMAT_JSONL, FORMAT_TEXT, FORMAT_FILE] {
            assert_eq!(
                parse(format, "x", b"ab\xc3(").unwrap_err(),
                "not valid UTF-8 at byte 2"
            );
        }
    }

    #[test]
    fn unknown_formats_are_rejected() {
        assert_eq!(parse(0, "x", b"a").unwrap_err(), "unknown record format 0");
    }
}
