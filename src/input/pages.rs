//! The page headers of a Parquet column chunk, checked before the `parquet`
//! crate reads it: a hostile or corrupt file must not make it allocate what
//! a header claims.
//!
//! The crate checks that a page's compressed size fits in its column chunk,
//! but allocates a page's declared uncompressed size before decompressing
//! it (and writes zeros over it), and a dictionary's declared number of
//! values (32 bytes each for strings) before decoding it: a header of a
//! few bytes can ask for 2 GiB, or 64 GiB. So each header is read here
//! first (the Thrift compact protocol, skipping what is not needed,
//! allocating nothing that a size in the file decides) and a column chunk
//! is refused when a page's uncompressed size passes [`page_limit`] or a
//! dictionary holds more values than its page has bytes (every encoding of
//! a dictionary value takes at least one byte, a boolean one bit). The cost
//! is one read of each page's header, a few bytes a page of about 1 MiB.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use parquet::file::metadata::ColumnChunkMetaData;

/// The largest uncompressed page accepted for records of at most
/// `max_record_bytes`: 256 MiB, or twice the record limit when that is
/// larger (a page holds at least one value whole). Writers make pages of
/// about 1 MiB.
pub(crate) fn page_limit(max_record_bytes: usize) -> u64 {
    (256u64 << 20).max(2 * max_record_bytes as u64)
}

/// What a page header says that matters here.
#[derive(Debug, Default, PartialEq, Eq)]
struct Header {
    uncompressed: i32,
    compressed: i32,
    /// The values of a dictionary page.
    dictionary_values: Option<i32>,
}

/// Checks the page headers of `column` in `file`; the message says what
/// is wrong with which page.
pub(crate) fn check_column(
    file: &File,
    column: &ColumnChunkMetaData,
    limit: u64,
    boolean: bool,
) -> Result<(), String> {
    let (start, len) = column.byte_range();
    let end = start.saturating_add(len);
    let mut reader = BufReader::with_capacity(4096, file.try_clone().map_err(|e| e.to_string())?);
    let mut at = start;
    let mut page = 0u64;
    let name = column.column_path().string();
    while at < end {
        reader
            .seek(SeekFrom::Start(at))
            .map_err(|e| e.to_string())?;
        let mut counted = Counted {
            inner: &mut reader,
            read: 0,
        };
        let header = read_header(&mut counted)
            .map_err(|e| format!("column {name:?}, page {page}: unreadable page header: {e}"))?;
        let bad = |what: String| format!("column {name:?}, page {page}: {what}");
        if header.compressed < 0 || header.uncompressed < 0 {
            return Err(bad("a negative page size".into()));
        }
        if header.uncompressed as u64 > limit {
            return Err(bad(format!(
                "declares {} bytes uncompressed, more than the {limit} a page may have here",
                header.uncompressed
            )));
        }
        if let Some(values) = header.dictionary_values {
            let most = (header.uncompressed as u64).saturating_mul(if boolean { 8 } else { 1 });
            if values < 0 || values as u64 > most {
                return Err(bad(format!(
                    "a dictionary of {values} values in {} bytes",
                    header.uncompressed
                )));
            }
        }
        at = at
            .saturating_add(counted.read)
            .saturating_add(header.compressed as u64);
        page += 1;
    }
    Ok(())
}

struct Counted<'a, R> {
    inner: &'a mut R,
    read: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Deepest nesting of structs and lists accepted in a header (Parquet's
/// go three deep).
const MAX_DEPTH: u32 = 16;

fn byte(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn varint(r: &mut impl Read) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let b = byte(r)?;
        value |= u64::from(b & 0x7f) << shift.min(63);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("a varint longer than 10 bytes"))
}

fn zigzag(r: &mut impl Read) -> io::Result<i64> {
    let v = varint(r)?;
    Ok((v >> 1) as i64 ^ -((v & 1) as i64))
}

