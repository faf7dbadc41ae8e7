//! The run's temporary space on disk: where state that would pass the
//! memory budget spills (sorted runs of a job's index, for example), with
//! the bytes it holds counted and the room left on its disk checked.
//!
//! One folder per output folder, created on first use
//! ([`TempSpace::for_output`]): `.drainpipe-tmp` inside the output folder,
//! which the run holds locked, or, with `--tmp-dir DIR`,
//! `DIR/.drainpipe-tmp-<hash of the output folder's path>`, so two runs
//! into different output folders never share one, and two into the same
//! one are kept apart by the output folder's lock. A job creates, reads
//! and removes files by name inside it, and a checkpoint may name the files
//! it refers to: they are not copied.
//!
//! The folder's lifecycle (the binary keeps it; see `docs/DEDUP.md`,
//! "Temporary space"): before the folder is created its path is written to
//! [`TEMP_RECORD`] in the output folder, so the next run into that folder
//! finds it whatever `--tmp-dir` it is given. A run removes the folder when
//! it ends ([`TempSpace::remove_all`]) unless it leaves a checkpoint behind
//! (which may name files in it, for `--resume`); a run that starts without
//! `--resume` removes what an earlier, killed one left
//! ([`remove_left`]); a `--resume` run works in the recorded folder
//! ([`TempSpace::resumed`]).
//!
//! A folder in `--tmp-dir` is not under the output folder's lock: the
//! record of an output folder that was moved or copied after a run was
//! killed names the folder of the path it had, which a new run into that
//! path uses again. So the run that uses such a folder holds the
//! kernel's lock (`flock`) on [`IN_USE`] inside it, and [`remove_left`]
//! leaves a folder whose lock another process holds.
//!
//! The counters say what the summary reports: every byte written
//! ([`TempSpace::bytes_spilled`]) and the most held at once
//! ([`TempSpace::peak_bytes`]). [`TempSpace::ensure_room`] is the check a
//! writer makes before it writes a run: the disk may fill while the run
//! goes on, and a write that fails half-way would leave a broken run.

use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::lock::FolderLock;
use crate::output::OutputDir;

/// The name of the run's temporary folder inside the output folder.
pub const TEMP_FOLDER: &str = ".drainpipe-tmp";

/// The file in the output folder naming the temporary folder of the run
/// that created it (one line, its absolute path).
pub const TEMP_RECORD: &str = ".drainpipe-tmp-location";

/// The file inside a temporary folder in `--tmp-dir` that the run using
/// the folder holds locked.
pub const IN_USE: &str = ".in-use";

/// How long a run waits for the lock on [`IN_USE`] that another holds: a
/// run removing a killed run's folder holds it for as long as that takes.
pub const IN_USE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Room [`TempSpace::ensure_room`] leaves free on the disk besides what a
/// write needs: the outputs' last writes, the summary, a checkpoint.
pub const RESERVE: u64 = 16 << 20;

/// Whether `name` is that of a temporary folder [`TempSpace`] makes
/// (`.drainpipe-tmp`, or `.drainpipe-tmp-` and 16 hexadecimal digits): only
/// such a folder is ever removed as a run's temporary space, whatever the
/// record file says.
pub fn is_temp_folder(name: &str) -> bool {
    name == TEMP_FOLDER
        || name
            .strip_prefix(TEMP_FOLDER)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The disk holding the temporary folder has too little room for a write
/// (or, up front, for the run's estimate). Carried inside an
/// [`io::Error`] of kind [`io::ErrorKind::StorageFull`].
#[derive(Debug, thiserror::Error)]
#[error(
    "not enough disk space for temporary files in {}: {needed} bytes needed (with a reserve of {reserve}), {free} free; free some space or give --tmp-dir on a larger disk",
    folder.display()
)]
pub struct NoRoom {
    /// The temporary folder.
    pub folder: PathBuf,
    /// Bytes free on its disk for an unprivileged process.
    pub free: u64,
    /// Bytes the write needs, the reserve included.
    pub needed: u64,
    /// The reserve included in `needed` ([`RESERVE`]).
    pub reserve: u64,
}

