//! A growable bit set over record indices: one bit per input record, the
//! smallest way to remember which records were integrated, are candidates
//! or were removed.

/// A set of `u64` indices, one bit each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `i`.
    pub fn insert(&mut self, i: u64) {
        let word = (i / 64) as usize;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (i % 64);
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Number of members.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(at, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(at as u64 * 64 + u64::from(bit))
            })
        })
    }

    /// The bits, 64 indices per word from index 0 (for checkpoints).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// The set whose bits are `words`, as [`BitSet::words`] gave them.
    pub fn from_words(words: Vec<u64>) -> Self {
        BitSet { words }
    }

    /// Bytes of memory it holds.
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_back_in_order() {
        let mut s = BitSet::new();
        for i in [200, 3, 64, 63, 0] {
            s.insert(i);
        }
        assert!(s.contains(64) && !s.contains(65) && !s.contains(10_000));
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 3, 63, 64, 200]);
        assert_eq!(s.count(), 5);
    }
}
