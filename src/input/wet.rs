//! Common Crawl WET input (`.warc.wet`, `.warc.wet.gz`): a small WARC
//! reader, since the format is a header block and a `Content-Length` of
//! bytes per record and the crates that read it bring more than they give.
//!
//! A `conversion` record is a document: it is given to the parser as the
//! JSON object `{"<id field>": "<WARC-Record-ID>", "url":
//! "<WARC-Target-URI>", "<text field>": "<content>"}` ([`super::FORMAT_JSONL`]).
//! `warcinfo`, `request`, `metadata` and every other type are skipped and
//! counted by type (the count is logged once per file). The record's line
//! is its number in the file (1-based, every type counted).
//!
//! What cannot be read is never guessed at. A record whose content is too
//! large, not UTF-8, or that has no `WARC-Record-ID` is a rejected record
//! (the reader moves on to the next one, as its length is known). A header
//! that is cut short, has no blank line before the content within
//! [`MAX_HEADER`] bytes, a line without a colon, a missing or invalid
//! `Content-Length`, or content that ends early, is an
//! [`InputError`](drainpipe_actors::InputError) naming the file and the
//! record: past it the reader cannot know where the next record starts.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::sync::Arc;

use drainpipe_actors::InputError;

use super::record::{utf8, write_json_record, TextFields};
use super::stream::Stream;

/// The largest header block read, in bytes.
pub(crate) const MAX_HEADER: usize = 64 << 10;

/// A WET file being read.
pub(crate) struct WetInput {
    stream: Stream,
    origin: Arc<str>,
    fields: TextFields,
    /// Records read so far (of every type).
    record: u64,
    /// Records skipped, by type.
    skipped: BTreeMap<String, u64>,
    header: Vec<u8>,
}

/// What [`WetInput::next`] found.
pub(crate) enum Found {
    /// A conversion record, appended to the buffer (`Ok`) or rejected
    /// (`Err`), and its number.
    Record(Result<(), String>, u64),
    /// The end of the file, and the records skipped, by type.
    End(BTreeMap<String, u64>),
}

/// The fields of a header block the reader uses.
#[derive(Default)]
struct Header {
    kind: Option<String>,
    id: Option<String>,
    url: Option<String>,
    length: Option<u64>,
}

impl WetInput {
    /// Reads the records of `stream` (decompressed), named `origin`.
    pub fn new(stream: Stream, origin: Arc<str>, fields: &TextFields) -> Self {
        WetInput {
            stream,
            origin,
            fields: fields.clone(),
            record: 0,
            skipped: BTreeMap::new(),
            header: Vec::new(),
        }
    }

