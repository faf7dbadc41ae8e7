//! Throughput of `dedup` and of its parts, measured by hand in a release
//! build (`MODE` is demo, pipeline or step1; sizes through DEDUP_* variables):
//!
//! ```text
//! # the demo corpus through dedup::run (generation included), with truth
//! DEDUP_DOCS=50000 DEDUP_WORKERS=2 cargo bench --bench dedup_stages -- demo
//! # the three passes over pre-generated documents in memory, 1 and 2 workers
//! DEDUP_DOCS=100000 DEDUP_WINDOW=8 cargo bench --bench dedup_stages -- pipeline
//! # the cost of each part of step 1 (thread CPU time per document)
//! DEDUP_DOCS=20000 cargo bench --bench dedup_stages -- step1
//! # the Integrator of pass 1 alone, fed step 1's results computed ahead
//! DEDUP_DOCS=200000 cargo bench --bench dedup_stages -- integrator
//! ```

use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams};
use drainpipe::jobs::RunContext;
use drainpipe_actors::OutputDir;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the demo corpus and prints the summary.
fn demo_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    ctx.demo_docs = env("DEDUP_DOCS", 50_000);
    ctx.settings.workers = env("DEDUP_WORKERS", 2) as usize;
    ctx.settings.window = 2 * ctx.settings.workers;
    let started = std::time::Instant::now();
    let report = dedup::run(&ctx, &DedupParams::default()).unwrap();
    let wall = started.elapsed().as_secs_f64();
    println!("{}", report.human());
    println!("{}", serde_json::to_string_pretty(&report.result).unwrap());
    println!(
        "wall {wall:.2}s: {:.0} docs/s end to end (truth included)",
        ctx.demo_docs as f64 / wall
    );
    assert_eq!(report.exit_code, 0);
}

/// The whole job (three passes, no ground truth) over pre-generated demo
/// documents held in memory, with 1 and 2 workers.
fn pipeline_throughput_without_generation() {
    use drainpipe::corpus::{Corpus, CorpusSpec};
    let n = env("DEDUP_DOCS", 50_000);
    let corpus = Corpus::new(CorpusSpec {
        docs: n,
        ..CorpusSpec::default()
    });
    // Generated once: the demo source costs about 20 us per document on
    // the Source's thread, in every pass.
    let records = std::sync::Arc::new(
        corpus
            .docs()
            .map(|d| MemoryRecord::text(d.text))
            .collect::<Vec<_>>(),
    );
    let only = env("DEDUP_WORKERS", 0) as usize;
    for workers in [1, 2].into_iter().filter(|&w| only == 0 || w == only) {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
        ctx.settings.workers = workers;
        ctx.settings.window = env("DEDUP_WINDOW", 2 * workers as u64) as usize;
        let open = MemorySource::opener(std::sync::Arc::clone(&records));
        let started = std::time::Instant::now();
        let report = dedup::run_on(&ctx, &DedupParams::default(), &open, false).unwrap();
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(report.exit_code, 0);
        println!(
            "{workers} worker(s): {:.0} docs/s end to end ({wall:.2}s); passes {}",
            n as f64 / wall,
            report.result["passes"]
        );
        println!("  phases (summed over passes): {:?}", report.phases);
    }
}