/// A run's temporary folder and what it holds.
#[derive(Debug)]
pub struct TempSpace {
    parent: PathBuf,
    folder: PathBuf,
    /// The output folder whose [`TEMP_RECORD`] names `folder`, if any.
    record: Option<OutputDir>,
    /// Whether `folder` was created (or found, when resumed).
    created: Mutex<bool>,
    /// [`IN_USE`], held locked while the run uses a folder in `--tmp-dir`.
    in_use: Mutex<Option<File>>,
    held: AtomicU64,
    peak: AtomicU64,
    spilled: AtomicU64,
}

impl TempSpace {
    /// The temporary space `.drainpipe-tmp` under `parent` (nothing is
    /// created yet, and no record is kept: for tests and library use).
    pub fn new(parent: impl Into<PathBuf>) -> Self {
        let parent = parent.into();
        let folder = parent.join(TEMP_FOLDER);
        Self::at(parent, folder, None)
    }

    /// The temporary space of a run into `output`: `.drainpipe-tmp` in it,
    /// or, given `tmp_dir`, a folder in `tmp_dir` named for `output` alone.
    /// The folder's path is recorded in `output` ([`TEMP_RECORD`]) when it
    /// is created.
    pub fn for_output(output: &OutputDir, tmp_dir: Option<&Path>) -> io::Result<Self> {
        let Some(tmp_dir) = tmp_dir else {
            let folder = absolute(&output.file(TEMP_FOLDER))?;
            return Ok(Self::at(output.path().into(), folder, Some(output.clone())));
        };
        let parent = absolute(tmp_dir)?;
        let folder = parent.join(folder_name_for(&fs::canonicalize(output.path())?));
        Ok(Self::at(parent, folder, Some(output.clone())))
    }

    /// The temporary space an interrupted run into `output` recorded,
    /// `folder` ([`recorded`]): a `--resume` run works there, since its
    /// checkpoint may name files in it.
    /// A folder in `--tmp-dir` that another run is using is refused.
    pub fn resumed(output: &OutputDir, folder: PathBuf) -> io::Result<Self> {
        let parent = folder.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        let space = Self::at(parent, folder, Some(output.clone()));
        let found = space.folder.is_dir();
        *space
            .created
            .lock()
            .expect("temporary folder lock poisoned") = found;
        if found {
            space.hold_in_use()?;
        }
        Ok(space)
    }

    fn at(parent: PathBuf, folder: PathBuf, record: Option<OutputDir>) -> Self {
        TempSpace {
            parent,
            folder,
            record,
            created: Mutex::new(false),
            in_use: Mutex::new(None),
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
        }
    }

    /// The folder the run's temporaries go to, created if needed (its
    /// path recorded first, so a run killed at any moment leaves a record
    /// of every folder it created).
    pub fn dir(&self) -> io::Result<PathBuf> {
        let mut created = self.created.lock().expect("temporary folder lock poisoned");
        if !*created {
            if let Some(output) = &self.record {
                let mut line = self.folder.as_os_str().as_encoded_bytes().to_vec();
                line.push(b'\n');
                output.write_all(TEMP_RECORD, &line).map_err(into_io)?;
            }
            fs::create_dir_all(&self.folder)?;
            self.hold_in_use()?;
            *created = true;
        }
        Ok(self.folder.clone())
    }