    /// The file's name in records and messages.
    pub fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    /// Appends the next conversion record to `buf` (a rejected one leaves
    /// `buf` as it was), skipping records of other types.
    pub fn next(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Found, InputError> {
        loop {
            let header = match self.header() {
                Ok(Some(header)) => header,
                Ok(None) => return Ok(Found::End(std::mem::take(&mut self.skipped))),
                Err(e) => return Err(self.error(e)),
            };
            let length = header.length.expect("checked by header()");
            let kind = header.kind.clone().unwrap_or_default();
            if kind != "conversion" {
                self.skip(length).map_err(|e| self.error(e))?;
                *self.skipped.entry(kind).or_default() += 1;
                continue;
            }
            let start = buf.len();
            let outcome = self
                .content(header, length, buf, max)
                .map_err(|e| self.error(e))?;
            if outcome.is_err() {
                buf.truncate(start);
            }
            return Ok(Found::Record(outcome, self.record));
        }
    }

    fn error(&self, cause: io::Error) -> InputError {
        InputError {
            origin: self.origin.to_string(),
            line: self.record,
            cause: io::Error::new(
                cause.kind(),
                format!("WARC record {}: {cause}", self.record),
            ),
        }
    }

    /// Reads the next header block; `None` at the end of the file.
    fn header(&mut self) -> io::Result<Option<Header>> {
        // Blank lines between records (the content's trailing `\r\n\r\n`).
        let version = loop {
            self.header.clear();
            let n = (&mut self.stream)
                .take(MAX_HEADER as u64)
                .read_until(b'\n', &mut self.header)?;
            if n == 0 {
                return Ok(None);
            }
            if !self.header.trim_ascii().is_empty() {
                break self.header.trim_ascii().to_vec();
            }
        };
        self.record += 1;
        if !version.starts_with(b"WARC/") {
            return Err(malformed(format!(
                "does not start with a WARC version line (found {:?})",
                String::from_utf8_lossy(&version[..version.len().min(40)])
            )));
        }
        let mut header = Header::default();
        let mut read = 0;
        loop {
            self.header.clear();
            let n = (&mut self.stream)
                .take((MAX_HEADER - read) as u64)
                .read_until(b'\n', &mut self.header)?;
            read += n;
            if n == 0 || self.header.last() != Some(&b'\n') {
                return Err(if read >= MAX_HEADER {
                    malformed(format!(
                        "header of more than {MAX_HEADER} bytes, or no blank line after it"
                    ))
                } else {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file ends inside a header",
                    )
                });
            }
            let line = self.header.trim_ascii();
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| malformed("a header line is not UTF-8".into()))?;
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| malformed(format!("header line without a colon: {line:?}")))?;
            let value = value.trim().to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "warc-type" => header.kind = Some(value),
                "warc-record-id" => header.id = Some(value),
                "warc-target-uri" => header.url = Some(value),
                "content-length" => {
                    let length = value.parse().map_err(|_| {
                        malformed(format!("Content-Length is not a number: {value:?}"))
                    })?;
                    header.length = Some(length);
                }
                _ => {}
            }
        }
        if header.length.is_none() {
            return Err(malformed("no Content-Length".into()));
        }
        Ok(Some(header))
    }

    /// Skips `length` bytes of content.
    fn skip(&mut self, length: u64) -> io::Result<()> {
        let skipped = io::copy(&mut (&mut self.stream).take(length), &mut io::sink())?;
        if skipped < length {
            return Err(cut_short(skipped, length));
        }
        Ok(())
    }

    /// Reads a conversion record's content and appends its JSON record to
    /// `buf`: `Err` inside `Ok` when the record is rejected.
    fn content(
        &mut self,
        header: Header,
        length: u64,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Result<(), String>> {
        if length > max as u64 {
            self.skip(length)?;
            return Ok(Err(format!(
                "record of {length} bytes exceeds --max-record-bytes {max}"
            )));
        }
        let mut content = Vec::with_capacity(length as usize);
        let read = (&mut self.stream).take(length).read_to_end(&mut content)? as u64;
        if read < length {
            return Err(cut_short(read, length));
        }
        let Some(id) = header.id else {
            return Ok(Err("conversion record without a WARC-Record-ID".into()));
        };
        let text = match utf8(&content) {
            Ok(text) => text,
            Err(e) => return Ok(Err(e)),
        };
        let id = serde_json::to_string(&id).expect("a string serializes");
        let url = header.url.unwrap_or_default();
        write_json_record(buf, &self.fields, Some(&id), &[("url", &url)], text);
        Ok(Ok(()))
    }
}

