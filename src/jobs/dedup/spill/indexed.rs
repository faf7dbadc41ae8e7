//! The records of a run against saved indexes (`--against`) removed as
//! duplicates of indexed records ([`RemovedAsIndexed`]), named with the
//! indexed record's id and its index's name for `clusters.jsonl`, held
//! from the clusters' making through pass 3 and the saved index's roots.
//!
//! They come out of the clusters as `(record, indexed root, similarity)`
//! in record order ([`super::joined`], or the union-find in memory): in
//! memory within a quarter of the clusters' share, else a run
//! ([`super::components::Removed`]). Each needs its root's id, which the
//! index holds in blocks in root order ([`crate::jobs::dedup::index::files`]):
//! a look-up per record would be a random read a record. So, under a
//! budget, a sort and a merge join, every file read front to back:
//!
//! 1. `(root, record, similarity)` sorted by root ([`super::sorter`],
//!    half the clusters' share);
//! 2. joined with the roots' ids read in root order, each block of ids
//!    once, and sorted back by record with the id ([`super::named`]'s
//!    sort, a quarter of the share,
//!    [`crate::jobs::dedup::budget::Shares::indexed_duplicates`]);
//! 3. kept in that sort's memory when it wrote nothing, else merged into
//!    one run of its own, read front to back as often as pass 3, the
//!    lines of `clusters.jsonl` and the saved index's roots ask.
//!
//! Without a budget they stay in memory as they are made, with one id a
//! distinct root, looked up in a table (the fast path, the same lines).
//! The index's name is not stored: a root's index is the one whose
//! numbers hold it.

use std::collections::HashMap;
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use super::components::{Removed, RemovedIter, RemovedRecord, StopCheck};
use super::merge::EntrySource;
use super::named::{Chunk, Kept, KeptReader, KeptRun, Named, Sorter as NamedSorter};
use super::runs::{Entry, RunError};
use super::sorter::Sorter;

/// The records removed as duplicates of indexed records, in record order.
#[derive(Debug, Default)]
pub struct RemovedAsIndexed {
    form: Form,
    /// Each index's first record (joined numbering) and name, in order.
    names: Vec<(u32, Arc<str>)>,
    /// Bytes written to name them.
    spilled_bytes: u64,
}

#[derive(Debug)]
enum Form {
    /// As the clusters made them, not yet named.
    Unnamed(Removed),
    /// Named without a budget: one id a distinct root, in a table.
    Mapped {
        removed: Removed,
        ids: HashMap<u32, Arc<str>>,
    },
    /// Named under a budget: by record, each with its root's id.
    Sorted(Kept),
}

impl Default for Form {
    fn default() -> Self {
        Form::Unnamed(Removed::default())
    }
}

/// One record removed as a duplicate of an indexed record, named.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    /// The removed record.
    pub record: u32,
    /// The indexed record it duplicates, its cluster's first indexed
    /// root (joined numbering).
    pub root: u32,
    /// The highest similarity among its verified pairs.
    pub similarity: f64,
    /// The root's id, as the index holds it (JSON text).
    pub id: &'a str,
    /// The root's index's name.
    pub index: &'a str,
}

/// What naming them failed on.
#[derive(Debug, thiserror::Error)]
pub enum NameError<E> {
    /// A run could not be written or read back (it names its file), or
    /// the run was asked to stop ([`RunError::Stopped`]).
    #[error(transparent)]
    Spill(#[from] RunError),
    /// A root's id could not be read from its index.
    #[error(transparent)]
    Ids(E),
}

/// An error of the code itself, as a run's failure.
fn bug(message: &str) -> RunError {
    RunError::Failed {
        kind: std::io::ErrorKind::Other,
        message: format!("dedup clusters: {message} (a bug)"),
    }
}

impl RemovedAsIndexed {
    /// `removed` (`(record, indexed root, similarity)` in record order),
    /// not yet named.
    pub fn unnamed(removed: Removed) -> Self {
        RemovedAsIndexed {
            form: Form::Unnamed(removed),
            ..RemovedAsIndexed::default()
        }
    }

