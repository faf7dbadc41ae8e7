//! Guarantee: on a corpus of ~300-word documents with planted
//! near-duplicates, `dedup` at threshold 0.8 reaches precision >= 0.99 and
//! recall >= 0.98 against an exhaustive exact Jaccard computation that
//! shares nothing with the job but the word normalization: shingles are
//! strings here, not 64-bit hashes, and every pair's intersection is
//! counted (pairs sharing no shingle have similarity 0).
//!
//! Duplicate pairs are pairs of records in one cluster: predicted by the
//! job's `clusters.jsonl`, true when connected through pairs of exact
//! similarity >= 0.8 (the connected components of the truth).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::input::parse_text_record;
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::normalize::words;
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::OutputDir;

const THRESHOLD: f64 = 0.8;
const NGRAM: usize = 5;

/// The string shingles of a text, by the job's documented rule (fewer
/// words than `n`: the whole word sequence is one shingle).
fn shingles(text: &str) -> HashSet<String> {
    let w = words(text);
    if w.is_empty() {
        return HashSet::new();
    }
    w.windows(NGRAM.min(w.len())).map(|s| s.join(" ")).collect()
}

/// Every pair with exact Jaccard >= THRESHOLD: `(i, j, similarity)`.
fn exhaustive_truth(texts: &[String]) -> Vec<(usize, usize, f64)> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    let sets: Vec<Vec<usize>> = texts
        .iter()
        .map(|t| {
            let mut set: Vec<usize> = shingles(t)
                .into_iter()
                .map(|s| {
                    let next = ids.len();
                    *ids.entry(s).or_insert(next)
                })
                .collect();
            set.sort_unstable();
            set
        })
        .collect();
    let mut postings: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
    for (doc, set) in sets.iter().enumerate() {
        for &s in set {
            postings[s].push(doc);
        }
    }
    let mut out = Vec::new();
    let mut count = vec![0usize; texts.len()];
    for (i, set) in sets.iter().enumerate() {
        let mut touched = Vec::new();
        for &s in set {
            for &j in &postings[s] {
                if j > i {
                    if count[j] == 0 {
                        touched.push(j);
                    }
                    count[j] += 1;
                }
            }
        }
        touched.sort_unstable();
        for j in touched {
            let inter = count[j];
            count[j] = 0;
            let union = set.len() + sets[j].len() - inter;
            let sim = inter as f64 / union as f64;
            if sim >= THRESHOLD {
                out.push((i, j, sim));
            }
        }
    }
    out
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn pairs_of(n: usize) -> u64 {
    (n * n.saturating_sub(1) / 2) as u64
}

/// Precision and recall of co-clustered pairs.
fn precision_recall(
    n: usize,
    truth: &[(usize, usize, f64)],
    predicted: &HashMap<usize, usize>,
) -> (f64, f64, u64) {
    let mut parent: Vec<usize> = (0..n).collect();
    for &(a, b, _) in truth {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        parent[ra.max(rb)] = ra.min(rb);
    }
    let kept_of = |r: usize| predicted.get(&r).copied().unwrap_or(r);
    let (mut t, mut p, mut both) = (HashMap::new(), HashMap::new(), HashMap::new());
    for r in 0..n {
        let root = find(&mut parent, r);
        *t.entry(root).or_insert(0) += 1;
        *p.entry(kept_of(r)).or_insert(0) += 1;
        *both.entry((root, kept_of(r))).or_insert(0) += 1;
    }
    fn sum<K>(m: &HashMap<K, usize>) -> u64 {
        m.values().map(|&k| pairs_of(k)).sum()
    }
    let (t, p, both) = (sum(&t), sum(&p), sum(&both));
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    (ratio(both, p), ratio(both, t), t)
}

