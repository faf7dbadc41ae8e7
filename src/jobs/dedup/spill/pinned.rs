//! The bytes the spill formats put on disk, pinned. Sorted runs
//! (`DPSORTED`) and runs of held shingle sets (`DPHELDST`) are named by a
//! checkpoint and read back by the run that resumes from it, so a change
//! to the code that writes them must not change a byte without a new
//! format version. Each case writes a fixed input spanning several blocks
//! (one entry of the held sets larger than a block) and compares the
//! file's length and CRC-32 with the figures the writers gave when they
//! were pinned.

use std::path::Path;

use super::held::HeldWriter;
use super::runs::{Entry, RunInfo, RunWriter};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The file's length and the CRC-32 of its bytes, checked against what
/// the writer said of it.
fn digest(path: &Path, info: &RunInfo) -> (u64, u32) {
    let bytes = std::fs::read(path).unwrap();
    let digest = (bytes.len() as u64, crc32fast::hash(&bytes));
    assert_eq!(digest, (info.bytes, info.checksum), "{}", path.display());
    digest
}

fn run(path: &Path, entries: &[Entry], with_prints: bool) -> (u64, u32) {
    let mut writer = RunWriter::create(path, with_prints).unwrap();
    for &e in entries {
        writer.push(e).unwrap();
    }
    digest(path, &writer.finish().unwrap())
}

fn held(path: &Path, entries: &[(u32, u32, Vec<u64>)]) -> (u64, u32) {
    let mut writer = HeldWriter::create(path).unwrap();
    for (later, earlier, set) in entries {
        writer.push(*later, *earlier, set).unwrap();
    }
    digest(path, &writer.finish().unwrap())
}

/// Band entries: about 8 records a key, with fingerprints.
fn bands() -> Vec<Entry> {
    let mut list: Vec<Entry> = (0..40_000u32)
        .map(|i| Entry {
            key: u64::from(i * 7919 % 5003),
            record: i,
            print: u64::from(i).wrapping_mul(GOLDEN),
        })
        .collect();
    list.sort_unstable();
    list
}

/// Id keys: spread over the whole `u64` range.
fn ids() -> Vec<Entry> {
    let mut list: Vec<Entry> = (0..20_000u32)
        .map(|i| Entry {
            key: u64::from(i).wrapping_mul(GOLDEN),
            record: i,
            print: 0,
        })
        .collect();
    list.sort_unstable();
    list
}

fn set_of(i: u64, len: u64) -> Vec<u64> {
    (0..len).map(|k| i.wrapping_mul(GOLDEN) ^ k).collect()
}

/// Held sets of 1 to 13 hashes, two a later record, and a last one of
/// 9,000 hashes (72,000 bytes, past a block).
fn held_sets() -> Vec<(u32, u32, Vec<u64>)> {
    let mut list: Vec<(u32, u32, Vec<u64>)> = (0..6_000u32)
        .map(|i| {
            let (later, earlier) = (i / 2 + 1, i % 2 + (i / 2) % 5);
            (later, earlier, set_of(u64::from(i), u64::from(i % 13 + 1)))
        })
        .collect();
    list.push((3_001, 0, set_of(7, 9_000)));
    list
}

#[test]
fn sorted_runs_and_held_set_runs_keep_their_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let cases = [
        (
            "bands",
            run(&at("a"), &bands(), true),
            (463_627, 0x6006_bee3),
        ),
        (
            "bands without prints",
            run(&at("b"), &bands(), false),
            (143_562, 0xa081_8abb),
        ),
        (
            "id keys",
            run(&at("c"), &ids(), false),
            (201_283, 0xad6c_4350),
        ),
        ("an empty run", run(&at("d"), &[], true), (36, 0xa310_0fd8)),
        (
            "held sets",
            held(&at("e"), &held_sets()),
            (425_949, 0x0ff2_e039),
        ),
        ("no held sets", held(&at("f"), &[]), (36, 0xb27c_946d)),
    ];
    for (what, got, pinned) in cases {
        assert_eq!(got, pinned, "{what}: the bytes on disk changed");
    }
}
