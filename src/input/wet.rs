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
