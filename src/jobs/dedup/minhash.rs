//! MinHash signatures and LSH band keys: the cheap, parallel part of step
//! 1 that turns a record's shingle hashes into a few 32-bit keys, equal
//! for two records with a probability that grows steeply with their
//! Jaccard similarity.
//!
//! Permutation `i` maps a shingle hash `h` to `a_i * lo32(h) + b_i (mod
//! 2^32)` with odd `a_i`: wrapping `u32` arithmetic over 32-bit lanes, a
//! loop the compiler vectorizes. The kernel takes the permutations 32 at a
//! time (a `[u32; 32]` accumulator that lives in vector registers), loops
//! over the shingles, and inside that over the 32 permutations, taking the
//! lane-wise minimum. On x86-64 the same code is also compiled for AVX2
//! and AVX-512 registers, and the widest the CPU has is picked at run time
//! ([`Kernel`]).

use crate::corpus::SplitMix64;

use super::hash::fmix64;
use super::params::Banding;

/// Permutations computed together (one accumulator block).
const LANES: usize = 32;

/// Band keys kept inline (more spill to the heap).
const INLINE_BANDS: usize = 32;

/// A family of MinHash permutations.
#[derive(Debug, Clone)]
pub struct MinHasher {
    len: usize,
    /// Multipliers (odd), padded to a multiple of [`LANES`].
    a: Vec<u32>,
    /// Offsets, padded like `a`.
    b: Vec<u32>,
}

impl MinHasher {
    /// `len` permutations drawn from `seed`. The same seed always gives the
    /// same permutations (signatures are comparable across runs).
    pub fn new(len: usize, seed: u64) -> Self {
        let padded = len.div_ceil(LANES).max(1) * LANES;
        let mut rng = SplitMix64::new(seed);
        let mut a = Vec::with_capacity(padded);
        let mut b = Vec::with_capacity(padded);
        for _ in 0..padded {
            a.push((rng.next_u64() >> 32) as u32 | 1);
            b.push((rng.next_u64() >> 32) as u32);
        }
        MinHasher { len, a, b }
    }

    /// Number of permutations (values per signature).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the signature is empty (never: at least one permutation).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The MinHash signature of a non-empty bag of shingle hashes into
    /// `sig` (resized; its first [`MinHasher::len`] values are the
    /// signature). Repeats in `hashes` do not change the result.
    pub fn signature(&self, hashes: &[u64], sig: &mut Vec<u32>) {
        self.signature_with(Kernel::detect(), hashes, sig);
    }

    /// [`MinHasher::signature`] with a given kernel (benchmarks, tests).
    /// Panics if the CPU cannot run it.
    pub fn signature_with(&self, kernel: Kernel, hashes: &[u64], sig: &mut Vec<u32>) {
        sig.clear();
        sig.resize(self.a.len(), u32::MAX);
        kernel.run(hashes, &self.a, &self.b, sig);
        sig.truncate(self.len);
    }
}

/// The builds of the MinHash kernel; [`Kernel::detect`] picks the widest
/// the CPU supports. Every one gives the same signatures (tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Compiled for the build's baseline target (SSE2 on x86-64).
    Portable,
    /// 256-bit registers: 8 permutations per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 512-bit registers: 16 permutations per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The widest kernel this CPU runs (checked once, then cached by the
    /// standard library's feature detection).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Every kernel this CPU can run, the portable one first.
    pub fn available() -> Vec<Self> {
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        kernels
    }

    /// Runs this kernel. Panics if the CPU does not support it (only
    /// kernels from [`Kernel::detect`] or [`Kernel::available`] are used).
    fn run(self, hashes: &[u64], a: &[u32], b: &[u32], sig: &mut [u32]) {
        match self {
            Kernel::Portable => kernel(hashes, a, b, sig),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                assert!(std::arch::is_x86_feature_detected!("avx2"));
                // SAFETY: the function is compiled for AVX2, which the CPU
                // supports, asserted just above.
                unsafe { kernel_avx2(hashes, a, b, sig) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                assert!(std::arch::is_x86_feature_detected!("avx512f"));
                // SAFETY: the function is compiled for AVX-512F, which the
                // CPU supports, asserted just above.
                unsafe { kernel_avx512(hashes, a, b, sig) }
            }
        }
    }
}

/// The MinHash kernel: for each block of [`LANES`] permutations, the
/// minimum over the shingles of `a * lo32(h) + b`, lane by lane.
#[inline(always)]
fn kernel(hashes: &[u64], a: &[u32], b: &[u32], sig: &mut [u32]) {
    for ((sig, a), b) in sig
        .chunks_exact_mut(LANES)
        .zip(a.chunks_exact(LANES))
        .zip(b.chunks_exact(LANES))
    {
        let a: &[u32; LANES] = a.try_into().expect("a full block");
        let b: &[u32; LANES] = b.try_into().expect("a full block");
        let mut acc = [u32::MAX; LANES];
        for &h in hashes {
            let x = h as u32;
            for l in 0..LANES {
                acc[l] = acc[l].min(a[l].wrapping_mul(x).wrapping_add(b[l]));
            }
        }
        sig.copy_from_slice(&acc);
    }
}

/// [`kernel`] compiled for AVX2 (a safe function: only its callers without
/// AVX2 enabled need `unsafe`, having checked the CPU).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn kernel_avx2(hashes: &[u64], a: &[u32], b: &[u32], sig: &mut [u32]) {
    kernel(hashes, a, b, sig)
}

/// [`kernel`] compiled for AVX-512 (the 32-lane accumulator is two 512-bit
/// registers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn kernel_avx512(hashes: &[u64], a: &[u32], b: &[u32], sig: &mut [u32]) {
    kernel(hashes, a, b, sig)
}

