//! Guarantee: deduplicating B `--against` the index of A removes exactly
//! the records of B that one run over A followed by B removes, with the
//! same `kept.jsonl` lines and the same `duplicate_of` and similarity in
//! `clusters.jsonl`; an index grown run by run (`--against OLD
//! --save-index NEW`) does the same for one run over all the parts, and
//! several indexes at once remove what one run over all the parts does
//! (each index's `duplicate_of` being its own cluster's root). An
//! index of other parameters is refused with exit 2 naming the
//! difference; a damaged one with exit 65 naming the file; neither run
//! writes an output.
//!
//! The corpus (texts are windows of 104 distinct words sliding along a
//! family's sequence: 6 words apart J = 0.887, 12 apart J = 0.786, below
//! the threshold 0.8) plants near-duplicates within A, within B and
//! across, a chain that crosses between A and B several times and joins
//! two of A's clusters through a record of B, a record of B whose only
//! neighbour in A was removed in A, identical copies on both sides
//! (twins), a bucket of 25 near-identical records split 12 / 13 (past the
//! 16 records whose every pair is a candidate), rejected and empty
//! records, all among distinct filler records in a shuffled order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use drainpipe::corpus::SplitMix64;

use crate::binary::{drainpipe, succeeded};

const WORDS: usize = 104;
const SHIFT: usize = 6;

