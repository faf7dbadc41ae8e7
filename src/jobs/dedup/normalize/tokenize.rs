//! The tokenizers: text in, normalized words out to a [`Sink`].
//!
//! Two loops, because most text of most corpora is pure ASCII and a word
//! of it needs no more than `| 0x20` per byte. The general loop
//! ([`tokenize`]) walks characters and applies the [`super::rules`]; the
//! ASCII loop ([`tokenize_ascii`]) never looks at a byte on its own: it
//! classifies 64-byte blocks into bit masks ([`super::classify`]) and
//! visits the edges of the words with a bit scan. The ASCII loop is built
//! once per classifier (SWAR, AVX2, AVX-512) and the fastest the CPU runs
//! is picked on every call (the standard library caches the detection).

use super::classify::{ascii_word_end, block_mask, BLOCK};
#[cfg(target_arch = "x86_64")]
use super::classify::{block_mask_avx2, block_mask_avx512};
use super::rules::{non_ascii, ASCII};
use super::sink::{flush, Sink};

/// Splits `text` into normalized words for `sink`. ASCII letters and
/// digits are scanned as runs; a run that is a whole word goes to the sink
/// as a slice of the text, without copying. `buf` collects words that
/// need more work (non-ASCII characters).
pub(super) fn tokenize(text: &str, buf: &mut Vec<u8>, sink: &mut impl Sink) {
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

/// [`tokenize`] for pure-ASCII text, where a word is a maximal run of ASCII
/// letters and digits, with the fastest block classifier the CPU has: one
/// AVX-512 compare per 64 bytes, two AVX2 compares per 32, or eight SWAR
/// steps ([`block_mask`]). All give the same masks (tested), so the same
/// words.
fn tokenize_ascii(bytes: &[u8], sink: &mut impl Sink) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the function is compiled for AVX-512F and BW, and the
            // CPU supports both: BW, checked just above, implies F.
            return unsafe { tokenize_ascii_avx512(bytes, sink) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the function is compiled for AVX2, which the CPU
            // supports, checked just above.
            return unsafe { tokenize_ascii_avx2(bytes, sink) };
        }
    }
    tokenize_ascii_with(bytes, sink, block_mask)
}

/// [`tokenize_ascii`] with the AVX-512 classifier. `bytes` must be ASCII.
/// A safe function: a caller without these features enabled calls it in
/// `unsafe`, having checked the CPU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn tokenize_ascii_avx512(bytes: &[u8], sink: &mut impl Sink) {
    // The closure inherits this function's target features.
    tokenize_ascii_with(bytes, sink, |block| block_mask_avx512(block))
}

/// [`tokenize_ascii`] with the AVX2 classifier. `bytes` must be ASCII.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tokenize_ascii_avx2(bytes: &[u8], sink: &mut impl Sink) {
    tokenize_ascii_with(bytes, sink, |block| block_mask_avx2(block))
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