/// The LSH band keys of one record: one 32-bit key per band, hashed from
/// the band's rows and its number. Empty for a record without shingles.
///
/// 32 bits, not 64: the Integrator's band lists take less memory (a key
/// and a record in 8 bytes).
/// Two records share a key by accident with probability 2^-32 per band: at
/// 200,000 records about 80 spurious candidate pairs, at a million about
/// two thousand, all rejected by the exact verification. (A band key whose
/// first record is such an accident still pairs every later record with
/// it, so a true pair that collides in that band only would be missed:
/// negligible next to the banding's own miss rate, and measured by the
/// accuracy tests.)
/// Up to 32 keys are kept inline, so a record's keys cost no allocation
/// with the usual parameters.
#[derive(Debug, Clone)]
pub struct BandKeys {
    len: usize,
    inline: [u32; INLINE_BANDS],
    spill: Vec<u32>,
}

impl BandKeys {
    /// No keys: a record without shingles.
    pub fn empty() -> Self {
        BandKeys {
            len: 0,
            inline: [0; INLINE_BANDS],
            spill: Vec::new(),
        }
    }

    /// The keys of the signature `sig` cut into `banding`'s bands.
    pub fn of_signature(sig: &[u32], banding: Banding) -> Self {
        let mut keys = BandKeys::empty();
        keys.len = banding.bands;
        if banding.bands > INLINE_BANDS {
            keys.spill.reserve_exact(banding.bands);
        }
        for (band, rows) in sig[..banding.signature_len()]
            .chunks_exact(banding.rows)
            .enumerate()
        {
            let mut h = (band as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for &v in rows {
                h = (h.rotate_left(29) ^ u64::from(v)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            }
            // The high half of the finalized hash (all bits are mixed).
            let key = (fmix64(h) >> 32) as u32;
            if banding.bands > INLINE_BANDS {
                keys.spill.push(key);
            } else {
                keys.inline[band] = key;
            }
        }
        keys
    }

    /// The keys, band by band.
    pub fn as_slice(&self) -> &[u32] {
        if self.len > INLINE_BANDS {
            &self.spill
        } else {
            &self.inline[..self.len]
        }
    }

    /// True for a record without shingles.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys given band by band ([`BandKeys::as_slice`] of another value;
    /// a remote worker's answer).
    pub fn from_keys(keys: &[u32]) -> Self {
        let mut out = BandKeys::empty();
        out.len = keys.len();
        if keys.len() > INLINE_BANDS {
            out.spill = keys.to_vec();
        } else {
            out.inline[..keys.len()].copy_from_slice(keys);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portable(hasher: &MinHasher, hashes: &[u64]) -> Vec<u32> {
        (0..hasher.len())
            .map(|i| {
                hashes
                    .iter()
                    .map(|&h| hasher.a[i].wrapping_mul(h as u32).wrapping_add(hasher.b[i]))
                    .min()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_kernel_matches_the_definition() {
        let hasher = MinHasher::new(100, 7);
        let mut rng = SplitMix64::new(1);
        let hashes: Vec<u64> = (0..257).map(|_| rng.next_u64()).collect();
        let mut sig = Vec::new();
        hasher.signature(&hashes, &mut sig);
        assert_eq!(sig.len(), 100);
        assert_eq!(sig, portable(&hasher, &hashes));
    }

    #[test]
    fn every_kernel_gives_the_same_signatures() {
        let hasher = MinHasher::new(128, 9);
        let mut rng = SplitMix64::new(4);
        for len in [1, 2, 7, 31, 300, 1000] {
            let hashes: Vec<u64> = (0..len).map(|_| rng.next_u64()).collect();
            let expected = portable(&hasher, &hashes);
            for k in Kernel::available() {
                let mut sig = Vec::new();
                hasher.signature_with(k, &hashes, &mut sig);
                assert_eq!(sig, expected, "{k:?}, {len} hashes");
            }
        }
    }

    #[test]
    fn signatures_estimate_jaccard() {
        // Two sets of 1000 random hashes sharing 600: J = 600 / 1400.
        let mut rng = SplitMix64::new(2);
        let common: Vec<u64> = (0..600).map(|_| rng.next_u64()).collect();
        let mut x = common.clone();
        let mut y = common;
        x.extend((0..400).map(|_| rng.next_u64()));
        y.extend((0..400).map(|_| rng.next_u64()));
        let hasher = MinHasher::new(4096, 3);
        let (mut sx, mut sy) = (Vec::new(), Vec::new());
        hasher.signature(&x, &mut sx);
        hasher.signature(&y, &mut sy);
        let agree = sx.iter().zip(&sy).filter(|(a, b)| a == b).count();
        let estimate = agree as f64 / 4096.0;
        let exact = 600.0 / 1400.0;
        // Standard deviation sqrt(J(1-J)/4096) ~ 0.0077.
        assert!((estimate - exact).abs() < 0.03, "{estimate} vs {exact}");
    }

    #[test]
    fn band_keys_differ_by_band_and_rows() {
        let banding = Banding { bands: 3, rows: 2 };
        let keys = BandKeys::of_signature(&[1, 2, 1, 2, 3, 4], banding);
        let k = keys.as_slice();
        assert_eq!(k.len(), 3);
        assert_ne!(k[0], k[1], "the band number is part of the key");
        let many = Banding { bands: 40, rows: 1 };
        let keys = BandKeys::of_signature(&[5; 40], many);
        assert_eq!(keys.as_slice().len(), 40);
    }
}
