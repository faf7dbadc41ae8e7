//! Guarantee: the ids `dedup` writes are the input's own, exactly as they
//! came in (their JSON text: big integers keep their digits, `1.0` stays
//! `1.0`, escapes stay escapes), and unambiguous: a record without an id is
//! named by its file and line (`"a.txt:3"`), so lines of two files never
//! share one; an id that two records share is reported (a warning naming
//! both records' file and line, and `result.repeated_ids` in summary.json),
//! not silently written twice; an id that is neither a string nor a number
//! (null, a boolean, an array, an object) rejects its record, naming the
//! file, the line and the id.

use crate::binary;

use std::path::Path;

use binary::{drainpipe, summary};

/// A text of 12 words of its own, made from `seed`: texts of different
/// seeds share no 5-gram.
fn text(seed: u32) -> String {
    (0..12)
        .map(|i| format!("w{seed}x{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn line(id: &str, seed: u32) -> String {
    format!(r#"{{"id":{id},"text":"{}"}}"#, text(seed))
}

/// Runs `dedup` in `dir` over `inputs` (paths relative to it), output in
/// `out`; returns the exit code, stderr, and clusters.jsonl's lines.
fn dedup(dir: &Path, inputs: &[&str]) -> (i32, String, Vec<String>) {
    let out = drainpipe()
        .current_dir(dir)
        .arg("dedup")
        .args(inputs)
        .args(["--output", "out", "--workers", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let clusters = std::fs::read_to_string(dir.join("out/clusters.jsonl"))
        .unwrap_or_else(|e| panic!("no clusters.jsonl ({e}): {stderr}"));
    let lines = clusters.lines().map(str::to_owned).collect();
    (out.status.code().unwrap(), stderr, lines)
}

fn cluster(id: &str, of: &str) -> String {
    format!(r#"{{"id":{id},"duplicate_of":{of},"similarity":1.0}}"#)
}

#[test]
fn json_ids_are_written_as_their_json_text() {
    let dir = tempfile::tempdir().unwrap();
    let big = "123456789012345678901234567890";
    let escaped = r#""caf\u00e9 \"q\" \/ é""#;
    let lines = [
        line(big, 1),
        line(escaped, 1),
        line("1", 2),
        line("1.0", 2),
        line("-0.5e-3", 3),
        line(r#""\ud83d\ude00""#, 3),
    ];
    std::fs::write(dir.path().join("ids.jsonl"), lines.join("\n")).unwrap();
    let (code, stderr, clusters) = dedup(dir.path(), &["ids.jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        clusters,
        [
            cluster(escaped, big),
            cluster("1.0", "1"),
            cluster(r#""\ud83d\ude00""#, "-0.5e-3"),
        ]
    );
    // 1 and 1.0 are two ids, as they come out: nothing repeated.
    assert_eq!(
        summary(&dir.path().join("out"))["result"]["repeated_ids"],
        0
    );
}

#[test]
fn records_without_ids_are_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // Both files' line 2 is the same text: without their file in the id,
    // the two records would both be called 2.
    std::fs::write(
        dir.path().join("a.txt"),
        format!("{}\n{}\n", text(1), text(2)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.txt"),
        format!("{}\n{}\n", text(3), text(2)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.jsonl"),
        format!(r#"{{"text":"{}"}}"#, text(3)),
    )
    .unwrap();
    let (code, stderr, clusters) = dedup(dir.path(), &["a.txt", "b.txt", "c.jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        clusters,
        [
            cluster(r#""b.txt:2""#, r#""a.txt:2""#),
            cluster(r#""c.jsonl:1""#, r#""b.txt:1""#),
        ]
    );
    let kept = std::fs::read_to_string(dir.path().join("out/kept.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(kept.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "a.txt:1");
    assert_eq!(
        summary(&dir.path().join("out"))["result"]["repeated_ids"],
        0
    );
}

#[test]
fn repeated_ids_are_reported_with_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        line(r#""a""#, 1),
        line(r#""b""#, 2),
        // The same id as line 1, escaped otherwise: the same string.
        line(r#""\u0061""#, 1),
        line("7", 3),
    ];
    std::fs::write(dir.path().join("one.jsonl"), lines.join("\n")).unwrap();
    // The same id in another file, and a record with the id of line 4.
    std::fs::write(
        dir.path().join("two.jsonl"),
        [line("5", 4), line("7", 5)].join("\n"),
    )
    .unwrap();
    let (code, stderr, clusters) = dedup(dir.path(), &["one.jsonl", "two.jsonl"]);
    // Reported, not fatal: the outputs are right, each record in its place.
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(clusters, [cluster(r#""\u0061""#, r#""a""#)]);
    assert_eq!(
        summary(&dir.path().join("out"))["result"]["repeated_ids"],
        2
    );
    for (id, again, first) in [
        (r#""\u0061""#, "one.jsonl:3", "one.jsonl:1"),
        ("7", "two.jsonl:2", "one.jsonl:4"),
    ] {
        let warning = format!("repeated id {id} at {again}: first at {first}");
        assert!(stderr.contains(&warning), "no {warning:?} in:\n{stderr}");
    }
}

#[test]
fn ids_other_than_strings_and_numbers_reject_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let odd = ["null", "true", "[1]", r#"{"a":1}"#];
    let mut lines = vec![line(r#""ok""#, 1)];
    lines.extend(odd.iter().enumerate().map(|(i, id)| line(id, 2 + i as u32)));
    std::fs::write(dir.path().join("odd.jsonl"), lines.join("\n")).unwrap();
    let (code, stderr, clusters) = dedup(dir.path(), &["odd.jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(clusters.is_empty());
    let rejects = std::fs::read_to_string(dir.path().join("out/rejects.jsonl")).unwrap();
    let rejects: Vec<serde_json::Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found = ["null", "a boolean", "an array", "an object"];
    assert_eq!(rejects.len(), found.len());
    for (i, (reject, found)) in rejects.iter().zip(found).enumerate() {
        assert_eq!(reject["file"], "odd.jsonl");
        assert_eq!(reject["line"], i as u64 + 2);
        assert_eq!(
            reject["reason"],
            format!(r#"id field "id" is not a string or a number (found {found})"#)
        );
    }
    let kept = std::fs::read_to_string(dir.path().join("out/kept.jsonl")).unwrap();
    assert_eq!(kept, format!("{}\n", lines[0]));
}
