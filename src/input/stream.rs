//! Opening one input as a stream of bytes: format and compression from the
//! file name, on-the-fly decompression, and a counter of the bytes read as
//! stored (compressed bytes for compressed files).

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::prefetch::Prefetch;
use super::{FORMAT_JSONL, FORMAT_TEXT};

/// Buffer size of the line readers.
const BUFFER: usize = 64 << 10;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Stored as is.
    None,
    /// `.gz`: gzip, possibly several members.
    Gzip,
    /// `.zst`: zstandard, possibly several frames.
    Zstd,
}

/// How a file holds its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    /// One record per line.
    Lines,
    /// `.parquet`: one record per row ([`super::parquet`]).
    Parquet,
    /// `.warc.wet`: one record per conversion record ([`super::wet`]).
    Wet,
}

/// What a file name says about its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// [`FORMAT_JSONL`] or [`FORMAT_TEXT`] for line inputs; Parquet rows and
    /// WET records are given to the parser as JSON objects, [`FORMAT_JSONL`].
    pub format: u8,
    /// How to decompress it.
    pub compression: Compression,
    /// How its records are laid out.
    pub container: Container,
}

impl Kind {
    /// Whether a directory of such files is read as records (see
    /// [`super::dir`]): JSON Lines, Parquet and WET files; not text.
    pub fn is_records(self) -> bool {
        self.format == FORMAT_JSONL
    }
}

/// The kind of a file, from its name: a `.gz` or `.zst` suffix, then
/// `.jsonl`/`.json`/`.ndjson` for JSON Lines, `.parquet` for Parquet,
/// `.warc.wet` for WET; anything else is text lines.
pub(crate) fn kind_of(path: &Path) -> Kind {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let (stem, compression) = if let Some(stem) = name.strip_suffix(".gz") {
        (stem, Compression::Gzip)
    } else if let Some(stem) = name.strip_suffix(".zst") {
        (stem, Compression::Zstd)
    } else {
        (name.as_str(), Compression::None)
    };
    let json = [".jsonl", ".json", ".ndjson"]
        .iter()
        .any(|ext| stem.ends_with(ext));
    let container = if stem.ends_with(".parquet") {
        Container::Parquet
    } else if stem.ends_with(".warc.wet") {
        Container::Wet
    } else {
        Container::Lines
    };
    let records = json || container != Container::Lines;
    Kind {
        format: if records { FORMAT_JSONL } else { FORMAT_TEXT },
        compression,
        container,
    }
}

/// A reader that counts the bytes read through it into a shared counter,
/// so the position can be read while the reader is buried in a decoder.
#[derive(Debug)]
pub(crate) struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    /// Wraps `inner`; the returned counter follows the bytes read.
    pub fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        let reader = CountingReader {
            inner,
            count: Arc::clone(&count),
        };
        (reader, count)
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A buffered, decompressed stream.
pub(crate) type Stream = Box<dyn BufRead + Send>;

/// Wraps `reader` in a buffer and the decoder `compression` asks for.
pub(crate) fn decode<R: Read + Send + 'static>(
    reader: R,
    compression: Compression,
) -> io::Result<Stream> {
    Ok(match compression {
        Compression::None => Box::new(BufReader::with_capacity(BUFFER, reader)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUFFER,
            flate2::read::MultiGzDecoder::new(reader),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            BUFFER,
            zstd::stream::read::Decoder::new(reader)?,
        )),
    })
}

/// Bytes of a block decompressed ahead ([`decode_ahead`]).
const BLOCK: usize = 256 << 10;

/// [`decode`], but a compressed stream is decompressed on a thread of its
/// own ([`Prefetch`]), a block ahead of the reader: decompressing is most
/// of the cost of reading a compressed file of records, and it then runs
/// beside the splitting into records and their hand-over. The bytes, the
/// errors and their kinds come in the order of decompressing on one thread;
/// `name` (the file) names the thread's waits in the log.
pub(crate) fn decode_ahead<R: Read + Send + 'static>(
    reader: R,
    compression: Compression,
    name: &Arc<str>,
) -> io::Result<Stream> {
    if compression == Compression::None {
        return decode(reader, compression);
    }
    let mut decoder: Box<dyn Read + Send> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        _ => Box::new(zstd::stream::read::Decoder::new(reader)?),
    };
    // An error met after some bytes of a block: handed on after them.
    let mut pending: Option<io::Error> = None;
    let mut failed = false;
    let blocks = Prefetch::spawn(Arc::clone(name), "drainpipe-decompress", move || {
        if failed {
            return Ok(None);
        }
        if let Some(e) = pending.take() {
            failed = true;
            return Ok(Some(Err(e)));
        }
        let mut block = vec![0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            match decoder.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if filled == 0 => {
                    failed = true;
                    return Ok(Some(Err(e)));
                }
                Err(e) => {
                    pending = Some(e);
                    break;
                }
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        block.truncate(filled);
        Ok(Some(Ok(block)))
    })?;
    Ok(Box::new(Ahead {
        blocks,
        block: Vec::new(),
        at: 0,
        ended: false,
    }))
}

