//! The randomized fault suite: hundreds of runs with random workers, window
//! and batch; step-1 panics (~1% of records), slow records, malformed
//! records (~5%), reader rejects, a slow Integrator, periodic checkpoints,
//! and a stop at a random moment followed by a resume (sometimes twice).
//! Every run must conserve records, end within its deadline, and produce
//! exactly the outputs of a clean run. The same goes for `dedup` (three
//! passes, each with its own checkpoints): runs over the mixed corpus with
//! malformed records added, stopped during or between random passes and
//! resumed, with random tuning and checkpoint periods.
//!
//! A failing run prints its seed; replay it alone with
//! `FAULT_SEED=<seed> cargo test --test randomized_faults_never_lose_a_record`.
//! `FAULT_RUNS=<n>` changes the number of runs (default 200),
//! `DEDUP_FAULT_RUNS=<n>` that of dedup (default 20).

use crate::binary;
use crate::common;
use crate::mixed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use binary::names as file_names;
use common::{MemorySource, Script, Step2};
use drainpipe::corpus::SplitMix64;
use drainpipe::jobs::dedup::memory::MemoryRecord;
use drainpipe_actors::{
    Checkpoint, Checkpoints, OutputDir, Phase, Pipeline, RunHandle, RunReport, Settings,
};
use mixed::{run_leg, Leg, StopAt};

/// SplitMix64 (the corpus generator's), so a seed means the same run
/// everywhere.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 10_000.0 < percent
    }
}

const FINGERPRINT: &str = "fault suite";
const DEADLINE: Duration = Duration::from_secs(30);

fn records(rng: &mut Rng) -> Vec<String> {
    let n = match rng.below(10) {
        0 => rng.below(3),
        _ => rng.below(3_000),
    };
    (0..n)
        .map(|i| {
            if rng.chance(1.0) {
                "panic".into()
            } else if rng.chance(5.0) {
                "bad".into()
            } else if rng.chance(0.5) {
                "reject:unreadable".into()
            } else if rng.chance(0.5) {
                format!("sleep:{}", 1 + rng.below(3))
            } else {
                format!("record {i}")
            }
        })
        .collect()
}

fn settings(rng: &mut Rng) -> Settings {
    let workers = 1 + rng.below(4) as usize;
    Settings {
        workers,
        window: 1 + rng.below(8) as usize,
        batch: (rng.below(4) != 0).then(|| 1 + rng.below(64) as usize),
        drain_timeout: DEADLINE,
        ..Settings::default()
    }
}

fn run(
    records: &[String],
    out: &OutputDir,
    settings: Settings,
    step2: Step2,
    stop_after: Option<u64>,
    checkpoints: Checkpoints,
) -> RunReport {
    let handle = RunHandle::new();
    let stopper = stop_after.map(|k| {
        let handle = handle.clone();
        std::thread::spawn(move || {
            while handle.records_done() < k && handle.phase() == Phase::Running {
                std::thread::sleep(Duration::from_micros(200));
            }
            handle.request_stop();
        })
    });
    let started = Instant::now();
    let job = Script {
        step2,
        ..Script::default()
    };
    let report = Pipeline::new(job, MemorySource::new(records.to_vec()), out.clone())
        .settings(settings)
        .handle(handle)
        .checkpoints(checkpoints)
        .run()
        .expect("the pipeline runs");
    if let Some(stopper) = stopper {
        stopper.join().unwrap();
    }
    assert!(
        started.elapsed() < DEADLINE,
        "run took {:?}",
        started.elapsed()
    );
    assert!(report.conservation, "{}", report.human());
    assert_eq!(report.records.abandoned, 0, "{}", report.human());
    report
}

fn outputs(dir: &std::path::Path) -> (String, String) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    (read("indices.txt"), read("rejects.jsonl"))
}

fn one_run(seed: u64) {
    let mut rng = Rng(SplitMix64::new(seed));
    let records = records(&mut rng);

    let clean_dir = tempfile::tempdir().unwrap();
    let clean_out = OutputDir::create(clean_dir.path()).unwrap();
    let clean = run(
        &records,
        &clean_out,
        Settings {
            workers: 2,
            window: 4,
            batch: None,
            ..Settings::default()
        },
        Step2::default(),
        None,
        Checkpoints::default(),
    );
    assert_eq!(clean.exit_code, 0);
    assert_eq!(clean.records.read, records.len() as u64);

    let dir = tempfile::tempdir().unwrap();
    let out = OutputDir::create(dir.path()).unwrap();
    let legs = 1 + rng.below(3);
    let mut resume = false;
    for leg in 0..legs {
        let last = leg + 1 == legs;
        let step2 = Step2 {
            delay: rng.chance(20.0).then(|| Duration::from_micros(20)),
            ..Step2::default()
        };
        let stop_after = (!last).then(|| rng.below(records.len() as u64 + 1));
        let checkpoints = Checkpoints {
            every: rng
                .chance(30.0)
                .then(|| Duration::from_millis(1 + rng.below(20))),
            fingerprint: FINGERPRINT.into(),
            resume: resume.then(|| Checkpoint::load(&out, FINGERPRINT).expect("a checkpoint")),
        };
        let report = run(
            &records,
            &out,
            settings(&mut rng),
            step2,
            stop_after,
            checkpoints,
        );
        match report.exit_code {
            0 => {
                assert_eq!(report.records.read, records.len() as u64);
                break;
            }
            130 => resume = true,
            other => panic!("exit code {other}: {}", report.human()),
        }
        if last {
            unreachable!("the last leg is never stopped");
        }
    }
    let (indices, rejects) = outputs(dir.path());
    let (clean_indices, clean_rejects) = outputs(clean_dir.path());
    assert!(
        indices == clean_indices,
        "integrated records differ from the clean run's"
    );
    assert!(
        rejects == clean_rejects,
        "rejects.jsonl differs from the clean run's"
    );
}

