//! Micro-benchmarks of dedup's step 1, per ~300-word document: normalizing
//! and hashing words, shingling, the MinHash signature (each kernel the
//! CPU runs: portable, AVX2, AVX-512), and the LSH band keys.
//!
//! Run: `cargo bench --bench step1_kernels`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::minhash::{BandKeys, Kernel, MinHasher};
use drainpipe::jobs::dedup::normalize::for_each_word_hash;
use drainpipe::jobs::dedup::shingle::{sort_hashes_into, Scratch};
use drainpipe::jobs::dedup::DedupParams;

fn documents() -> Vec<String> {
    let corpus = Corpus::new(CorpusSpec {
        docs: 256,
        ..CorpusSpec::default()
    });
    corpus.docs().map(|d| d.text).collect()
}

fn step1(c: &mut Criterion) {
    let docs = documents();
    let bytes: usize = docs.iter().map(String::len).sum();
    let params = DedupParams::default();
    let banding = params.banding().unwrap();
    let hasher = MinHasher::new(params.num_perm, 0x5EED);
    let mut group = c.benchmark_group("dedup step 1, 256 documents");
    group.throughput(Throughput::Bytes(bytes as u64));

    group.bench_function("normalize + hash words", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let mut n = 0u64;
            for d in &docs {
                for_each_word_hash(d, &mut buf, |h| n = n.wrapping_add(h));
            }
            n
        })
    });

    group.bench_function("shingle (words + 5-grams)", |b| {
        let mut scratch = Scratch::default();
        b.iter(|| {
            let mut n = 0;
            for d in &docs {
                scratch.shingle(d, params.ngram);
                n += scratch.shingles.len();
            }
            n
        })
    });

    let shingled: Vec<Vec<u64>> = docs
        .iter()
        .map(|d| {
            let mut s = Scratch::default();
            s.shingle(d, params.ngram);
            s.shingles
        })
        .collect();

    // Pass 2 sorts each candidate record's shingles into its set.
    group.bench_function("sort shingles: comparison sort", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            for s in &shingled {
                out.clear();
                out.extend_from_slice(s);
                out.sort_unstable();
            }
            out.len()
        })
    });
    group.bench_function("sort shingles: counting sort on the top bits", |b| {
        let (mut counts, mut out) = (Vec::new(), Vec::new());
        b.iter(|| {
            for s in &shingled {
                sort_hashes_into(s, &mut counts, &mut out);
            }
            out.len()
        })
    });
    // Every kernel this CPU runs; the dispatched one is the last.
    for kernel in Kernel::available() {
        let name = format!("minhash signature (128 permutations, {kernel:?})");
        group.bench_function(name, |b| {
            let mut sig = Vec::new();
            b.iter(|| {
                let mut n = 0u32;
                for s in &shingled {
                    hasher.signature_with(kernel, s, &mut sig);
                    n ^= sig[0];
                }
                n
            })
        });
    }

    let signatures: Vec<Vec<u32>> = shingled
        .iter()
        .map(|s| {
            let mut sig = Vec::new();
            hasher.signature(s, &mut sig);
            sig
        })
        .collect();
    group.bench_function("band keys (18 x 7)", |b| {
        b.iter(|| {
            signatures
                .iter()
                .map(|s| BandKeys::of_signature(s, banding).as_slice()[0])
                .fold(0u32, |a, k| a ^ k)
        })
    });
    group.finish();
}

criterion_group!(benches, step1);
criterion_main!(benches);
