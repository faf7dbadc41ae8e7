//! Committing a run's outputs as one set: all of them, or none.
//!
//! Renaming files into place one after another is atomic for each file,
//! not for the set: a disk that fills up while the second is flushed used
//! to leave the first committed beside an earlier run's second. So
//! [`OutputDir::commit_set`] goes in three steps:
//!
//! 1. every file is flushed and synced under its temporary name. An error
//!    here (a full disk) removes every temporary file and renames nothing:
//!    the folder holds exactly what it held before.
//! 2. a journal, `.drainpipe.commit`, listing the renames and the removals
//!    the set makes (an earlier run's `summary.json`, which no longer
//!    describes the outputs; an output this run does not make), is written
//!    atomically and synced. A file the run wrote and synced earlier (the
//!    result of an earlier pass) joins the set as one more rename. From here
//!    on the set is committed.
//! 3. the removals and renames are made, the folder synced, the journal
//!    removed.
//!
//! A crash during step 3 leaves some new files in place and some under
//! their temporary names, with the journal. The next run into the folder,
//! holding its lock, completes the journal's renames before anything else
//! ([`OutputDir::complete_commit`]): so wherever no journal is, the
//! outputs are one run's complete set. A rename that fails outright (it
//! does not, short of a failing disk) leaves the same state, and the error
//! says so.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::OutputError;
use crate::lock::FolderLock;
use crate::output::{sync_parent, AtomicFile, OutputDir, Synced};

/// The journal of a commit under way, in the output folder.
pub const COMMIT_JOURNAL: &str = ".drainpipe.commit";

/// Held from the journal's writing to its removal, so that a hard exit can
/// wait for a commit in progress rather than remove its files.
static COMMITTING: Mutex<()> = Mutex::new(());

/// Sets committed by this process so far, so that a hard exit can tell
/// whether the outputs in the folder are this run's.
static SETS_COMMITTED: AtomicUsize = AtomicUsize::new(0);

/// How many sets [`OutputDir::commit_set`] has committed in this process.
pub fn sets_committed() -> usize {
    SETS_COMMITTED.load(Ordering::SeqCst)
}

/// For a hard exit: waits up to `deadline` for a commit under way to end,
/// and returns a guard under which none starts, or `None` when the commit
/// is still going at the deadline (then its journal lets the next run
/// complete it, and its temporary files must stay).
pub fn pause_commits(deadline: Duration) -> Option<MutexGuard<'static, ()>> {
    let started = Instant::now();
    loop {
        match COMMITTING.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// One step of a commit's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Remove this file of the folder (missing is fine).
    Remove(String),
    /// Rename the first name to the second.
    Rename(String, String),
}

impl OutputDir {
    /// Commits `files` as one set, renames each `(from, to)` of `moved` (a
    /// file of the folder already written and synced, such as the result of
    /// an earlier pass, that becomes an output) with them, and removes the
    /// files named in `stale` (see the module's documentation for what an
    /// error or a crash leaves). Returns the final paths of `files`.
    pub fn commit_set(
        &self,
        files: Vec<AtomicFile>,
        moved: &[(&str, &str)],
        stale: &[&str],
    ) -> Result<Vec<PathBuf>, OutputError> {
        let synced = files
            .into_iter()
            .map(AtomicFile::sync)
            .collect::<Result<Vec<Synced>, _>>()?;
        let mut steps: Vec<Step> = stale.iter().map(|n| Step::Remove(n.to_string())).collect();
        for (from, to) in moved {
            let from = self.file(from);
            if !from.exists() {
                let missing = io::Error::new(io::ErrorKind::NotFound, "no such file to commit");
                return Err(OutputError::new(&from, missing));
            }
            steps.push(Step::Rename(name_of(&from)?, name_of(&self.file(to))?));
        }
        for file in &synced {
            steps.push(Step::Rename(name_of(&file.temp)?, name_of(&file.target)?));
        }
        let _committing = COMMITTING.lock().unwrap_or_else(|p| p.into_inner());
        self.write_all(COMMIT_JOURNAL, journal_text(&steps).as_bytes())?;
        let targets = synced
            .into_iter()
            .map(|file| {
                // The journal now owns them: nothing removes them on drop.
                file.temp
                    .keep()
                    .map_err(|e| OutputError::new(&file.target, e.error))?;
                Ok(file.target)
            })
            .collect::<Result<Vec<_>, OutputError>>()?;
        self.apply(&steps).map_err(|e| self.stopped_part_way(e))?;
        SETS_COMMITTED.fetch_add(1, Ordering::SeqCst);
        Ok(targets)
    }

