//! Helpers shared by the input tests: writing (compressed) files and
//! draining a reader into readable lines.

use std::io::Write;
use std::path::{Path, PathBuf};

use drainpipe_actors::{BatchBuilder, RecordSource};

/// Writes `bytes` to `dir/name`, creating folders; returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `bytes` gzip-compressed.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `bytes` zstd-compressed.
pub fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 1).unwrap()
}

/// One batch's records as `origin:line format text` or
/// `origin:line rejected: reason`.
pub fn describe(builder: BatchBuilder) -> Vec<String> {
    builder
        .finish()
        .records()
        .map(|r| match r {
            Ok(r) => format!(
                "{} {} {}",
                r.location,
                r.format,
                String::from_utf8_lossy(r.bytes)
            ),
            Err(r) => format!("{} rejected: {}", r.location, r.reason),
        })
        .collect()
}

/// Every batch `source` yields with these limits, described.
pub fn batches(
    source: &mut impl RecordSource,
    max_records: usize,
    max_bytes: usize,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    loop {
        let mut builder = BatchBuilder::default();
        if !source.fill(&mut builder, max_records, max_bytes).unwrap() {
            assert!(builder.is_empty());
            return out;
        }
        assert!(!builder.is_empty(), "fill returned true with nothing");
        out.push(describe(builder));
    }
}

/// Every record of `source`, described, in one list.
pub fn drain(source: &mut impl RecordSource) -> Vec<String> {
    batches(source, 1000, usize::MAX).concat()
}