/// Reads `clusters.jsonl` as removed record -> kept record, by input
/// position, mapping ids back through the parser that made them.
fn predicted(
    dir: &std::path::Path,
    records: &[MemoryRecord],
    ctx: &RunContext,
) -> (HashMap<usize, usize>, Vec<(usize, f64)>) {
    let mut by_id = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let id = parse_text_record(&r.raw(i as u64), &ctx.fields).unwrap().id;
        let id: serde_json::Value = serde_json::from_str(&id).unwrap();
        assert!(by_id.insert(id.to_string(), i).is_none(), "ids are unique");
    }
    let text = std::fs::read_to_string(dir.join(CLUSTERS_FILE)).unwrap();
    let mut removed = HashMap::new();
    let mut similarities = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let r = by_id[&v["id"].to_string()];
        let kept = by_id[&v["duplicate_of"].to_string()];
        assert!(kept < r, "a cluster keeps its first record");
        removed.insert(r, kept);
        similarities.push((r, v["similarity"].as_f64().unwrap()));
    }
    (removed, similarities)
}

#[test]
fn precision_and_recall_meet_the_targets_on_3000_documents() {
    let corpus = Corpus::new(CorpusSpec {
        docs: 3000,
        ..CorpusSpec::default()
    });
    let texts: Vec<String> = corpus.docs().map(|d| d.text).collect();
    let truth = exhaustive_truth(&texts);
    assert!(truth.len() > 50, "the corpus has planted near-duplicates");

    let records: Vec<MemoryRecord> = texts.iter().map(MemoryRecord::text).collect();
    let records = Arc::new(records);
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    let open = MemorySource::opener(Arc::clone(&records));
    let report = dedup::run_on(&ctx, &DedupParams::default(), &open, true).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());

    let (removed, similarities) = predicted(dir.path(), &records, &ctx);
    let (precision, recall, true_pairs) = precision_recall(texts.len(), &truth, &removed);
    println!(
        "{} true pairs, {} edges: precision {precision:.4}, recall {recall:.4}",
        true_pairs,
        truth.len()
    );
    assert!(precision >= 0.99, "precision {precision}");
    assert!(recall >= 0.98, "recall {recall}");

    // The job's own measurement (64-bit shingle hashes, prefix-filtered
    // all-pairs join) agrees with this one.
    let acc = &report.result["accuracy"];
    assert_eq!(acc["true_pairs"], true_pairs, "{acc}");
    assert_eq!(acc["precision"].as_f64().unwrap(), precision, "{acc}");
    assert_eq!(acc["recall"].as_f64().unwrap(), recall, "{acc}");

    // Every removed record's similarity is an exact similarity >= the
    // threshold with a record of its cluster.
    let edges: HashMap<(usize, usize), f64> = truth.iter().map(|&(a, b, s)| ((a, b), s)).collect();
    let cluster_of = |r: usize| removed.get(&r).copied().unwrap_or(r);
    for (r, sim) in similarities {
        assert!(sim >= THRESHOLD, "record {r}: {sim}");
        let mates: Vec<f64> = (0..texts.len())
            .filter(|&o| o != r && cluster_of(o) == cluster_of(r))
            .filter_map(|o| edges.get(&(o.min(r), o.max(r))).copied())
            .collect();
        let best = mates.iter().cloned().fold(0.0, f64::max);
        assert!((best - sim).abs() < 1e-12, "record {r}: {sim} vs {best}");
    }

    // kept.jsonl holds every record not removed, in input order.
    let kept = std::fs::read_to_string(dir.path().join(KEPT_FILE)).unwrap();
    let kept_texts: Vec<String> = kept
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: Vec<&String> = texts
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains_key(i))
        .map(|(_, t)| t)
        .collect();
    assert_eq!(kept_texts.len(), expected.len());
    assert!(kept_texts.iter().zip(expected).all(|(a, b)| a == b));
    assert_eq!(report.result["duplicates_removed"], removed.len());
}

#[test]
fn the_demo_corpus_reports_precision_and_recall() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    ctx.demo_docs = 2000;
    let report = dedup::run(&ctx, &DedupParams::default()).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    let acc = &report.result["accuracy"];
    assert!(acc["precision"].as_f64().unwrap() >= 0.99, "{acc}");
    assert!(acc["recall"].as_f64().unwrap() >= 0.98, "{acc}");
    assert!(acc["true_pairs"].as_u64().unwrap() > 20, "{acc}");
    assert_eq!(report.records.read, 2000);
}
