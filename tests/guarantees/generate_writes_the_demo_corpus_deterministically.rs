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
