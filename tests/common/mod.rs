//! Shared by the integration tests: an in-memory source, a scriptable
//! test job whose records say what step 1 and step 2 should do with them,
//! and compressed forms of input files.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drainpipe_actors::{
    BatchBuilder, FinishContext, InputError, Integrate, Job, OutputDir, RawRecord, RecordError,
    RecordSource, RunReport,
};

/// Records held in memory. A record `reject:why` is rejected by the reader
/// itself, as an oversized or unreadable record would be.
pub struct MemorySource {
    records: Vec<String>,
    next: usize,
    origin: Arc<str>,
}

impl MemorySource {
    pub fn new(records: Vec<String>) -> Self {
        MemorySource {
            records,
            next: 0,
            origin: Arc::from("memory"),
        }
    }
}

impl RecordSource for MemorySource {
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        while self.next < self.records.len()
            && batch.len() < max_records
            && (batch.is_empty() || batch.data_bytes() < max_bytes)
        {
            let r = &self.records[self.next];
            self.next += 1;
            match r.strip_prefix("reject:") {
                Some(why) => batch.push_rejected(&self.origin, self.next as u64, why),
                None => batch.push(&self.origin, self.next as u64, 0, r.as_bytes()),
            }
        }
        Ok(!batch.is_empty())
    }
    fn position(&self) -> u64 {
        self.next as u64
    }
    fn total(&self) -> Option<u64> {
        Some(self.records.len() as u64)
    }
}

/// What step 2 of the [`Script`] job does.
#[derive(Clone, Default)]
pub struct Step2 {
    /// Fail with an error when integrating this input index.
    pub error_at: Option<u64>,
    /// Panic when integrating this input index.
    pub panic_at: Option<u64>,
    /// Sleep this long for every record.
    pub delay: Option<Duration>,
}

/// A job scripted by its records: `panic` panics in step 1, `error` fails
/// step 1, `sleep:MS` sleeps, `bad` fails to parse; anything else is
/// integrated. Step 2 keeps the input indices it saw and writes them to
/// `indices.txt`; it records which thread ran step 1 of each record.
#[derive(Default)]
pub struct Script {
    pub step2: Step2,
    pub threads: Arc<Mutex<Vec<(u64, String)>>>,
}

impl Job for Script {
    type Parsed<'a> = (u64, &'a str);
    type Output = u64;
    type Integrator = Seen;

    fn name(&self) -> &str {
        "script"
    }
    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<(u64, &'a str), RecordError> {
        let text = std::str::from_utf8(raw.bytes)?;
        if text == "bad" {
            return Err(format!("unparsable record at {}", raw.location).into());
        }
        Ok((raw.index, text))
    }
    fn process(&self, (index, text): (u64, &str)) -> Result<u64, RecordError> {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        self.threads.lock().unwrap().push((index, name));
        if text == "panic" {
            panic!("scripted panic at record {index}");
        }
        if text == "error" {
            return Err(format!("scripted error at record {index}").into());
        }
        if let Some(ms) = text.strip_prefix("sleep:") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
        }
        Ok(index)
    }
    fn integrator(&self) -> Seen {
        Seen {
            step2: self.step2.clone(),
            seen: Vec::new(),
        }
    }
}

/// Step 2 of [`Script`].
pub struct Seen {
    step2: Step2,
    seen: Vec<u64>,
}

impl Integrate for Seen {
    type Output = u64;
    fn integrate(&mut self, index: u64, output: u64) -> Result<(), RecordError> {
        assert_eq!(index, output);
        if let Some(d) = self.step2.delay {
            std::thread::sleep(d);
        }
        if self.step2.error_at == Some(index) {
            return Err(format!("scripted integrator error at {index}").into());
        }
        if self.step2.panic_at == Some(index) {
            panic!("scripted integrator panic at {index}");
        }
        self.seen.push(index);
        Ok(())
    }
    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        Some(drainpipe_actors::codec::encode(&self.seen, 1).map_err(Into::into))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), RecordError> {
        self.seen = drainpipe_actors::codec::decode(state, 1)?;
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        let mut file = run.output.atomic("indices.txt")?;
        for i in &self.seen {
            writeln!(file, "{i}")?;
        }
        file.commit()?;
        Ok(serde_json::json!({ "seen": self.seen.len(), "partial": run.partial }))
    }
}

/// `n` records `0..n`, with `panic`, `error`, `bad` and `reject:` records
/// sprinkled in deterministically.
pub fn mixed_records(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 97 {
            13 => "panic".to_owned(),
            29 => "error".to_owned(),
            41 => "bad".to_owned(),
            59 => "reject:too large".to_owned(),
            _ => format!("record {i}"),
        })
        .collect()
}

/// A fresh output folder.
pub fn output() -> (tempfile::TempDir, OutputDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = OutputDir::create(dir.path()).unwrap();
    (dir, out)
}

/// Asserts conservation and that the report agrees with itself.
pub fn assert_conserved(report: &RunReport) {
    let r = &report.records;
    assert!(report.conservation, "{}", report.human());
    assert_eq!(
        r.read,
        r.integrated + r.rejected + r.abandoned,
        "{}",
        report.human()
    );
}

/// `bytes` gzip-compressed.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `bytes` zstd-compressed.
pub fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 1).unwrap()
}
