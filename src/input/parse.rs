//! Turning a raw record into id + text, by its format tag: the one parser
//! every text job shares.

use std::borrow::Cow;

use drainpipe_actors::{RawRecord, RecordError};

use super::record::{utf8, TextFields, TextRecord};
use super::{json, FORMAT_DEMO, FORMAT_FILE, FORMAT_JSONL, FORMAT_TEXT};

/// Parses a raw record into id and text, by its format tag:
///
/// - [`FORMAT_JSONL`]: a UTF-8 JSON object whose text field is a string;
///   the id is the id field if it is a string or a number, else the line
///   number. Other fields are skipped unread.
/// - [`FORMAT_TEXT`]: the line is the text (UTF-8), the line number the id.
/// - [`FORMAT_FILE`]: the file is the text (UTF-8, so binary files are
///   rejected), its origin (`<directory>/<relative path>`) the id, as a JSON
///   string.
pub fn parse_text_record<'a>(
    raw: &RawRecord<'a>,
    fields: &TextFields,
) -> Result<TextRecord<'a>, RecordError> {
    match raw.format {
        FORMAT_JSONL => json::parse(raw.bytes, raw.location.line, fields),
        FORMAT_TEXT => Ok(TextRecord {
            id: Cow::Owned(raw.location.line.to_string()),
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
            Ok(("3".into(), "t".into()))
        );
        assert_eq!(
            parse(FORMAT_TEXT, "a.txt", b"plain line"),
            Ok(("3".into(), "plain line".into()))
        );
        assert_eq!(
            parse(FORMAT_FILE, "corpus/a \"b\".txt", b"whole\nfile\n"),
            Ok((r#""corpus/a \"b\".txt""#.into(), "whole\nfile\n".into()))
        );
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
