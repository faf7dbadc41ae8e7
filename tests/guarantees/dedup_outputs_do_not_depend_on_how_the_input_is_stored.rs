//! Guarantee: dedup's outputs do not depend on how much its later passes
//! read. Over uncompressed JSON Lines files, pass 2 reads the candidate
//! records only, at the places pass 1 noted, and pass 3 copies the kept
//! records' byte ranges; over the same lines gzip-compressed, both read the
//! whole input. `kept.jsonl`, `clusters.jsonl` and `rejects.jsonl` are
//! byte-identical either way, whatever the line terminators, a byte order
//! mark, blank and malformed lines, a last line without a newline, records
//! split over several files (one of them empty) or a plain-text file among
//! them. The copy runs beside pass 2, or after it (`copy_beside_verify`):
//! the same outputs. A run stopped and resumed reads the same way. An input
//! rewritten or truncated during the run fails it with exit code 74 and no
//! output.

use crate::common::gz;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, Progress, RunReport, REJECTS_FILE};

/// JSON Lines records with near-duplicates, two malformed lines and a
/// blank one.
fn lines() -> Vec<String> {
    let corpus = Corpus::new(CorpusSpec {
        docs: 300,
        ..CorpusSpec::default()
    });
    let mut lines: Vec<String> = corpus
        .docs()
        .map(|d| serde_json::json!({ "id": d.index, "text": d.text }).to_string())
        .collect();
    // An exact copy of a record far from it, with another id.
    let copy = serde_json::json!({ "id": "copy", "text": corpus.doc(3).text }).to_string();
    lines.insert(250, copy);
    lines.insert(40, r#"{"id": 1, "text": "#.to_owned());
    lines.insert(41, String::new());
    lines.insert(120, "not json".to_owned());
    lines
}

/// One way of storing the lines: files of (name, content).
struct Layout {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    /// Whether pass 3 can copy (every input is JSON Lines).
    copies: bool,
}

fn joined(lines: &[String], terminator: impl Fn(usize) -> &'static str, last: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        out.extend_from_slice(line.as_bytes());
        if last || i + 1 < lines.len() {
            out.extend_from_slice(terminator(i).as_bytes());
        }
    }
    out
}

fn layouts(lines: &[String]) -> Vec<Layout> {
    let third = lines.len() / 3;
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(joined(lines, |_| "\r\n", false));
    // The plain-text file's records are texts, not JSON.
    let texts: Vec<String> = lines[..20]
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .collect();
    vec![
        Layout {
            name: "one file, \\n",
            files: vec![("a.jsonl", joined(lines, |_| "\n", true))],
            copies: true,
        },
        Layout {
            name: "byte order mark, \\r\\n, no final newline",
            files: vec![("a.jsonl", bom)],
            copies: true,
        },
        Layout {
            name: "mixed terminators",
            files: vec![(
                "a.jsonl",
                joined(lines, |i| if i % 3 == 0 { "\r\n" } else { "\n" }, true),
            )],
            copies: true,
        },
        Layout {
            name: "three files and an empty one",
            files: vec![
                ("a.jsonl", joined(&lines[..third], |_| "\n", true)),
                ("b.jsonl", Vec::new()),
                (
                    "c.ndjson",
                    joined(&lines[third..2 * third], |_| "\n", false),
                ),
                ("d.jsonl", joined(&lines[2 * third..], |_| "\r\n", true)),
            ],
            copies: true,
        },
        Layout {
            name: "a plain-text file among them",
            files: vec![
                ("a.jsonl", joined(lines, |_| "\n", true)),
                ("b.txt", joined(&texts, |_| "\n", true)),
            ],
            copies: false,
        },
    ]
}

/// Writes the layout's files into `dir` (compressed with a `.gz` suffix
/// when `compressed`); returns their paths in order.
fn write(dir: &Path, layout: &Layout, compressed: bool) -> Vec<PathBuf> {
    layout
        .files
        .iter()
        .map(|(name, content)| {
            let (name, content) = if compressed {
                (format!("{name}.gz"), gz(content))
            } else {
                (name.to_string(), content.clone())
            };
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            path
        })
        .collect()
}

fn context(inputs: Vec<PathBuf>, out: &Path) -> RunContext {
    let mut ctx = RunContext::quiet(inputs, OutputDir::create(out).unwrap());
    // Small batches: many of them, some ending mid-run of kept lines.
    ctx.settings.batch = Some(7);
    ctx
}

