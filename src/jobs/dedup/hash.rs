//! The hashes every kernel of step 1 shares: a word's 64-bit hash and
//! MurmurHash3's finalizer.
//!
//! A leaf module, importing nothing of dedup's, so that the tokenizer
//! ([`super::normalize`]), shingling ([`super::shingle`]) and MinHash
//! ([`super::minhash`]) all depend on it and never on each other in a
//! circle. The hash is part of the output (it decides which records are
//! duplicates): these functions and constants must not change.

/// Multiplier of a word's length, and of each shingle's mixing step.
pub(super) const K1: u64 = 0x9E37_79B9_7F4A_7C15;
/// Multiplier of each eight-byte chunk of a word.
pub(super) const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// MurmurHash3's 64-bit finalizer: every input bit affects every output
/// bit.
#[inline]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// Mixes the eight-byte chunk `v` of a word into its state `h`.
#[inline]
pub(super) fn mix_chunk(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K2).rotate_left(31)
}

/// The 64-bit hash of a normalized word: its bytes eight at a time (the
/// last chunk zero-padded), then MurmurHash3's finalizer.
pub fn hash_word(bytes: &[u8]) -> u64 {
    fmix64(word_state(bytes))
}

/// [`hash_word`] before its finalizer: the word's bytes mixed in eight at
/// a time.
pub fn word_state(bytes: &[u8]) -> u64 {
    let mut h = (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        h = mix_chunk(
            h,
            u64::from_le_bytes(chunk.try_into().expect("eight bytes")),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = mix_chunk(h, u64::from_le_bytes(tail));
    }
    h
}
