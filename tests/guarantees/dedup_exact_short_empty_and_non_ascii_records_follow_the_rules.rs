//! Guarantees of `dedup` on the records that test its rules: exact
//! duplicates always merge (whatever their formatting); records shorter
//! than the n-gram size are one shingle, so they merge only with records
//! of the same normalized words; records without words (empty, blank,
//! punctuation only) are never merged with anything; non-ASCII text
//! (accents, CJK, emoji) is normalized consistently.

use std::collections::HashMap;
use std::sync::Arc;

use drainpipe::corpus::{Corpus, CorpusSpec, SplitMix64};
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::OutputDir;

/// Runs dedup over plain-text records; returns removed record (input
/// position) -> (kept record, similarity), the summary's result, and the
/// kept texts.
fn dedup_texts(
    texts: &[String],
    params: &DedupParams,
) -> (HashMap<usize, (usize, f64)>, serde_json::Value, Vec<String>) {
    let records = Arc::new(texts.iter().map(MemoryRecord::text).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    let open = MemorySource::opener(records);
    let report = dedup::run_on(&ctx, params, &open, false).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    // Plain-text records have their input and line (position + 1) as id:
    // "memory:<line>".
    let clusters = std::fs::read_to_string(dir.path().join(CLUSTERS_FILE)).unwrap();
    let removed = clusters
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let at = |k: &str| {
                let id = v[k].as_str().unwrap();
                let line = id.strip_prefix("memory:").unwrap();
                line.parse::<usize>().unwrap() - 1
            };
            (
                at("id"),
                (at("duplicate_of"), v["similarity"].as_f64().unwrap()),
            )
        })
        .collect();
    let kept = std::fs::read_to_string(dir.path().join(KEPT_FILE))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    (removed, report.result, kept)
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

#[test]
fn exact_duplicates_always_merge_whatever_their_formatting() {
    let corpus = Corpus::new(CorpusSpec {
        docs: 300,
        dup_fraction: 0.0,
        ..CorpusSpec::default()
    });
    let mut texts: Vec<String> = corpus.docs().map(|d| d.text).collect();
    let mut rng = SplitMix64::new(42);
    let mut copies = Vec::new();
    for k in 0..60 {
        let of = rng.range(0, 299) as usize;
        let original = texts[of].clone();
        let copy = match k % 3 {
            0 => original,
            1 => original.to_uppercase(),
            _ => original.replace(' ', "  \t").replace('.', " !?;"),
        };
        copies.push((texts.len(), of));
        texts.push(copy);
    }
    let (removed, result, _) = dedup_texts(&texts, &DedupParams::default());
    for (copy, of) in copies {
        let (kept, similarity) = removed[&copy];
        assert_eq!(kept, of, "copy {copy} of {of}");
        assert_eq!(similarity, 1.0);
    }
    assert_eq!(result["duplicates_removed"], 60);
}

#[test]
fn records_shorter_than_the_ngram_size_are_one_shingle() {
    let texts = strings(&[
        "Hello world",             // 0
        "hello, WORLD!",           // 1: same words as 0
        "hello world again",       // 2: one more word: another shingle
        "world hello",             // 3: other order
        "hello",                   // 4
        "one two three four",      // 5: four words, under n = 5
        "One two three four.",     // 6: same as 5
        "one two three four five", // 7: exactly n words: one shingle, not 5's
    ]);
    let (removed, result, kept) = dedup_texts(&texts, &DedupParams::default());
    let expected: HashMap<usize, (usize, f64)> = [(1, (0, 1.0)), (6, (5, 1.0))].into();
    assert_eq!(removed, expected);
    assert_eq!(result["kept"], 6);
    assert_eq!(kept[0], "Hello world");
    // With n = 1 every word is a shingle: "hello world again" now shares
    // 2 of 3 shingles with "hello world", and "world hello" all of them.
    let params = DedupParams {
        ngram: 1,
        threshold: 0.6,
        ..DedupParams::default()
    };
    let (removed, _, _) = dedup_texts(&texts, &params);
    assert_eq!(removed[&2], (0, 2.0 / 3.0));
    assert_eq!(removed[&3], (0, 1.0));
}

#[test]
fn records_without_words_are_never_merged() {
    let texts = strings(&[
        "",
        "   ",
        "!!! ... ---",
        "",
        "\t",
        "a real record",
        "",
        "a real record",
    ]);
    let (removed, result, kept) = dedup_texts(&texts, &DedupParams::default());
    let expected: HashMap<usize, (usize, f64)> = [(7, (5, 1.0))].into();
    assert_eq!(removed, expected);
    assert_eq!(result["records_without_words"], 6);
    assert_eq!(kept.len(), 7);
    assert_eq!(kept.iter().filter(|t| t.trim().is_empty()).count(), 5);
}

#[test]
fn non_ascii_text_is_normalized_consistently() {
    let texts = strings(&[
        "Ça VA très bien, merci",              // 0
        "ça va TRES bien... merci!",           // 1: case, accents, punctuation
        "c\u{327}a va tre\u{300}s bien merci", // 2: the same in NFD
        "Ça va très mal, merci",               // 3: another word
        "東京タワーは高いです",                // 4
        "東京 タワー は、高い です。",         // 5: spacing and CJK punctuation
        "大阪タワーは高いです",                // 6: another character
        "I ❤️ pizza 🍕 so much",               // 7
        "i ❤ PIZZA 🍕 so much!!",              // 8: no variation selector
        "I ❤️ pizza 🍔 so much",               // 9: another emoji
        "ＦＵＬＬ ｗｉｄｔｈ text",            // 10
        "full width TEXT",                     // 11
        "Straße Ελλάδα",                       // 12
        "STRASSE ελλαδα",                      // 13: ß is not folded to ss
    ]);
    let (removed, _, _) = dedup_texts(&texts, &DedupParams::default());
    let expected: HashMap<usize, (usize, f64)> = [
        (1, (0, 1.0)),
        (2, (0, 1.0)),
        (5, (4, 1.0)),
        (8, (7, 1.0)),
        (11, (10, 1.0)),
    ]
    .into();
    assert_eq!(removed, expected);
}
