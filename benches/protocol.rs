//! Protocol overhead: a trivial job (step 1 returns the record's length,
//! step 2 sums) through the full actor protocol, in records per second,
//! next to the same work on plain threads and a channel, measured in the
//! same run.
//!
//! Run: `cargo bench --bench protocol -- [--records N] [--workers N] [--runs N]`

use std::sync::{mpsc, Arc};
use std::time::Instant;

use drainpipe_actors::{
    BatchBuilder, FinishContext, InputError, Integrate, Job, OutputDir, Pipeline, RawRecord,
    RecordError, RecordSource, Settings,
};

/// Records `"record <i>"`, generated as they are read.
struct Counter {
    next: u64,
    total: u64,
    origin: Arc<str>,
    scratch: String,
}

impl RecordSource for Counter {
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        use std::fmt::Write;
        while self.next < self.total && batch.len() < max && batch.data_bytes() < max_bytes {
            self.scratch.clear();
            write!(self.scratch, "record {}", self.next).unwrap();
            self.next += 1;
            batch.push(&self.origin, self.next, 0, self.scratch.as_bytes());
        }
        Ok(!batch.is_empty())
    }
    fn position(&self) -> u64 {
        self.next
    }
    fn total(&self) -> Option<u64> {
        Some(self.total)
    }
}

struct Length;
#[derive(Default)]
struct Sum(u64);

impl Job for Length {
    type Parsed<'a> = &'a [u8];
    type Output = u64;
    type Integrator = Sum;
    fn name(&self) -> &str {
        "length"
    }
    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<&'a [u8], RecordError> {
        Ok(raw.bytes)
    }
    fn process(&self, bytes: &[u8]) -> Result<u64, RecordError> {
        Ok(bytes.len() as u64)
    }
    fn integrator(&self) -> Sum {
        Sum::default()
    }
}

impl Integrate for Sum {
    type Output = u64;
    fn integrate(&mut self, _: u64, len: u64) -> Result<(), RecordError> {
        self.0 += len;
        Ok(())
    }
    fn finish(&mut self, _: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        Ok(serde_json::json!({ "sum": self.0 }))
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// The same work without actors: a reader thread fills batches, N worker
/// threads map them, the main thread sums.
fn baseline(records: u64, workers: usize, batch: usize) -> (u64, f64) {
    let started = Instant::now();
    let (work_tx, work_rx) = crossbeam_like_channel(workers * 2);
    let (done_tx, done_rx) = mpsc::sync_channel::<Vec<u64>>(workers * 2);
    let reader = std::thread::spawn(move || {
        let mut source = Counter {
            next: 0,
            total: records,
            origin: Arc::from("mem"),
            scratch: String::new(),
        };
        loop {
            let mut b = BatchBuilder::with_capacity(batch, 0);
            if !source.fill(&mut b, batch, 4 << 20).unwrap() {
                break;
            }
            work_tx.send(b.finish()).unwrap();
        }
    });
    let pool: Vec<_> = (0..workers)
        .map(|_| {
            let rx = Arc::clone(&work_rx);
            let tx = done_tx.clone();
            std::thread::spawn(move || loop {
                let next = rx.lock().unwrap().recv();
                let Ok(b) = next else { break };
                let out: Vec<u64> = b
                    .records()
                    .map(|r| r.map_or(0, |r| r.bytes.len() as u64))
                    .collect();
                tx.send(out).unwrap();
            })
        })
        .collect();
    drop(done_tx);
    let mut sum = 0;
    for out in done_rx {
        sum += out.iter().sum::<u64>();
    }
    reader.join().unwrap();
    for w in pool {
        w.join().unwrap();
    }
    (sum, started.elapsed().as_secs_f64())
}

type Shared = Arc<std::sync::Mutex<mpsc::Receiver<drainpipe_actors::Batch>>>;

fn crossbeam_like_channel(bound: usize) -> (mpsc::SyncSender<drainpipe_actors::Batch>, Shared) {
    let (tx, rx) = mpsc::sync_channel(bound);
    (tx, Arc::new(std::sync::Mutex::new(rx)))
}

fn main() {
    let records = arg("--records", 10_000_000);
    let workers = arg("--workers", 2) as usize;
    let runs = arg("--runs", 3);
    let batch = arg("--batch", 4096) as usize;
    println!("trivial job, {records} records, {workers} workers, batch {batch}");
    let mut pipeline_rates = Vec::new();
    let mut baseline_rates = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let report = Pipeline::new(
            Length,
            Counter {
                next: 0,
                total: records,
                origin: Arc::from("mem"),
                scratch: String::new(),
            },
            OutputDir::create(dir.path()).unwrap(),
        )
        .settings(Settings {
            workers,
            window: 2 * workers,
            batch: Some(batch),
            ..Settings::default()
        })
        .run()
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(
            report.conservation && report.exit_code == 0,
            "{}",
            report.human()
        );
        let (sum, base_secs) = baseline(records, workers, batch);
        assert_eq!(report.result["sum"], sum, "pipeline and baseline disagree");
        let (p, b) = (records as f64 / secs, records as f64 / base_secs);
        println!(
            "run {run}: pipeline {p:>12.0} records/s   baseline {b:>12.0} records/s   ratio {:.2}",
            p / b
        );
        pipeline_rates.push(p);
        baseline_rates.push(b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, b) = (median(&mut pipeline_rates), median(&mut baseline_rates));
    println!(
        "median: pipeline {p:.0} records/s, baseline {b:.0} records/s, ratio {:.2}",
        p / b
    );
}
