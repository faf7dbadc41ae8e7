//! Guarantee: candidate generation keeps the promise `--explain` prints,
//! `P(candidate | J) = 1 - (1 - J^r)^b`, on chains of near-duplicates, not
//! only on independent pairs.
//!
//! The corpus is three chains of 1,000 records. Each record is a window of
//! 204 words sliding 16 words along a sequence of distinct words, so with
//! 5-word shingles each record has exact J = 184/216 (0.852) with the next,
//! J < 0.8 with the one after, and the far ends share nothing: a chain is a
//! path of pairs above the threshold, and a pair that is not verified cuts
//! it in two clusters. The records are shuffled.
//!
//! Checked, with the job's own shingles and band keys:
//! - every adjacent pair that shares a band key (what the curve counts)
//!   ends in one cluster;
//! - the adjacent pairs that do not end in one cluster are no more than
//!   the curve lets through: its expectation, with a margin a Poisson
//!   count exceeds with probability below 10^-6.
//!
//! Pairing each record with its bucket's first record only (the rule
//! before) cut 5-15 of every 1,000 adjacent pairs, against about 1
//! promised.

use std::collections::HashMap;
use std::sync::Arc;

use drainpipe::corpus::SplitMix64;
use drainpipe::input::{parse_text_record, TextFields};
use drainpipe::jobs::dedup::buckets::ALL_PAIRS_UP_TO;
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::passes::signatures::SignatureJob;
use drainpipe::jobs::dedup::shingle::shingle_set;
use drainpipe::jobs::dedup::similarity::jaccard;
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::OutputDir;

const CHAINS: usize = 3;
const LINKS: usize = 1000;
const WORDS: usize = 204;
const SHIFT: usize = 16;

/// A distinct word for every `n`: letters only, so normalization keeps it
/// one word.
fn word(n: usize) -> String {
    let mut n = n;
    let mut w = String::from("q");
    loop {
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

/// Record `link` of chain `chain`.
fn text(chain: usize, link: usize) -> String {
    let start = chain * 10_000_000 + link * SHIFT;
    (start..start + WORDS)
        .map(word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The smallest `k` with `P(Poisson(mean) > k) < 1e-6`.
fn poisson_bound(mean: f64) -> usize {
    let (mut k, mut term) = (0usize, (-mean).exp());
    let mut below = term;
    while 1.0 - below >= 1e-6 {
        k += 1;
        term *= mean / k as f64;
        below += term;
    }
    k
}

#[test]
fn every_adjacent_pair_sharing_a_band_key_ends_in_one_cluster() {
    let params = DedupParams::default();
    let banding = params.banding().unwrap();
    // The chains, shuffled: `order[i]` is the (chain, link) of record i.
    let mut order: Vec<(usize, usize)> = (0..CHAINS)
        .flat_map(|c| (0..LINKS).map(move |l| (c, l)))
        .collect();
    let mut rng = SplitMix64::new(13);
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let mut position = HashMap::new();
    for (i, &at) in order.iter().enumerate() {
        position.insert(at, i);
    }
    let texts: Vec<String> = order.iter().map(|&(c, l)| text(c, l)).collect();

    // The chains are what they claim, by the job's own shingles.
    let set = |c, l| shingle_set(&text(c, l), params.ngram);
    for c in 0..CHAINS {
        let sets: Vec<Vec<u64>> = (0..LINKS).map(|l| set(c, l)).collect();
        for l in 0..LINKS - 1 {
            assert_eq!(jaccard(&sets[l], &sets[l + 1]), 184.0 / 216.0);
            if l + 2 < LINKS {
                assert!(jaccard(&sets[l], &sets[l + 2]) < params.threshold);
            }
        }
        assert_eq!(jaccard(&sets[0], &sets[LINKS - 1]), 0.0);
    }

    let records: Arc<Vec<MemoryRecord>> = Arc::new(texts.iter().map(MemoryRecord::text).collect());
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    let open = MemorySource::opener(Arc::clone(&records));
    let report = dedup::run_on(&ctx, &params, &open, false).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());

    // Each record's cluster: the record it was removed as a duplicate of.
    let mut by_id = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let id = parse_text_record(&r.raw(i as u64), &ctx.fields).unwrap().id;
        let id: serde_json::Value = serde_json::from_str(&id).unwrap();
        by_id.insert(id.to_string(), i);
    }
    let mut cluster: Vec<usize> = (0..records.len()).collect();
    let clusters = std::fs::read_to_string(dir.path().join(CLUSTERS_FILE)).unwrap();
    for line in clusters.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        cluster[by_id[&v["id"].to_string()]] = by_id[&v["duplicate_of"].to_string()];
    }

    let keys = SignatureJob::new(TextFields::default(), params.ngram, banding);
    let keys_of: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| keys.band_keys(t).as_slice().to_vec())
        .collect();
    // The buckets are small enough for every pair of them to be a
    // candidate: the promise holds exactly here.
    let largest = (0..banding.bands)
        .map(|band| {
            let mut count: HashMap<u32, usize> = HashMap::new();
            for k in &keys_of {
                *count.entry(k[band]).or_default() += 1;
            }
            count.into_values().max().unwrap_or(0)
        })
        .max()
        .unwrap();
    assert!(largest <= ALL_PAIRS_UP_TO, "a bucket of {largest} records");
    let mut promised = 0.0;
    let (mut sharing, mut cut, mut cut_sharing) = (0, 0, Vec::new());
    for c in 0..CHAINS {
        for l in 0..LINKS - 1 {
            let (a, b) = (position[&(c, l)], position[&(c, l + 1)]);
            promised += 1.0 - banding.candidate_probability(184.0 / 216.0);
            let shares = keys_of[a].iter().zip(&keys_of[b]).any(|(x, y)| x == y);
            sharing += usize::from(shares);
            if cluster[a] != cluster[b] {
                cut += 1;
                if shares {
                    cut_sharing.push((c, l));
                }
            }
        }
    }
    let pairs = CHAINS * (LINKS - 1);
    println!(
        "{pairs} adjacent pairs, largest bucket {largest}: {sharing} share a band key; {cut} cut, {} of them sharing one; the curve promises {promised:.2} cut",
        cut_sharing.len()
    );
    assert!(
        cut_sharing.is_empty(),
        "adjacent pairs (chain, link) sharing a band key but cut: {cut_sharing:?}"
    );
    assert!(
        cut <= poisson_bound(promised),
        "{cut} adjacent pairs cut, the curve promises {promised:.2} (at most {} by chance)",
        poisson_bound(promised)
    );
    // Nearly every adjacent pair shares a key (the curve gives 0.9992 at
    // J 0.852): the first check above covers nearly the whole chain.
    assert!(sharing > pairs * 99 / 100, "{sharing} of {pairs}");
}
