//! Word n-gram shingles and their 64-bit hashes: what MinHash samples and
//! what the exact Jaccard similarity is computed over.
//!
//! A record's shingles are its normalized words (see [`super::normalize`])
//! taken `n` at a time, each hashed to a well-mixed 64-bit value. The rule
//! for short records: a record of `1..n` words has exactly one shingle, its
//! whole word sequence (so two short records are duplicates only when
//! their normalized words are identical); a record with no word at all has
//! no shingle and is never anyone's duplicate (Jaccard similarity of an
//! empty set is taken as 0, see [`super::similarity::jaccard`]).

use std::cell::RefCell;

pub use super::hash::hash_word;
use super::hash::{fmix64, word_state, K1};
use super::normalize::{ascii_word_hashes, for_each_word_state};

const SHINGLE_SEED: u64 = 0x5348_494E_474C_4531;

/// The hash of a shingle from the hashes of its words, in order. The number
/// of words is mixed in, so a short record's single shingle never equals an
/// `n`-word shingle.
#[inline]
pub fn hash_shingle(words: &[u64]) -> u64 {
    let mut h = SHINGLE_SEED ^ words.len() as u64;
    for &w in words {
        h = (h.rotate_left(23) ^ w).wrapping_mul(K1);
    }
    fmix64(h)
}

/// Reusable buffers for shingling, so a record costs no allocation once
/// they have grown.
#[derive(Debug, Default)]
pub struct Scratch {
    word: Vec<u8>,
    words: Vec<u64>,
    /// The shingle hashes of the last record shingled (with repeats).
    pub shingles: Vec<u64>,
    /// Room for a MinHash signature.
    pub signature: Vec<u32>,
    /// The counts of [`sort_hashes_into`].
    counts: Vec<u32>,
}

impl Scratch {
    /// Fills `self.shingles` with the hashes of the `ngram`-word shingles
    /// of `text`, in text order, repeats included.
    pub fn shingle(&mut self, text: &str, ngram: usize) {
        let Scratch {
            word,
            words,
            shingles,
            ..
        } = self;
        words.clear();
        shingles.clear();
        if !ascii_word_hashes(text, words) {
            for_each_word_state(text, word, |state| words.push(state));
            finalize_words(words);
        }
        if words.is_empty() {
            return;
        }
        let n = ngram.clamp(1, words.len());
        hash_windows(words, n, shingles);
    }
}

/// Shingles hashed together: one 512-bit register of 64-bit lanes.
const LANES: usize = 8;

/// Appends [`hash_shingle`] of every `n`-word window of `words` to `out`,
/// with the widest vector multiply the CPU has (AVX-512DQ multiplies eight
/// 64-bit lanes at once; the build's baseline target has no 64-bit vector
/// multiply). The hashes are those of [`hash_shingle`], whatever the path.
pub fn hash_windows(words: &[u64], n: usize, out: &mut Vec<u64>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the function is compiled for AVX-512F and DQ, and the CPU
        // supports both: DQ, checked just above, implies F.
        return unsafe { hash_windows_avx512(words, n, out) };
    }
    hash_windows_portable(words, n, out)
}

/// Turns word states ([`super::hash::word_state`]) into word hashes
/// ([`hash_word`]) in place: `fmix64` of each, eight lanes at a time where
/// the CPU has AVX-512DQ.
pub fn finalize_words(words: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the function is compiled for AVX-512F and DQ, and the CPU
        // supports both: DQ, checked just above, implies F.
        return unsafe { finalize_words_avx512(words) };
    }
    finalize_words_portable(words)
}

/// [`finalize_words_portable`] compiled for AVX-512DQ, which multiplies
/// eight 64-bit lanes in one instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn finalize_words_avx512(words: &mut [u64]) {
    finalize_words_portable(words)
}

/// [`finalize_words`] as a plain loop, which the compiler vectorizes for
/// the target features of its caller.
#[inline(always)]
fn finalize_words_portable(words: &mut [u64]) {
    for w in words {
        *w = fmix64(*w);
    }
}

/// [`hash_windows_portable`] compiled for AVX-512DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn hash_windows_avx512(words: &[u64], n: usize, out: &mut Vec<u64>) {
    hash_windows_portable(words, n, out)
}

