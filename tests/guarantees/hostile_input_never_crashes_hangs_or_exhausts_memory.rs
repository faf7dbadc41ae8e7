//! Hostile input never crashes, hangs or exhausts memory: every bad record
//! is a reject in `rejects.jsonl` naming its file and line, every unreadable
//! input an error naming the file with exit code 74, and the run always ends
//! within its deadline, without a panic.

use crate::binary;
use crate::common::{gz, zst};

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use binary::{drainpipe, leftovers, spawn, summary, wait};

/// Runs `drainpipe vocab` over `inputs` into `out` with `extra` options,
/// under a deadline; fails on a panic message.
fn vocab(out: &Path, inputs: &[&Path], extra: &[&str]) -> Output {
    let mut cmd = drainpipe();
    cmd.args(["vocab", "--no-progress", "-o"])
        .arg(out)
        .args(extra)
        .args(inputs);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    output
}

/// Asserts exit code 0.
fn complete(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// `rejects.jsonl` as (file, line, reason); empty when there is none.
fn rejects(out: &Path) -> Vec<(String, u64, String)> {
    let Ok(text) = std::fs::read_to_string(out.join("rejects.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                r["file"].as_str().unwrap().to_owned(),
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts each reject is at (`file`, `line`) with a reason containing the
/// text given, in order.
fn assert_rejects(out: &Path, expected: &[(&Path, u64, &str)]) {
    let got = rejects(out);
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((file, line, reason), (want_file, want_line, want_reason)) in got.iter().zip(expected) {
        assert_eq!(file, &want_file.display().to_string(), "{got:#?}");
        assert_eq!(line, want_line, "{file}: {got:#?}");
        assert!(
            reason.contains(want_reason),
            "{file}:{line}: {reason:?} should mention {want_reason:?}"
        );
    }
}

/// `summary.json`'s record counts: read, integrated, rejected.
fn counts(out: &Path) -> (u64, u64, u64) {
    let s = summary(out);
    assert_eq!(s["conservation"], true, "{s}");
    let r = &s["records"];
    (
        r["read"].as_u64().unwrap(),
        r["integrated"].as_u64().unwrap(),
        r["rejected"].as_u64().unwrap(),
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_100_mb_line_is_rejected_with_memory_staying_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.jsonl");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        file.write_all(b"{\"text\": \"").unwrap();
        let chunk = [b'a'; 1 << 20];
        for _ in 0..100 {
            file.write_all(&chunk).unwrap();
        }
        file.write_all(b"\"}\n{\"text\": \"after the huge line\"}\n")
            .unwrap();
    }
    // The default limit (16 MiB) and a small one.
    for (limit, bound) in [(None, 48u64 << 20), (Some("1000000"), 24 << 20)] {
        let out = dir
            .path()
            .join(format!("out-{}", limit.unwrap_or("default")));
        let extra: Vec<&str> = limit.map_or(vec![], |l| vec!["--max-record-bytes", l]);
        complete(&vocab(&out, &[&path], &extra));
        let max = limit.unwrap_or("16777216");
        assert_rejects(
            &out,
            &[(
                &path,
                1,
                &format!("record of 104857612 bytes exceeds --max-record-bytes {max}"),
            )],
        );
        assert_eq!(counts(&out), (2, 1, 1));
        let peak = summary(&out)["peak_rss_bytes"]
            .as_u64()
            .expect("peak_rss_bytes");
        assert!(
            peak < bound,
            "peak RSS {} MiB with --max-record-bytes {max}",
            peak >> 20
        );
        let vocab = std::fs::read_to_string(out.join("vocab.tsv")).unwrap();
        assert_eq!(vocab, "after\t1\nhuge\t1\nline\t1\nthe\t1\n");
    }
}

#[test]
fn invalid_utf8_is_rejected_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(
        dir.path(),
        "a.jsonl",
        b"{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n\xff\xfe{}\n",
    );
    let txt = write(
        dir.path(),
        "b.txt",
        b"fine\nhalf \xf0\x9f\x98 emoji\n\xc0\x80\n",
    );
    let files = dir.path().join("files");
    let latin1 = write(&files, "latin1.txt", b"na\xefve");
    let out = dir.path().join("out");
    complete(&vocab(&out, &[&jsonl, &txt, &files], &[]));
    assert_rejects(
        &out,
        &[
            (&jsonl, 2, "not valid UTF-8 at byte 13"),
            (&jsonl, 3, "not valid UTF-8 at byte 0"),
            (&txt, 2, "not valid UTF-8 at byte 5"),
            (&txt, 3, "not valid UTF-8 at byte 0"),
            (&latin1, 1, "not valid UTF-8 at byte 2"),
        ],
    );
    assert_eq!(counts(&out), (7, 2, 5));
}

#[test]
fn binary_files_in_a_directory_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mixed");
    write(&root, "notes.txt", b"plain notes");
    let png = write(
        &root,
        "image.png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
    );
    let gzipped = write(&root, "blob.bin.gz", &gz(&[0x00, 0xff, 0x80, 0x10]));
    // Random-looking bytes, including every byte value.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let random = write(&root, "sub/random.dat", &noise);
    let out = dir.path().join("out");
    complete(&vocab(&out, &[&root], &[]));
    assert_rejects(
        &out,
        &[
            (&gzipped, 1, "not valid UTF-8 at byte 1"),
            (&png, 1, "not valid UTF-8 at byte 0"),
            (&random, 1, "not valid UTF-8"),
        ],
    );
    assert_eq!(counts(&out), (4, 1, 3));
    let vocab = std::fs::read_to_string(out.join("vocab.tsv")).unwrap();
    assert_eq!(vocab, "notes\t1\nplain\t1\n");
}

#[test]
fn deeply_nested_json_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let deep = 100_000;
    let mut data = Vec::new();
    // 1: deep arrays in a field that is otherwise skipped.
    data.extend(
        format!(
            "{{\"text\": \"a\", \"x\": {}{}}}\n",
            "[".repeat(deep),
            "]".repeat(deep)
        )
        .bytes(),
    );
    // 2: deep objects.
    data.extend(format!("{}1{}\n", "{\"a\":".repeat(deep), "}".repeat(deep)).bytes());
    // 3: a deep top-level array.
    data.extend(format!("{}{}\n", "[".repeat(deep), "]".repeat(deep)).bytes());
    // 4: deep and never closed.
    data.extend(format!("{{\"text\": {}\n", "[".repeat(deep)).bytes());
    // 5: nesting well within the limit is fine.
    data.extend(
        format!(
            "{{\"x\": {}{}, \"text\": \"b\"}}\n",
            "[".repeat(100),
            "]".repeat(100)
        )
        .bytes(),
    );
    let path = write(dir.path(), "deep.jsonl", &data);
    let out = dir.path().join("out");
    complete(&vocab(&out, &[&path], &[]));
    assert_rejects(
        &out,
        &[
            (&path, 1, "recursion limit exceeded"),
            (&path, 2, "recursion limit exceeded"),
            (&path, 3, "recursion limit exceeded"),
            (&path, 4, "recursion limit exceeded"),
        ],
    );
    assert_eq!(counts(&out), (5, 1, 4));
}

#[test]
fn json_that_is_not_an_object_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        ("42", "not a JSON object (found a number)"),
        ("\"text\"", "not a JSON object (found a string)"),
        ("null", "not a JSON object (found null)"),
        ("true", "not a JSON object (found a boolean)"),
        (
            "[{\"text\": \"in an array\"}]",
            "not a JSON object (found an array)",
        ),
        ("plain words, not JSON", "expected value"),
        (
            "{\"text\": \"two\"} {\"text\": \"objects\"}",
            "trailing characters",
        ),
        ("\u{0}", "expected value"),
    ];
    let data: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let path = write(dir.path(), "values.ndjson", data.as_bytes());
    let out = dir.path().join("out");
    // Every record rejected: listed all the same, and the run exits 65.
    let output = vocab(&out, &[&path], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    let expected: Vec<(&Path, u64, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, (_, why))| (path.as_path(), i as u64 + 1, *why))
        .collect();
    assert_rejects(&out, &expected);
    assert_eq!(counts(&out), (8, 0, 8));
}

