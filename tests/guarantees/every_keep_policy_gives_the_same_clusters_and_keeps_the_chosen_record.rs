//! Guarantee: every `--keep` policy gives the same clusters and keeps the
//! record it chooses. Six planted clusters of five records (and records
//! in no cluster), as JSON Lines and as Parquet: under `first`,
//! `longest`, `shortest`, `field:NAME`, `field:NAME:asc` and
//! `field:NAME:desc`, the clusters (each kept record with the records
//! `clusters.jsonl` names it for) are the planted ones; `duplicate_of` is
//! the record the policy ranks first, chosen here by hand (ties to the
//! first in input order; lengths in characters, not bytes; numbers before
//! strings, the missing last); `kept.jsonl` holds every other record, byte
//! for byte, in input order; `summary.json` counts the clustered records
//! without the field. Parquet input gives the JSON Lines input's
//! `clusters.jsonl`. Also: the default policy keeps the first record, with
//! the outputs of `--keep first`; an invalid `--keep` exits 2 naming the
//! syntax; a folder holding a run with another policy is refused; against
//! an index saved under a policy, a cluster keeps its indexed record, the
//! one the indexed run kept; with `--nats`, workers compute the keys and
//! the outputs are the single process's; a run
//! under a policy stopped in pass 2, or after it, and resumed gives the
//! uninterrupted run's outputs (the keys are in pass 2's checkpoint and
//! result).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

use crate::binary::{drainpipe, succeeded, summary};
use crate::mixed::{assert_same_outputs, outputs, outputs_of_leg, run_leg_to, Leg, StopAt};
use crate::parquet::{write, Column};

const CLUSTERS: usize = 6;
const MEMBERS: usize = 5;

/// Words added to the cluster's 80 words, per member: distinct 6-letter
/// words (`é` marks 6-character, 12-byte ones).
const EXTRA: [[&str; MEMBERS]; CLUSTERS] = [
    ["aa", "aaaaaa", "a", "aaaaaa", ""],
    ["aaa", "éé", "a", "aaa", "aa"],
    ["", "", "", "", ""],
    ["a", "", "aa", "", "aaaaa"],
    ["", "", "", "", ""],
    ["aaaa", "aaa", "aa", "a", ""],
];

/// `longest` and `shortest`, by hand: the member kept.
const LONGEST: [usize; CLUSTERS] = [1, 0, 0, 4, 0, 0];
const SHORTEST: [usize; CLUSTERS] = [4, 2, 0, 1, 0, 4];

/// The JSON Lines field `score` (`None`: absent).
fn score(c: usize, m: usize) -> Option<Value> {
    let table: [[Option<Value>; MEMBERS]; CLUSTERS] = [
        [
            Some(json!(0.5)),
            Some(json!(2)),
            Some(Value::Null),
            Some(json!(2.0)),
            Some(json!("z")),
        ],
        [None, None, None, None, None],
        [
            Some(json!("b")),
            Some(json!("a")),
            Some(json!("c")),
            None,
            Some(json!("c")),
        ],
        [
            Some(json!(-1)),
            Some(json!(10)),
            Some(json!(9.5)),
            Some(json!(true)),
            Some(json!(u64::MAX)),
        ],
        [(); MEMBERS].map(|_| Some(json!(1))),
        [
            None,
            Some(json!("a")),
            None,
            Some(json!(3)),
            Some(json!([4])),
        ],
    ];
    table[c][m].clone()
}

/// `field:score` (desc) and `field:score:asc`, by hand.
const SCORE_DESC: [usize; CLUSTERS] = [1, 0, 2, 4, 0, 3];
const SCORE_ASC: [usize; CLUSTERS] = [0, 0, 1, 0, 0, 3];
/// Clustered records without a number or a string as score.
const SCORE_MISSING: u64 = 1 + 5 + 1 + 1 + 3;

