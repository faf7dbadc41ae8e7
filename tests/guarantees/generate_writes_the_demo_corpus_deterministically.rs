//! `drainpipe generate` writes the demo corpus as JSON Lines, the same bytes
//! every time, so benchmarks and other tools can run on identical data.

use crate::binary;

use binary::drainpipe;

#[test]
fn the_same_corpus_every_time_to_a_file_or_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corpus.jsonl");
    let status = drainpipe()
        .args(["generate", "--docs", "300", "-o"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    let written = std::fs::read(&file).unwrap();
    let stdout = drainpipe()
        .args(["generate", "--docs", "300"])
        .output()
        .unwrap();
    assert!(stdout.status.success());
    assert!(stdout.stdout == written, "stdout and file differ");
    let lines: Vec<serde_json::Value> = std::str::from_utf8(&written)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 300);
    for (i, doc) in lines.iter().enumerate() {
        assert_eq!(doc["id"], i);
        let words = doc["text"].as_str().unwrap().split_whitespace().count();
        assert!((150..=450).contains(&words), "{words} words");
    }
}

#[test]
fn short_documents_have_the_words_asked_for_and_a_reversed_range_is_refused() {
    let short = drainpipe()
        .args(["generate", "--docs", "200", "--min-words", "20"])
        .args(["--max-words", "40"])
        .output()
        .unwrap();
    assert!(short.status.success());
    let text = String::from_utf8(short.stdout).unwrap();
    assert_eq!(text.lines().count(), 200);
    for line in text.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let words = doc["text"].as_str().unwrap().split_whitespace().count();
        // Edits of a near-duplicate may add or drop a word or two.
        assert!((18..=42).contains(&words), "{words} words");
    }
    let reversed = drainpipe()
        .args(["generate", "--docs", "10", "--min-words", "50"])
        .args(["--max-words", "40"])
        .output()
        .unwrap();
    assert_eq!(reversed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&reversed.stderr);
    assert!(
        stderr.contains("--min-words 50 is more than --max-words 40"),
        "{stderr}"
    );
}
