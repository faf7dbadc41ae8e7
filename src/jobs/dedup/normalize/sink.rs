//! Where the tokenizer puts words: one trait, so that the same tokenizer
//! loop, monomorphized per sink, either copies words, hashes them, or
//! notes where they are, with no cost for the choice at run time.
//!
//! A leaf of the `normalize` modules: the Unicode rules and the tokenizers
//! both hand words to a sink, and neither imports the other for it.

/// Where the tokenizer puts words.
pub(super) trait Sink {
    /// A word made only of ASCII letters and digits, `text[start..end]`,
    /// not yet lowercased (lowercasing them is `| 0x20` on every byte).
    fn ascii(&mut self, text: &[u8], start: usize, end: usize);
    /// Any other word, normalized.
    fn word(&mut self, bytes: &[u8]);
}

/// Hands the word collected in `buf`, if any, to `sink`, and empties `buf`.
#[inline]
pub(super) fn flush(buf: &mut Vec<u8>, sink: &mut impl Sink) {
    if !buf.is_empty() {
        sink.word(buf);
        buf.clear();
    }
}