/// The numeric column `rank` of both forms (`None`: absent in JSON Lines,
/// null in Parquet).
fn rank(c: usize, m: usize) -> Option<f64> {
    let table = [
        [Some(1.5), None, Some(3.0), Some(3.0), Some(0.25)],
        [None; MEMBERS],
        [Some(-2.0), Some(7.0), Some(-3.5), None, Some(7.0)],
        [Some(1.0); MEMBERS],
        [None, None, Some(0.0), None, None],
        [Some(4.0), Some(5.0), Some(6.0), Some(1e300), Some(-1e300)],
    ];
    table[c][m]
}

const RANK_DESC: [usize; CLUSTERS] = [2, 0, 1, 0, 2, 3];
const RANK_ASC: [usize; CLUSTERS] = [4, 0, 2, 0, 2, 4];
const RANK_MISSING: u64 = 1 + 5 + 1 + 4;

/// A 6-letter word, distinct for each `n`.
fn word(n: usize) -> String {
    let mut x = n as u64 * 2_654_435_761 % 1_000_003;
    (0..6)
        .map(|_| {
            let letter = (b'a' + (x % 26) as u8) as char;
            x /= 26;
            letter
        })
        .collect()
}

/// One record: its id, text, and whether it belongs to cluster `(c, m)`.
struct Record {
    id: i64,
    text: String,
    member: Option<(usize, usize)>,
}

fn records() -> Vec<Record> {
    let mut out = Vec::new();
    let mut loose = 0;
    for m in 0..MEMBERS {
        for (c, extra) in EXTRA.iter().enumerate() {
            let mut words: Vec<String> = (0..80).map(|i| word(c * 1000 + i)).collect();
            for (k, marker) in extra[m].chars().enumerate() {
                let w = word(50_000 + c * 100 + m * 10 + k);
                words.push(if marker == 'é' {
                    w.chars().map(|_| 'é').take(5).collect::<String>() + &w[..1]
                } else {
                    w
                });
            }
            out.push(Record {
                id: (c * 10 + m) as i64,
                text: words.join(" "),
                member: Some((c, m)),
            });
        }
        // Records in no cluster, between the members.
        for _ in 0..4 {
            loose += 1;
            let words: Vec<String> = (0..60).map(|i| word(100_000 + loose * 100 + i)).collect();
            out.push(Record {
                id: 100 + loose as i64,
                text: words.join(" "),
                member: None,
            });
        }
    }
    out
}

fn json_lines(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        let mut line = serde_json::Map::new();
        line.insert("id".into(), json!(r.id));
        if let Some((c, m)) = r.member {
            if let Some(s) = score(c, m) {
                line.insert("score".into(), s);
            }
            if let Some(x) = rank(c, m) {
                line.insert("rank".into(), json!(x));
            }
        } else {
            line.insert("score".into(), json!(1000));
            line.insert("rank".into(), json!(1000.0));
        }
        line.insert("text".into(), json!(r.text));
        out.push_str(&Value::Object(line).to_string());
        out.push('\n');
    }
    out
}

fn parquet(path: &Path, records: &[Record]) {
    let ids = records.iter().map(|r| r.id).collect();
    let texts = records.iter().map(|r| r.text.clone()).collect();
    let ranks = records
        .iter()
        .map(|r| r.member.map_or(Some(1000.0), |(c, m)| rank(c, m)))
        .collect();
    write(
        path,
        &[
            ("id", Column::Int64(ids)),
            ("text", Column::Str(texts)),
            ("rank", Column::OptDouble(ranks)),
        ],
        7,
    );
}

/// A run's outputs.
struct Run {
    clusters: Vec<u8>,
    kept: Vec<u8>,
    summary: Value,
}

/// Runs `dedup` over `input` into `out` under `keep` (the default
/// policy: `None`), with the further `args`.
fn dedup(input: &Path, out: &Path, keep: Option<&str>, args: &[&std::ffi::OsStr]) -> Run {
    let mut cmd = drainpipe();
    // kept.jsonl for Parquet input too, so the kept records compare as lines.
    cmd.args([
        "dedup",
        "--workers",
        "2",
        "--no-progress",
        "--kept-format",
        "jsonl",
    ])
    .arg(input)
    .arg("-o")
    .arg(out)
    .args(args);
    if let Some(keep) = keep {
        cmd.args(["--keep", keep]);
    }
    succeeded(&mut cmd);
    Run {
        clusters: std::fs::read(out.join("clusters.jsonl")).unwrap(),
        kept: std::fs::read(out.join("kept.jsonl")).unwrap(),
        summary: summary(out),
    }
}