    /// How many.
    pub fn len(&self) -> u64 {
        match &self.form {
            Form::Unnamed(removed) | Form::Mapped { removed, .. } => removed.len(),
            Form::Sorted(Kept::Memory(chunk)) => chunk.len() as u64,
            Form::Sorted(Kept::Run(run)) => run.len(),
        }
    }

    /// True when none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes written to the temporary space to name them (0: named in
    /// memory), the summary's `removed_as_indexed_spilled_bytes`.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes
    }

    /// True once named in one run on disk.
    pub fn on_disk(&self) -> bool {
        matches!(self.form, Form::Sorted(Kept::Run(_)))
    }

    /// Each `(record, root, similarity)` in record order, read front to
    /// back when on disk.
    pub fn records(&self) -> Records<'_> {
        Records(match &self.form {
            Form::Unnamed(removed) | Form::Mapped { removed, .. } => {
                RecordsFrom::Removed(removed.iter())
            }
            Form::Sorted(Kept::Memory(chunk)) => RecordsFrom::Memory(chunk, 0),
            Form::Sorted(Kept::Run(run)) => RecordsFrom::Run(Some(run.open())),
        })
    }

    /// All of them in one list (tests).
    pub fn to_vec(&self) -> Result<Vec<RemovedRecord>, RunError> {
        self.records().collect()
    }

    /// A pass over them named, in record order ([`Lines::next`]).
    pub fn lines(&self) -> Lines<'_> {
        let from = match &self.form {
            Form::Unnamed(removed) => LinesFrom::Unnamed(removed.is_empty()),
            Form::Mapped { removed, ids } => LinesFrom::Mapped(removed.iter(), ids),
            Form::Sorted(Kept::Memory(chunk)) => LinesFrom::Memory(chunk, 0),
            Form::Sorted(Kept::Run(run)) => LinesFrom::Run(run, None),
        };
        Lines { of: self, from }
    }

    /// The name of the index that holds `root`.
    fn index_of(&self, root: u32) -> &str {
        let at = self.names.partition_point(|&(first, _)| first <= root);
        at.checked_sub(1)
            .and_then(|at| self.names.get(at))
            .map_or("", |(_, name)| name)
    }

    /// Names each record with its root's id, which `ids(root, out)`
    /// appends to `out` (asked for in increasing root order, under a
    /// budget, each root once), and with its index's name, `names` giving
    /// each index's first record (joined numbering, in order) and name.
    /// `share` is the clusters' share ([`crate::jobs::dedup::budget::Shares::clusters`];
    /// `None`: no budget, named in memory with a table of the roots' ids);
    /// past it, the runs go to `temp` (see the module's docs). A stop
    /// `stop` sees ends it with [`RunError::Stopped`], every run removed.
    /// Named already: nothing done.
    pub fn name<E>(
        &mut self,
        ids: impl FnMut(u32, &mut String) -> Result<(), E>,
        names: Vec<(u32, Arc<str>)>,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        stop: &StopCheck<'_>,
    ) -> Result<(), NameError<E>> {
        let unnamed = match std::mem::take(&mut self.form) {
            Form::Unnamed(removed) => removed,
            named => {
                self.form = named;
                return Ok(());
            }
        };
        self.names = names;
        let before = temp.bytes_spilled();
        self.form = match share {
            None => mapped(unnamed, ids)?,
            Some(share) => Form::Sorted(sorted(unnamed, ids, (share, temp), stop)?),
        };
        self.spilled_bytes += temp.bytes_spilled() - before;
        Ok(())
    }
}

