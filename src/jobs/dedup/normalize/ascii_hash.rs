//! The word hash ([`super::super::hash::word_state`]) of an ASCII word
//! read straight from the text, without copying it out first: eight-byte
//! loads, lowercased with `| 0x20`, the bytes past the word masked off.
//!
//! Kept beside the tokenizer rather than in the hash module because it
//! relies on what the tokenizer knows: the word is letters and digits only
//! (so `| 0x20` lowercases it), and the text may be read past the word.
//! The same steps, eight words per instruction, are in
//! [`super::ascii_hash_avx512`]; all give [`super::super::hash::hash_word`]
//! (tested).

use super::super::hash::{mix_chunk, K1};

/// `| 0x20` on every byte: lowercases ASCII letters, leaves digits as they
/// are.
pub(super) const LOWER: u64 = 0x2020_2020_2020_2020;

#[inline]
fn load8(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// `word_state` of the lowercased ASCII word `text[start..end]` (letters
/// and digits only), read straight from the text: eight-byte loads,
/// lowercased with `| 0x20`, the bytes past the word masked off.
#[inline(always)]
pub(super) fn ascii_word_state(text: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    let h = (len as u64).wrapping_mul(K1);
    if len <= 16 && start + 16 <= text.len() {
        // The usual word, without a branch on its length (which is random,
        // so such a branch mispredicts): two loads, masks computed from the
        // length, and the second chunk's mix selected, not branched to.
        let v0 = load8(text, start) | LOWER;
        let v1 = load8(text, start + 8) | LOWER;
        let one = mix_chunk(h, v0 & tail_mask(len.min(8)));
        let two = mix_chunk(one, v1 & tail_mask(len.max(9) - 8));
        return if len > 8 { two } else { one };
    }
    long_ascii_word_state(text, start, end)
}

/// [`ascii_word_state`] of a word longer than 16 bytes, or near the end of
/// the text: rare, so kept out of line, out of the tokenizer's loop.
#[cold]
#[inline(never)]
fn long_ascii_word_state(text: &[u8], start: usize, end: usize) -> u64 {
    let mut h = ((end - start) as u64).wrapping_mul(K1);
    let mut at = start;
    while at + 8 <= end {
        h = mix_chunk(h, load8(text, at) | LOWER);
        at += 8;
    }
    if at < end {
        let rest = end - at;
        let v = if at + 8 <= text.len() {
            load8(text, at)
        } else {
            let mut tail = [0u8; 8];
            tail[..text.len() - at].copy_from_slice(&text[at..]);
            u64::from_le_bytes(tail)
        };
        let mask = (1u64 << (8 * rest)) - 1;
        h = mix_chunk(h, (v | LOWER) & mask);
    }
    h
}

/// The low `bytes` bytes of a `u64` set (`bytes` in `1..=8`).
#[inline]
fn tail_mask(bytes: usize) -> u64 {
    u64::MAX >> (64 - 8 * bytes)
}