fn word(n: usize) -> String {
    let mut n = n;
    let mut w = String::from("w");
    loop {
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

/// Member `m` of family `f`: a window sliding `SHIFT` words per member.
fn member(f: usize, m: usize) -> String {
    let start = f * 100_000 + m * SHIFT;
    (start..start + WORDS)
        .map(word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Near-identical variant `v` of family `f`: one word of its first member
/// replaced (J >= 0.818 between any two variants).
fn variant(f: usize, v: usize) -> String {
    let mut words: Vec<String> = (f * 100_000..f * 100_000 + WORDS).map(word).collect();
    words[10 + 3 * v] = word(9_000_000 + v);
    words.join(" ")
}

fn line(id: &str, text: &str) -> String {
    serde_json::json!({ "id": id, "text": text }).to_string()
}

/// Records of the parts, each `(id, text)` or a malformed line.
struct Corpus {
    parts: Vec<Vec<String>>,
}

/// Part `p` (of `n`) gets planted records by who is where; filler
/// everywhere; each part shuffled.
fn corpus(parts: usize, seed: u64) -> Corpus {
    let mut lines: Vec<Vec<String>> = vec![Vec::new(); parts];
    let last = parts - 1;
    let mut put = |p: usize, id: String, text: String| lines[p].push(line(&id, &text));
    // Within each part: a pair.
    for p in 0..parts {
        put(p, format!("within{p}-0"), member(10 + p, 0));
        put(p, format!("within{p}-1"), member(10 + p, 1));
    }
    // Across: first member in the first part, second in the last.
    put(0, "across-0".into(), member(20, 0));
    put(last, "across-1".into(), member(20, 1));
    // A chain crossing parts: member m in part m % parts (the last part
    // gets the tail too); in part 0 alone members 0 and 2 are two
    // clusters, joined by member 1 of another part.
    for m in 0..7 {
        let p = if m >= 5 { last } else { m % parts };
        put(p, format!("chain-{m}"), member(30, m));
    }
    // A record whose only neighbour in the first part was removed there.
    put(0, "removed-0".into(), member(40, 0));
    put(0, "removed-1".into(), member(40, 1));
    put(last, "removed-2".into(), member(40, 2));
    // Twins on every side.
    for p in 0..parts {
        for copy in 0..3 {
            put(p, format!("twin{p}-{copy}"), member(50, 0));
        }
    }
    // A large bucket of near-identical records, split between the parts.
    for v in 0..25 {
        put(v * parts / 25, format!("variant-{v}"), variant(60, v));
    }
    // Filler: distinct records.
    for p in 0..parts {
        for i in 0..150 {
            put(p, format!("filler{p}-{i}"), member(1000 + p * 1000 + i, 0));
        }
        put(p, format!("empty{p}"), String::new());
    }
    let mut rng = SplitMix64::new(seed);
    for part in &mut lines {
        for i in (1..part.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            part.swap(i, j);
        }
        // A malformed line, rejected (it keeps its number).
        let at = part.len() / 3;
        part.insert(at, "{\"id\": \"broken\", \"text\": ".into());
    }
    Corpus { parts: lines }
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `dedup` with `args`; returns its output folder.
fn dedup(dir: &Path, out: &str, args: &[&std::ffi::OsStr]) -> PathBuf {
    let out = dir.join(out);
    succeeded(
        drainpipe()
            .arg("dedup")
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg("-q"),
    );
    out
}

/// Runs `dedup` over `input` alone, saving its index as `index`.
fn save_index(dir: &Path, out: &str, input: &Path, index: &Path) {
    let save: &std::ffi::OsStr = "--save-index".as_ref();
    dedup(dir, out, &[input.as_os_str(), save, index.as_os_str()]);
}

/// The corpus's parts written to `p0.jsonl`, `p1.jsonl`..., and all of
/// them, in order, to `all.jsonl`.
fn write_parts(dir: &Path, corpus: &Corpus) -> (Vec<PathBuf>, PathBuf) {
    let files = (corpus.parts.iter().enumerate())
        .map(|(p, part)| write(dir, &format!("p{p}.jsonl"), part))
        .collect();
    (files, write(dir, "all.jsonl", &corpus.parts.concat()))
}

fn ids_of(lines: &[String]) -> HashSet<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["id"].to_string())
        .collect()
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `clusters.jsonl` lines as `id -> (duplicate_of, similarity, index)`.
fn clusters(out: &Path) -> HashMap<String, (String, String, Option<String>)> {
    read_lines(&out.join("clusters.jsonl"))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let index = v.get("index").map(|i| i.as_str().unwrap().to_owned());
            (
                v["id"].to_string(),
                (
                    v["duplicate_of"].to_string(),
                    v["similarity"].to_string(),
                    index,
                ),
            )
        })
        .collect()
}

/// Checks that the last run `against` (over the last part) removed and
/// kept what the run `one` over every part did with the last part's
/// records.
/// With several indexes (`indexes` longer than one), an indexed record's
/// `duplicate_of` may be another index's root than the single run's: each
/// index's clusters are its own. Which records are removed, and their
/// similarities, are the single run's still.
fn assert_same_for_last_part(corpus: &Corpus, against: &Path, one: &Path, indexes: &[&str]) {
    let last = corpus.parts.last().unwrap();
    let ids = ids_of(last);
    let joined = clusters(against);
    let single = clusters(one);
    let single_last: HashMap<_, _> = single.iter().filter(|(id, _)| ids.contains(*id)).collect();
    let removed: HashSet<&String> = joined.keys().collect();
    let removed_single: HashSet<&String> = single_last.keys().copied().collect();
    assert_eq!(
        removed, removed_single,
        "the records of the last part removed"
    );
    for (id, (of, similarity, from)) in &joined {
        let (single_of, single_similarity, _) = single_last[id];
        assert_eq!(similarity, single_similarity, "{id}");
        if indexes.len() == 1 || from.is_none() {
            assert_eq!(of, single_of, "{id}");
        }
        // Named as the index's record exactly when it duplicates one.
        assert_eq!(from.is_some(), !ids.contains(of), "{id} duplicate_of {of}");
        if let Some(from) = from {
            assert!(indexes.contains(&from.as_str()), "{id}: {from}");
        }
    }
    let kept = read_lines(&against.join("kept.jsonl"));
    let kept_single: Vec<String> = read_lines(&one.join("kept.jsonl"))
        .into_iter()
        .filter(|l| last.contains(l))
        .collect();
    assert_eq!(kept, kept_single, "kept.jsonl");
    // The test means something: records removed both ways.
    let indexed = joined.values().filter(|v| v.2.is_some()).count();
    assert!(indexed >= 5 && joined.len() > indexed, "{joined:?}");
}

#[test]
fn dedup_against_an_index_removes_what_one_run_over_both_would() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(2, 7);
    let a = write(dir.path(), "a.jsonl", &corpus.parts[0]);
    let b = write(dir.path(), "b.jsonl", &corpus.parts[1]);
    let both: Vec<String> = corpus.parts.concat();
    let ab = write(dir.path(), "ab.jsonl", &both);
    let idx = dir.path().join("IDX");
    save_index(dir.path(), "run1", &a, &idx);
    let run2 = dedup(
        dir.path(),
        "run2",
        &[b.as_os_str(), "--against".as_ref(), idx.as_os_str()],
    );
    let run3 = dedup(dir.path(), "run3", &[ab.as_os_str()]);
    assert_same_for_last_part(&corpus, &run2, &run3, &["IDX"]);
    // The chain's members in B joined A's clusters of its members 0, 2
    // and 4 (two apart: not duplicates in A alone) into one: each
    // duplicates the first of them in A. Likewise the record whose
    // neighbour in A was removed there duplicates that cluster's first.
    let first_in_a = |names: &[&str]| {
        let at = |name: &&&str| {
            let id = format!("\"id\":\"{name}\"");
            corpus.parts[0]
                .iter()
                .position(|l| l.contains(&id))
                .unwrap()
        };
        format!("\"{}\"", names.iter().min_by_key(at).unwrap())
    };
    let joined = clusters(&run2);
    let chain_root = first_in_a(&["chain-0", "chain-2", "chain-4"]);
    for m in [1, 3, 5, 6] {
        let (of, _, index) = &joined[&format!("\"chain-{m}\"")];
        assert_eq!(
            (of, index.as_deref()),
            (&chain_root, Some("IDX")),
            "chain-{m}"
        );
    }
    let removed_root = first_in_a(&["removed-0", "removed-1"]);
    assert_eq!(joined["\"removed-2\""].0, removed_root);
    let summary = crate::binary::summary(&run2);
    assert_eq!(summary["result"]["index"]["against"][0]["index"], "IDX");
}

#[test]
fn an_index_grown_run_by_run_removes_what_one_run_over_all_would() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(3, 11);
    let (files, all) = write_parts(dir.path(), &corpus);
    let (i1, i2) = (dir.path().join("I1"), dir.path().join("I2"));
    save_index(dir.path(), "g1", &files[0], &i1);
    let grow = [
        files[1].as_os_str(),
        "--against".as_ref(),
        i1.as_os_str(),
        "--save-index".as_ref(),
        i2.as_os_str(),
    ];
    dedup(dir.path(), "g2", &grow);
    let last = dedup(
        dir.path(),
        "g3",
        &[files[2].as_os_str(), "--against".as_ref(), i2.as_os_str()],
    );
    let one = dedup(dir.path(), "one", &[all.as_os_str()]);
    assert_same_for_last_part(&corpus, &last, &one, &["I2"]);
    let summary = crate::binary::summary(&last);
    let records: usize = corpus.parts[..2].iter().map(Vec::len).sum();
    assert_eq!(summary["result"]["index"]["against"][0]["records"], records);
}