/// The reading side of [`decode_ahead`].
struct Ahead {
    blocks: Prefetch<io::Result<Vec<u8>>>,
    block: Vec<u8>,
    /// Bytes of `block` consumed.
    at: usize,
    ended: bool,
}

impl Read for Ahead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let have = self.fill_buf()?;
        let n = have.len().min(buf.len());
        buf[..n].copy_from_slice(&have[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Ahead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at == self.block.len() && !self.ended {
            match self.blocks.next() {
                Ok(Some(Ok(block))) => {
                    self.block = block;
                    self.at = 0;
                }
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => self.ended = true,
                Err(message) => return Err(io::Error::other(message)),
            }
        }
        Ok(&self.block[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.block.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::testutil::{gz, zst};
    use std::io::Read;

    fn kind(name: &str) -> (u8, Compression) {
        let k = kind_of(Path::new(name));
        (k.format, k.compression)
    }

    #[test]
    fn kinds_come_from_the_name() {
        assert_eq!(kind("a/b.jsonl"), (FORMAT_JSONL, Compression::None));
        assert_eq!(kind("b.JSON"), (FORMAT_JSONL, Compression::None));
        assert_eq!(kind("b.ndjson.gz"), (FORMAT_JSONL, Compression::Gzip));
        assert_eq!(kind("b.jsonl.zst"), (FORMAT_JSONL, Compression::Zstd));
        assert_eq!(kind("b.txt"), (FORMAT_TEXT, Compression::None));
        assert_eq!(kind("b.txt.gz"), (FORMAT_TEXT, Compression::Gzip));
        assert_eq!(kind("b.csv"), (FORMAT_TEXT, Compression::None));
        assert_eq!(kind("README"), (FORMAT_TEXT, Compression::None));
        assert_eq!(kind("x.gz"), (FORMAT_TEXT, Compression::Gzip));
        assert_eq!(kind("p.PARQUET"), (FORMAT_JSONL, Compression::None));
        assert_eq!(kind("cc.warc.wet.gz"), (FORMAT_JSONL, Compression::Gzip));
        let container = |name| kind_of(Path::new(name)).container;
        assert_eq!(container("p.parquet"), Container::Parquet);
        assert_eq!(container("cc.warc.wet.gz"), Container::Wet);
        assert_eq!(container("cc.warc.gz"), Container::Lines);
        assert_eq!(container("a.jsonl"), Container::Lines);
    }

    #[test]
    fn decoders_count_stored_bytes() {
        let plain = b"hello\nworld\n".repeat(1000);
        for (stored, compression) in [
            (plain.clone(), Compression::None),
            (gz(&plain), Compression::Gzip),
            (zst(&plain), Compression::Zstd),
        ] {
            let (counting, count) = CountingReader::new(io::Cursor::new(stored.clone()));
            let mut out = Vec::new();
            decode(counting, compression)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain, "{compression:?}");
            assert_eq!(count.load(Ordering::Relaxed), stored.len() as u64);
        }
    }

    #[test]
    fn a_stream_decompressed_ahead_gives_the_same_bytes_then_the_same_error() {
        let plain: Vec<u8> = (0..BLOCK * 3 + 17).map(|i| (i * 7 % 251) as u8).collect();
        let name: Arc<str> = "f".into();
        for (stored, compression) in [
            (gz(&plain), Compression::Gzip),
            (zst(&plain), Compression::Zstd),
        ] {
            let mut out = Vec::new();
            decode_ahead(io::Cursor::new(stored.clone()), compression, &name)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain, "{compression:?}");
            // Cut short: the bytes before the cut, then the error that one
            // thread would have met.
            let cut = stored[..stored.len() / 2].to_vec();
            let mut inline = Vec::new();
            let expected = decode(io::Cursor::new(cut.clone()), compression)
                .unwrap()
                .read_to_end(&mut inline)
                .unwrap_err();
            let mut ahead = Vec::new();
            let mut stream = decode_ahead(io::Cursor::new(cut), compression, &name).unwrap();
            let got = stream.read_to_end(&mut ahead).unwrap_err();
            assert_eq!(ahead, inline, "{compression:?}");
            assert_eq!(got.kind(), expected.kind(), "{compression:?}");
            assert_eq!(got.to_string(), expected.to_string(), "{compression:?}");
        }
    }
}
