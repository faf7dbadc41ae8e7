//! Shared by the dedup integration tests: a mixed in-memory corpus, a run
//! that returns every output file, legs of a run stopped at a chosen
//! point and resumed, and a run over a file under a memory budget with
//! what its report says of each pass.
#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use drainpipe::corpus::{Corpus, CorpusSpec};
use drainpipe::jobs::dedup::memory::{MemoryRecord, MemorySource};
use drainpipe::jobs::dedup::{self, DedupParams, CLUSTERS_FILE, KEPT_FILE};
use drainpipe::jobs::RunContext;
use drainpipe_actors::{
    BatchBuilder, InputError, OutputDir, Progress, RecordSource, RunHandle, RunReport,
    REJECTS_FILE, TEMP_FOLDER,
};

/// Demo documents with their near-duplicates, some JSON Lines records, a
/// record the reader rejects, one that is not UTF-8 and one that is not
/// JSON.
pub fn records() -> Vec<MemoryRecord> {
    let corpus = Corpus::new(CorpusSpec {
        docs: 1200,
        ..CorpusSpec::default()
    });
    let mut records: Vec<MemoryRecord> =
        corpus.docs().map(|d| MemoryRecord::text(d.text)).collect();
    let base = corpus.doc(7).text;
    for (at, id) in [(100, "a"), (500, "b"), (900, "c")] {
        let line = serde_json::json!({ "id": id, "text": base }).to_string();
        records.insert(at, MemoryRecord::jsonl(line));
    }
    records.insert(300, MemoryRecord::rejected("too large (test)"));
    records.insert(450, MemoryRecord::jsonl(r#"{"id": 1, "text": "#));
    records.insert(
        600,
        MemoryRecord {
            bytes: b"not utf-8 \xff\xfe".to_vec(),
            ..MemoryRecord::text("")
        },
    );
    records
}

pub struct Outputs {
    pub files: Vec<(String, Vec<u8>)>,
    pub result: serde_json::Value,
    pub rejected: u64,
}

pub fn run(
    records: &Arc<Vec<MemoryRecord>>,
    workers: usize,
    window: usize,
    batch: Option<usize>,
) -> Outputs {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir.path()).unwrap());
    ctx.settings.workers = workers;
    ctx.settings.window = window;
    ctx.settings.batch = batch;
    let open = MemorySource::opener(Arc::clone(records));
    let report = dedup::run_on(&ctx, &DedupParams::default(), &open, true).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert!(report.conservation);
    let mut result = report.result.clone();
    result.as_object_mut().unwrap().remove("passes");
    result["accuracy"]
        .as_object_mut()
        .unwrap()
        .remove("truth_s");
    let files = [KEPT_FILE, CLUSTERS_FILE, REJECTS_FILE]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(dir.path().join(name)).unwrap(),
            )
        })
        .collect();
    Outputs {
        files,
        result,
        rejected: report.records.rejected,
    }
}

/// Where a leg of an interrupted run asks for a stop (as the first SIGINT
/// would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// When the input is opened for the n-th time in the leg. The run
    /// checks for a stop after opening the input of pass 2, so this stops
    /// it between passes when pass 2 is the n-th opening; any other
    /// opening stops the pass being opened before it reads a record.
    Opening(u32),
    /// While `pass` runs, once its input has served `after` records (a
    /// pass resumed past that point stops at its first batch).
    During { pass: &'static str, after: u64 },
}

/// One leg of a possibly interrupted run.
#[derive(Debug, Clone)]
pub struct Leg {
    pub workers: usize,
    pub window: usize,
    pub batch: Option<usize>,
    pub resume: bool,
    pub stop: Option<StopAt>,
    pub checkpoint_every: Option<std::time::Duration>,
    pub fingerprint: String,
    /// `--max-memory` (`None`: no limit).
    pub max_memory: Option<u64>,
    /// `--keep`.
    pub keep: drainpipe::jobs::dedup::keep::KeepPolicy,
}

impl Default for Leg {
    fn default() -> Self {
        Leg {
            workers: 2,
            window: 4,
            batch: None,
            resume: false,
            stop: None,
            checkpoint_every: None,
            fingerprint: "dedup over the mixed corpus".into(),
            max_memory: None,
            keep: Default::default(),
        }
    }
}