#[test]
fn dedup_against_several_indexes_removes_what_one_run_over_all_would() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(3, 13);
    let (files, all) = write_parts(dir.path(), &corpus);
    let (i1, i2) = (dir.path().join("I1"), dir.path().join("I2"));
    // Each index of its own part alone.
    save_index(dir.path(), "s1", &files[0], &i1);
    save_index(dir.path(), "s2", &files[1], &i2);
    let against = [
        files[2].as_os_str(),
        "--against".as_ref(),
        i1.as_os_str(),
        "--against".as_ref(),
        i2.as_os_str(),
    ];
    let last = dedup(dir.path(), "s3", &against);
    let one = dedup(dir.path(), "one", &[all.as_os_str()]);
    assert_same_for_last_part(&corpus, &last, &one, &["I1", "I2"]);
    let named: HashSet<String> = clusters(&last).into_values().filter_map(|v| v.2).collect();
    assert_eq!(named, HashSet::from(["I1".to_owned(), "I2".to_owned()]));
}

/// Runs `dedup` expecting it to fail; returns its exit code and stderr.
fn refused(dir: &Path, out: &str, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = dir.join(out);
    let result = drainpipe()
        .arg("dedup")
        .args(args)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !out.join("kept.jsonl").exists(),
        "{args:?} wrote kept.jsonl"
    );
    (
        result.status.code(),
        String::from_utf8_lossy(&result.stderr).into_owned(),
    )
}