#[test]
fn a_missing_or_non_string_text_field_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        ("{}", "missing text field \"text\""),
        (
            "{\"Text\": \"case matters\"}",
            "missing text field \"text\"",
        ),
        ("{\"text\": null}", "not a string (found null)"),
        ("{\"text\": 7}", "not a string (found a number)"),
        ("{\"text\": [\"a\"]}", "not a string (found an array)"),
        (
            "{\"text\": {\"text\": \"a\"}}",
            "not a string (found an object)",
        ),
        ("{\"text\": false}", "not a string (found a boolean)"),
        ("{\"id\": 3, \"text\": \"good\"}", ""),
    ];
    let data: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let path = write(dir.path(), "fields.json", data.as_bytes());
    let out = dir.path().join("out");
    complete(&vocab(&out, &[&path], &[]));
    let expected: Vec<(&Path, u64, &str)> = lines[..7]
        .iter()
        .enumerate()
        .map(|(i, (_, why))| (path.as_path(), i as u64 + 1, *why))
        .collect();
    assert_rejects(&out, &expected);
    assert_eq!(counts(&out), (8, 1, 7));
    // Another field name is honoured.
    let out = dir.path().join("out-field");
    complete(&vocab(&out, &[&path], &["--text-field", "Text"]));
    assert_eq!(counts(&out), (8, 1, 7));
    let vocab = std::fs::read_to_string(out.join("vocab.tsv")).unwrap();
    assert_eq!(vocab, "case\t1\nmatters\t1\n");
}