/// Step-1 cost per document, single-threaded, on pre-generated texts.
fn step1_cost() {
    use drainpipe::corpus::{Corpus, CorpusSpec};
    use drainpipe::jobs::dedup::passes::signatures::SignatureJob;
    use drainpipe::jobs::dedup::shingle::{shingle_set, with_scratch};
    let n = env("DEDUP_DOCS", 20_000);
    let corpus = Corpus::new(CorpusSpec {
        docs: n,
        ..CorpusSpec::default()
    });
    let t = std::time::Instant::now();
    let texts: Vec<String> = corpus.docs().map(|d| d.text).collect();
    println!(
        "generate: {:.2} us/doc",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    // Five rounds over the texts, so the timings are not a cold start.
    let texts: Vec<String> = (0..5).flat_map(|_| texts.iter().cloned()).collect();
    let n = n * 5;
    let per = |t: Cpu| t.elapsed_s() * 1e6 / n as f64;
    let params = DedupParams::default();
    let banding = params.banding().unwrap();
    let fields = RunContext::quiet(vec![], OutputDir::create(std::env::temp_dir()).unwrap()).fields;
    let job = SignatureJob::new(fields, params.ngram, banding);
    let t = Cpu::now();
    let mut buf = Vec::new();
    let mut count = 0usize;
    for text in &texts {
        drainpipe::jobs::dedup::normalize::for_each_word(text, &mut buf, |w| count += w.len());
    }
    println!("normalize only: {:.2} us/doc ({count})", per(t));
    let t = Cpu::now();
    let mut h = 0u64;
    for text in &texts {
        drainpipe::jobs::dedup::normalize::for_each_word(text, &mut buf, |w| {
            h ^= drainpipe::jobs::dedup::shingle::hash_word(w)
        });
    }
    println!("normalize + word hashes: {:.2} us/doc ({h})", per(t));
    let t = Cpu::now();
    let mut words = 0usize;
    for text in &texts {
        with_scratch(|s| {
            s.shingle(text, params.ngram);
            words += s.shingles.len();
        });
    }
    println!(
        "normalize + shingle: {:.2} us/doc ({} shingles/doc)",
        per(t),
        words as u64 / n
    );
    let t = Cpu::now();
    let mut x = 0u64;
    for text in &texts {
        x ^= u64::from(job.band_keys(text).as_slice()[0]);
    }
    println!("band keys (all of step 1): {:.2} us/doc ({x})", per(t));
    let keys: Vec<_> = texts[..n as usize / 5]
        .iter()
        .map(|t| job.band_keys(t))
        .collect();
    let t = Cpu::now();
    let mut index = drainpipe_actors::Job::integrator(&job);
    for (i, k) in keys.into_iter().enumerate() {
        // As read from one file, every record 2 KB long.
        let place = drainpipe::jobs::dedup::spans::Place {
            span: Some(drainpipe_actors::Span {
                input: 0,
                offset: i as u64 * 2048,
            }),
            len: 2047,
            line: i as u64 + 1,
        };
        drainpipe_actors::Integrate::integrate(&mut index, i as u64, (k, place, i as u64 + 1))
            .unwrap();
    }
    println!("integrate (pass 1, step 2): {:.2} us/doc", per(t) * 5.0);
    let t = Cpu::now();
    for text in &texts {
        x ^= shingle_set(text, params.ngram).len() as u64;
    }
    println!(
        "shingle set (pass 2, per candidate): {:.2} us/doc ({x})",
        per(t)
    );
}

/// CPU time of the current thread (Linux `schedstat`, nanoseconds), so
/// the measurements do not depend on what else the machine runs.
#[derive(Clone, Copy)]
struct Cpu(u64);

impl Cpu {
    fn read() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn now() -> Self {
        Cpu(Self::read())
    }

    fn elapsed_s(self) -> f64 {
        (Self::read() - self.0) as f64 / 1e9
    }
}

/// The Integrator of pass 1 alone: what one coordinating process does per
/// document once step 1 runs elsewhere (read the answer: decompress and
/// decode, as the remote pool does; integrate; the candidate pairs at the
/// end), in thread CPU time, with step 1's results computed ahead.
fn integrator_alone() {
    use drainpipe::corpus::{Corpus, CorpusSpec};
    use drainpipe::jobs::dedup::passes::signatures::SignatureJob;
    use drainpipe_actors::{FinishContext, Integrate, Job, PendingRejects};
    let n = env("DEDUP_DOCS", 200_000);
    let corpus = Corpus::new(CorpusSpec {
        docs: n,
        ..CorpusSpec::default()
    });
    let params = DedupParams::default();
    let fields = RunContext::quiet(vec![], OutputDir::create(std::env::temp_dir()).unwrap()).fields;
    let job = SignatureJob::new(fields, params.ngram, params.banding().unwrap());
    let texts: Vec<String> = corpus.docs().map(|d| d.text).collect();
    let t = Cpu::now();
    let signed: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let place = drainpipe::jobs::dedup::spans::Place {
                span: Some(drainpipe_actors::Span {
                    input: 0,
                    offset: i as u64 * 2048,
                }),
                len: 2047,
                line: i as u64 + 1,
            };
            (i as u64, (job.band_keys(text), place, i as u64 + 1))
        })
        .collect();
    let step1 = t.elapsed_s();
    drop(texts);
    // Answers as workers send them: 1,000 outputs each, packed like
    // `remote/wire.rs` (codec, zstd level 1).
    let answers: Vec<Vec<u8>> = signed
        .chunks(1000)
        .map(|c| {
            let encoded = drainpipe_actors::codec::encode(&c.to_vec(), 2).unwrap();
            zstd::bulk::compress(&encoded, 1).unwrap()
        })
        .collect();
    let wire: usize = answers.iter().map(Vec::len).sum();
    let t = Cpu::now();
    let mut decoded = Vec::with_capacity(signed.len());
    for a in &answers {
        let encoded = zstd::bulk::decompress(a, 1 << 30).unwrap();
        let part: Vec<(u64, <SignatureJob as Job>::Output)> =
            drainpipe_actors::codec::decode(&encoded, 2).unwrap();
        decoded.extend(part);
    }
    let decode = t.elapsed_s();
    drop(signed);
    let t = Cpu::now();
    let mut index = job.integrator();
    for (i, output) in decoded {
        index.integrate(i, output).unwrap();
    }
    let integrate = t.elapsed_s();
    let dir = tempfile::tempdir().unwrap();
    let out = OutputDir::create(dir.path()).unwrap();
    let run = FinishContext::new(
        &out,
        false,
        n,
        0,
        PendingRejects::new(None, "rejects.jsonl"),
    );
    let t = Cpu::now();
    let found = index.finish(&run).unwrap();
    let finish = t.elapsed_s();
    let us = |s: f64| s * 1e6 / n as f64;
    println!(
        "{n} documents; step 1 (for comparison): {:.2} us/doc",
        us(step1)
    );
    println!(
        "answers: {:.0} bytes/doc; decompress + decode: {:.3} us/doc",
        wire as f64 / n as f64,
        us(decode)
    );
    println!(
        "integrate: {:.3} us/doc; finish (candidate pairs): {:.3} us/doc",
        us(integrate),
        us(finish)
    );
    let total = decode + integrate + finish;
    println!(
        "Integrator alone: {:.3} us/doc, {:.0} docs/s (without finish: {:.0} docs/s); {}",
        us(total),
        n as f64 / total,
        n as f64 / (decode + integrate),
        found
    );
}

fn main() {
    let mode = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    match mode.as_deref() {
        Some("demo") => demo_throughput(),
        Some("pipeline") => pipeline_throughput_without_generation(),
        Some("step1") | None => step1_cost(),
        Some("integrator") => integrator_alone(),
        Some(other) => panic!("unknown mode {other}: demo, pipeline, step1 or integrator"),
    }
}
