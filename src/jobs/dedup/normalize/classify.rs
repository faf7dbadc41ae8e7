//! The block classifier of the ASCII tokenizer: which bytes of a 64-byte
//! block are ASCII letters or digits, as a 64-bit mask (bit `i` for byte
//! `i`), in three builds that give the same masks (tested): SWAR on eight
//! bytes at a time in plain `u64` arithmetic, which every CPU runs; AVX2,
//! two 32-byte compares; AVX-512BW, one 64-byte compare.
//!
//! A mask per block, rather than a test per byte, is what takes the
//! tokenizer's branch per byte away ([`super::tokenize`]). The vector
//! builds are safe `#[target_feature]` functions: the caller proves the
//! CPU has the feature once, at its dispatch.

use super::rules::ASCII;

/// Bytes classified together: one bit each in a `u64`.
pub(super) const BLOCK: usize = 64;

const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// One bit per byte of `block` (bit `i` for byte `i`): set for ASCII
/// letters and digits.
#[inline]
pub(super) fn block_mask(block: &[u8; BLOCK]) -> u64 {
    let mut mask = 0;
    for (k, chunk) in block.chunks_exact(8).enumerate() {
        let v = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        mask |= high_bits(ascii_alnum(v)) << (8 * k);
    }
    mask
}

/// The high bit of each byte of `v` (the only bits set), gathered into the
/// low 8 bits: byte `i`'s into bit `i`.
#[inline]
fn high_bits(v: u64) -> u64 {
    v.wrapping_mul(0x0002_0408_1020_4081) >> 56
}

/// For each byte of `v`, its high bit set when the byte is in `lo..=hi`.
/// The bytes must be below 0x80 (no carry crosses a byte).
#[inline]
fn in_range(v: u64, lo: u8, hi: u8) -> u64 {
    let ge = v.wrapping_add(ONES * u64::from(0x80 - lo));
    let gt = v.wrapping_add(ONES * u64::from(0x7F - hi));
    ge & !gt & HIGH
}

/// For each of the eight bytes of `v`, its high bit set when the byte is
/// an ASCII letter or digit (SWAR: no branch per byte).
#[inline]
fn ascii_alnum(v: u64) -> u64 {
    let ascii = !v & HIGH;
    let low7 = v & !HIGH;
    let letters = in_range(low7 | (ONES * 0x20), b'a', b'z');
    let digits = in_range(low7, b'0', b'9');
    (letters | digits) & ascii
}

/// The end of the run of ASCII letters and digits at `i`: the first index
/// from `i` on that is not one (or the end), eight bytes at a time.
#[inline]
pub(super) fn ascii_word_end(bytes: &[u8], mut i: usize) -> usize {
    while i + 8 <= bytes.len() {
        let v = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("eight bytes"));
        let stop = !ascii_alnum(v) & HIGH;
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && bytes[i] < 0x80 && ASCII[bytes[i] as usize] != 0 {
        i += 1;
    }
    i
}

/// [`block_mask`] with AVX-512BW: letters are the bytes whose `| 0x20` is
/// in `a..=z`, digits those in `0..=9`; each range test is a subtraction
/// and an unsigned compare into a 64-bit mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn block_mask_avx512(block: &[u8; BLOCK]) -> u64 {
    use std::arch::x86_64::*;
    // SAFETY: `block` is a reference to 64 initialized bytes, exactly the
    // 512 bits read, and the load has no alignment requirement; AVX-512F
    // is enabled for this function.
    let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
    let lower = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
    let letters = _mm512_cmple_epu8_mask(
        _mm512_sub_epi8(lower, _mm512_set1_epi8(b'a' as i8)),
        _mm512_set1_epi8(25),
    );
    let digits = _mm512_cmple_epu8_mask(
        _mm512_sub_epi8(v, _mm512_set1_epi8(b'0' as i8)),
        _mm512_set1_epi8(9),
    );
    letters | digits
}

/// [`block_mask`] with AVX2, 32 bytes at a time: `x - lo <= n` (unsigned)
/// is `min(x - lo, n) == x - lo`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) fn block_mask_avx2(block: &[u8; BLOCK]) -> u64 {
    use std::arch::x86_64::*;
    let half = |at: usize| {
        debug_assert!(at + 32 <= BLOCK);
        // SAFETY: `at` is 0 or 32, so the 32 bytes read, `block[at..at +
        // 32]`, are inside the 64 bytes `block` refers to; the load has no
        // alignment requirement, and AVX2 is enabled for this function.
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(at).cast()) };
        let in_range = |x: __m256i, lo: u8, n: u8| {
            let t = _mm256_sub_epi8(x, _mm256_set1_epi8(lo as i8));
            _mm256_cmpeq_epi8(_mm256_min_epu8(t, _mm256_set1_epi8(n as i8)), t)
        };
        let lower = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        let alnum = _mm256_or_si256(in_range(lower, b'a', 25), in_range(v, b'0', 9));
        u64::from(_mm256_movemask_epi8(alnum) as u32)
    };
    half(0) | (half(32) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_classifier_gives_the_swar_mask() {
        let mut rng = crate::corpus::SplitMix64::new(5);
        let mut blocks: Vec<[u8; BLOCK]> = (0..=255u8).map(|b| [b; BLOCK]).collect();
        for _ in 0..2000 {
            let mut block = [0u8; BLOCK];
            for b in &mut block {
                *b = rng.next_u64() as u8;
            }
            blocks.push(block);
        }
        for block in &blocks {
            let expected = (0..BLOCK).fold(0u64, |m, i| {
                let b = block[i];
                m | (u64::from(b < 0x80 && ASCII[b as usize] != 0) << i)
            });
            assert_eq!(block_mask(block), expected, "{block:?}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU supports AVX-512BW (and so F), the
                    // features the function is compiled for, checked just
                    // above.
                    let got = unsafe { block_mask_avx512(block) };
                    assert_eq!(got, expected, "avx512, {block:?}");
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, the feature the
                    // function is compiled for, checked just above.
                    let got = unsafe { block_mask_avx2(block) };
                    assert_eq!(got, expected, "avx2, {block:?}");
                }
            }
        }
    }

    #[test]
    fn high_bits_gathers_one_bit_per_byte() {
        for pattern in 0..=255u64 {
            let v = (0..8).fold(0u64, |v, i| v | ((pattern >> i) & 1) << (8 * i + 7));
            assert_eq!(high_bits(v), pattern);
        }
    }

    #[test]
    fn the_swar_classifier_agrees_with_the_table() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut bytes = [b'x'; 8];
                bytes[pos] = b;
                let mask = ascii_alnum(u64::from_le_bytes(bytes));
                let alnum = b < 0x80 && ASCII[b as usize] != 0;
                assert_eq!(
                    mask & (0x80 << (8 * pos)) != 0,
                    alnum,
                    "byte {b:#x} at {pos}"
                );
            }
        }
        let text = b"abc-DEF9ghij.klmnopqrstuvwxyz0123456789+";
        assert_eq!(ascii_word_end(text, 0), 3);
        assert_eq!(ascii_word_end(text, 4), 12);
        assert_eq!(ascii_word_end(text, 13), text.len() - 1);
    }
}