/// The records as JSON Lines, written to `in.jsonl` in `dir`: the file
/// and its text.
fn jsonl_input(dir: &Path) -> (std::path::PathBuf, String) {
    let lines = json_lines(&records());
    let path = dir.join("in.jsonl");
    std::fs::write(&path, &lines).unwrap();
    (path, lines)
}

/// Each kept record's id with the ids `clusters.jsonl` names it for.
fn clusters_of(clusters: &[u8]) -> BTreeMap<i64, BTreeSet<i64>> {
    let mut out: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for line in clusters.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        let kept = v["duplicate_of"].as_i64().unwrap();
        out.entry(kept)
            .or_default()
            .insert(v["id"].as_i64().unwrap());
    }
    out
}

/// Checks a run under a policy that keeps member `chosen[c]` of cluster
/// `c`: the planted clusters, that choice, and `kept.jsonl` as every other
/// line of `input`, in order.
fn check(run: &Run, chosen: &[usize; CLUSTERS], input: Option<&str>, label: &str) {
    let clusters = clusters_of(&run.clusters);
    let expected: BTreeMap<i64, BTreeSet<i64>> = (0..CLUSTERS)
        .map(|c| {
            let kept = (c * 10 + chosen[c]) as i64;
            let others = (0..MEMBERS)
                .map(|m| (c * 10 + m) as i64)
                .filter(|&id| id != kept)
                .collect();
            (kept, others)
        })
        .collect();
    assert_eq!(clusters, expected, "{label}: clusters or kept records");
    let removed: BTreeSet<i64> = clusters.values().flatten().copied().collect();
    let kept_ids: Vec<i64> = run
        .kept
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let all = records();
    let expected_ids: Vec<i64> = all
        .iter()
        .map(|r| r.id)
        .filter(|id| !removed.contains(id))
        .collect();
    assert_eq!(kept_ids, expected_ids, "{label}: kept.jsonl");
    if let Some(input) = input {
        let lines: String = input
            .lines()
            .zip(&all)
            .filter(|(_, r)| !removed.contains(&r.id))
            .map(|(l, _)| format!("{l}\n"))
            .collect();
        assert!(
            run.kept == lines.as_bytes(),
            "{label}: kept lines differ from the input's"
        );
    }
}

#[test]
fn every_keep_policy_gives_the_same_clusters_and_keeps_the_chosen_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, lines) = jsonl_input(tmp.path());
    let pq = tmp.path().join("in.parquet");
    parquet(&pq, &records());

    let first = [0; CLUSTERS];
    let policies: [(&str, &[usize; CLUSTERS], Option<u64>); 9] = [
        ("first", &first, None),
        ("longest", &LONGEST, None),
        ("shortest", &SHORTEST, None),
        ("field:score", &SCORE_DESC, Some(SCORE_MISSING)),
        ("field:score:desc", &SCORE_DESC, Some(SCORE_MISSING)),
        ("field:score:asc", &SCORE_ASC, Some(SCORE_MISSING)),
        ("field:rank", &RANK_DESC, Some(RANK_MISSING)),
        ("field:rank:asc", &RANK_ASC, Some(RANK_MISSING)),
        // No record has the field: every one ranks last, the first is kept.
        ("field:absent", &first, Some((CLUSTERS * MEMBERS) as u64)),
    ];
    for (i, (keep, chosen, missing)) in policies.iter().enumerate() {
        let run = dedup(
            &jsonl,
            &tmp.path().join(format!("jsonl-{i}")),
            Some(keep),
            &[],
        );
        check(&run, chosen, Some(&lines), &format!("JSON Lines, {keep}"));
        let result = &run.summary["result"];
        let canonical = match *keep {
            field if field.starts_with("field:") && !field.ends_with("sc") => {
                format!("{field}:desc")
            }
            other => other.to_owned(),
        };
        assert_eq!(result["keep"]["policy"], canonical, "{keep}");
        assert_eq!(result["keep"]["missing_field"].as_u64(), *missing, "{keep}");
        assert_eq!(result["duplicates_removed"], CLUSTERS * (MEMBERS - 1));
        if keep.contains("score") {
            continue;
        }
        // Parquet: the same choice, the same clusters.jsonl.
        let from_parquet = dedup(
            &pq,
            &tmp.path().join(format!("parquet-{i}")),
            Some(keep),
            &[],
        );
        check(&from_parquet, chosen, None, &format!("Parquet, {keep}"));
        assert!(
            from_parquet.clusters == run.clusters,
            "{keep}: Parquet's clusters.jsonl differs"
        );
        assert_eq!(
            from_parquet.summary["result"]["keep"]["missing_field"].as_u64(),
            *missing,
            "Parquet, {keep}"
        );
    }
}

