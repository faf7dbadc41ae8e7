//! The run's temporary space on disk: where state that would pass the
//! memory budget spills (sorted runs of a job's index, for example), with
//! the bytes it holds counted.
//!
//! One folder per run, created on first use under a parent the user
//! chooses (`--tmp-dir`; by default the output folder, which the run holds
//! locked, so no other run writes there). A job creates, reads and removes
//! files by name inside it, and a checkpoint may name the files it refers
//! to: they are not copied.
//!
//! The counters say what the summary reports: every byte written
//! ([`TempSpace::bytes_spilled`]) and the most held at once
//! ([`TempSpace::peak_bytes`]).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The name of the run's temporary folder inside its parent.
pub const TEMP_FOLDER: &str = ".drainpipe-tmp";

/// A run's temporary folder and what it holds.
#[derive(Debug)]
pub struct TempSpace {
    parent: PathBuf,
    dir: Mutex<Option<PathBuf>>,
    held: AtomicU64,
    peak: AtomicU64,
    spilled: AtomicU64,
}

impl TempSpace {
    /// The temporary space under `parent` (nothing is created yet).
    pub fn new(parent: impl Into<PathBuf>) -> Self {
        TempSpace {
            parent: parent.into(),
            dir: Mutex::new(None),
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
        }
    }

    /// The folder the run's temporaries go to, created if needed.
    pub fn dir(&self) -> io::Result<PathBuf> {
        let mut dir = self.dir.lock().expect("temporary folder lock poisoned");
        if let Some(dir) = &*dir {
            return Ok(dir.clone());
        }
        let path = self.parent.join(TEMP_FOLDER);
        fs::create_dir_all(&path)?;
        *dir = Some(path.clone());
        Ok(path)
    }

    /// The path of the temporary file `name`.
    pub fn path(&self, name: &str) -> io::Result<PathBuf> {
        Ok(self.dir()?.join(name))
    }

    /// Creates (or truncates) the temporary file `name`.
    pub fn create(&self, name: &str) -> io::Result<File> {
        File::create(self.path(name)?)
    }

    /// Opens the temporary file `name` to read it.
    pub fn open(&self, name: &str) -> io::Result<File> {
        File::open(self.path(name)?)
    }

    /// Counts `bytes` written to a temporary file.
    pub fn wrote(&self, bytes: u64) {
        self.spilled.fetch_add(bytes, Ordering::Relaxed);
        let held = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(held, Ordering::Relaxed);
    }

    /// Removes the temporary file `name`, which held `bytes`.
    pub fn remove(&self, name: &str, bytes: u64) -> io::Result<()> {
        match fs::remove_file(self.path(name)?) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(bytes))
            });
        Ok(())
    }

    /// Every byte written to the temporary space so far.
    pub fn bytes_spilled(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    /// The most bytes the temporary space held at once.
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The parent folder the temporary folder goes in.
    pub fn parent(&self) -> &Path {
        &self.parent
    }
}