    /// Completes the commit a killed run began, if its journal is here (see
    /// the module's documentation); under the folder's lock, before anything
    /// else. Returns the names of the files it put in place.
    pub fn complete_commit(&self, _lock: &FolderLock) -> Result<Vec<String>, OutputError> {
        let path = self.file(COMMIT_JOURNAL);
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(|e| OutputError::new(&path, e))?,
        };
        let steps = parse_journal(&text).map_err(|e| OutputError::new(&path, e))?;
        let completed = steps
            .iter()
            .filter_map(|step| match step {
                Step::Rename(from, to) if self.file(from).exists() => Some(to.clone()),
                _ => None,
            })
            .collect();
        self.apply(&steps)?;
        Ok(completed)
    }

    /// Makes the journal's steps (a rename whose temporary file is gone was
    /// made already), syncs the folder and removes the journal.
    fn apply(&self, steps: &[Step]) -> Result<(), OutputError> {
        for step in steps {
            match step {
                Step::Remove(name) => self.remove_stale(name)?,
                Step::Rename(from, to) => {
                    let (from, to) = (self.file(from), self.file(to));
                    if crate::output::injected("output::rename", &to) {
                        // A crash between two renames.
                        std::process::abort();
                    }
                    match std::fs::rename(&from, &to) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound && !from.exists() => {}
                        other => other.map_err(|e| OutputError::new(&to, e))?,
                    }
                }
            }
        }
        let journal = self.file(COMMIT_JOURNAL);
        sync_parent(&journal).map_err(|e| OutputError::new(self.path(), e))?;
        self.remove_stale(COMMIT_JOURNAL)?;
        sync_parent(&journal).map_err(|e| OutputError::new(self.path(), e))
    }

    /// The error of a commit that stopped after its journal was written.
    fn stopped_part_way(&self, e: OutputError) -> OutputError {
        let cause = io::Error::new(
            e.cause.kind(),
            format!(
                "{}; the commit of the outputs stopped part way: the next run into {} completes it ({COMMIT_JOURNAL})",
                e.cause,
                self.path().display()
            ),
        );
        OutputError::new(&e.path, cause)
    }
}

/// The file name of `path` (outputs are named files in the folder, and the
/// journal's format needs names without tabs or line breaks).
fn name_of(path: &std::path::Path) -> Result<String, OutputError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.contains(['\t', '\n']))
        .map(str::to_owned)
        .ok_or_else(|| {
            let bad = io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name");
            OutputError::new(path, bad)
        })
}

/// The journal: one step a line, `remove\tNAME` or `rename\tFROM\tTO`.
fn journal_text(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|step| match step {
            Step::Remove(name) => format!("remove\t{name}\n"),
            Step::Rename(from, to) => format!("rename\t{from}\t{to}\n"),
        })
        .collect()
}