/// Names `unnamed` in memory: one id a distinct root, in a table.
fn mapped<E>(
    unnamed: Removed,
    mut ids: impl FnMut(u32, &mut String) -> Result<(), E>,
) -> Result<Form, NameError<E>> {
    let mut wanted: Vec<u32> = (unnamed.iter())
        .map(|r| r.map(|(_, root, _)| root))
        .collect::<Result<_, RunError>>()?;
    wanted.sort_unstable();
    wanted.dedup();
    let mut table = HashMap::with_capacity(wanted.len());
    let mut id = String::new();
    for root in wanted {
        id.clear();
        ids(root, &mut id).map_err(NameError::Ids)?;
        table.insert(root, Arc::from(id.as_str()));
    }
    Ok(Form::Mapped {
        removed: unnamed,
        ids: table,
    })
}

/// Names `unnamed` with sorts within `share` (the clusters'): by root,
/// joined with the ids, then by record (see the module's docs).
fn sorted<E>(
    unnamed: Removed,
    mut ids: impl FnMut(u32, &mut String) -> Result<(), E>,
    (share, temp): (u64, &Arc<TempSpace>),
    stop: &StopCheck<'_>,
) -> Result<Kept, NameError<E>> {
    let count = unnamed.len();
    let mut by_root = Sorter::new(temp, "indexed-roots", share / 2);
    for removed in unnamed.iter() {
        stop.step()?;
        let (record, root, similarity) = removed?;
        let entry = Entry {
            key: u64::from(root),
            record,
            print: similarity.to_bits(),
        };
        by_root.push(entry)?;
    }
    drop(unnamed);
    let by_root_runs = by_root.runs_written();
    let mut roots = by_root.finish()?;
    // Tests stop the run here, the runs by root on disk (feature
    // `failpoints`): `dedup::indexed_hold=return(FILE)`.
    crate::jobs::dedup::crash::hold("dedup::indexed_hold", &|| stop.asked());
    stop.now()?;
    let mut by_record = NamedSorter::new(temp, "indexed", share / 4);
    let (mut id, mut named) = (String::new(), None);
    while let Some(entry) = roots.next_entry()? {
        stop.step()?;
        let root = u32::try_from(entry.key).map_err(|_| bug("a root past 2^32"))?;
        if named != Some(root) {
            id.clear();
            ids(root, &mut id).map_err(NameError::Ids)?;
            named = Some(root);
        }
        by_record.push(entry.record, root, f64::from_bits(entry.print), &id)?;
    }
    drop(roots);
    let (kept, _) = by_record.finish_kept(temp, stop)?;
    log::info!(
        "dedup: {count} records removed as duplicates of indexed records named with their \
         roots' ids: {by_root_runs} runs by root, {}",
        match &kept {
            Kept::Memory(chunk) => format!("held in memory ({} bytes)", chunk.bytes()),
            Kept::Run(_) => format!("kept in a run in {}", temp.folder().display()),
        }
    );
    Ok(kept)
}

/// [`RemovedAsIndexed::records`].
pub struct Records<'a>(RecordsFrom<'a>);

enum RecordsFrom<'a> {
    Removed(RemovedIter<'a>),
    Memory(&'a Chunk, usize),
    /// The run's reader (`None` once it ended or failed).
    Run(Option<Result<KeptReader, RunError>>),
}

/// A named record as a removed one.
fn removed_of(r: &Named<'_>) -> RemovedRecord {
    (r.key, r.other, r.similarity)
}

impl Iterator for Records<'_> {
    type Item = Result<RemovedRecord, RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = match &mut self.0 {
            RecordsFrom::Removed(removed) => return removed.next(),
            RecordsFrom::Memory(chunk, at) => {
                let next = (*at < chunk.len()).then(|| removed_of(&chunk.named(*at)));
                *at += 1;
                return next.map(Ok);
            }
            RecordsFrom::Run(reader) => reader,
        };
        let read = match reader.as_mut()? {
            Ok(run) => run.next().map(|r| r.as_ref().map(removed_of)),
            Err(_) => Err(reader.take()?.err().expect("a failed open")),
        };
        match read {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                *reader = None;
                None
            }
            Err(e) => {
                *reader = None;
                Some(Err(e))
            }
        }
    }
}