fn malformed(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn cut_short(read: u64, length: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the content ends after {read} of its {length} bytes (Content-Length)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One WARC record of `kind`, with `extra` header lines.
    pub(crate) fn warc(kind: &str, extra: &str, content: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "WARC/1.0\r\nWARC-Type: {kind}\r\n{extra}Content-Length: {}\r\n\r\n",
            content.len()
        )
        .into_bytes();
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n\r\n");
        out
    }

    /// Every record of `bytes`: the JSON of each conversion record or why
    /// it is rejected, then the skipped counts or the error.
    fn read(bytes: &[u8], max: usize) -> (Vec<String>, Result<String, String>) {
        let stream: Stream = Box::new(io::Cursor::new(bytes.to_vec()));
        let mut wet = WetInput::new(stream, Arc::from("cc.warc.wet"), &TextFields::default());
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            match wet.next(&mut buf, max) {
                Ok(Found::Record(Ok(()), n)) => {
                    out.push(format!("{n} {}", String::from_utf8(buf).unwrap()));
                }
                Ok(Found::Record(Err(why), n)) => {
                    assert!(buf.is_empty());
                    out.push(format!("{n} rejected: {why}"));
                }
                Ok(Found::End(skipped)) => return (out, Ok(format!("{skipped:?}"))),
                Err(e) => return (out, Err(e.to_string())),
            }
        }
    }

    #[test]
    fn conversion_records_are_documents_with_their_id_and_url() {
        let mut file = warc(
            "warcinfo",
            "WARC-Record-ID: <urn:uuid:0>\r\n",
            b"software: x\r\n",
        );
        file.extend(warc(
            "conversion",
            "WARC-Target-URI: http://a.example/\r\nWARC-Record-ID: <urn:uuid:1>\r\n",
            "héllo\nworld".as_bytes(),
        ));
        file.extend(warc("metadata", "", b"m"));
        file.extend(warc(
            "conversion",
            "WARC-Record-ID: <urn:uuid:2>\r\n",
            b"\xff",
        ));
        file.extend(warc("conversion", "WARC-Target-URI: u\r\n", b"no id"));
        file.extend(warc(
            "conversion",
            "WARC-Record-ID: <urn:uuid:3>\r\n",
            &[b'x'; 50],
        ));
        let (records, end) = read(&file, 40);
        assert_eq!(
            records,
            [
                "2 {\"id\":\"<urn:uuid:1>\",\"url\":\"http://a.example/\",\"text\":\"héllo\\nworld\"}",
                "4 rejected: not valid UTF-8 at byte 0",
                "5 rejected: conversion record without a WARC-Record-ID",
                "6 rejected: record of 50 bytes exceeds --max-record-bytes 40",
            ]
        );
        assert_eq!(end, Ok(r#"{"metadata": 1, "warcinfo": 1}"#.to_owned()));
    }

    #[test]
    fn malformed_records_are_errors_naming_the_file_and_record() {
        let good = warc("conversion", "WARC-Record-ID: <a>\r\n", b"text");
        let cases: [(&[u8], &str); 5] = [
            (
                b"WARC/1.0\r\nWARC-Type: conversion\r\n",
                "the file ends inside a header",
            ),
            (
                b"WARC/1.0\r\nContent-Length: ten\r\n\r\n",
                "Content-Length is not a number",
            ),
            (
                b"WARC/1.0\r\nContent-Length: 100\r\n\r\nshort",
                "the content ends after 5 of its 100 bytes",
            ),
            (b"WARC/1.0\r\nWARC-Type: x\r\n\r\n", "no Content-Length"),
            (
                b"WARC/1.0\r\nContent-Length: 4\r\ntext without a blank line\r\n",
                "header line without a colon",
            ),
        ];
        for (bad, why) in cases {
            let mut file = good.clone();
            file.extend_from_slice(bad);
            let (records, end) = read(&file, 100);
            assert_eq!(records.len(), 1, "{why}");
            let e = end.unwrap_err();
            assert!(
                e.starts_with("cannot read cc.warc.wet after line 2: WARC record 2: ")
                    && e.contains(why),
                "{e}"
            );
        }
        let (_, end) = read(b"not a warc file\n", 100);
        assert!(end
            .unwrap_err()
            .contains("does not start with a WARC version line"));
    }

    proptest! {
        /// Any bytes, and any cut or corruption of a valid file, end in
        /// records and then the end or an error: no panic, no endless loop
        /// (the test ends), and never more records than the file has.
        #[test]
        fn arbitrary_or_damaged_files_never_panic_or_hang(
            cut in 0usize..400,
            flip in 0usize..400,
            byte in any::<u8>(),
            noise in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut file = warc("warcinfo", "", b"info");
            for i in 0..3 {
                let id = format!("WARC-Record-ID: <{i}>\r\n");
                file.extend(warc("conversion", &id, format!("text {i}").as_bytes()));
            }
            let mut damaged = file.clone();
            if flip < damaged.len() {
                damaged[flip] = byte;
            }
            damaged.truncate(cut.max(1));
            for bytes in [&damaged, &noise] {
                let (records, _) = read(bytes, 1 << 20);
                prop_assert!(records.len() <= 3);
            }
        }
    }
}
