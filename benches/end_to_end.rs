//! End-to-end benchmark: a job through the actor pipeline next to the same
//! job's code on plain threads and channels (the no-actor baseline), over
//! the same generated corpus, in one run. Each measurement runs in a child
//! process of its own so its peak RSS is its own.
//!
//! ```text
//! cargo bench --bench end_to_end -- [--job dedup|vocab] [--docs N] [--workers N] [--window W] [--runs N] [--dir DIR]
//! ```
//!
//! Prints, per run and as medians: docs/s, MB/s, peak RSS, and the ratio
//! pipeline / baseline, then each pass's median seconds (dedup); checks
//! that both wrote identical outputs. The two alternate which runs first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::{dedup, vocab, Engine, RunContext};
use drainpipe_actors::{OutputDir, Settings};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| v.parse().expect("a number"))
}

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Child: runs the job once and prints `seconds peak_rss_bytes read`.
fn child(job: &str, engine: &str, input: &Path, out: &Path, workers: usize) {
    let mut ctx = RunContext::quiet(vec![input.to_owned()], OutputDir::create(out).unwrap());
    ctx.settings = Settings {
        workers,
        // The pipeline's window (`--window`, default 2 x workers).
        window: num("--window", 2 * workers as u64) as usize,
        ..Settings::default()
    };
    ctx.engine = match engine {
        "actors" => Engine::Actors,
        _ => Engine::PlainThreads,
    };
    let started = Instant::now();
    let report = match job {
        "vocab" => vocab::run(&ctx),
        _ => dedup::run(&ctx, &dedup::DedupParams::default()),
    }
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    // The Integrator's own state per record (dedup reports it; 0 otherwise).
    let state = report.result["integrator_bytes_per_record"]
        .as_f64()
        .unwrap_or(0.0);
    // Then each pass's seconds (dedup reports them), in order.
    let passes: Vec<String> = report.result["passes"]
        .as_array()
        .map(|passes| passes.iter().map(|p| p["elapsed_s"].to_string()).collect())
        .unwrap_or_default();
    println!(
        "{secs} {} {} {state} {}",
        peak_rss(),
        report.records.read,
        passes.join(" ")
    );
}

fn generate(docs: u64, path: &Path) {
    use std::io::Write;
    let corpus = Corpus::new(CorpusSpec {
        docs,
        ..CorpusSpec::default()
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for doc in corpus.docs() {
        let line = serde_json::json!({ "id": doc.index, "text": doc.text });
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();
}

struct Measure {
    secs: f64,
    rss: u64,
    state_per_doc: f64,
    /// Seconds of each pass (dedup; empty for single-pass jobs).
    passes: Vec<f64>,
}

fn measure(job: &str, engine: &str, input: &Path, out: &Path, workers: usize) -> Measure {
    // Each run starts from an empty folder: replacing the previous run's
    // 400 MB of outputs frees their pages inside the timed run (on tmpfs,
    // about 50 ms in the rename that puts the new kept.jsonl in place).
    match std::fs::remove_dir_all(out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{}: {e}", out.display()),
        _ => {}
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--child",
            engine,
            "--job",
            job,
            "--workers",
            &workers.to_string(),
            "--window",
            &num("--window", 2 * workers as u64).to_string(),
        ])
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{engine} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<f64> = text
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    Measure {
        secs: fields[0],
        rss: fields[1] as u64,
        state_per_doc: fields[3],
        passes: fields[4..].to_vec(),
    }
}

/// The median of each pass's seconds over `runs`, as `"0.712 0.170 0.214"`.
fn pass_medians(runs: &[Vec<f64>]) -> String {
    let passes = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..passes)
        .map(|i| format!("{:.3}", median(runs.iter().map(|r| r[i]).collect())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let job = arg("--job").unwrap_or_else(|| "dedup".into());
    let workers = num("--workers", 2) as usize;
    if let Some(engine) = arg("--child") {
        let input = PathBuf::from(arg("--input").unwrap());
        let out = PathBuf::from(arg("--out").unwrap());
        child(&job, &engine, &input, &out, workers);
        return;
    }
    let docs = num("--docs", 200_000);
    let runs = num("--runs", 3);
    // `--dir /dev/shm` keeps the disk (and its writeback of the 400 MB of
    // outputs of earlier runs) out of the measurement.
    let dir = match arg("--dir") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let input = dir.path().join("corpus.jsonl");
    generate(docs, &input);
    let mb = std::fs::metadata(&input).unwrap().len() as f64 / 1e6;
    println!("{job}: {docs} documents ({mb:.0} MB of JSON Lines), {workers} workers, {runs} runs");
    let (mut pipeline, mut baseline) = (Vec::new(), Vec::new());
    let (mut rss_p, mut rss_b) = (0, 0);
    let mut state_per_doc = 0.0f64;
    let (mut passes_p, mut passes_b) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (out_p, out_b) = (dir.path().join("actors"), dir.path().join("plain"));
        // Alternate which goes first, so neither always runs on the
        // machine the other just left (page cache, memory, clock).
        let (p, b) = if run % 2 == 0 {
            let p = measure(&job, "actors", &input, &out_p, workers);
            (p, measure(&job, "plain", &input, &out_b, workers))
        } else {
            let b = measure(&job, "plain", &input, &out_b, workers);
            (measure(&job, "actors", &input, &out_p, workers), b)
        };
        passes_p.push(p.passes.clone());
        passes_b.push(b.passes.clone());
        for name in ["kept.jsonl", "clusters.jsonl", "vocab.tsv"] {
            let (a, c) = (
                std::fs::read(out_p.join(name)).ok(),
                std::fs::read(out_b.join(name)).ok(),
            );
            assert!(
                a == c,
                "{name} differs between the pipeline and the baseline"
            );
        }
        println!(
            "run {run}: pipeline {:>9.0} docs/s {:>6.1} MB/s {:>6.0} MB peak | baseline {:>9.0} docs/s {:>6.1} MB/s {:>6.0} MB peak | ratio {:.3}",
            docs as f64 / p.secs,
            mb / p.secs,
            p.rss as f64 / 1e6,
            docs as f64 / b.secs,
            mb / b.secs,
            b.rss as f64 / 1e6,
            b.secs / p.secs
        );
        pipeline.push(docs as f64 / p.secs);
        baseline.push(docs as f64 / b.secs);
        rss_p = rss_p.max(p.rss);
        state_per_doc = state_per_doc.max(p.state_per_doc);
        rss_b = rss_b.max(b.rss);
    }
    let (p, b) = (median(pipeline), median(baseline));
    println!(
        "median: pipeline {p:.0} docs/s ({:.1} MB/s), baseline {b:.0} docs/s, ratio {:.3}; peak RSS pipeline {:.0} MB ({:.0} bytes/doc), baseline {:.0} MB",
        p * mb / docs as f64,
        p / b,
        rss_p as f64 / 1e6,
        rss_p as f64 / docs as f64,
        rss_b as f64 / 1e6
    );
    if state_per_doc > 0.0 {
        println!("Integrator state (largest pass): {state_per_doc:.0} bytes/doc");
    }
    let (pp, pb) = (pass_medians(&passes_p), pass_medians(&passes_b));
    if !pp.is_empty() {
        println!("seconds per pass (medians): pipeline {pp} | baseline {pb}");
    }
}