/// Runs one leg of dedup over `records` into `dir`.
pub fn run_leg(
    records: &Arc<Vec<MemoryRecord>>,
    dir: &std::path::Path,
    leg: &Leg,
) -> anyhow::Result<drainpipe_actors::RunReport> {
    let mut ctx = RunContext::quiet(vec![], OutputDir::create(dir).unwrap());
    ctx.settings.workers = leg.workers;
    ctx.settings.window = leg.window;
    ctx.settings.batch = leg.batch;
    ctx.resume = leg.resume;
    ctx.checkpoint_every = leg.checkpoint_every;
    ctx.fingerprint = leg.fingerprint.clone();
    ctx.max_memory = leg.max_memory;
    // The pass being run, as the progress factory is told when it starts.
    let current = Arc::new(Mutex::new(String::new()));
    ctx.progress = {
        let current = Arc::clone(&current);
        Rc::new(move |pass: &str| {
            *current.lock().unwrap() = pass.to_owned();
            Box::new(|_: &Progress| {})
        })
    };
    let opened = Cell::new(0);
    let handle = ctx.handle.clone();
    let stop = leg.stop;
    let open = || -> anyhow::Result<Box<dyn RecordSource>> {
        opened.set(opened.get() + 1);
        if stop == Some(StopAt::Opening(opened.get())) {
            handle.request_stop();
        }
        let during = match stop {
            Some(StopAt::During { pass, after }) => Some((Arc::clone(&current), pass, after)),
            _ => None,
        };
        Ok(Box::new(Stopping {
            inner: MemorySource::new(Arc::clone(records)),
            during,
            handle: handle.clone(),
        }))
    };
    let params = DedupParams {
        keep: leg.keep.clone(),
        ..DedupParams::default()
    };
    dedup::run_on(&ctx, &params, &open, false)
}

/// Runs one leg of dedup over `records` into `dir` and asserts that it
/// exits with `code` (0, or 130 for a leg that stops); its report.
pub fn run_leg_to(
    records: &Arc<Vec<MemoryRecord>>,
    dir: &std::path::Path,
    leg: &Leg,
    code: i32,
) -> drainpipe_actors::RunReport {
    let report = run_leg(records, dir, leg).unwrap();
    assert_eq!(report.exit_code, code, "{leg:?}: {}", report.human());
    report
}

/// The outputs of `leg` run to its end over `records` in a folder of its
/// own.
pub fn outputs_of_leg(records: &Arc<Vec<MemoryRecord>>, leg: &Leg) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    run_leg_to(records, dir.path(), leg, 0);
    outputs(dir.path())
}

/// A source that asks for a stop once `during` says so.
struct Stopping {
    inner: MemorySource,
    during: Option<(Arc<Mutex<String>>, &'static str, u64)>,
    handle: RunHandle,
}

impl RecordSource for Stopping {
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        let more = self.inner.fill(batch, max_records, max_bytes)?;
        if let Some((current, pass, after)) = &self.during {
            if self.inner.position() >= *after && *current.lock().unwrap() == *pass {
                self.handle.request_stop();
            }
        }
        Ok(more)
    }
    fn position(&self) -> u64 {
        self.inner.position()
    }
    fn total(&self) -> Option<u64> {
        self.inner.total()
    }
}

/// Asserts that `got` are the `expected` outputs (of [`outputs`]), naming
/// the first file that differs and the run (`what`) that wrote it.
pub fn assert_same_outputs(expected: &[(String, Vec<u8>)], got: &[(String, Vec<u8>)], what: &str) {
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(expected), names(got), "{what}");
    for ((name, want), (_, got)) in expected.iter().zip(got) {
        assert!(want == got, "{what}: {name} differs");
    }
}

/// The outputs in `dir` that must match an uninterrupted run's (a missing
/// file reads as "missing").
pub fn outputs(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    [KEPT_FILE, CLUSTERS_FILE, REJECTS_FILE]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|_| b"missing".to_vec());
            (name.to_string(), bytes)
        })
        .collect()
}

/// `dedup` over the file `input` under `--max-memory max_memory` (none:
/// no budget), into a folder of its own: its outputs (of [`outputs`]) and
/// its report, once it is seen to have completed and to have left no
/// sorted run on disk.
pub fn dedup_file(
    input: &std::path::Path,
    max_memory: Option<u64>,
) -> (Vec<(String, Vec<u8>)>, RunReport) {
    dedup_file_with(input, max_memory, &DedupParams::default())
}