    /// Takes the lock on [`IN_USE`] in a folder of `--tmp-dir` (the folder
    /// in the output folder is under that folder's lock), making the
    /// folder again if a run removing a killed run's removed it meanwhile
    /// (it holds the lock only while it removes). Held by another run
    /// for [`IN_USE_WAIT`], the error names the folder.
    fn hold_in_use(&self) -> io::Result<()> {
        let shared = self.record.is_some()
            && self.folder.file_name() != Some(std::ffi::OsStr::new(TEMP_FOLDER));
        let mut in_use = self.in_use.lock().expect("temporary folder lock poisoned");
        if !shared || in_use.is_some() {
            return Ok(());
        }
        let path = self.folder.join(IN_USE);
        let deadline = std::time::Instant::now() + IN_USE_WAIT;
        loop {
            fs::create_dir_all(&self.folder)?;
            let file = match fs::OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match file.try_lock() {
                Ok(()) if same_file(&path, &file) => {
                    *in_use = Some(file);
                    return Ok(());
                }
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!(
                            "the temporary folder {} is in use by another run (was the output folder moved or copied?)",
                            self.folder.display()
                        ),
                    ))
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    /// The temporary folder's path, whether it exists yet or not.
    pub fn folder(&self) -> &Path {
        &self.folder
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

    /// Counts `bytes` already in the temporary space, written by an earlier
    /// run that this one resumes (its checkpoint names them): held, and so
    /// in [`TempSpace::peak_bytes`], but not written by this run.
    pub fn holds(&self, bytes: u64) {
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

    /// Bytes free for an unprivileged process on the disk that holds (or
    /// will hold) the temporary folder.
    pub fn free_bytes(&self) -> io::Result<u64> {
        free_bytes_at(&self.folder)
    }

    /// Checks that `bytes` more can be written to the temporary space and
    /// still leave [`RESERVE`] free: a writer calls it before it writes a
    /// run, so a full disk stops the run before a write fails half-way.
    /// The error is of kind [`io::ErrorKind::StorageFull`] and carries a
    /// [`NoRoom`] naming the folder, the bytes free and those needed.
    pub fn ensure_room(&self, bytes: u64) -> io::Result<()> {
        let free = self.free_bytes()?;
        let needed = bytes.saturating_add(RESERVE);
        if needed <= free {
            return Ok(());
        }
        let no_room = NoRoom {
            folder: self.folder.clone(),
            free,
            needed,
            reserve: RESERVE,
        };
        Err(io::Error::new(io::ErrorKind::StorageFull, no_room))
    }

    /// Removes the temporary folder with everything in it, and the record
    /// naming it; what a run does when it ends without a checkpoint that
    /// could refer to it. Returns whether there was a folder to remove.
    pub fn remove_all(&self) -> io::Result<bool> {
        let mut created = self.created.lock().expect("temporary folder lock poisoned");
        let removed = remove_folder(&self.folder)?;
        *self.in_use.lock().expect("temporary folder lock poisoned") = None;
        if let Some(output) = &self.record {
            output.remove_stale(TEMP_RECORD).map_err(into_io)?;
        }
        *created = false;
        self.held.store(0, Ordering::Relaxed);
        Ok(removed)
    }
}

/// The temporary folder an earlier run into `output` recorded, if the
/// record names one of [`is_temp_folder`]'s shape by an absolute path.
pub fn recorded(output: &OutputDir) -> Option<PathBuf> {
    let bytes = fs::read(output.file(TEMP_RECORD)).ok()?;
    let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    // Written from the path's bytes by `TempSpace::dir`.
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(line));
    let shaped = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(is_temp_folder);
    (path.is_absolute() && shaped).then_some(path)
}

/// Removes the temporary folders an earlier run into `output` left (the
/// recorded one and `.drainpipe-tmp` in `output`) and the record: a run
/// that does not resume calls it under the folder's lock, before it
/// creates its own. Returns the folders removed.
pub fn remove_left(output: &OutputDir, _lock: &FolderLock) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let default = output.file(TEMP_FOLDER);
    for folder in recorded(output).into_iter().chain([default]) {
        if removed.contains(&folder) {
            continue;
        }
        // Held while it is removed, so that a run starting to use it waits.
        let Some(_unused) = unused(&folder)? else {
            log::warn!(
                "left the temporary folder {} that the record in {} names: another run is using it (was the output folder moved or copied?)",
                folder.display(),
                output.path().display()
            );
            continue;
        };
        if remove_folder(&folder)? {
            removed.push(folder);
        }
    }
    output.remove_stale(TEMP_RECORD).map_err(into_io)?;
    Ok(removed)
}

/// The lock on `folder`'s [`IN_USE`] when no other process holds it
/// (`Some(None)` when there is no such file), `None` when one does.
fn unused(folder: &Path) -> io::Result<Option<Option<File>>> {
    let file = match File::open(folder.join(IN_USE)) {
        Ok(file) => file,
        Err(e) if gone(&e) => return Ok(Some(None)),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(Some(file))),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether `path` still names the file `file` has open.
fn same_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Whether an error says that there is nothing at the path: not found,
/// or an ancestor that is no folder (a record naming `/dev/null/...`).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// An output error as an IO error of the same kind, its message naming
/// the path.
fn into_io(e: crate::error::OutputError) -> io::Error {
    io::Error::new(e.cause.kind(), e)
}

/// Removes `folder` and what it holds; `false` when it did not exist. A
/// symbolic link in its place is removed, not followed.
fn remove_folder(folder: &Path) -> io::Result<bool> {
    match fs::remove_dir_all(folder) {
        Ok(()) => Ok(true),
        Err(e) if gone(&e) => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("removing the temporary folder {}: {e}", folder.display()),
        )),
    }
}

