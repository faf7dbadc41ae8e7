//! The normalization rules for characters, one at a time: ASCII through a
//! 128-entry table, every other character through the Unicode rules of
//! [`super`]'s module documentation (full-width forms, ignored characters,
//! one-character words, lowercase and diacritic folding).
//!
//! Kept apart from the tokenizers because the rules are what a reader
//! checks against the documentation, while the tokenizers are about speed;
//! the ASCII tokenizers must find the words these rules give (tested).

use super::fold::fold;
use super::sink::{flush, Sink};

/// Lowercased ASCII letters and digits; 0 for every other ASCII byte (a
/// separator).
pub(super) const ASCII: [u8; 128] = {
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

fn push_char(buf: &mut Vec<u8>, c: char) {
    let mut utf8 = [0u8; 4];
    buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
}

/// Applies the rules to the non-ASCII character `c`: appends what it
/// becomes to the word in `buf`, or ends that word (to `sink`), or both
/// (a one-character word), or nothing (an ignored character).
pub(super) fn non_ascii(c: char, buf: &mut Vec<u8>, sink: &mut impl Sink) {
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
