//! A run whose spilled state will not fit on the disk of its temporary
//! folder never leaves a half-written output: up front, the run's
//! estimate (documents x band keys, `src/spill_estimate.rs`) is checked
//! against the disk's free space (`statvfs`) and a run that will not fit
//! is refused with exit 74 and a message naming the folder, the bytes
//! free and the bytes needed, before anything is read; as it goes, a
//! spill writer checks each run's room first (`TempSpace::ensure_room`)
//! and a full disk stops the run with exit 74 and no output.
//!
//! The disk is a real tmpfs of a few MiB (the tests run as root, as the
//! IO fault tests do).

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drainpipe_actors::{
    FinishContext, Integrate, Job, OutputDir, Pipeline, RawRecord, RecordError, RunHandle,
    Settings, TempSpace,
};

use super::io_faults_exit_74_with_a_message_and_no_half_written_output::Tmpfs;
use crate::binary::{drainpipe, names, spawn, summary, wait};
use crate::common::MemorySource;

/// Outputs a dedup run writes when it completes.
const OUTPUTS: [&str; 3] = ["kept.jsonl", "clusters.jsonl", "rejects.jsonl"];

#[test]
fn a_run_estimated_past_the_free_space_is_refused_before_it_reads() {
    let small = Tmpfs::mount("size=4m");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = drainpipe();
    // Two million documents of state past a 28 MiB budget: about 600 MiB
    // of band keys to spill, on a 4 MiB disk. (1 worker, a window of 1:
    // the least budget is 28 MiB.)
    cmd.args(["dedup", "--no-progress", "--demo-docs", "2000000"])
        .args(["-w", "1", "--window", "1", "--max-memory", "28M"])
        .arg("--tmp-dir")
        .arg(small.path())
        .arg("-o")
        .arg(&out);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("refused before reading anything: this run may spill about"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "not enough disk space for temporary files in {}",
            small.path().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("bytes needed"), "{stderr}");
    assert!(stderr.contains(" free; "), "{stderr}");
    let s = summary(&out);
    assert_eq!(
        (s["exit"].as_str(), s["exit_code"].as_i64()),
        (Some("failed"), Some(74))
    );
    assert_eq!(s["memory"]["budget_bytes"], 28 << 20);
    for name in OUTPUTS {
        assert!(!out.join(name).exists(), "{name}");
    }
    assert_eq!(names(&out), ["summary.json"], "nothing else was written");
    assert_eq!(names(small.path()), Vec::<String>::new());
}