#[test]
fn the_default_keep_policy_keeps_the_first_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, lines) = jsonl_input(tmp.path());
    let default = dedup(&jsonl, &tmp.path().join("default"), None, &[]);
    check(&default, &[0; CLUSTERS], Some(&lines), "default");
    let first = dedup(&jsonl, &tmp.path().join("first"), Some("first"), &[]);
    assert!(default.clusters == first.clusters && default.kept == first.kept);
    assert_eq!(
        default.summary["result"]["keep"],
        json!({ "policy": "first" })
    );
    assert_eq!(
        default.summary["fingerprint"], first.summary["fingerprint"],
        "--keep first is the default run"
    );
}

/// Runs `dedup --keep KEEP` over `input` into `out`, expecting exit 2;
/// its stderr.
fn exits_2(input: &Path, out: &Path, keep: &str) -> String {
    let output = drainpipe()
        .args(["dedup", "--no-progress", "--keep", keep])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "--keep {keep:?}: {stderr}");
    stderr
}

#[test]
fn an_invalid_keep_policy_exits_2_naming_the_syntax() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, _) = jsonl_input(tmp.path());
    for bad in [
        "last",
        "",
        "random",
        "Longest",
        "field",
        "field:",
        "field::asc",
    ] {
        let out = tmp.path().join("out");
        let stderr = exits_2(&jsonl, &out, bad);
        assert!(
            stderr.contains("--keep") && stderr.contains("field:NAME[:asc|desc]"),
            "{bad:?}: {stderr}"
        );
        assert!(!out.join("kept.jsonl").exists());
    }
}

#[test]
fn a_folder_holding_a_run_with_another_keep_policy_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, _) = jsonl_input(tmp.path());
    let out = tmp.path().join("out");
    let first = dedup(&jsonl, &out, Some("longest"), &[]);
    let stderr = exits_2(&jsonl, &out, "shortest");
    assert!(stderr.contains("keeping longest"), "{stderr}");
    assert_eq!(
        std::fs::read(out.join("clusters.jsonl")).unwrap(),
        first.clusters
    );
}