/// [`hash_windows`] written lane-wise, [`LANES`] windows at a time, so the
/// compiler vectorizes it for the target features of its caller.
#[inline(always)]
fn hash_windows_portable(words: &[u64], n: usize, out: &mut Vec<u64>) {
    if n == 0 || words.len() < n {
        return;
    }
    let count = words.len() + 1 - n;
    let start = out.len();
    out.resize(start + count, 0);
    let dst = &mut out[start..];
    let seed = SHINGLE_SEED ^ n as u64;
    let mut i = 0;
    while i + LANES <= count {
        let mut h = [seed; LANES];
        for j in 0..n {
            let w: &[u64; LANES] = words[i + j..i + j + LANES].try_into().expect("LANES words");
            for k in 0..LANES {
                h[k] = (h[k].rotate_left(23) ^ w[k]).wrapping_mul(K1);
            }
        }
        for k in 0..LANES {
            dst[i + k] = fmix64(h[k]);
        }
        i += LANES;
    }
    for (k, slot) in dst.iter_mut().enumerate().skip(i) {
        *slot = hash_shingle(&words[k..k + n]);
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers.
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// The shingle set of `text`: the hashes of its `ngram`-word shingles,
/// sorted and without repeats. Two texts' exact Jaccard similarity is
/// computed on these sets (exact up to 64-bit hash collisions).
pub fn shingle_set(text: &str, ngram: usize) -> Vec<u64> {
    with_scratch(|s| {
        s.shingle(text, ngram);
        let mut set = Vec::with_capacity(s.shingles.len());
        sort_hashes_into(&s.shingles, &mut s.counts, &mut set);
        set.dedup();
        set
    })
}

/// The shingle set of a record whose normalized words, separated by
/// spaces, are `words` ([`super::normalize::normalized_words`]): exactly
/// [`shingle_set`] of its text, each word hashed from the same bytes.
pub fn shingle_set_of_words(words: &[u8], ngram: usize) -> Vec<u64> {
    if words.is_empty() {
        return Vec::new();
    }
    let mut hashes: Vec<u64> = words.split(|&b| b == b' ').map(word_state).collect();
    finalize_words(&mut hashes);
    let mut shingles = Vec::new();
    hash_windows(&hashes, ngram.clamp(1, hashes.len()), &mut shingles);
    let mut set = Vec::with_capacity(shingles.len());
    sort_hashes_into(&shingles, &mut Vec::new(), &mut set);
    set.dedup();
    set
}

/// The most hashes [`sort_hashes_into`] sorts by counting.
const MOST_COUNTED: usize = 2047;
/// The most hashes of one bucket it puts in order by insertion (about one
/// is expected).
const MOST_IN_A_BUCKET: u32 = 16;

/// `hashes`, sorted, in `out` (cleared first); `counts` is scratch space.
///
/// The hashes are well mixed, so one counting pass on their top bits, with
/// about one bucket per hash, leaves only a few values out of order (runs
/// of two or three with the same top bits), which insertion puts in place.
/// For a record's ~300 shingles that takes 307 µs per 256 records against
/// 521 µs for a comparison sort (`cargo bench --bench step1_kernels --
/// sort`), and pass 2 sorts the shingles of every candidate record. Few
/// or many hashes, or badly mixed ones (a bucket of more than
/// `MOST_IN_A_BUCKET`), are sorted by comparison.
pub fn sort_hashes_into(hashes: &[u64], counts: &mut Vec<u32>, out: &mut Vec<u64>) {
    out.clear();
    let n = hashes.len();
    let compare = |out: &mut Vec<u64>| {
        out.extend_from_slice(hashes);
        out.sort_unstable();
    };
    if !(64..=MOST_COUNTED).contains(&n) {
        return compare(out);
    }
    let bits = usize::BITS - n.leading_zeros();
    let shift = 64 - bits;
    counts.clear();
    counts.resize(1 << bits, 0);
    for &h in hashes {
        counts[(h >> shift) as usize] += 1;
    }
    let (mut sum, mut largest) = (0, 0);
    for count in counts.iter_mut() {
        largest = largest.max(*count);
        (*count, sum) = (sum, sum + *count);
    }
    if largest > MOST_IN_A_BUCKET {
        return compare(out);
    }
    out.resize(n, 0);
    for &h in hashes {
        let slot = &mut counts[(h >> shift) as usize];
        out[*slot as usize] = h;
        *slot += 1;
    }
    // Values of different buckets are in order already: a value moves back
    // only past values of its own bucket (rarely, so the branch predicts).
    for i in 1..n {
        let value = out[i];
        let mut at = i;
        while at > 0 && out[at - 1] > value {
            out[at] = out[at - 1];
            at -= 1;
        }
        out[at] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_normalized_words_give_back_its_shingle_set_exactly() {
        use crate::jobs::dedup::normalize::normalized_words;
        let texts = [
            "",
            "one",
            "Two words",
            "  The quick, brown FOX -- jumps over the lazy dog; the quick brown fox!  ",
            "Ça VA? café CAFÉ cafe\u{301} naïve Ｆｕｌｌ－ｗｉｄｔｈ １２３ straße İstanbul ΣΊΣΥΦΟΣ",
            "日本語のテキストと English mixed 😀👍🏽 emoji zero\u{200d}width so\u{ad}ft",
            "a a a a a a a a a a a a a a a a a a a a a a a a",
        ];
        let long: String = (0..600).map(|i| format!("w{} ", i * 7919 % 1000)).collect();
        for text in texts.iter().copied().chain([long.as_str()]) {
            let words = normalized_words(text);
            for ngram in [1, 2, 5, 9] {
                assert_eq!(
                    shingle_set_of_words(&words, ngram),
                    shingle_set(text, ngram),
                    "{text:?}, {ngram}-grams"
                );
            }
        }
    }

    #[test]
    fn hashes_sort_as_a_comparison_sort_sorts_them() {
        let mut state = 0x00DD_BA11_u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            fmix64(state)
        };
        let (mut counts, mut out) = (Vec::new(), Vec::new());
        for len in [0, 1, 2, 63, 64, 65, 300, 1024, 2047, 2048, 5000] {
            // Well mixed; with repeats; with the same top bits (one bucket:
            // sorted by comparison); in descending order.
            let mixed: Vec<u64> = (0..len).map(|_| next()).collect();
            let repeats: Vec<u64> = mixed.iter().map(|h| (h % 7) << 61).collect();
            let same_top: Vec<u64> = mixed.iter().map(|h| (h >> 20) | (0xABCD << 48)).collect();
            let mut descending = mixed.clone();
            descending.sort_unstable_by(|a, b| b.cmp(a));
            for hashes in [mixed, repeats, same_top, descending] {
                sort_hashes_into(&hashes, &mut counts, &mut out);
                let mut expected = hashes.clone();
                expected.sort_unstable();
                assert_eq!(out, expected, "{len} hashes");
            }
        }
    }

    #[test]
    fn a_text_of_m_words_has_m_minus_n_plus_one_shingles() {
        let mut s = Scratch::default();
        s.shingle("a b c d e f g", 5);
        assert_eq!(s.shingles.len(), 3);
        s.shingle("a b c", 5);
        assert_eq!(s.shingles.len(), 1, "a short record is one shingle");
        s.shingle(" ,. ", 5);
        assert!(s.shingles.is_empty());
    }

    #[test]
    fn every_path_hashes_windows_as_hash_shingle_does() {
        let mut state = 0x1234_5678_9ABC_DEF0u64;
        let words: Vec<u64> = (0..70)
            .map(|_| {
                state = fmix64(state.wrapping_add(K1));
                state
            })
            .collect();
        for len in 0..words.len() {
            for n in 1..=9 {
                let words = &words[..len];
                let expected: Vec<u64> = words.windows(n).map(hash_shingle).collect();
                let mut portable = vec![7];
                hash_windows_portable(words, n, &mut portable);
                assert_eq!(portable[0], 7, "appends");
                assert_eq!(
                    portable[1..],
                    expected[..],
                    "portable, {len} words, n = {n}"
                );
                let mut dispatched = Vec::new();
                hash_windows(words, n, &mut dispatched);
                assert_eq!(dispatched, expected, "dispatched, {len} words, n = {n}");
            }
        }
    }

    #[test]
    fn shingles_are_hash_shingle_of_the_hash_word_of_each_word() {
        let texts = [
            "The quick brown fox jumps over the lazy dog, twice: THE QUICK brown fox.",
            "Ça va? Très bien, merci. Straße 12 東京 emoji 🎉 done",
            "short",
            "a1 b2 c3 d4 e5 f6 g7 h8 i9 j10 k11 l12 m13 n14 o15 p16 q17 r18",
        ];
        let mut scratch = Scratch::default();
        for text in texts {
            let mut hashes = Vec::new();
            super::super::normalize::for_each_word(text, &mut Vec::new(), |w| {
                hashes.push(hash_word(w))
            });
            for n in 1..=6 {
                let n_used = n.min(hashes.len());
                let expected: Vec<u64> = hashes.windows(n_used).map(hash_shingle).collect();
                scratch.shingle(text, n);
                assert_eq!(scratch.shingles, expected, "{text:?}, n = {n}");
            }
        }
    }

    #[test]
    fn every_path_finalizes_words_as_fmix64_does() {
        for len in 0..40u64 {
            let states: Vec<u64> = (0..len).map(|i| i.wrapping_mul(K1) ^ len).collect();
            let expected: Vec<u64> = states.iter().map(|&s| fmix64(s)).collect();
            let mut portable = states.clone();
            finalize_words_portable(&mut portable);
            assert_eq!(portable, expected, "portable, {len} words");
            let mut dispatched = states.clone();
            finalize_words(&mut dispatched);
            assert_eq!(dispatched, expected, "dispatched, {len} words");
        }
    }

    #[test]
    fn shingles_depend_on_word_order_and_count() {
        let set = |t| shingle_set(t, 2);
        assert_ne!(set("a b"), set("b a"));
        assert_eq!(set("a b a b"), set("a b a b a b"), "repeats collapse");
        assert_ne!(shingle_set("a b", 3), shingle_set("a b c", 3));
        // The short record's shingle is not any 2-word shingle.
        assert!(shingle_set("x", 2)
            .iter()
            .all(|h| !shingle_set("x x", 2).contains(h)));
    }

    /// Texts over letters, digits, separators, accented letters, combining
    /// marks, full-width forms, CJK and emoji, with words over 16 bytes.
    fn mixed_texts() -> Vec<String> {
        const PIECES: [&str; 24] = [
            "a", "Z", "k", "9", "Q", "0", "x", "Ab", " ", " ", ".", ",", "-", "\n", "é",
            "E\u{301}", "Ｆ", "東", "🎉", "ß", "\u{AD}", "İ", "Ё", "\u{200D}",
        ];
        let mut state = 0x5EED_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        (0..400)
            .map(|round| {
                let len = next() % 600;
                let ascii_only = round % 2 == 0;
                let pieces = if ascii_only { 14 } else { PIECES.len() };
                let mut text = String::new();
                while text.len() < len {
                    let run = 1 + next() % if round % 3 == 0 { 40 } else { 8 };
                    for _ in 0..run {
                        text.push_str(PIECES[next() % 8.min(pieces)]);
                    }
                    text.push_str(PIECES[8 + next() % (pieces - 8)]);
                }
                text
            })
            .collect()
    }

    #[test]
    fn word_and_shingle_hashes_stay_those_of_earlier_builds() {
        // Which records are duplicates, and every saved state, depend on
        // these hashes. The digests were computed by the build before the
        // tokenizer was split into modules (commit 6d44350).
        let (mut words, mut shingles) = (0u64, 0u64);
        let mut scratch = Scratch::default();
        let mut buf = Vec::new();
        for text in mixed_texts() {
            super::super::normalize::for_each_word_hash(&text, &mut buf, |h| {
                words = words.rotate_left(5) ^ h;
            });
            for n in [1, 5] {
                scratch.shingle(&text, n);
                for &h in &scratch.shingles {
                    shingles = shingles.rotate_left(5) ^ h;
                }
            }
        }
        assert_eq!(words, 0x4744_8e7f_e9ce_4c24, "word hashes");
        assert_eq!(shingles, 0x0899_1551_2bb0_f627, "shingle hashes");
    }
}