/// The three outputs of a run over inputs in `inputs`, with that folder
/// and the `.gz` suffix taken out of the rejects' locations.
fn outputs(out: &Path, inputs: &Path) -> Vec<(String, Vec<u8>)> {
    let folder = format!("{}/", inputs.display());
    [KEPT_FILE, CLUSTERS_FILE, REJECTS_FILE]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(out.join(name)).unwrap_or_else(|_| b"missing".to_vec());
            let text = String::from_utf8(bytes)
                .unwrap()
                .replace(&folder, "")
                // A compressed input's name, in rejects and in the ids of
                // records without one (`"b.txt.gz:3"`), is the other's.
                .replace(".gz\"", "\"")
                .replace(".gz:", ":");
            (name.to_string(), text.into_bytes())
        })
        .collect()
}

fn reads(report: &RunReport) -> (String, String) {
    let reads = &report.result["reads"];
    (
        reads["verify"].as_str().unwrap().to_owned(),
        reads["kept"].as_str().unwrap().to_owned(),
    )
}

/// The summary's entry for pass 3.
fn kept_pass(report: &RunReport) -> &serde_json::Value {
    let passes = report.result["passes"].as_array().expect("passes");
    passes
        .iter()
        .find(|p| p["pass"] == "kept")
        .expect("a kept pass")
}

#[test]
fn reading_only_what_is_needed_gives_the_outputs_of_a_full_read() {
    let lines = lines();
    let mut kept_of_json_only = None;
    for layout in layouts(&lines) {
        let tmp = tempfile::tempdir().unwrap();
        let (plain, packed) = (tmp.path().join("plain"), tmp.path().join("packed"));
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::create_dir_all(&packed).unwrap();
        let mut results = Vec::new();
        for (dir, compressed) in [(&plain, false), (&packed, true)] {
            let out = dir.join("out");
            let ctx = context(write(dir, &layout, compressed), &out);
            let report = dedup::run(&ctx, &DedupParams::default()).unwrap();
            assert_eq!(report.exit_code, 0, "{}: {}", layout.name, report.human());
            assert_eq!(report.records.rejected, 3, "{}", layout.name);
            let expected = match (compressed, layout.copies) {
                (true, _) => ("whole input", "whole input"),
                (false, true) => ("candidate records", "copied byte ranges"),
                (false, false) => ("candidate records", "whole input"),
            };
            assert_eq!(
                reads(&report),
                (expected.0.to_owned(), expected.1.to_owned()),
                "{}",
                layout.name
            );
            assert!(
                report.result["duplicates_removed"].as_u64().unwrap() > 5,
                "{}: {}",
                layout.name,
                report.result
            );
            if layout.copies && !compressed {
                assert_eq!(kept_pass(&report)["beside"], "verify", "{}", layout.name);
            }
            results.push(outputs(&out, dir));
        }
        for ((name, partial), (_, full)) in results[0].iter().zip(&results[1]) {
            assert!(
                partial == full,
                "{}: {name} differs between a partial and a full read:\n{}\n---\n{}",
                layout.name,
                String::from_utf8_lossy(&partial[..partial.len().min(600)]),
                String::from_utf8_lossy(&full[..full.len().min(600)])
            );
        }
        // Every JSON-only layout holds the same records: the same kept
        // lines, each with its own terminator (`\n` for a last line without
        // one), so the same once `\r\n`s are read as `\n`s.
        if layout.copies {
            let kept = results[0][0].1.clone();
            assert!(kept.ends_with(b"\n"), "{}", layout.name);
            let crlf = |bytes: &[u8]| bytes.windows(2).any(|w| w == b"\r\n");
            let input_crlf = layout.files.iter().any(|(_, bytes)| crlf(bytes));
            assert_eq!(crlf(&kept), input_crlf, "{}", layout.name);
            let kept = String::from_utf8(kept)
                .unwrap()
                .replace("\r\n", "\n")
                .into_bytes();
            match &kept_of_json_only {
                None => kept_of_json_only = Some(kept),
                Some(first) => assert!(*first == kept, "{}: kept.jsonl differs", layout.name),
            }
        }
    }
}

