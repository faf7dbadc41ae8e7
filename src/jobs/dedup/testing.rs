//! What the dedup module's unit tests share: the generator of their
//! random graphs and keys, one for all of them so that a seed means the
//! same case in every module and on every platform.

use crate::corpus::SplitMix64;

/// A seeded generator of test cases: [`SplitMix64`] with the draws the
/// tests make.
pub(crate) struct Rng(SplitMix64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