/// The seeds to run: `FAULT_SEED` alone, or as many seeds from `base` as
/// the variable `runs_from` says (else `runs`).
fn seeds(base: u64, runs_from: &str, runs: u64) -> Vec<u64> {
    match std::env::var("FAULT_SEED") {
        Ok(seed) => vec![seed.parse().expect("FAULT_SEED is a number")],
        Err(_) => {
            let runs: u64 = std::env::var(runs_from).map_or(runs, |n| n.parse().unwrap());
            (0..runs).map(|i| base + i).collect()
        }
    }
}

/// Runs `one_run` for each seed, naming the seed of a failure.
fn run_seeds(seeds: &[u64], one_run: fn(u64)) {
    let started = Instant::now();
    for &seed in seeds {
        if let Err(panic) = std::panic::catch_unwind(|| one_run(seed)) {
            eprintln!(
                "FAILING SEED {seed}: replay with FAULT_SEED={seed} cargo test --features failpoints --test randomized_faults_never_lose_a_record"
            );
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!(
        "{} randomized runs in {:.1}s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn randomized_runs_conserve_records_and_match_a_clean_run() {
    run_seeds(&seeds(0xFA17_0000, "FAULT_RUNS", 200), one_run);
}

/// The mixed dedup corpus, with malformed records and reader rejects added
/// at random places, cut to a random length.
fn dedup_records(rng: &mut Rng) -> Arc<Vec<MemoryRecord>> {
    let mut records = mixed::records();
    for _ in 0..rng.below(6) {
        let at = rng.below(records.len() as u64) as usize;
        let record = match rng.below(3) {
            0 => MemoryRecord::jsonl(r#"{"id": 9, "text": "#),
            1 => MemoryRecord::jsonl(r#"{"id": 9, "body": "no text field"}"#),
            _ => MemoryRecord::rejected("unreadable (test)"),
        };
        records.insert(at, record);
    }
    let keep = 150 + rng.below(records.len() as u64 - 149) as usize;
    records.truncate(keep);
    Arc::new(records)
}

fn dedup_stop(rng: &mut Rng, records: u64) -> StopAt {
    match rng.below(4) {
        0 => StopAt::Opening(1 + rng.below(3) as u32),
        pass => StopAt::During {
            pass: ["signatures", "verify", "kept"][pass as usize - 1],
            after: rng.below(records),
        },
    }
}

fn one_dedup_run(seed: u64) {
    let mut rng = Rng(SplitMix64::new(seed));
    let records = dedup_records(&mut rng);
    let total = records.len() as u64;
    let clean = tempfile::tempdir().unwrap();
    let report = run_leg(&records, clean.path(), &Leg::default()).unwrap();
    assert_eq!(report.exit_code, 0, "{}", report.human());

    let dir = tempfile::tempdir().unwrap();
    let legs = 1 + rng.below(4);
    let mut resume = false;
    for leg in 0..legs {
        let last = leg + 1 == legs;
        let leg = Leg {
            workers: 1 + rng.below(4) as usize,
            window: 1 + rng.below(8) as usize,
            // Fixed batches when stopping, so a stop is mostly mid-pass.
            batch: if last && rng.chance(50.0) {
                None
            } else {
                Some(1 + rng.below(64) as usize)
            },
            resume,
            stop: (!last).then(|| dedup_stop(&mut rng, total)),
            checkpoint_every: rng
                .chance(30.0)
                .then(|| Duration::from_millis(1 + rng.below(20))),
            ..Leg::default()
        };
        let started = Instant::now();
        let report = run_leg(&records, dir.path(), &leg).unwrap();
        assert!(
            started.elapsed() < DEADLINE,
            "leg took {:?}",
            started.elapsed()
        );
        assert!(report.conservation, "{}", report.human());
        assert_eq!(report.records.abandoned, 0, "{}", report.human());
        match report.exit_code {
            0 => {
                assert_eq!(report.records.read, total);
                break;
            }
            130 => resume = true,
            other => panic!("exit code {other}: {}", report.human()),
        }
        assert!(!last, "the last leg is never stopped");
    }
    assert!(
        mixed::outputs(dir.path()) == mixed::outputs(clean.path()),
        "dedup outputs differ from the clean run's"
    );
    assert_eq!(file_names(dir.path()), file_names(clean.path()));
}

#[test]
fn randomized_dedup_runs_stopped_and_resumed_match_a_clean_run() {
    run_seeds(&seeds(0xDED0_0000, "DEDUP_FAULT_RUNS", 20), one_dedup_run);
}