/// The journal's steps. Every name must be a file of the folder itself: a
/// journal is read from the folder, and one naming `../x` or `/x` (damaged,
/// or put there by someone else) must not make the run remove or replace
/// a file elsewhere.
fn parse_journal(text: &str) -> io::Result<Vec<Step>> {
    let plain = |name: &str| !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    text.lines()
        .map(|line| match line.split('\t').collect::<Vec<_>>()[..] {
            ["remove", name] if plain(name) => Ok(Step::Remove(name.to_owned())),
            ["rename", from, to] if plain(from) && plain(to) => {
                Ok(Step::Rename(from.to_owned(), to.to_owned()))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a commit journal line: {line:?}"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn written(out: &OutputDir, name: &str, text: &str) -> AtomicFile {
        let mut file = out.atomic(name).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn a_set_is_committed_whole_with_its_stale_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        out.write_all("summary.json", b"old").unwrap();
        out.write_all("c", b"old c").unwrap();
        out.write_all("pass-c", b"new c").unwrap();
        let files = vec![written(&out, "a", "new a"), written(&out, "b", "new b")];
        out.commit_set(files, &[("pass-c", "c")], &["summary.json"])
            .unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(std::fs::read_to_string(out.file("b")).unwrap(), "new b");
        assert_eq!(std::fs::read_to_string(out.file("c")).unwrap(), "new c");
        // A file to move that is not there fails the set before any step.
        let files = vec![written(&out, "a", "newer a")];
        assert!(out.commit_set(files, &[("pass-c", "c")], &[]).is_err());
        assert_eq!(std::fs::read_to_string(out.file("a")).unwrap(), "new a");
    }

    #[test]
    fn a_journal_left_by_a_crash_is_completed_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        // A crash after the first rename: `a` is new, `b` still temporary.
        std::fs::write(out.file("a"), "new a").unwrap();
        std::fs::write(out.file("b"), "old b").unwrap();
        std::fs::write(out.file(".b.XXXXXX.tmp"), "new b").unwrap();
        std::fs::write(out.file("summary.json"), "old").unwrap();
        let steps = [
            Step::Remove("summary.json".into()),
            Step::Rename(".a.YYYYYY.tmp".into(), "a".into()),
            Step::Rename(".b.XXXXXX.tmp".into(), "b".into()),
        ];
        std::fs::write(out.file(COMMIT_JOURNAL), journal_text(&steps)).unwrap();
        assert_eq!(parse_journal(&journal_text(&steps)).unwrap(), steps);
        let lock = out.lock("test").unwrap();
        assert_eq!(out.complete_commit(&lock).unwrap(), ["b"]);
        assert_eq!(std::fs::read_to_string(out.file("a")).unwrap(), "new a");
        assert_eq!(std::fs::read_to_string(out.file("b")).unwrap(), "new b");
        assert!(!out.file("summary.json").exists());
        assert!(!out.file(COMMIT_JOURNAL).exists());
        // Nothing left to do.
        assert!(out.complete_commit(&lock).unwrap().is_empty());
    }

    #[test]
    fn a_journal_naming_a_file_outside_the_folder_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path().join("out")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::write(out.file("a"), "a").unwrap();
        let lock = out.lock("test").unwrap();
        for journal in [
            "remove\t../victim\n",
            &format!("remove\t{}\n", victim.display()),
            "rename\ta\t../victim\n",
            "rename\t../victim\ta\n",
            "remove\t..\n",
        ] {
            std::fs::write(out.file(COMMIT_JOURNAL), journal).unwrap();
            let e = out.complete_commit(&lock).unwrap_err();
            assert!(
                e.to_string().contains("not a commit journal line"),
                "{journal:?}: {e}"
            );
            assert_eq!(
                std::fs::read_to_string(&victim).unwrap(),
                "precious",
                "{journal:?}"
            );
            assert_eq!(
                std::fs::read_to_string(out.file("a")).unwrap(),
                "a",
                "{journal:?}"
            );
        }
    }

    #[test]
    fn a_damaged_journal_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::create(dir.path()).unwrap();
        std::fs::write(out.file(COMMIT_JOURNAL), "move\tx\n").unwrap();
        let lock = out.lock("test").unwrap();
        let e = out.complete_commit(&lock).unwrap_err();
        assert!(e.to_string().contains("not a commit journal line"), "{e}");
    }
}
