//! Text normalization and word splitting, the first thing step 1 does to a
//! record: trivial formatting differences (case, punctuation, whitespace,
//! accents, full-width forms) must not make two copies of a text differ.
//!
//! The rules, applied character by character in one pass over the UTF-8
//! bytes (ASCII bytes go through a 128-entry table, the fast path):
//!
//! - **Case**: letters are lowercased with `char::to_lowercase`, the full
//!   Unicode lowercase mapping (`"Ça VA"` and `"ça va"` normalize alike).
//!   It is not full case folding: `ß` stays `ß` (folding would give `ss`).
//! - **Diacritics**: a precomposed letter whose canonical decomposition is
//!   a base letter plus combining marks is replaced by its base letter
//!   (Latin, Greek, Cyrillic; [`super::fold::FOLD`], generated from the
//!   Unicode database), and combining marks themselves are ignored, so NFC
//!   and NFD spellings agree: `café`, `CAFÉ`, `cafe\u{301}` and `cafe` are one word.
//! - **Full-width ASCII** (`Ａ`, `１`, `！`) is read as ASCII.
//! - **Ignored inside words**: combining marks, zero-width (non-)joiners,
//!   variation selectors, the soft hyphen, emoji skin-tone modifiers and
//!   tag characters.
//! - **Words**: a word is a maximal run of alphanumeric characters
//!   (`char::is_alphanumeric`); everything else (whitespace, punctuation,
//!   symbols) separates words and is dropped.
//! - **One character, one word**: scripts written without spaces (Han,
//!   Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) and emoji make a word
//!   of each character, so shingles over them are character n-grams.

use super::fold::fold;
use super::shingle::fmix64;

/// Lowercased ASCII letters and digits; 0 for every other ASCII byte (a
/// separator).
const ASCII: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() || c.is_ascii_lowercase() {
            c
        } else if c.is_ascii_uppercase() {
            c + 32
        } else {
            0
        };
        b += 1;
    }
    t
};

/// Where the tokenizer puts words.
trait Sink {
    /// A word made only of ASCII letters and digits, `text[start..end]`,
    /// not yet lowercased (lowercasing them is `| 0x20` on every byte).
    fn ascii(&mut self, text: &[u8], start: usize, end: usize);
    /// Any other word, normalized.
    fn word(&mut self, bytes: &[u8]);
}

/// Splits `text` into normalized words for `sink`. ASCII letters and
/// digits are scanned as runs; a run that is a whole word goes to the sink
/// as a slice of the text, without copying. `buf` collects words that
/// need more work (non-ASCII characters).
fn tokenize(text: &str, buf: &mut Vec<u8>, sink: &mut impl Sink) {
    buf.clear();
    let bytes = text.as_bytes();
    if bytes.is_ascii() {
        // Most text of most corpora: no character needs more than a bit.
        tokenize_ascii(bytes, sink);
        return;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if ASCII[b as usize] == 0 {
                flush(buf, sink);
                i += 1;
                continue;
            }
            let start = i;
            i = ascii_word_end(bytes, i + 1);
            if buf.is_empty() && (i == bytes.len() || bytes[i] < 0x80) {
                sink.ascii(bytes, start, i);
            } else {
                // The word started or goes on with non-ASCII characters.
                buf.extend(bytes[start..i].iter().map(|&c| c | 0x20));
            }
            continue;
        }
        // `i` is on a character boundary: only whole characters are skipped.
        let c = text[i..].chars().next().expect("not at the end");
        i += c.len_utf8();
        non_ascii(c, buf, sink);
    }
    flush(buf, sink);
}

/// Bytes classified together by [`tokenize_ascii`]: one bit each in a `u64`.
const BLOCK: usize = 64;