#[test]
fn an_index_of_other_parameters_exits_2_naming_each_difference() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(2, 3);
    let a = write(dir.path(), "a.jsonl", &corpus.parts[0]);
    let b = write(dir.path(), "b.jsonl", &corpus.parts[1]);
    let idx = dir.path().join("IDX");
    save_index(dir.path(), "run1", &a, &idx);
    let args = [
        b.as_os_str(),
        "--against".as_ref(),
        idx.as_os_str(),
        "--threshold".as_ref(),
        "0.7".as_ref(),
        "--ngram".as_ref(),
        "4".as_ref(),
    ];
    let (code, stderr) = refused(dir.path(), "run2", &args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("threshold 0.8 in the index, 0.7 here"),
        "{stderr}"
    );
    assert!(stderr.contains("ngram 5 in the index, 4 here"), "{stderr}");
    // Saving into a folder that exists is refused too.
    let args = [b.as_os_str(), "--save-index".as_ref(), idx.as_os_str()];
    let (code, stderr) = refused(dir.path(), "run3", &args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the folder exists"), "{stderr}");
}

/// Damages the bytes of a file.
type Damage = fn(&mut Vec<u8>);

#[test]
fn a_damaged_index_exits_65_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(2, 5);
    let a = write(dir.path(), "a.jsonl", &corpus.parts[0]);
    let b = write(dir.path(), "b.jsonl", &corpus.parts[1]);
    let idx = dir.path().join("IDX");
    save_index(dir.path(), "run1", &a, &idx);
    let damages: [(&str, Damage); 4] = [
        ("band-003.bin", |bytes| {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x10;
        }),
        ("roots.bin", |bytes| bytes.truncate(bytes.len() - 1)),
        ("manifest.bin", |bytes| bytes[3] ^= 1),
        // In the first (and only) block of words, which holds the records
        // of A that B's share buckets with: found when it is read.
        ("words-000.bin", |bytes| {
            let at = 40;
            bytes[at] ^= 0xFF;
        }),
    ];
    for (i, (file, damage)) in damages.into_iter().enumerate() {
        let copy = dir.path().join(format!("damaged{i}"));
        std::fs::create_dir(&copy).unwrap();
        for entry in std::fs::read_dir(&idx).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let path = copy.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        // Saving a grown index too: it is never left half-written.
        let grown = dir.path().join(format!("grown{i}"));
        let args = [
            b.as_os_str(),
            "--against".as_ref(),
            copy.as_os_str(),
            "--save-index".as_ref(),
            grown.as_os_str(),
        ];
        let (code, stderr) = refused(dir.path(), &format!("out{i}"), &args);
        assert_eq!(code, Some(65), "{file}: {stderr}");
        assert!(
            stderr.contains("is damaged") && stderr.contains(file),
            "{file}: {stderr}"
        );
        assert!(!grown.exists(), "{file}");
        // Its draft stays only beside state to resume from (passes that
        // completed before the damage was found), and goes with it.
        let out = dir.path().join(format!("out{i}"));
        let state = ["dedup-signatures.bin", "checkpoint.bin"]
            .iter()
            .any(|f| out.join(f).exists());
        let left = drafts(dir.path());
        assert!(left.len() <= usize::from(state), "{file}: {left:?}");
        for draft in left {
            std::fs::remove_dir_all(dir.path().join(draft)).unwrap();
        }
    }
}

/// The index drafts (`.NAME.XXXXXX.tmp` folders) in `dir`.
fn drafts(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') && name.ends_with(".tmp"))
        .collect()
}

#[test]
fn an_index_a_killed_run_was_writing_is_removed_by_the_next_run_saving_it() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(1, 9);
    let a = write(dir.path(), "a.jsonl", &corpus.parts[0]);
    // What a killed run leaves: a draft with some files in it.
    let killed = dir.path().join(".IDX.a1b2c3.tmp");
    std::fs::create_dir(&killed).unwrap();
    std::fs::write(killed.join("band-000.bin"), b"half").unwrap();
    let idx = dir.path().join("IDX");
    save_index(dir.path(), "run1", &a, &idx);
    assert_eq!(drafts(dir.path()), Vec::<String>::new());
    assert!(idx.join("manifest.bin").exists());
}
