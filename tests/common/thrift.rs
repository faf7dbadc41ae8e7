//! The writing side of the Thrift compact protocol, as far as tests need it
//! to build Parquet page headers: the unit tests of the page header check
//! (`src/input/pages.rs`) and the hostile page header guarantee share it.
#![allow(dead_code)]

/// `v` as a zigzag LEB128 integer (how the compact protocol writes an
/// `i32` or `i64`).
pub fn zigzag(v: i64) -> Vec<u8> {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (u & 0x7f) as u8;
        u >>= 7;
        if u == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// An `i32` field whose id is the previous field's plus one (type 5,
/// delta 1: `0x15`), with value `v`.
pub fn next_i32_field(v: i64) -> Vec<u8> {
    let mut out = vec![0x15];
    out.extend(zigzag(v));
    out
}
