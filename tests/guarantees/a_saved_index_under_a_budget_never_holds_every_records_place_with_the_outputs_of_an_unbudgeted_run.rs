//! Guarantee: saving an index (`--save-index`) under `--max-memory` never
//! holds the places of every record. Pass 2 then reads every record for
//! its words, and reading them at their places would hold a place a
//! record (28 bytes: 140 MB at 5M short documents, beside a 128M budget).
//! Past the places' share (`Shares::candidate_places`) it reads the whole
//! input instead (`reread::possible`, `src/jobs/dedup/passes/verify/reread.rs`),
//! as it does when the candidates' places do not fit. The outputs and the
//! saved index are byte-identical to the same run's without a budget.

use std::path::Path;

use drainpipe::jobs::dedup::{self, DedupParams};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{OutputDir, RunReport};

use crate::mixed::{outputs, words};

/// Places share of 256 KiB: about 9,300 places.
const BUDGET: u64 = 1 << 20;

/// 12,000 texts of 40 words, every 60th followed by a copy one word off:
/// a few hundred candidate pairs, whose places fit the share, among more
/// records than the share holds places for.
fn corpus(path: &Path) {
    let mut word = words(0x1dea);
    let mut lines = Vec::new();
    for i in 0..12_000 {
        let mut text: Vec<String> = (0..40).map(|_| word()).collect();
        lines
            .push(serde_json::json!({ "id": format!("r{i}"), "text": text.join(" ") }).to_string());
        if i % 60 == 0 {
            text[7] = word();
            let id = format!("r{i}-copy");
            lines.push(serde_json::json!({ "id": id, "text": text.join(" ") }).to_string());
        }
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn dedup_into(out: &Path, input: &Path, budget: Option<u64>, save: Option<&Path>) -> RunReport {
    std::fs::create_dir_all(out).unwrap();
    let mut ctx = RunContext::quiet(vec![input.to_owned()], OutputDir::create(out).unwrap());
    ctx.max_memory = budget;
    let mut params = DedupParams::default();
    params.index.save = save.map(Path::to_path_buf);
    let report = dedup::run(&ctx, &params).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    report
}

/// Every file of the folder `dir`, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_saved_index_under_a_budget_never_holds_every_records_place_with_the_outputs_of_an_unbudgeted_run(
) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    corpus(&input);
    // Not saving, the candidates' places fit the share: the premise.
    let alone = dedup_into(&dir.path().join("alone"), &input, Some(BUDGET), None);
    assert!(
        alone.result["candidate_pairs"].as_u64().unwrap_or(0) > 100,
        "{}",
        alone.result
    );
    assert_eq!(alone.result["reads"]["verify"], "candidate records");
    let mut legs = Vec::new();
    for (name, budget, reads) in [
        ("unbudgeted", None, "candidate records"),
        ("budgeted", Some(BUDGET), "whole input"),
    ] {
        let (out, index) = (
            dir.path().join(name),
            dir.path().join(format!("{name}-i")).join("IDX"),
        );
        let report = dedup_into(&out, &input, budget, Some(&index));
        assert_eq!(
            report.result["reads"]["verify"], reads,
            "{name}: how pass 2 read"
        );
        legs.push((outputs(&out), files(&index)));
    }
    let (want, got) = (&legs[0], &legs[1]);
    for ((name, want), (_, got)) in want.0.iter().zip(&got.0) {
        assert!(
            want == got,
            "output {name} differs from the unbudgeted run's"
        );
    }
    let names = |l: &[(String, Vec<u8>)]| l.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&want.1), names(&got.1), "the index's files");
    for ((name, want), (_, got)) in want.1.iter().zip(&got.1) {
        assert!(
            want == got,
            "index file {name} differs from the unbudgeted run's"
        );
    }
}