/// [`RemovedAsIndexed::lines`].
pub struct Lines<'a> {
    of: &'a RemovedAsIndexed,
    from: LinesFrom<'a>,
}

enum LinesFrom<'a> {
    /// Not named: true when there is nothing to name.
    Unnamed(bool),
    Mapped(RemovedIter<'a>, &'a HashMap<u32, Arc<str>>),
    Memory(&'a Chunk, usize),
    /// The run, and its reader once opened.
    Run(&'a KeptRun, Option<KeptReader>),
}

impl Lines<'_> {
    /// The next record named, `None` past the last.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Line<'_>>, RunError> {
        let of = self.of;
        let named = match &mut self.from {
            LinesFrom::Unnamed(true) => return Ok(None),
            LinesFrom::Unnamed(false) => return Err(bug("records written before they were named")),
            LinesFrom::Mapped(removed, ids) => {
                let Some((record, root, similarity)) = removed.next().transpose()? else {
                    return Ok(None);
                };
                let id = ids.get(&root).ok_or_else(|| bug("a root without its id"))?;
                return Ok(Some(Line {
                    record,
                    root,
                    similarity,
                    id,
                    index: of.index_of(root),
                }));
            }
            LinesFrom::Memory(chunk, at) => {
                if *at == chunk.len() {
                    return Ok(None);
                }
                *at += 1;
                chunk.named(*at - 1)
            }
            LinesFrom::Run(run, reader) => {
                let reader = match reader {
                    Some(reader) => reader,
                    None => reader.insert(run.open()?),
                };
                match reader.next()? {
                    Some(named) => named,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(Line {
            record: named.key,
            root: named.other,
            similarity: named.similarity,
            id: named.id,
            index: of.index_of(named.other),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A root's id as an index holds it (JSON text): escaped quotes,
    /// unicode and a backslash in some, a number in others, long ones.
    fn root_id(root: u32) -> String {
        match root % 4 {
            0 => format!("{}", u64::from(root) * 1_000_003),
            1 => format!("\"é \\\"漢字\\\" {root} 🦀 \\\\\""),
            2 => format!("\"{root}-{}\"", "x\\\"ü".repeat((root % 300) as usize)),
            _ => format!("\"old-{root}\""),
        }
    }

    /// Three indexes: from 0, from 400 and from 900 (joined numbering).
    fn names() -> Vec<(u32, Arc<str>)> {
        vec![
            (0, "A".into()),
            (400, "B \"quoted\"".into()),
            (900, "C".into()),
        ]
    }

    /// 20,000 records, every third removed as an indexed record's
    /// duplicate: root 7 shared by a third of them, the rest spread over
    /// the three indexes.
    fn unnamed() -> Vec<RemovedRecord> {
        (0..20_000u32)
            .filter(|r| r % 3 == 1)
            .map(|r| {
                let root = if r % 9 == 1 { 7 } else { r * 31 % 1_200 };
                (r, root, 0.5 + f64::from(r % 97) / 200.0)
            })
            .collect()
    }

    /// The lines as text, read from `named`.
    fn lines_of(named: &RemovedAsIndexed) -> Vec<String> {
        let mut lines = named.lines();
        let mut out = Vec::new();
        while let Some(l) = lines.next().unwrap() {
            let similarity = l.similarity.to_bits();
            out.push(format!(
                "{} {} {similarity} {} {}",
                l.record, l.root, l.id, l.index
            ));
        }
        out
    }

    /// What the lines must be: each looked up.
    fn expected() -> Vec<String> {
        let index = |root: u32| match root {
            0..400 => "A",
            400..900 => "B \"quoted\"",
            _ => "C",
        };
        unnamed()
            .into_iter()
            .map(|(r, root, j)| {
                let (id, index) = (root_id(root), index(root));
                format!("{r} {root} {} {id} {index}", j.to_bits())
            })
            .collect()
    }

    /// Names `list` within `share` (`None`: no budget), asking the ids of
    /// each root in turn; returns the roots asked for.
    fn named(
        list: Vec<RemovedRecord>,
        share: Option<u64>,
        temp: &Arc<TempSpace>,
    ) -> (RemovedAsIndexed, Vec<u32>) {
        let mut named = RemovedAsIndexed::unnamed(Removed::Memory(list));
        let mut asked = Vec::new();
        let ids = |root: u32, out: &mut String| {
            asked.push(root);
            out.push_str(&root_id(root));
            Ok::<(), Infallible>(())
        };
        let never = StopCheck::never();
        named.name(ids, names(), (share, temp), &never).unwrap();
        (named, asked)
    }

    fn files(temp: &TempSpace) -> usize {
        std::fs::read_dir(temp.folder()).map_or(0, |dir| dir.count())
    }

    #[test]
    fn named_past_their_share_in_one_run_they_give_the_lines_named_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let want = expected();
        // No budget: a table of the roots' ids, nothing written.
        let (memory, asked) = named(unnamed(), None, &temp);
        assert!(matches!(memory.form, Form::Mapped { .. }));
        assert_eq!(lines_of(&memory), want);
        assert_eq!((memory.spilled_bytes(), temp.bytes_spilled()), (0, 0));
        assert!(asked.windows(2).all(|w| w[0] < w[1]), "each root once");
        // A budget its records fit: sorted in memory, nothing written.
        let (fits, _) = named(unnamed(), Some(64 << 20), &temp);
        assert!(matches!(fits.form, Form::Sorted(Kept::Memory(_))));
        assert_eq!(lines_of(&fits), want);
        assert_eq!(temp.bytes_spilled(), 0);
        // Past it: runs by root, the ids asked in root order each once,
        // one run by record kept and read as often as asked.
        let (disk, asked) = named(unnamed(), Some(64 << 10), &temp);
        assert!(disk.on_disk());
        assert!(disk.spilled_bytes() > 0 && disk.spilled_bytes() == temp.bytes_spilled());
        assert!(
            asked.windows(2).all(|w| w[0] < w[1]),
            "roots in order, once"
        );
        assert_eq!(files(&temp), 1, "the kept run alone");
        assert_eq!(lines_of(&disk), want);
        assert_eq!(lines_of(&disk), want, "read twice");
        assert_eq!(disk.len(), want.len() as u64);
        assert_eq!(disk.to_vec().unwrap(), unnamed());
        assert_eq!(memory.to_vec().unwrap(), unnamed());
        drop(disk);
        assert_eq!(files(&temp), 0, "the kept run goes with them");
    }

    #[test]
    fn a_failing_id_or_a_stop_ends_the_naming_with_every_run_removed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let mut named = RemovedAsIndexed::unnamed(Removed::Memory(unnamed()));
        let failing = |root: u32, _: &mut String| match root {
            900.. => Err(format!("no id for {root}")),
            _ => Ok(()),
        };
        let never = StopCheck::never();
        let within = (Some(64 << 10), &temp);
        let e = named.name(failing, names(), within, &never).unwrap_err();
        assert!(
            matches!(&e, NameError::Ids(m) if m.starts_with("no id for 9")),
            "{e}"
        );
        assert!(temp.bytes_spilled() > 0);
        assert_eq!(files(&temp), 0, "runs left");
        // A stop asked for: the runs by root written, then stopped.
        let mut named = RemovedAsIndexed::unnamed(Removed::Memory(unnamed()));
        let ids = |_, _: &mut String| Ok::<(), Infallible>(());
        let stop = StopCheck::new(&|| true);
        let e = named.name(ids, names(), within, &stop).unwrap_err();
        assert!(matches!(e, NameError::Spill(RunError::Stopped)), "{e}");
        assert_eq!(files(&temp), 0, "runs left");
    }
}