#[test]
fn empty_inputs_complete_with_zero_records() {
    let dir = tempfile::tempdir().unwrap();
    let empty_jsonl = write(dir.path(), "empty.jsonl", b"");
    let empty_txt = write(dir.path(), "empty.txt", b"");
    let empty_gz = write(dir.path(), "empty.txt.gz", &gz(b""));
    let empty_zst = write(dir.path(), "empty.jsonl.zst", &zst(b""));
    let empty_dir = dir.path().join("nothing");
    std::fs::create_dir(&empty_dir).unwrap();
    let out = dir.path().join("out");
    let inputs = [&*empty_jsonl, &empty_txt, &empty_gz, &empty_zst, &empty_dir];
    complete(&vocab(&out, &inputs, &[]));
    assert_eq!(counts(&out), (0, 0, 0));
    assert_eq!(summary(&out)["exit"], "complete");
    assert_eq!(std::fs::read(out.join("vocab.tsv")).unwrap(), b"");
    assert!(!out.join("rejects.jsonl").exists());
}

#[test]
fn only_empty_lines_are_rejected_in_json_lines_and_empty_texts_in_text() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(dir.path(), "blank.jsonl", b"\n\r\n  \t \n\n");
    let txt = write(dir.path(), "blank.txt", b"\n\n\r\n");
    let out = dir.path().join("out");
    complete(&vocab(&out, &[&jsonl, &txt], &[]));
    let expected: Vec<(&Path, u64, &str)> = (1..=4).map(|l| (&*jsonl, l, "empty line")).collect();
    assert_rejects(&out, &expected);
    // Text lines are records with empty text: integrated, no words.
    assert_eq!(counts(&out), (7, 3, 4));
    assert_eq!(std::fs::read(out.join("vocab.tsv")).unwrap(), b"");
}

#[test]
fn truncated_gz_and_zst_exit_74_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<u8> = (0..50_000u64)
        .flat_map(|i| format!("line {}\n", i.wrapping_mul(2_654_435_761) % 1_000_003).into_bytes())
        .collect();
    for (name, stored, why) in [
        ("cut.txt.gz", gz(&text), "deflate"),
        ("cut.txt.zst", zst(&text), "frame"),
        ("zero.txt.gz", Vec::new(), "unexpected end of file"),
    ] {
        let len = stored.len();
        let path = write(dir.path(), name, &stored[..len / 2]);
        let out = dir.path().join(format!("out-{name}"));
        let output = vocab(&out, &[&path], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(74), "{name}: {stderr}");
        let message = format!("cannot read {}", path.display());
        assert!(stderr.contains(&message), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        let s = summary(&out);
        assert_eq!(s["exit"], "failed", "{name}");
        assert_eq!(s["conservation"], true, "{name}");
        assert!(s["cause"].as_str().unwrap().contains(&message), "{s}");
        assert_eq!(s["outputs_written"], false, "{name}");
        assert!(!out.join("vocab.tsv").exists(), "{name}: partial vocab.tsv");
        assert!(!out.join("rejects.jsonl").exists(), "{name}");
        assert_eq!(leftovers(&out), Vec::<String>::new(), "{name}");
    }
}

/// Tests run as root, for whom permissions are no obstacle, so the
/// unreadable entries are ones no one can read: a dangling symbolic link, a
/// link to itself (ELOOP), and a link to `/proc/self/mem`, a regular file of
/// size 0 whose first page is never mapped (EIO). A FIFO is not a regular
/// file: it is skipped (and logged), never opened, so it cannot block.
#[cfg(unix)]
#[test]
fn unreadable_files_in_a_directory_are_rejected_and_fifos_skipped() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("d");
    write(&root, "good.txt", b"readable words");
    let dangling = root.join("dangling.txt");
    symlink(root.join("missing.txt"), &dangling).unwrap();
    let itself = root.join("itself.txt");
    symlink(&itself, &itself).unwrap();
    let mem = root.join("mem.txt");
    symlink("/proc/self/mem", &mem).unwrap();
    let fifo = root.join("fifo.txt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let out = dir.path().join("out");
    let output = vocab(&out, &[&root], &[]);
    complete(&output);
    assert_rejects(
        &out,
        &[
            (&dangling, 1, "cannot read: No such file or directory"),
            (&itself, 1, "cannot read: Too many levels of symbolic links"),
            (&mem, 1, "cannot read: Input/output error"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let skipped = format!("{}: not a regular file, skipped", fifo.display());
    assert!(stderr.contains(&skipped), "{stderr}");
    assert_eq!(counts(&out), (4, 1, 3));
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_not_followed() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    write(&root, "a/b/leaf.txt", b"leaf");
    write(&root, "top.txt", b"top");
    // Links to their own parent directory, to the root, and to themselves'
    // folder: listing them would never end if they were followed.
    symlink("..", root.join("a/b/parent")).unwrap();
    symlink(".", root.join("a/here")).unwrap();
    symlink(&root, root.join("a/b/root")).unwrap();
    // The input itself is a link to the tree, inside the tree.
    let entry = root.join("a/b/entry");
    symlink("../..", &entry).unwrap();
    let out = dir.path().join("out");
    let output = vocab(&out, &[&entry], &[]);
    complete(&output);
    assert!(rejects(&out).is_empty());
    assert_eq!(counts(&out), (2, 2, 0));
    let vocab = std::fs::read_to_string(out.join("vocab.tsv")).unwrap();
    assert_eq!(vocab, "leaf\t1\ntop\t1\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a/b/parent: symbolic link to a directory, not followed"),
        "{stderr}"
    );
}