#[test]
fn a_keep_policy_stopped_in_or_after_pass_2_resumes_to_the_uninterrupted_outputs() {
    let records = std::sync::Arc::new(crate::mixed::records());
    let longest = Leg {
        keep: "longest".parse().unwrap(),
        ..Leg::default()
    };
    let expected = outputs_of_leg(&records, &longest);
    assert!(
        expected != outputs_of_leg(&records, &Leg::default()),
        "the corpus must keep other records under longest"
    );
    for (stop, left) in [
        (
            StopAt::During {
                pass: "verify",
                after: 400,
            },
            drainpipe_actors::CHECKPOINT_FILE,
        ),
        // Pass 3 is the third opening: pass 2 completed and kept its result.
        (
            StopAt::Opening(3),
            drainpipe::jobs::dedup::resume::VERIFIED_FILE,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let stopped = Leg {
            batch: Some(50),
            window: 2,
            stop: Some(stop),
            ..longest.clone()
        };
        run_leg_to(&records, dir.path(), &stopped, 130);
        assert!(dir.path().join(left).exists(), "{stop:?}: no {left}");
        let resumed = Leg {
            resume: true,
            ..longest.clone()
        };
        run_leg_to(&records, dir.path(), &resumed, 0);
        assert_same_outputs(
            &expected,
            &outputs(dir.path()),
            &format!("stopped at {stop:?} and resumed, against the uninterrupted run"),
        );
    }
}

#[test]
fn against_an_index_a_cluster_keeps_its_indexed_record_the_one_that_run_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let all = records();
    // Members 0 to 2 of every cluster and the 12 records in no cluster
    // read between them (ids 101 to 112) are indexed; members 3 and 4 and
    // the rest are new.
    let (old, new): (Vec<Record>, Vec<Record>) = all
        .into_iter()
        .partition(|r| r.member.is_none_or(|(_, m)| m < 3) && r.id < 113);
    let (a, b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    std::fs::write(&a, json_lines(&old)).unwrap();
    std::fs::write(&b, json_lines(&new)).unwrap();
    let index = tmp.path().join("idx");
    let save = ["--save-index".as_ref(), index.as_os_str()];
    dedup(&a, &tmp.path().join("out-a"), Some("longest"), &save);
    // The longest of members 0 to 2, by hand.
    let kept_in_a = [1, 0, 0, 2, 0, 0];
    let out = tmp.path().join("out-b");
    let against = ["--against".as_ref(), index.as_os_str()];
    dedup(&b, &out, Some("longest"), &against);
    let clusters = std::fs::read_to_string(out.join("clusters.jsonl")).unwrap();
    let mut named: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    for line in clusters.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let of = v["duplicate_of"].as_i64().unwrap();
        named.insert(v["id"].as_i64().unwrap(), (of, v["index"].to_string()));
    }
    // Every new member, the longest of its cluster (member 4 of cluster 3)
    // too, duplicates the record the indexed run kept.
    let expected: BTreeMap<i64, (i64, String)> = (0..CLUSTERS)
        .flat_map(|c| {
            [3, 4].map(|m| {
                let kept = (c * 10 + kept_in_a[c]) as i64;
                ((c * 10 + m) as i64, (kept, "\"idx\"".to_owned()))
            })
        })
        .collect();
    assert_eq!(named, expected);
}

#[test]
fn a_keep_policy_on_workers_gives_the_single_process_outputs() {
    use crate::binary::{spawn, wait};
    use crate::nats::Cluster;
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, json_lines(&records())).unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let mut cmd = drainpipe();
        cmd.arg("dedup").arg(&input).arg("-o").arg(out);
        cmd.args(["--no-progress", "--keep", "field:score"])
            .args(extra);
        let output = wait(spawn(cmd), std::time::Duration::from_secs(180)).0;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let single = tmp.path().join("single");
    run(&single, &[]);
    let server = Cluster::start(2);
    let distributed = tmp.path().join("distributed");
    run(&distributed, &["--nats", &server.url(), "--batch", "8"]);
    for name in ["kept.jsonl", "clusters.jsonl"] {
        let (a, b) = (single.join(name), distributed.join(name));
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{name} differs between the single-process and the distributed run"
        );
    }
    let s = summary(&distributed);
    let verify_parts = s["remote"]["by_pass"]["verify"]["parts"].as_u64();
    assert!(
        verify_parts > Some(0),
        "pass 2 went through the broker: {}",
        s["remote"]
    );
    let run = Run {
        clusters: std::fs::read(distributed.join("clusters.jsonl")).unwrap(),
        kept: std::fs::read(distributed.join("kept.jsonl")).unwrap(),
        summary: s,
    };
    check(&run, &SCORE_DESC, None, "distributed, field:score");
}