#[test]
fn a_run_whose_state_fits_in_its_budget_needs_no_disk() {
    // The same small disk, a state within the budget: nothing to spill,
    // the run goes ahead.
    let small = Tmpfs::mount("size=64k");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = drainpipe();
    cmd.args(["dedup", "--no-progress", "--demo-docs", "500"])
        .arg("--tmp-dir")
        .arg(small.path())
        .arg("-o")
        .arg(&out);
    let (output, _) = wait(spawn(cmd), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(out.join("kept.jsonl").exists());
    // The summary says what the run held and spilled.
    let memory = &summary(&out)["memory"];
    assert!(
        memory["budget"]
            .as_str()
            .unwrap()
            .starts_with("default: half"),
        "{memory}"
    );
    assert!(
        memory["budget_bytes"].as_u64().unwrap()
            >= memory["fixed_overhead_bytes"].as_u64().unwrap()
    );
    assert!(memory["peak_rss_bytes"].as_u64().unwrap() > 0, "{memory}");
    assert_eq!(
        (
            memory["bytes_spilled"].as_u64(),
            memory["peak_temp_bytes"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(names(small.path()), Vec::<String>::new(), "nothing spilled");
}

/// A job whose step 2 spills what it holds to the temporary space every
/// `run_bytes`, checking the room first, as a spill writer must: when the
/// disk is full it keeps the error, asks the run to stop, and reports the
/// error from `save` and `finish`, so the run ends with exit 74 and writes
/// nothing.
struct Spilling {
    temp: Arc<TempSpace>,
    handle: RunHandle,
    run_bytes: usize,
}

impl Job for Spilling {
    type Parsed<'a> = &'a [u8];
    type Output = Vec<u8>;
    type Integrator = Spiller;

    fn name(&self) -> &str {
        "spilling"
    }
    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<&'a [u8], RecordError> {
        Ok(raw.bytes)
    }
    fn process(&self, bytes: &[u8]) -> Result<Vec<u8>, RecordError> {
        Ok(bytes.to_vec())
    }
    fn integrator(&self) -> Spiller {
        Spiller {
            temp: Arc::clone(&self.temp),
            handle: self.handle.clone(),
            run_bytes: self.run_bytes,
            held: Vec::new(),
            runs: 0,
            full: Arc::new(Mutex::new(None)),
        }
    }
}

struct Spiller {
    temp: Arc<TempSpace>,
    handle: RunHandle,
    run_bytes: usize,
    held: Vec<u8>,
    runs: usize,
    /// The first write the disk could not take.
    full: Arc<Mutex<Option<String>>>,
}

impl Spiller {
    fn spill(&mut self) -> std::io::Result<()> {
        self.temp.ensure_room(self.held.len() as u64)?;
        let name = format!("run-{}", self.runs);
        self.temp.create(&name)?.write_all(&self.held)?;
        self.temp.wrote(self.held.len() as u64);
        self.runs += 1;
        self.held.clear();
        Ok(())
    }

    fn fault(&self) -> Option<RecordError> {
        let full = self.full.lock().unwrap().clone()?;
        Some(Box::new(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            full,
        )))
    }
}

impl Integrate for Spiller {
    type Output = Vec<u8>;
    fn integrate(&mut self, _index: u64, output: Vec<u8>) -> Result<(), RecordError> {
        if self.full.lock().unwrap().is_some() {
            // Stopping: what still arrives is held, not spilled.
            return Ok(());
        }
        self.held.extend_from_slice(&output);
        if self.held.len() >= self.run_bytes {
            if let Err(e) = self.spill() {
                *self.full.lock().unwrap() = Some(e.to_string());
                self.handle.request_stop();
            }
        }
        Ok(())
    }
    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        Some(self.fault().map_or(Ok(Vec::new()), Err))
    }
    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        if let Some(full) = self.fault() {
            return Err(full);
        }
        run.output.write_all("spilled.txt", b"all spilled")?;
        Ok(serde_json::json!({ "runs": self.runs }))
    }
}

/// Runs [`Spilling`] over 64 records of 64 KiB with its temporary space
/// in `temp_parent`, 1 MiB a run.
fn spilling_run(
    temp_parent: &Path,
    out: &OutputDir,
) -> (drainpipe_actors::RunReport, Arc<TempSpace>) {
    let temp = Arc::new(TempSpace::new(temp_parent));
    let handle = RunHandle::new();
    let job = Spilling {
        temp: Arc::clone(&temp),
        handle: handle.clone(),
        run_bytes: 1 << 20,
    };
    let records = (0..64u8)
        .map(|i| char::from(b'a' + i % 26).to_string().repeat(1 << 16))
        .collect();
    let settings = Settings {
        workers: 1,
        window: 1,
        batch: Some(1),
        ..Settings::default()
    };
    let report = Pipeline::new(job, MemorySource::new(records), out.clone())
        .settings(settings)
        .handle(handle)
        .run()
        .unwrap();
    (report, temp)
}

#[test]
fn a_spill_writer_that_meets_a_full_disk_stops_the_run_with_74_and_no_output() {
    // 4 MiB of runs to write; the reserve alone (16 MiB) leaves no room on
    // an 18 MiB disk for more than two.
    let small = Tmpfs::mount("size=18m");
    let dir = tempfile::tempdir().unwrap();
    let out = OutputDir::create(dir.path()).unwrap();
    let (report, temp) = spilling_run(small.path(), &out);
    assert_eq!(report.exit_code, 74, "{}", report.human());
    let errors = report.errors.join("\n");
    assert!(
        errors.contains("not enough disk space for temporary files in"),
        "{errors}"
    );
    assert!(!report.outputs_written, "{}", report.human());
    assert!(!out.file("spilled.txt").exists());
    assert!(!out.file(drainpipe_actors::CHECKPOINT_FILE).exists());
    assert!(temp.bytes_spilled() < 4 << 20, "it stopped spilling");
    assert!(report.conservation, "{}", report.human());

    // On a disk with room, the same run completes and writes its output.
    let (report, temp) = spilling_run(
        dir.path(),
        &OutputDir::create(dir.path().join("ok")).unwrap(),
    );
    assert_eq!(report.exit_code, 0, "{}", report.human());
    assert_eq!(temp.bytes_spilled(), 4 << 20);
    assert!(dir.path().join("ok/spilled.txt").exists());
}