/// [`tokenize`] for pure-ASCII text, where a word is a maximal run of ASCII
/// letters and digits, with the fastest block classifier the CPU has: one
/// AVX-512 compare per 64 bytes, two AVX2 compares per 32, or eight SWAR
/// steps ([`block_mask`]). All give the same masks (tested), so the same
/// words.
fn tokenize_ascii(bytes: &[u8], sink: &mut impl Sink) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU supports AVX-512BW (and so AVX-512F), checked
            // just above.
            return unsafe { tokenize_ascii_avx512(bytes, sink) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { tokenize_ascii_avx2(bytes, sink) };
        }
    }
    tokenize_ascii_with(bytes, sink, block_mask)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn tokenize_ascii_avx512(bytes: &[u8], sink: &mut impl Sink) {
    // The closure inherits this function's target features.
    tokenize_ascii_with(bytes, sink, |block| simd::block_mask_avx512(block))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tokenize_ascii_avx2(bytes: &[u8], sink: &mut impl Sink) {
    tokenize_ascii_with(bytes, sink, |block| simd::block_mask_avx2(block))
}

/// [`tokenize_ascii`] with the classifier `mask_of`. Each 64-byte block
/// becomes a bit mask (bit `i`: byte `i` is a letter or digit); the edges
/// of the mask are where words start and end, visited with a bit scan.
/// There is no branch per byte, and the branch per edge alternates (start,
/// end, start...), which predicts well.
#[inline(always)]
fn tokenize_ascii_with(bytes: &[u8], sink: &mut impl Sink, mask_of: impl Fn(&[u8; BLOCK]) -> u64) {
    debug_assert!(bytes.is_ascii());
    // Whether the byte before the current block is a letter or digit, and
    // where the current word started.
    let mut in_word = false;
    let mut start = 0;
    let mut edges_of = |base: usize, mask: u64, sink: &mut _| {
        let mut edges = mask ^ ((mask << 1) | u64::from(in_word));
        while edges != 0 {
            let at = base + edges.trailing_zeros() as usize;
            edges &= edges - 1;
            if in_word {
                Sink::ascii(sink, bytes, start, at);
            } else {
                start = at;
            }
            in_word = !in_word;
        }
    };
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut base = 0;
    for block in &mut blocks {
        edges_of(base, mask_of(block.try_into().expect("a block")), sink);
        base += BLOCK;
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        // Zero padding is not alphanumeric: a word ending the text ends here.
        let mut last = [0u8; BLOCK];
        last[..rest.len()].copy_from_slice(rest);
        edges_of(base, mask_of(&last), sink);
    }
    if in_word {
        sink.ascii(bytes, start, bytes.len());
    }
}

/// [`block_mask`] with vector compares, and [`ascii_word_hashes`]'s word
/// hashing, eight words per vector instruction.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{ascii_word_state, BLOCK, K1, K2, LOWER};
    use crate::jobs::dedup::shingle::fmix64;

    /// [`super::block_mask`] with AVX-512BW: letters are the bytes whose
    /// `| 0x20` is in `a..=z`, digits those in `0..=9`; each range test is
    /// a subtraction and an unsigned compare into a 64-bit mask.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn block_mask_avx512(block: &[u8; BLOCK]) -> u64 {
        // SAFETY: `block` is 64 readable bytes; the load is unaligned.
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

    /// [`super::block_mask`] with AVX2, 32 bytes at a time: `x - lo <= n`
    /// (unsigned) is `min(x - lo, n) == x - lo`.
    #[target_feature(enable = "avx2")]
    pub(super) fn block_mask_avx2(block: &[u8; BLOCK]) -> u64 {
        let half = |at: usize| {
            // SAFETY: `at + 32 <= 64`: 32 readable bytes; unaligned load.
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

    /// Turns each place (`start << 32 | end`, a word of `text` made of
    /// ASCII letters and digits) into the word's [`super::hash_word`],
    /// eight at a time. `text` is shorter than `i32::MAX - 16` bytes.
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
    /// at most 16 bytes with 16 bytes of text from its start is two
    /// gathered eight-byte loads, lowercased and masked to its length, as
    /// [`ascii_word_state`] reads it; the other words (rare) are hashed by
    /// that function, lane by lane.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn hash_eight(text: &[u8], places: &mut [u64; 8], valid: __mmask8) {
        let set = |v: u64| _mm512_set1_epi64(v as i64);
        // SAFETY: `places` is 64 readable bytes; the load is unaligned.
        let packed = unsafe { _mm512_loadu_si512(places.as_ptr().cast()) };
        let start = _mm512_srli_epi64::<32>(packed);
        let len = _mm512_sub_epi64(_mm512_and_si512(packed, set(0xFFFF_FFFF)), start);
        let short = _mm512_cmple_epu64_mask(len, set(16));
        let inside =
            _mm512_cmple_epu64_mask(_mm512_add_epi64(start, set(16)), set(text.len() as u64));
        let fast = valid & short & inside;
        // Starts are below 2^31 (the text is shorter): exact as i32 offsets.
        let offsets = _mm512_cvtepi64_epi32(start);
        let base = text.as_ptr();
        // SAFETY: a lane is loaded only when `fast`: its 16 bytes from
        // `start` are inside `text`.
        let (v0, v1) = unsafe {
            (
                _mm512_mask_i32gather_epi64::<1>(
                    _mm512_setzero_si512(),
                    fast,
                    offsets,
                    base.cast(),
                ),
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
        // SAFETY: `places` is 64 writable bytes; the store is unaligned.
        unsafe { _mm512_mask_storeu_epi64(places.as_mut_ptr().cast(), valid & fast, hashes) };
        while slow != 0 {
            let lane = slow.trailing_zeros() as usize;
            slow &= slow - 1;
            let place = places[lane];
            let (start, end) = ((place >> 32) as usize, (place & 0xFFFF_FFFF) as usize);
            places[lane] = fmix64(ascii_word_state(text, start, end));
        }
    }
}

/// One bit per byte of `block` (bit `i` for byte `i`): set for ASCII
/// letters and digits.
#[inline]
fn block_mask(block: &[u8; BLOCK]) -> u64 {
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

const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

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
fn ascii_word_end(bytes: &[u8], mut i: usize) -> usize {
    while i + 8 <= bytes.len() {
        let stop = !ascii_alnum(load8(bytes, i)) & HIGH;
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

struct BytesSink<F> {
    ascii: Vec<u8>,
    emit: F,
}

impl<F: FnMut(&[u8])> Sink for BytesSink<F> {
    fn ascii(&mut self, text: &[u8], start: usize, end: usize) {
        self.ascii.clear();
        self.ascii
            .extend(text[start..end].iter().map(|&c| c | 0x20));
        (self.emit)(&self.ascii);
    }

    fn word(&mut self, bytes: &[u8]) {
        (self.emit)(bytes);
    }
}

struct HashSink<F>(F);

/// Emits [`word_state`]s: word hashes before their finalizer.
impl<F: FnMut(u64)> Sink for HashSink<F> {
    #[inline(always)]
    fn ascii(&mut self, text: &[u8], start: usize, end: usize) {
        (self.0)(ascii_word_state(text, start, end));
    }

    fn word(&mut self, bytes: &[u8]) {
        (self.0)(word_state(bytes));
    }
}

/// Notes where each word is, for [`ascii_word_hashes`]: `start << 32 | end`.
struct PlaceSink<'a>(&'a mut Vec<u64>);

impl Sink for PlaceSink<'_> {
    #[inline(always)]
    fn ascii(&mut self, _: &[u8], start: usize, end: usize) {
        self.0.push((start as u64) << 32 | end as u64);
    }

    fn word(&mut self, _: &[u8]) {
        unreachable!("the ASCII tokenizer gives ASCII words only")
    }
}

/// Appends [`hash_word`] of every normalized word of `text`, in order, to
/// `words` and returns true, when `text` is pure ASCII and the CPU has
/// AVX-512 (BW and DQ); otherwise returns false with `words` untouched,
/// and [`for_each_word_hash`] gives the same hashes (tested).
///
/// Hashing one word at a time was half the time of tokenizing and hashing
/// (`cargo bench --bench step1_kernels -- normalize`: 573 µs per 256
/// documents; 262 µs in a build whose tokenizer emitted each word's place
/// instead of its hash). Here the tokenizer only notes where each word is,
/// then the words are hashed eight per vector instruction: shingling went
/// from 674 to 539 µs per 256 documents.
pub fn ascii_word_hashes(text: &str, words: &mut Vec<u64>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = text.as_bytes();
        // Places are packed in 32 bits and gathered at signed 32-bit offsets.
        if bytes.len() < i32::MAX as usize - 16
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && bytes.is_ascii()
        {
            let from = words.len();
            // SAFETY: the CPU supports AVX-512BW and DQ (and so F), checked
            // just above.
            unsafe { tokenize_ascii_avx512(bytes, &mut PlaceSink(words)) };
            // SAFETY: as above.
            unsafe { simd::hash_places_avx512(bytes, &mut words[from..]) };
            return true;
        }
    }
    let _ = (text, words);
    false
}

/// Calls `emit` with the bytes (UTF-8) of every normalized word of `text`,
/// in order. `buf` is scratch space.
pub fn for_each_word(text: &str, buf: &mut Vec<u8>, emit: impl FnMut(&[u8])) {
    let mut sink = BytesSink {
        ascii: Vec::new(),
        emit,
    };
    tokenize(text, buf, &mut sink);
}

/// Calls `emit` with [`hash_word`] of every normalized word of `text`, in
/// order, without copying pure-ASCII words. `buf` is scratch space, reused
/// across calls so that a record costs no allocation once it has grown.
pub fn for_each_word_hash(text: &str, buf: &mut Vec<u8>, mut emit: impl FnMut(u64)) {
    for_each_word_state(text, buf, |state| emit(fmix64(state)));
}

/// [`for_each_word_hash`] without the finalizer: `emit` gets each word's
/// [`word_state`], and `fmix64` of it is the word's [`hash_word`].
///
/// The finalizer is two dependent multiplies, the longest part of a
/// word's dependency chain; [`super::shingle::Scratch::shingle`] applies
/// it to all of a record's words at once, eight per vector instruction.
/// That took shingling (words and 5-grams) from 757 to 700 µs per 256
/// documents (`cargo bench --bench step1_kernels`).
pub fn for_each_word_state(text: &str, buf: &mut Vec<u8>, emit: impl FnMut(u64)) {
    tokenize(text, buf, &mut HashSink(emit));
}

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const LOWER: u64 = 0x2020_2020_2020_2020;

#[inline]
fn mix_chunk(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K2).rotate_left(31)
}

#[inline]
fn load8(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
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

/// [`word_state`] of the lowercased ASCII word `text[start..end]` (letters
/// and digits only), read straight from the text: eight-byte loads,
/// lowercased with `| 0x20`, the bytes past the word masked off.
#[inline(always)]
fn ascii_word_state(text: &[u8], start: usize, end: usize) -> u64 {
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

#[inline]
fn flush(buf: &mut Vec<u8>, sink: &mut impl Sink) {
    if !buf.is_empty() {
        sink.word(buf);
        buf.clear();
    }
}

fn push_char(buf: &mut Vec<u8>, c: char) {
    let mut utf8 = [0u8; 4];
    buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
}

fn non_ascii(c: char, buf: &mut Vec<u8>, sink: &mut impl Sink) {
    let cp = c as u32;
    if (0xFF01..=0xFF5E).contains(&cp) {
        // Full-width ASCII.
        match ASCII[(cp - 0xFEE0) as usize] {
            0 => flush(buf, sink),
            a => buf.push(a),
        }
        return;
    }
    if is_ignored(cp) {
        return;
    }
    if is_single(cp) {
        flush(buf, sink);
        push_char(buf, c);
        flush(buf, sink);
        return;
    }
    if !c.is_alphanumeric() {
        flush(buf, sink);
        return;
    }
    for lower in c.to_lowercase() {
        let folded = fold(lower);
        if folded.is_ascii() {
            buf.push(folded as u8);
        } else if !is_ignored(folded as u32) {
            push_char(buf, folded);
        }
    }
}

/// Characters dropped without ending a word: combining marks, zero-width
/// spaces and (non-)joiners, variation selectors, the soft hyphen, the
/// byte-order mark, skin-tone modifiers, tags.
fn is_ignored(cp: u32) -> bool {
    matches!(
        cp,
        0x00AD
            | 0x0300..=0x036F
            | 0x1AB0..=0x1AFF
            | 0x1DC0..=0x1DFF
            | 0x200B..=0x200D
            | 0x2060
            | 0x20D0..=0x20FF
            | 0xFE00..=0xFE0F
            | 0xFE20..=0xFE2F
            | 0xFEFF
            | 0x1F3FB..=0x1F3FF
            | 0xE0000..=0xE007F
            | 0xE0100..=0xE01EF
    )
}

/// Characters that are a word on their own: scripts written without spaces
/// (Thai, Lao, Myanmar, Khmer, Kana, Han) and emoji (pictographs, symbols,
/// dingbats, regional indicators).
fn is_single(cp: u32) -> bool {
    matches!(
        cp,
        0x0E00..=0x0EFF
            | 0x1000..=0x109F
            | 0x1780..=0x17FF
            | 0x2300..=0x23FF
            | 0x2600..=0x27BF
            | 0x2B00..=0x2BFF
            | 0x3040..=0x30FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xF900..=0xFAFF
            | 0xFF66..=0xFF9F
            | 0x1F000..=0x1FAFF
            | 0x20000..=0x3FFFF
    )
}

/// The normalized words of `text` as strings (for tests and inspection;
/// the job itself uses [`for_each_word`], which does not allocate).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for_each_word(text, &mut buf, |w| {
        out.push(String::from_utf8(w.to_vec()).expect("words are UTF-8"))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_punctuation_and_spacing_do_not_matter() {
        assert_eq!(
            words("Hello,   WORLD!\n\tfoo-bar"),
            ["hello", "world", "foo", "bar"]
        );
        assert_eq!(words("Ça VA"), words("ça va"));
        assert_eq!(words("  ...  "), Vec::<String>::new());
        assert_eq!(words(""), Vec::<String>::new());
    }

    #[test]
    fn accents_fold_the_same_in_nfc_and_nfd() {
        let nfc = words("Café CRÈME brûlée");
        assert_eq!(nfc, ["cafe", "creme", "brulee"]);
        assert_eq!(words("cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e"), nfc);
        assert_eq!(
            words("İstanbul ΆΝΘΡΩΠΟΣ Ёлка"),
            ["istanbul", "ανθρωποσ", "елка"]
        );
    }

    #[test]
    fn full_width_soft_hyphens_and_joiners() {
        assert_eq!(words("ＡＢＣ１２３！x"), ["abc123", "x"]);
        assert_eq!(words("infor\u{AD}mation"), ["information"]);
    }

    #[test]
    fn cjk_and_emoji_are_one_word_per_character() {
        assert_eq!(
            words("東京タワー is 🗼!"),
            ["東", "京", "タ", "ワ", "ー", "is", "🗼"]
        );
        assert_eq!(words("👍🏽 ok"), words("👍 ok"));
        assert_eq!(words("a👨\u{200D}👩b"), ["a", "👨", "👩", "b"]);
    }

    #[test]
    fn ascii_words_hash_like_their_normalized_bytes() {
        let text = "Hello WORLD 123abcDEFghiJKL x Mixed42Case café a1b2c3d4e5f6g7h8i9 Z";
        let mut hashes = Vec::new();
        for_each_word_hash(text, &mut Vec::new(), |h| hashes.push(h));
        let expected: Vec<u64> = words(text)
            .iter()
            .map(|w| hash_word(w.as_bytes()))
            .collect();
        assert_eq!(hashes, expected);
        // Words ending at the very end of the text, of every length.
        for len in 1..20 {
            let word = "Ab".repeat(len)[..len].to_string();
            let mut got = 0;
            for_each_word_hash(&word, &mut Vec::new(), |h| got = h);
            assert_eq!(got, hash_word(word.to_lowercase().as_bytes()), "{word}");
        }
    }

    #[test]
    fn the_ascii_fast_path_finds_the_words_of_the_general_path() {
        // The general path, forced: a non-ASCII character at the end that
        // is a separator of its own.
        let general = |t: &str| {
            let mut w = words(&format!("{t} \u{2014}"));
            w.retain(|w| !w.is_empty());
            w
        };
        let mut rng = crate::corpus::SplitMix64::new(11);
        let alphabet = b"aZ09 .,-\n\t!xyQ_~";
        for len in 0..300 {
            let text: String = (0..len)
                .map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize] as char)
                .collect();
            assert_eq!(words(&text), general(&text), "{text:?}");
            let mut hashes = Vec::new();
            for_each_word_hash(&text, &mut Vec::new(), |h| hashes.push(h));
            let expected: Vec<u64> = general(&text)
                .iter()
                .map(|w| hash_word(w.as_bytes()))
                .collect();
            assert_eq!(hashes, expected, "{text:?}");
        }
        // Words across block edges, and a block that is one word.
        let long = "x".repeat(63) + " " + &"Y".repeat(130) + ".a";
        assert_eq!(words(&long), general(&long));
    }

    #[test]
    fn vectorized_word_hashes_are_the_hash_of_every_word() {
        let mut rng = crate::corpus::SplitMix64::new(9);
        // Letters, digits and separators; words from 1 to 40 bytes, so some
        // are longer than 16, and texts that end in a word or not.
        let alphabet = b"aZk9Q0 .,-\n\t\"x";
        for round in 0..3000 {
            let len = (rng.next_u64() % 300) as usize;
            let mut text = String::new();
            while text.len() < len {
                let run = 1 + (rng.next_u64() % if round % 3 == 0 { 40 } else { 12 }) as usize;
                for _ in 0..run {
                    text.push(alphabet[(rng.next_u64() % 6) as usize] as char);
                }
                let sep = alphabet[6 + (rng.next_u64() % (alphabet.len() as u64 - 6)) as usize];
                text.push(sep as char);
            }
            if round % 2 == 0 {
                text.pop();
            }
            let mut expected = Vec::new();
            for_each_word_hash(&text, &mut Vec::new(), |h| expected.push(h));
            let mut got = vec![7];
            if ascii_word_hashes(&text, &mut got) {
                assert_eq!(got[0], 7, "appends");
                assert_eq!(&got[1..], &expected[..], "{text:?}");
            } else {
                assert_eq!(got, [7], "untouched");
            }
        }
        let mut got = Vec::new();
        assert!(!ascii_word_hashes("Ça va", &mut got), "not ASCII");
        assert!(got.is_empty());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            assert!(
                ascii_word_hashes("a b", &mut got),
                "this CPU takes the vector path"
            );
        }
    }

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
                    // SAFETY: checked just above.
                    let got = unsafe { simd::block_mask_avx512(block) };
                    assert_eq!(got, expected, "avx512, {block:?}");
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: checked just above.
                    let got = unsafe { simd::block_mask_avx2(block) };
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