/// The temporary folder's name in `--tmp-dir` for the output folder at
/// `canonical`: the FNV-1a hash of its path, so it is the same for every
/// run into that folder and differs for every other.
fn folder_name_for(canonical: &Path) -> String {
    let hash = canonical
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{TEMP_FOLDER}-{hash:016x}")
}

/// `path` made absolute against the current folder (the record must name
/// the folder for a run started elsewhere).
fn absolute(path: &Path) -> io::Result<PathBuf> {
    std::path::absolute(path)
}

/// Bytes free for an unprivileged process on the disk of `path`, or of
/// its nearest existing ancestor (the folder may not exist yet).
pub fn free_bytes_at(path: &Path) -> io::Result<u64> {
    #[cfg(feature = "failpoints")]
    if let Some(free) = fail::eval("temp::free_bytes", |arg| arg.and_then(|a| a.parse().ok())) {
        return Ok(free.unwrap_or(0));
    }
    let probe = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(Path::new("."));
    let stat = rustix::fs::statvfs(probe).map_err(io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_of_the_temporary_shape_are_taken_for_one() {
        assert!(is_temp_folder(".drainpipe-tmp"));
        assert!(is_temp_folder(".drainpipe-tmp-0123456789abcdef"));
        for not in [
            "drainpipe-tmp",
            ".drainpipe-tmp-",
            ".drainpipe-tmp-0123",
            ".drainpipe-tmp-0123456789abcdeg",
            "home",
            "..",
        ] {
            assert!(!is_temp_folder(not), "{not}");
        }
    }

    #[test]
    fn two_output_folders_never_share_a_temporary_folder_in_one_tmp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let a = OutputDir::create(dir.path().join("a")).unwrap();
        let b = OutputDir::create(dir.path().join("b")).unwrap();
        let ta = TempSpace::for_output(&a, Some(&tmp)).unwrap();
        let tb = TempSpace::for_output(&b, Some(&tmp)).unwrap();
        assert_ne!(ta.folder(), tb.folder());
        assert_eq!(ta.folder().parent(), Some(tmp.as_path()));
        let again = TempSpace::for_output(&a, Some(&tmp)).unwrap();
        assert_eq!(ta.folder(), again.folder(), "the same for every run");
        assert!(is_temp_folder(
            ta.folder().file_name().unwrap().to_str().unwrap()
        ));
    }

    #[test]
    fn the_folder_is_recorded_before_it_is_created_and_removed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path().join("out")).unwrap();
        let temp = TempSpace::for_output(&out, Some(&dir.path().join("tmp"))).unwrap();
        assert!(!temp.folder().exists(), "created on first use only");
        assert_eq!(recorded(&out), None);
        let mut file = temp.create("run-0").unwrap();
        io::Write::write_all(&mut file, b"spilled").unwrap();
        temp.wrote(7);
        assert_eq!(recorded(&out).as_deref(), Some(temp.folder()));
        assert_eq!((temp.bytes_spilled(), temp.peak_bytes()), (7, 7));
        assert!(temp.remove_all().unwrap());
        assert!(!temp.folder().exists());
        assert_eq!(recorded(&out), None);
        assert!(!temp.remove_all().unwrap(), "nothing left to remove");
    }

    #[test]
    fn a_record_naming_another_folder_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path().join("out")).unwrap();
        let precious = dir.path().join("precious");
        fs::create_dir(&precious).unwrap();
        for line in [precious.to_str().unwrap(), ".drainpipe-tmp", ""] {
            fs::write(out.file(TEMP_RECORD), format!("{line}\n")).unwrap();
            assert_eq!(recorded(&out), None, "{line}");
        }
        let lock = out.lock("test").unwrap();
        assert!(remove_left(&out, &lock).unwrap().is_empty());
        assert!(precious.is_dir());
    }

    #[test]
    fn ensure_room_names_the_folder_and_the_bytes_free_and_needed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        temp.ensure_room(1).unwrap();
        let e = temp.ensure_room(u64::MAX / 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        let message = e.to_string();
        assert!(
            message.contains(&temp.folder().display().to_string()),
            "{message}"
        );
        let no_room = e.get_ref().unwrap().downcast_ref::<NoRoom>().unwrap();
        assert_eq!(no_room.needed, u64::MAX / 2 + RESERVE);
        assert!(
            message.contains(&format!("{} free", no_room.free)),
            "{message}"
        );
    }

    #[test]
    fn a_folder_a_live_run_uses_is_left_by_a_run_into_a_moved_output_folder() {
        // A run into `out` with --tmp-dir is killed; `out` is moved to
        // `moved`; a new run into `out` uses the same folder in tmp (it is
        // named for the path). A run into `moved` finds the old record
        // naming that folder: it must leave it while the new run lives.
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let out = OutputDir::create(dir.path().join("out")).unwrap();
        let killed = TempSpace::for_output(&out, Some(&tmp)).unwrap();
        killed.create("run-0").unwrap();
        drop(killed); // a kill: the folder and the record stay, unlocked
        std::fs::rename(out.path(), dir.path().join("moved")).unwrap();
        let moved = OutputDir::create(dir.path().join("moved")).unwrap();
        let out = OutputDir::create(dir.path().join("out")).unwrap();
        let live = TempSpace::for_output(&out, Some(&tmp)).unwrap();
        live.create("run-1").unwrap();
        assert_eq!(recorded(&moved).as_deref(), Some(live.folder()));
        let lock = moved.lock("test").unwrap();
        assert!(remove_left(&moved, &lock).unwrap().is_empty());
        assert!(
            live.path("run-1").unwrap().exists(),
            "a live run's file removed"
        );
        // A resumed run into `moved`, which would work in it, finds it so.
        let folder = live.folder().to_owned();
        assert!(unused(&folder).unwrap().is_none());
        // Once the run is gone (killed: nothing removed), it is removed.
        drop(live);
        std::fs::write(moved.file(TEMP_RECORD), format!("{}\n", folder.display())).unwrap();
        assert_eq!(
            remove_left(&moved, &lock).unwrap(),
            std::slice::from_ref(&folder)
        );
        assert!(!folder.exists());
    }

    #[test]
    fn a_record_naming_a_path_below_a_device_is_nothing_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path().join("out")).unwrap();
        std::fs::write(
            out.file(TEMP_RECORD),
            "/dev/null/.drainpipe-tmp-0123456789abcdef\n",
        )
        .unwrap();
        let lock = out.lock("test").unwrap();
        assert!(remove_left(&out, &lock).unwrap().is_empty());
        assert_eq!(recorded(&out), None, "the record is removed");
    }
}
