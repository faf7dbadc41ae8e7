//! Malformed input records are rejected with their file, line and reason in
//! `rejects.jsonl`; the run goes on and integrates every good record.

use crate::binary;

use binary::{drainpipe, summary};

#[test]
fn each_malformed_line_is_listed_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.jsonl");
    let mut data: Vec<u8> = Vec::new();
    data.extend_from_slice(b"{\"id\": 1, \"text\": \"good one\"}\n"); // 1
    data.extend_from_slice(b"{\"id\": 2, \"text\": \"broken\"\n"); // 2 bad JSON
    data.extend_from_slice(b"[1, 2, 3]\n"); // 3 not an object
    data.extend_from_slice(b"{\"id\": 4, \"body\": \"no text\"}\n"); // 4 missing text
    data.extend_from_slice(b"{\"id\": 5, \"text\": 42}\n"); // 5 text not a string
    data.extend_from_slice(b"{\"id\": 6, \"text\": \"bad \xff utf8\"}\n"); // 6 invalid UTF-8
    data.extend_from_slice(format!("{{\"text\": \"{}\"}}\n", "x".repeat(5000)).as_bytes()); // 7 too large
    data.extend_from_slice(b"\n"); // 8 empty line
    data.extend_from_slice(b"{\"id\": 9, \"text\": \"good two\"}\n"); // 9
    std::fs::write(&input, data).unwrap();
    let out = dir.path().join("out");
    let result = drainpipe()
        .args(["vocab", "--no-progress", "--max-record-bytes", "1000", "-o"])
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(0), "{stderr}");

    let rejects: Vec<serde_json::Value> = std::fs::read_to_string(out.join("rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = [
        (2, "EOF while parsing"),
        (3, "not a JSON object"),
        (4, "missing text field"),
        (5, "not a string"),
        (6, "UTF-8"),
        (7, "exceeds --max-record-bytes"),
        (8, "empty line"),
    ];
    assert_eq!(rejects.len(), expected.len(), "{rejects:?}");
    for (reject, (line, reason)) in rejects.iter().zip(expected) {
        assert_eq!(reject["line"], line, "{reject}");
        assert!(
            reject["file"].as_str().unwrap().ends_with("corpus.jsonl"),
            "{reject}"
        );
        let got = reject["reason"].as_str().unwrap();
        assert!(
            got.contains(reason),
            "line {line}: {got:?} should mention {reason:?}"
        );
    }
    let s = summary(&out);
    assert_eq!(s["records"]["read"], 9);
    assert_eq!(s["records"]["integrated"], 2);
    assert_eq!(s["records"]["rejected"], 7);
    let vocab = std::fs::read_to_string(out.join("vocab.tsv")).unwrap();
    assert_eq!(vocab, "good\t2\none\t1\ntwo\t1\n");
}
