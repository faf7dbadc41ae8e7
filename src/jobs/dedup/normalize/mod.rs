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
//!   (Latin, Greek, Cyrillic; [`fold::FOLD`], generated from the
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
//!
//! The modules, by responsibility, each importing only those before it:
//! `sink` (where words go), `fold` and `rules` (the rules above, for one
//! character), `classify` (which bytes of a 64-byte block are ASCII
//! letters or digits: SWAR, AVX2, AVX-512), `tokenize` (the loops that
//! turn text into words), `ascii_hash` and `ascii_hash_avx512` (the word
//! hash of an ASCII word read in place, one or eight at a time). This
//! module holds the entry points and the sinks they choose; the hash
//! itself is [`super::hash`], shared with shingling.

mod ascii_hash;
#[cfg(target_arch = "x86_64")]
mod ascii_hash_avx512;
mod classify;
pub mod fold;
mod rules;
mod sink;
mod tokenize;

/// Version of what turns a text into words and their hashes: the rules
/// above, [`super::hash`] and the shingle hashes built on them
/// ([`super::shingle`]). Bump it on any change that can give a text other
/// shingles: a saved index ([`super::index`]) records it and is refused by
/// a run of another version, whose band keys and shingle sets would not
/// match the index's.
pub const NORMALIZATION_VERSION: u32 = 1;

use super::hash::fmix64;
pub use super::hash::{hash_word, word_state};
use ascii_hash::ascii_word_state;
use sink::Sink;
use tokenize::tokenize;

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
#[cfg(target_arch = "x86_64")]
struct PlaceSink<'a>(&'a mut Vec<u64>);

#[cfg(target_arch = "x86_64")]
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
            // SAFETY: the function is compiled for AVX-512F and BW, and the
            // CPU supports both: BW, checked just above, implies F.
            unsafe { tokenize::tokenize_ascii_avx512(bytes, &mut PlaceSink(words)) };
            // SAFETY: the function is compiled for AVX-512F and DQ, and the
            // CPU supports both: DQ, checked just above, implies F.
            unsafe { ascii_hash_avx512::hash_places_avx512(bytes, &mut words[from..]) };
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

/// The normalized words of `text`, separated by one space (a word is
/// alphanumeric, never a space): what a saved index keeps of a record for
/// exact verification, since hashing these bytes again gives the record's
/// word hashes ([`super::shingle::shingle_set_of_words`]).
pub fn normalized_words(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = Vec::new();
    for_each_word(text, &mut buf, |word| {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    });
    out
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
}