fn i32_of(r: &mut impl Read) -> io::Result<i32> {
    i32::try_from(zigzag(r)?).map_err(|_| invalid("an i32 out of range"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Skips `n` bytes without holding them.
fn skip_bytes(r: &mut impl Read, n: u64) -> io::Result<()> {
    let skipped = io::copy(&mut r.take(n), &mut io::sink())?;
    if skipped < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Skips a value of compact type `kind`.
fn skip(r: &mut impl Read, kind: u8, depth: u32) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(invalid("nested too deep"));
    }
    match kind {
        1 | 2 => Ok(()),
        3 => byte(r).map(drop),
        4..=6 => varint(r).map(drop),
        7 => skip_bytes(r, 8),
        8 => {
            let len = varint(r)?;
            skip_bytes(r, len)
        }
        9 | 10 => {
            let head = byte(r)?;
            let size = match head >> 4 {
                15 => varint(r)?,
                n => u64::from(n),
            };
            let element = head & 0x0f;
            for _ in 0..size {
                // Booleans in a list take a byte each.
                if matches!(element, 1 | 2) {
                    byte(r)?;
                } else {
                    skip(r, element, depth + 1)?;
                }
            }
            Ok(())
        }
        11 => {
            let size = varint(r)?;
            if size > 0 {
                let kinds = byte(r)?;
                for _ in 0..size {
                    skip(r, kinds >> 4, depth + 1)?;
                    skip(r, kinds & 0x0f, depth + 1)?;
                }
            }
            Ok(())
        }
        12 => read_struct(r, |r, _, kind| skip(r, kind, depth + 1)),
        _ => Err(invalid("an unknown field type")),
    }
}

/// Reads a struct's fields, handing each (id, type) to `field`, which
/// reads or skips its value.
fn read_struct<R: Read>(
    r: &mut R,
    mut field: impl FnMut(&mut R, i16, u8) -> io::Result<()>,
) -> io::Result<()> {
    let mut id = 0i16;
    loop {
        let head = byte(r)?;
        let kind = head & 0x0f;
        if kind == 0 {
            return Ok(());
        }
        id = match head >> 4 {
            0 => i16::try_from(zigzag(r)?).map_err(|_| invalid("a field id out of range"))?,
            delta => id.wrapping_add(i16::from(delta)),
        };
        field(r, id, kind)?;
    }
}

fn read_header(r: &mut impl Read) -> io::Result<Header> {
    let mut header = Header::default();
    read_struct(r, |r, id, kind| match (id, kind) {
        (2, 5) => i32_of(r).map(|v| header.uncompressed = v),
        (3, 5) => i32_of(r).map(|v| header.compressed = v),
        (7, 12) => read_struct(r, |r, id, kind| match (id, kind) {
            (1, 5) => i32_of(r).map(|v| header.dictionary_values = Some(v)),
            _ => skip(r, kind, 2),
        }),
        _ => skip(r, kind, 1),
    })?;
    Ok(header)
}

#[cfg(test)]
#[path = "../../tests/common/thrift.rs"]
mod thrift;

#[cfg(test)]
mod tests {
    use super::thrift::{next_i32_field, zigzag};
    use super::*;

    /// A header's bytes: type, sizes, crc, then a dictionary page header.
    fn header(uncompressed: i64, compressed: i64, dictionary: Option<i64>) -> Vec<u8> {
        let mut out = next_i32_field(if dictionary.is_some() { 2 } else { 0 });
        out.extend(next_i32_field(uncompressed));
        out.extend(next_i32_field(compressed));
        // A binary field 9 (unknown here), skipped.
        out.push(0x68);
        out.extend([3, b'a', b'b', b'c']);
        if let Some(values) = dictionary {
            // Field 7 (delta -2: long form), a struct.
            out.push(0x0c);
            out.extend(zigzag(7));
            out.extend(next_i32_field(values));
            out.extend(next_i32_field(0));
            out.push(0x11); // is_sorted: true
            out.push(0);
        }
        out.push(0);
        out
    }

    #[test]
    fn a_header_gives_its_sizes_and_dictionary_values() {
        let bytes = header(1 << 20, 5000, Some(300));
        let got = read_header(&mut &bytes[..]).unwrap();
        assert_eq!(
            got,
            Header {
                uncompressed: 1 << 20,
                compressed: 5000,
                dictionary_values: Some(300)
            }
        );
        let bytes = header(i32::MAX.into(), 10, None);
        assert_eq!(read_header(&mut &bytes[..]).unwrap().uncompressed, i32::MAX);
        // Cut anywhere: an error, not a panic.
        for cut in 0..bytes.len() {
            assert!(read_header(&mut &bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Out of range.
        let bytes = header(1 << 40, 10, None);
        assert!(read_header(&mut &bytes[..]).is_err());
    }
}
