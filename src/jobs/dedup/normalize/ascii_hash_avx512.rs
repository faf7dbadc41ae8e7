//! [`super::ascii_hash`]'s word hashing with AVX-512, eight words per
//! vector instruction, finalizer included.
//!
//! Hashing one word at a time, inside the tokenizer's loop, was half the
//! time of tokenizing and hashing; here the tokenizer has only noted where
//! each word is (`start << 32 | end`), and the words are hashed afterwards,
//! eight lanes at a time, by gathering their bytes from the text. A word
//! the gather cannot take (longer than 16 bytes, or near the end of the
//! text) is hashed by the scalar code, lane by lane, so every lane's hash
//! is [`super::super::hash::hash_word`] of its word (tested).

use std::arch::x86_64::*;

use super::super::hash::{fmix64, K1, K2};
use super::ascii_hash::{ascii_word_state, LOWER};

/// Turns each place (`start << 32 | end`, a word of `text` made of ASCII
/// letters and digits) into the word's hash, eight at a time.
///
/// Starts are gathered at signed 32-bit offsets: a word starting past
/// `i32::MAX - 16` is hashed lane by lane (callers hash shorter texts
/// only). No place, even one outside `text`, is read out of bounds.
#[target_feature(enable = "avx512f,avx512dq")]
pub(super) fn hash_places_avx512(text: &[u8], places: &mut [u64]) {
    let mut chunks = places.chunks_exact_mut(8);
    for chunk in &mut chunks {
        hash_eight(text, chunk.try_into().expect("eight places"), 0xFF);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut eight = [0u64; 8];
        eight[..rest.len()].copy_from_slice(rest);
        hash_eight(text, &mut eight, (1u8 << rest.len()) - 1);
        rest.copy_from_slice(&eight[..rest.len()]);
    }
}

/// [`hash_places_avx512`] of the places in the `valid` lanes. A word of
/// at most 16 bytes with 16 bytes of text from its start is two gathered
/// eight-byte loads, lowercased and masked to its length, as
/// [`ascii_word_state`] reads it; the other words (rare) are hashed by
/// that function, lane by lane.
#[target_feature(enable = "avx512f,avx512dq")]
fn hash_eight(text: &[u8], places: &mut [u64; 8], valid: __mmask8) {
    let set = |v: u64| _mm512_set1_epi64(v as i64);
    // SAFETY: `places` is a reference to 64 initialized bytes, exactly the
    // 512 bits read; the load has no alignment requirement, and AVX-512F
    // is enabled for this function.
    let packed = unsafe { _mm512_loadu_si512(places.as_ptr().cast()) };
    let start = _mm512_srli_epi64::<32>(packed);
    let len = _mm512_sub_epi64(_mm512_and_si512(packed, set(0xFFFF_FFFF)), start);
    let short = _mm512_cmple_epu64_mask(len, set(16));
    // Gathered lanes read 16 bytes inside the text, from a start below
    // 2^31, so that its i32 offset is exact.
    let limit = text.len().min(i32::MAX as usize) as u64;
    let inside = _mm512_cmple_epu64_mask(_mm512_add_epi64(start, set(16)), set(limit));
    let fast = valid & short & inside;
    let offsets = _mm512_cvtepi64_epi32(start);
    let base = text.as_ptr();
    // SAFETY: a gather reads only the lanes set in its mask, `fast`, and
    // for those `start + 16 <= limit` (`inside`, compared in 64 bits from
    // 32-bit values, so without overflow), where `limit` is at most
    // `text.len()` and `i32::MAX`: `start` is below 2^31, its i32 offset
    // exact, and the bytes read, `text[start..start + 16]` in two loads of
    // eight, are inside `text`. Unset lanes take the zero source and read
    // nothing. Gathers have no alignment requirement; AVX-512F is enabled.
    let (v0, v1) = unsafe {
        (
            _mm512_mask_i32gather_epi64::<1>(_mm512_setzero_si512(), fast, offsets, base.cast()),
            _mm512_mask_i32gather_epi64::<1>(
                _mm512_setzero_si512(),
                fast,
                offsets,
                base.wrapping_add(8).cast(),
            ),
        )
    };
    // The bytes of the word in each chunk: `tail_mask` of 1..=8 bytes.
    let ones = set(u64::MAX);
    let tail_mask = |bytes: __m512i| {
        _mm512_srlv_epi64(
            ones,
            _mm512_sub_epi64(set(64), _mm512_slli_epi64::<3>(bytes)),
        )
    };
    let first = tail_mask(_mm512_min_epu64(len, set(8)));
    let second = tail_mask(_mm512_sub_epi64(_mm512_max_epu64(len, set(9)), set(8)));
    let mix = |h: __m512i, v: __m512i| {
        _mm512_rol_epi64::<31>(_mm512_mullo_epi64(_mm512_xor_si512(h, v), set(K2)))
    };
    let h = _mm512_mullo_epi64(len, set(K1));
    let one = mix(h, _mm512_and_si512(_mm512_or_si512(v0, set(LOWER)), first));
    let two = mix(
        one,
        _mm512_and_si512(_mm512_or_si512(v1, set(LOWER)), second),
    );
    let state = _mm512_mask_blend_epi64(_mm512_cmpgt_epu64_mask(len, set(8)), one, two);
    // MurmurHash3's finalizer, as `fmix64`.
    let shift_xor = |x: __m512i| _mm512_xor_si512(x, _mm512_srli_epi64::<33>(x));
    let x = _mm512_mullo_epi64(shift_xor(state), set(0xFF51_AFD7_ED55_8CCD));
    let x = _mm512_mullo_epi64(shift_xor(x), set(0xC4CE_B9FE_1A85_EC53));
    let hashes = shift_xor(x);
    let mut slow = valid & !fast;
    // SAFETY: `places` is a unique reference to 64 bytes, exactly the 512
    // bits the masked store may write (only the `fast` lanes are); the
    // store has no alignment requirement, and AVX-512F is enabled.
    unsafe { _mm512_mask_storeu_epi64(places.as_mut_ptr().cast(), valid & fast, hashes) };
    while slow != 0 {
        let lane = slow.trailing_zeros() as usize;
        slow &= slow - 1;
        let place = places[lane];
        let (start, end) = ((place >> 32) as usize, (place & 0xFFFF_FFFF) as usize);
        places[lane] = fmix64(ascii_word_state(text, start, end));
    }
}
