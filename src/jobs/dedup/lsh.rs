//! LSH banding's last step: from the band keys of every record, sorted
//! band by band, to the candidate pairs. A kernel: it knows band lists of
//! `key << 32 | record` entries and nothing of passes, files or
//! checkpoints; pass 1's Integrator ([`super::passes::signatures`]) fills
//! the lists and calls [`candidate_pairs`] when the pass ends.
//!
//! Records sharing a key in a band are candidate pairs, each with the
//! first record that had the key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The candidate pairs of the `bands` (each sorted by key in place):
/// `(first record with the key, record)` for every later record with it,
/// sorted by the later record, then the earlier one, without repeats.
///
/// Bands are independent, and the processors are idle once the pass ends,
/// so up to `threads` threads (the calling one included) each take the
/// next band not yet taken until none is left. A thread the system refuses
/// to start only means fewer of them.
pub fn candidate_pairs(bands: &mut [Vec<u64>], threads: usize) -> Vec<(u32, u32)> {
    let bands: Vec<Mutex<&mut Vec<u64>>> = bands.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let take_bands = || {
        let (mut pairs, mut scratch) = (Vec::new(), Vec::new());
        while let Some(band) = bands.get(next.fetch_add(1, Ordering::Relaxed)) {
            // Each band is taken by one thread only: never contended.
            let mut band = band.lock().expect("a band's lock");
            add_pairs(&mut band, &mut scratch, &mut pairs);
        }
        pairs
    };
    let mut pairs = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(bands.len()))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, take_bands)
                    .map_err(|e| log::warn!("sorting LSH bands on fewer threads: {e}"))
                    .ok()
            })
            .collect();
        let mut pairs = take_bands();
        for helper in helpers {
            // A panic is the Integrator's, as if it had sorted alone.
            pairs.extend(
                helper
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        pairs
    });
    pairs.sort_unstable_by_key(|&(earlier, later)| (later, earlier));
    pairs.dedup();
    pairs
}

/// Sorts `band` by key (through `scratch`) and appends its candidate pairs,
/// unsorted, to `pairs`.
fn add_pairs(band: &mut Vec<u64>, scratch: &mut Vec<u64>, pairs: &mut Vec<(u32, u32)>) {
    sort_by_key(band, scratch);
    for group in band.chunk_by(|a, b| a >> 32 == b >> 32) {
        let first = group[0] as u32;
        pairs.extend(group[1..].iter().map(|&entry| (first, entry as u32)));
    }
}

/// Sorts `entries` by their high 32 bits (the key), keeping the order of
/// equal keys (records stay in input order): a least-significant-digit
/// radix sort through `scratch`, three passes of 11 bits, with the counts
/// of all three taken in one pass over the entries. Four passes of 8 bits,
/// each counted on its own, went over the entries eight times, not four
/// (pass 1's Finishing at 200k documents, sort included: 28-30 ms before,
/// 26-28 ms after).
fn sort_by_key(entries: &mut Vec<u64>, scratch: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const DIGITS: usize = 1 << BITS;
    const SHIFTS: [u32; 3] = [32, 32 + BITS, 32 + 2 * BITS];
    let digit = |entry: u64, shift: u32| ((entry >> shift) as usize) & (DIGITS - 1);
    let mut starts = vec![[0usize; DIGITS]; SHIFTS.len()];
    for &entry in entries.iter() {
        for (counts, &shift) in starts.iter_mut().zip(&SHIFTS) {
            counts[digit(entry, shift)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(entries.len(), 0);
    for (start, &shift) in starts.iter_mut().zip(&SHIFTS) {
        let mut sum = 0;
        for slot in start.iter_mut() {
            (*slot, sum) = (sum, sum + *slot);
        }
        for &entry in entries.iter() {
            let d = digit(entry, shift);
            scratch[start[d]] = entry;
            start[d] += 1;
        }
        std::mem::swap(entries, scratch);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn sorted_bands_give_the_pairs_of_first_record_buckets() {
        let mut state = 1u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        // Keys from a small set, so that they repeat, spread over all four
        // bytes (every digit of the radix sort matters).
        let mut bands: Vec<Vec<u64>> = vec![Vec::new(); 5];
        let mut tables: Vec<HashMap<u32, u32>> = vec![HashMap::new(); 5];
        let mut expected = Vec::new();
        for id in 0..3000u32 {
            let mut partners = Vec::new();
            for (band, table) in bands.iter_mut().zip(&mut tables) {
                let key = (next() % 700).wrapping_mul(0x0101_0101);
                band.push(u64::from(key) << 32 | u64::from(id));
                // What a bucket table keeping each key's first record finds.
                match table.entry(key) {
                    Entry::Occupied(first) => partners.push(*first.get()),
                    Entry::Vacant(slot) => {
                        slot.insert(id);
                    }
                }
            }
            partners.sort_unstable();
            partners.dedup();
            expected.extend(partners.into_iter().map(|first| (first, id)));
        }
        assert!(expected.len() > 3000, "keys repeat: {}", expected.len());
        // Sorted by one thread or split among several, the same pairs.
        for threads in [1, 2, 3, 40] {
            let mut bands = bands.clone();
            assert_eq!(
                candidate_pairs(&mut bands, threads),
                expected,
                "{threads} threads"
            );
        }
    }
}