#[test]
fn copying_kept_beside_pass_2_or_after_it_gives_the_same_outputs() {
    let lines = lines();
    for layout in layouts(&lines).iter().filter(|l| l.copies) {
        let tmp = tempfile::tempdir().unwrap();
        let inputs = write(tmp.path(), layout, false);
        let mut results = Vec::new();
        for beside in [true, false] {
            let out = tmp.path().join(format!("out-{beside}"));
            let params = DedupParams {
                copy_beside_verify: beside,
                ..DedupParams::default()
            };
            let report = dedup::run(&context(inputs.clone(), &out), &params).unwrap();
            assert_eq!(report.exit_code, 0, "{}: {}", layout.name, report.human());
            let expected = if beside {
                "verify".into()
            } else {
                serde_json::Value::Null
            };
            assert_eq!(kept_pass(&report)["beside"], expected, "{}", layout.name);
            results.push(outputs(&out, tmp.path()));
        }
        for ((name, beside), (_, after)) in results[0].iter().zip(&results[1]) {
            assert!(
                beside == after,
                "{}: {name} differs between a copy beside pass 2 and one after it",
                layout.name
            );
        }
    }
}

#[test]
fn a_run_stopped_in_the_verify_pass_resumes_reading_the_candidates_only() {
    let lines = lines();
    let layout = &layouts(&lines)[3];
    let tmp = tempfile::tempdir().unwrap();
    let inputs = write(tmp.path(), layout, false);
    let clean = tmp.path().join("clean");
    let report = dedup::run(&context(inputs.clone(), &clean), &DedupParams::default()).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());

    let out = tmp.path().join("stopped");
    let mut ctx = context(inputs.clone(), &out);
    ctx.fingerprint = "stopped and resumed".into();
    let handle = ctx.handle.clone();
    ctx.progress = Rc::new(move |pass: &str| {
        if pass == "verify" {
            handle.request_stop();
        }
        Box::new(|_: &Progress| {})
    });
    let stopped = dedup::run(&ctx, &DedupParams::default()).unwrap();
    assert_eq!(stopped.exit_code, 130, "{}", stopped.human());
    assert_eq!(stopped.result["stopped_in_pass"], "verify");
    assert!(!out.join(KEPT_FILE).exists());

    let mut ctx = context(inputs, &out);
    ctx.fingerprint = "stopped and resumed".into();
    ctx.resume = true;
    let resumed = dedup::run(&ctx, &DedupParams::default()).unwrap();
    assert_eq!(resumed.exit_code, 0, "{}", resumed.human());
    assert_eq!(
        reads(&resumed),
        ("candidate records".into(), "copied byte ranges".into())
    );
    assert!(
        outputs(&clean, tmp.path()) == outputs(&out, tmp.path()),
        "the resumed outputs differ"
    );
}

#[test]
fn an_input_rewritten_or_truncated_during_the_run_fails_it_without_output() {
    let lines = lines();
    let layout = &layouts(&lines)[0];
    type Change = fn(&Path);
    let rewrite: Change = |path| {
        // Same length, one letter of the last record's text changed.
        let mut bytes = std::fs::read(path).unwrap();
        let at = bytes.len() - 40;
        bytes[at] = if bytes[at] == b'q' { b'z' } else { b'q' };
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
    };
    let truncate: Change = |path| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(0)
            .unwrap();
    };
    for (name, change) in [("rewritten", rewrite), ("truncated", truncate)] {
        let tmp = tempfile::tempdir().unwrap();
        let inputs = write(tmp.path(), layout, false);
        let out = tmp.path().join("out");
        let mut ctx = context(inputs.clone(), &out);
        let input = inputs[0].clone();
        ctx.progress = Rc::new(move |pass: &str| {
            if pass == "verify" {
                // Later than pass 1 by a clock tick at least.
                std::thread::sleep(std::time::Duration::from_millis(20));
                change(&input);
            }
            Box::new(|_: &Progress| {})
        });
        let report = dedup::run(&ctx, &DedupParams::default()).unwrap();
        assert_eq!(report.exit_code, 74, "{name}: {}", report.human());
        assert!(
            report.cause.contains("changed") || report.cause.contains("shorter"),
            "{name}: {}",
            report.cause
        );
        for file in [KEPT_FILE, CLUSTERS_FILE] {
            assert!(!out.join(file).exists(), "{name}: {file} was written");
        }
    }
}