/// [`dedup_file`] with the parameters `params`.
pub fn dedup_file_with(
    input: &std::path::Path,
    max_memory: Option<u64>,
    params: &DedupParams,
) -> (Vec<(String, Vec<u8>)>, RunReport) {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = RunContext::quiet(
        vec![input.to_owned()],
        OutputDir::create(dir.path()).unwrap(),
    );
    ctx.max_memory = max_memory;
    let report = dedup::run(&ctx, params).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    let left = runs_left(dir.path());
    assert!(left.is_empty(), "{left:?}");
    (outputs(dir.path()), report)
}

/// Sorted runs, runs of places, of candidates' ids, of verified pairs and of record sets left in the
/// temporary folder of the output folder `out`.
pub fn runs_left(out: &std::path::Path) -> Vec<String> {
    let Ok(list) = std::fs::read_dir(out.join(TEMP_FOLDER)) else {
        return Vec::new();
    };
    list.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            [".sorted", ".places", ".ids", ".vpairs", ".bits"]
                .iter()
                .any(|s| name.ends_with(s))
        })
        .collect()
}

/// What the report says of the pass `name` (`signatures`, `verify`,
/// `kept`): its entry of `result.passes`.
pub fn pass_named(report: &RunReport, name: &str) -> serde_json::Value {
    let passes = report.result["passes"].as_array().unwrap();
    passes
        .iter()
        .find(|p| p["pass"] == name)
        .unwrap_or_else(|| panic!("no pass {name} in {passes:?}"))
        .clone()
}

/// A deterministic stream of words from `seed` (a linear congruential
/// generator over a vocabulary of 200,000 words), for corpora whose texts
/// must differ by chosen words only.
pub fn words(seed: u64) -> impl FnMut() -> String {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        format!("w{}", (state >> 33) % 200_000)
    }
}

/// Writes to `path` `documents` records, then a near-copy of each in the
/// same order: every candidate of the first half waits for its partner
/// until the second half, so the ids that no pruning may drop grow with
/// the corpus. A copy has two words changed (a candidate pair, not a
/// verified one), except every 40th, which has one more word at its end
/// (verified, and longer: `--keep longest` keeps the copy, `first` the
/// original). Written as made: the originals' words are drawn again for
/// their copies, not held.
pub fn write_far_apart(path: &std::path::Path, documents: usize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut line = |n: usize, words: &[String]| {
        let record = serde_json::json!({
            "id": format!("a-rather-long-document-identifier-{n:08}"),
            "text": words.join(" "),
        });
        writeln!(out, "{record}").unwrap();
    };
    let mut original = words(0xfa7_u64);
    for n in 0..documents {
        line(n, &(0..60).map(|_| original()).collect::<Vec<_>>());
    }
    let (mut original, mut other) = (words(0xfa7_u64), words(0x07e4_u64));
    for n in 0..documents {
        let mut copy: Vec<String> = (0..60).map(|_| original()).collect();
        if n % 40 == 0 {
            copy.push(other());
        } else {
            copy[20] = other();
            copy[40] = other();
        }
        line(documents + n, &copy);
    }
}

/// Files by name, with their bytes.
pub type Files = Vec<(String, Vec<u8>)>;

/// Every file of the folder `dir` (a saved index, say), by name.
pub fn folder_files(dir: &std::path::Path) -> Files {
    let mut files: Files = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// `dedup` over `input` into `out` in this process, under `budget` (none:
/// no budget) and `--keep keep`, against the indexes `against`, saving
/// into `save` when given; asserts that it completed.
pub fn dedup_indexed(
    out: &std::path::Path,
    input: &std::path::Path,
    (budget, keep): (Option<u64>, &str),
    against: &[&std::path::Path],
    save: Option<&std::path::Path>,
) -> RunReport {
    std::fs::create_dir_all(out).unwrap();
    let mut ctx = RunContext::quiet(vec![input.to_owned()], OutputDir::create(out).unwrap());
    ctx.max_memory = budget;
    let mut params = DedupParams {
        keep: keep.parse().unwrap(),
        ..DedupParams::default()
    };
    params.index.against = against.iter().map(|p| p.to_path_buf()).collect();
    params.index.save = save.map(std::path::Path::to_path_buf);
    let report = dedup::run(&ctx, &params).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());
    report
}
