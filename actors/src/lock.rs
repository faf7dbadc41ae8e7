//! One run at a time per output folder. Two runs writing the same folder
//! would mix their outputs (one run's `kept.jsonl` beside the other's
//! `summary.json`, both exiting 0), so a run takes an exclusive lock on
//! `.drainpipe.lock` in the folder before it reads or writes anything
//! there, and holds it until its last file is written.
//!
//! The lock is the kernel's (`flock`, through std's `File::try_lock`): it
//! goes with the process, so a run killed by SIGKILL or a power loss never
//! leaves the folder locked. The file says who holds it (pid, start time,
//! command) so that a refused run can name the holder. The holder removes
//! the file before it lets go; a run that opened the file just before that
//! and locks the unlinked file checks that the name still leads to what it
//! locked, and starts again if not, so two runs never hold "the" lock at
//! once.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::OutputError;
use crate::output::{is_temporary, OutputDir};

/// The lock file's name in an output folder.
pub const LOCK_FILE: &str = ".drainpipe.lock";

/// Why an output folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the folder.
    #[error(
        "{} is in use by another run ({holder}): wait for it to end, or use -o for another folder",
        folder.display()
    )]
    Held {
        /// The output folder.
        folder: PathBuf,
        /// What the lock file says of its holder.
        holder: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error(transparent)]
    Io(#[from] OutputError),
}

/// The lock of an output folder, held until dropped; dropping it removes
/// the lock file, then releases the lock.
#[derive(Debug)]
pub struct FolderLock {
    /// Held open: the lock lasts as long as the descriptor.
    _file: File,
    path: PathBuf,
}

impl FolderLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while still locked; see the module's documentation for a
        // run that opened it just before. A removal that fails loses
        // nothing: the lock is the open file's, released when it closes, and
        // the next run takes a file left behind as it finds it.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl OutputDir {
    /// Removes the temporary files of outputs that were never committed:
    /// those a killed run left (a run that ends in any other way removes its
    /// own). Only under the folder's lock, which shows that no other run is
    /// writing them. Returns the names removed.
    pub fn remove_temporaries(&self, _lock: &FolderLock) -> Result<Vec<String>, OutputError> {
        let entries =
            std::fs::read_dir(self.path()).map_err(|e| OutputError::new(self.path(), e))?;
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| OutputError::new(self.path(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temporary(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| OutputError::new(&entry.path(), e))?;
                removed.push(name);
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Takes the folder's lock for this process, writing `command` (what the
    /// run does, for a refused run's message) into the lock file beside the
    /// pid and the start time. Never waits: a folder another run holds is
    /// [`LockError::Held`].
    pub fn lock(&self, command: &str) -> Result<FolderLock, LockError> {
        FolderLock::take(&self.file(LOCK_FILE), command)
    }
}

impl FolderLock {
    /// Takes the lock of the file at `path` (made if missing) for this
    /// process, as [`OutputDir::lock`] takes an output folder's: for
    /// another thing only one run may write at a time (a saved index).
    /// [`LockError::Held`] names the folder holding `path`.
    pub fn take(path: &Path, command: &str) -> Result<FolderLock, LockError> {
        let path = path.to_path_buf();
        let io = |e| LockError::Io(OutputError::new(&path, e));
        loop {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            // A symbolic link in its place is not followed: the holder's
            // line would overwrite whatever file it leads to.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
            let mut file = options.open(&path).map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = match holder.trim() {
                        "" => "a run that is starting".to_owned(),
                        said => said.to_owned(),
                    };
                    let folder = path.parent().unwrap_or(Path::new(".")).to_owned();
                    return Err(LockError::Held { folder, holder });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            if !still_named(&file, &path) {
                // Its holder removed it after this run opened it: the lock
                // taken is on a file nobody else will open.
                continue;
            }
            let holder = format!(
                "pid {}, started {}: {command}\n",
                std::process::id(),
                utc_now()
            );
            file.set_len(0).map_err(io)?;
            file.write_all(holder.as_bytes()).map_err(io)?;
            return Ok(FolderLock { _file: file, path });
        }
    }
}

/// Whether `path` still names the file `file` has open.
#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Elsewhere a locked file cannot be removed, so the name never moves.
#[cfg(not(unix))]
fn still_named(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// The current time in UTC, `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// `secs` since the Unix epoch as a UTC date and time (the civil calendar
/// from a day count, after Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_in_place_of_the_lock_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path().join("out")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, out.file(LOCK_FILE)).unwrap();
        let e = out.lock("test").unwrap_err();
        assert!(matches!(e, LockError::Io(_)), "{e}");
        assert!(e.to_string().contains(LOCK_FILE), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn dates_are_those_of_the_civil_calendar() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_798_761_599), "2026-12-31 23:59:59 UTC");
    }

    #[test]
    fn a_held_folder_is_refused_naming_the_holder_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        let held = out.lock("dedup input.jsonl").unwrap();
        let said = std::fs::read_to_string(held.path()).unwrap();
        assert!(said.starts_with(&format!("pid {}, started ", std::process::id())));
        // Another open file description: what another process would have.
        match out.lock("vocab") {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, said.trim());
                assert!(holder.ends_with(": dedup input.jsonl"), "{holder}");
            }
            other => panic!("a second lock was not refused: {other:?}"),
        }
        drop(held);
        assert!(!dir.path().join(LOCK_FILE).exists());
        let again = out.lock("vocab").unwrap();
        assert!(std::fs::read_to_string(again.path())
            .unwrap()
            .ends_with(": vocab\n"));
    }

    #[test]
    fn a_lock_file_left_by_a_killed_run_does_not_hold_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        std::fs::write(
            dir.path().join(LOCK_FILE),
            "pid 1, started long ago: dedup\n",
        )
        .unwrap();
        let lock = out.lock("dedup").unwrap();
        assert!(std::fs::read_to_string(lock.path())
            .unwrap()
            .starts_with(&format!("pid {},", std::process::id())));
    }
}
