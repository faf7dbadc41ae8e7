//! Pass 3's copy beside pass 2: `kept.jsonl` is copied from the inputs
//! ([`super::copy`]) on a thread of its own while the verify pass runs,
//! instead of after it.
//!
//! Why: the copy is one thread of mostly kernel work, and pass 2 keeps
//! both cores busy only part of the time; one after the other, a core
//! idles through the whole copy (at 200k documents on two cores, about a
//! fifth of the run).
//!
//! Which records pass 2 may remove is known before it starts. A cluster
//! keeps its first record ([`crate::jobs::dedup::clusters::Clusters`]), so
//! a record is removed exactly when verified pairs link it to an earlier
//! record; and verified pairs are candidate pairs. So:
//!
//! - a record in no candidate pair is kept, and so is the first record
//!   of each *candidate component* (records linked by candidate pairs);
//! - any other record's fate is settled once every candidate pair of its
//!   component has been checked: once the verify pass has checked every
//!   pair whose later record is at most the component's last record.
//!
//! The Verifier says, after each record, how far it has checked and which
//! pairs it verified ([`Fates::checked`]). The copy goes in input order
//! and decides each record as soon as its fate is settled: removed when
//! verified pairs link it to an earlier record (the rule `Clusters`
//! applies), kept when not even the verified and unchecked pairs do.
//!
//! A record's fate can hang on a pair whose later record is far ahead
//! (it and an earlier record are both candidates with that one). Rather
//! than wait for pass 2 to get there, the copy checks the unchecked
//! pairs of the record's component itself ([`Checker`]: the same
//! parsing, shingles and [`jaccard`] as pass 2, so the same answers) when
//! the component is small; it waits only at a larger one. When
//! pass 2 completes, its final removed set is handed over
//! ([`KeptCopy::finish`]): the rest of the copy uses it, and every
//! decision made before is checked against it ([`NotCopied::Redo`] if one
//! differs: the input changed under the run, or a bug). When pass 2 does
//! not complete, the copy is abandoned: it stops at its next record and
//! its file is deleted ([`KeptCopy`]'s `Drop`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use drainpipe_actors::{Location, RawRecord, Settings};

use crate::input::Wanted;
use crate::input::{parse_text_record, TextFields, FORMAT_JSONL};
#[cfg(test)]
use crate::jobs::dedup::bitset::BitSet;
use crate::jobs::dedup::chain::Written;
use crate::jobs::dedup::fates::{End, Fates, State};
use crate::jobs::dedup::shingle::shingle_set;
use crate::jobs::dedup::similarity::jaccard;
use crate::jobs::dedup::spans::{Located, Spans};
use crate::jobs::dedup::spill::record_sets::RecordSet;
use crate::jobs::dedup::unionfind::UnionFind;

use super::copy::{copy_kept, read_cleanly, unread, CopyTarget, NotCopied, Removed};

/// How long the copy waits for pass 2 before it logs that it still does
/// (at info level: the copy often waits for pass 2, and that is no fault;
/// it is a warning only once pass 2 looks stuck, see [`Following::stuck`]).
const WAIT_REPORT: Duration = Duration::from_secs(10);

/// How a wait that has gone `still_for` without progress is logged: a
/// warning once that is `stuck` or more (the run's stall timeout), else
/// information (`-v`), as waiting for the other side is normal.
fn wait_level(still_for: Duration, stuck: Duration) -> log::Level {
    if still_for >= stuck {
        log::Level::Warn
    } else {
        log::Level::Info
    }
}

/// The largest candidate component whose pairs the copy checks itself
/// (it holds their shingle sets at once, about 2.4 KB a record).
const CHECKED_BY_COPY: usize = 64;

/// The candidate records, in increasing order, and their places: what
/// pass 2 reads ([`crate::jobs::dedup::passes::verify::reread`]).
pub type CandidatePlaces = (Arc<Vec<u32>>, Arc<Vec<Wanted>>);

/// What pass 2 computes for a pair, computed by the copy: reads records
/// at the places pass 1 noted (or, when those are on disk, at the
/// candidates' places pass 2 found), and computes their similarity as
/// pass 2 does.
pub struct Checker {
    /// The run's input files, by input number.
    inputs: Vec<PathBuf>,
    /// Where each record is.
    spans: Arc<Spans>,
    /// Where each candidate record is, when pass 2 found them.
    candidates: Option<CandidatePlaces>,
    /// Which JSON fields hold the text and the id.
    fields: TextFields,
    /// Words per shingle.
    ngram: usize,
    /// The similarity of a verified pair, at least.
    threshold: f64,
    /// The inputs opened so far, and room for a record.
    files: HashMap<u32, File>,
    buf: Vec<u8>,
}

impl Checker {
    /// A checker of the records of `inputs` at their places in `spans`.
    pub fn new(
        inputs: Vec<PathBuf>,
        spans: Arc<Spans>,
        fields: TextFields,
        ngram: usize,
        threshold: f64,
    ) -> Self {
        Checker {
            inputs,
            spans,
            candidates: None,
            fields,
            ngram,
            threshold,
            files: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// Finds the candidate records' places in `candidates` too (those
    /// past the places' share are on disk, not in [`Spans::get`]).
    pub fn with_candidates(mut self, candidates: Option<CandidatePlaces>) -> Self {
        self.candidates = candidates;
        self
    }

    /// Where `record` is.
    fn place_of(&self, record: u32) -> Option<Located> {
        if let Some(at) = self.spans.get(record.into()) {
            return Some(at);
        }
        let (records, wanted) = self.candidates.as_ref()?;
        let w = wanted.get(records.binary_search(&record).ok()?)?;
        Some(Located {
            input: w.span.input,
            offset: w.span.offset,
            len: w.len,
            line: w.line,
        })
    }

    /// The shingle set of `record`, as pass 2 computes it.
    fn set_of(&mut self, record: u32) -> Result<Vec<u64>, String> {
        let at = self
            .place_of(record)
            .ok_or_else(|| format!("record {record} has no place"))?;
        let path = self
            .inputs
            .get(at.input as usize)
            .ok_or_else(|| format!("input {} is not one of this run's", at.input))?;
        let failed = |e: std::io::Error| format!("{}: {e}", path.display());
        let file = match self.files.entry(at.input) {
            std::collections::hash_map::Entry::Occupied(file) => file.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(File::open(path).map_err(failed)?)
            }
        };
        let buf = &mut self.buf;
        buf.resize(at.len as usize, 0);
        file.read_exact_at(buf, at.offset).map_err(failed)?;
        let origin = path.to_string_lossy();
        let raw = RawRecord {
            index: record.into(),
            location: Location {
                origin: &origin,
                line: at.line,
            },
            format: FORMAT_JSONL,
            bytes: buf,
            span: None,
        };
        let parsed = parse_text_record(&raw, &self.fields).map_err(|e| e.to_string())?;
        Ok(shingle_set(&parsed.text, self.ngram))
    }
}

/// The copy's side: decides each record's fate as pass 2 settles it.
struct Following {
    fates: Arc<Fates>,
    /// The records of some candidate pair, in input order: the graph's
    /// nodes (a node's id is its position here, so ids follow input
    /// order).
    members: Vec<u32>,
    /// Each node's candidate pairs: `edges[starts[v]..starts[v + 1]]`,
    /// as (other node, later record of the pair).
    starts: Vec<u32>,
    edges: Vec<(u32, u32)>,
    /// The candidate records that are not the first of their candidate
    /// component (the others are kept), in input order.
    doubtful: Vec<u32>,
    next: usize,
    /// Verified pairs so far, as `(earlier, later)` records, and their
    /// components.
    verified: HashSet<(u32, u32)>,
    components: UnionFind,
    /// Scratch for the search of [`Following::try_decide`].
    seen: Vec<u32>,
    search: u32,
    stack: Vec<u32>,
    /// Checks pairs itself, when a record's fate hangs on a pair far ahead.
    checker: Option<Checker>,
    /// Fates of records whose component the copy checked itself.
    checked_here: HashMap<u32, bool>,
    /// Fates decided before pass 2's final set arrived.
    decided: Vec<(u32, bool)>,
    last: Option<Arc<RecordSet>>,
    /// Time spent waiting for pass 2 (reported in the log).
    waited: Duration,
    /// How long pass 2 may check no further pair while the copy waits
    /// before the wait is logged as a warning (the run's stall timeout).
    stuck: Duration,
}

impl Following {
    fn new(fates: Arc<Fates>, candidate_pairs: &[(u32, u32)], checker: Option<Checker>) -> Self {
        let mut members: Vec<u32> = candidate_pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        members.sort_unstable();
        members.dedup();
        let dense = |r: u32| members.binary_search(&r).expect("a member") as u32;
        let n = members.len();
        let mut degree = vec![0u32; n + 1];
        let mut components = UnionFind::new(n);
        for &(a, b) in candidate_pairs {
            degree[dense(a) as usize] += 1;
            degree[dense(b) as usize] += 1;
            components.union(dense(a), dense(b));
        }
        let mut starts = vec![0u32; n + 1];
        for v in 0..n {
            starts[v + 1] = starts[v] + degree[v];
        }
        let mut fill = starts.clone();
        let mut edges = vec![(0, 0); starts[n] as usize];
        for &(a, b) in candidate_pairs {
            let (da, db) = (dense(a), dense(b));
            edges[fill[da as usize] as usize] = (db, b);
            fill[da as usize] += 1;
            edges[fill[db as usize] as usize] = (da, b);
            fill[db as usize] += 1;
        }
        // The root is the smallest member: the component's first record.
        let doubtful = (0..n as u32)
            .filter(|&v| components.find(v) != v)
            .map(|v| members[v as usize])
            .collect();
        Following {
            fates,
            verified: HashSet::new(),
            components: UnionFind::new(n),
            seen: vec![0; n],
            search: 0,
            stack: Vec::new(),
            members,
            starts,
            edges,
            doubtful,
            next: 0,
            checker,
            // A thirty-second of the input (at least 1,024 records): pass
            // 2 goes through it in a few milliseconds.
            checked_here: HashMap::new(),
            decided: Vec::new(),
            last: None,
            waited: Duration::ZERO,
            stuck: Settings::default().stall_timeout,
        }
    }

    fn dense(&self, record: u32) -> u32 {
        self.members
            .binary_search(&record)
            .expect("verified pairs are candidate pairs") as u32
    }

    /// Takes the pairs pass 2 verified since the last look.
    fn absorb(&mut self, state: &mut State) {
        for (a, b) in std::mem::take(&mut state.verified) {
            self.verified.insert((a, b));
            let (a, b) = (self.dense(a), self.dense(b));
            self.components.union(a, b);
        }
    }

    /// The fate of candidate `record` when pass 2 has checked every pair
    /// whose later record is below `checked_below`: `Ok(removed)` once it
    /// is settled, else `Err(later)`, a hint for when to look again: the
    /// smallest later record of the unchecked pairs the search went
    /// through (it stops at the first earlier record it reaches, so a pair
    /// it did not see may settle the fate sooner; waking later only
    /// delays the copy).
    ///
    /// Removed: verified pairs link it to an earlier record (they are never
    /// taken back). Kept: not even the pairs that are verified or not yet
    /// checked link it to one (the pairs checked and not verified never
    /// will be).
    fn try_decide(&mut self, record: u32, checked_below: u64) -> Result<bool, u32> {
        let me = self.dense(record);
        if self.components.find(me) != me {
            return Ok(true);
        }
        self.search += 1;
        self.seen[me as usize] = self.search;
        self.stack.clear();
        self.stack.push(me);
        let mut unchecked = u32::MAX;
        while let Some(v) = self.stack.pop() {
            let (from, to) = (self.starts[v as usize], self.starts[v as usize + 1]);
            for &(w, later) in &self.edges[from as usize..to as usize] {
                let usable = if u64::from(later) >= checked_below {
                    unchecked = unchecked.min(later);
                    true
                } else {
                    let (x, y) = (self.members[v as usize], self.members[w as usize]);
                    self.verified.contains(&(x.min(y), x.max(y)))
                };
                if !usable || self.seen[w as usize] == self.search {
                    continue;
                }
                if w < me {
                    // An earlier record, through pairs not all checked.
                    return Err(unchecked);
                }
                self.seen[w as usize] = self.search;
                self.stack.push(w);
            }
        }
        Ok(false)
    }

    /// Waits until `record`'s fate is settled, then decides it. The Fates
    /// lock is held only to take what pass 2 has told: the decision and
    /// any reading are done without it, so pass 2 is never held up.
    fn settle(&mut self, record: u32) -> Result<bool, NotCopied> {
        let fates = Arc::clone(&self.fates);
        let started = Instant::now();
        // Pass 2's last progress seen while waiting: pairs checked below
        // which record, since when.
        let mut progress = (self.fates.lock().checked_below, started);
        let mut tried_here = false;
        loop {
            let below = {
                let mut state = fates.lock();
                self.absorb(&mut state);
                match &state.end {
                    End::Finished(removed) => {
                        let removed = Arc::clone(removed);
                        drop(state);
                        log::debug!(
                            "dedup: the verify pass ended with the copy of kept.jsonl at record {record}, after {:.3}s of waiting for it; it checked {} records' pairs itself",
                            self.waited.as_secs_f64(),
                            self.checked_here.len()
                        );
                        let fate = removed.try_contains(record.into()).map_err(unread);
                        self.last = Some(removed);
                        return fate;
                    }
                    End::Abandoned => return Err(NotCopied::Stopped),
                    End::Running => {}
                }
                state.checked_below
            };
            let later = match self.try_decide(record, below) {
                Ok(removed) => {
                    self.decided.push((record, removed));
                    return Ok(removed);
                }
                Err(later) => later,
            };
            if self.checker.is_some() && !tried_here {
                tried_here = true;
                if let Some(removed) = self.check_here(record, below) {
                    self.decided.push((record, removed));
                    return Ok(removed);
                }
                // Too large to check here: look at what pass 2 did meanwhile.
                continue;
            }
            let mut state = fates.lock();
            if state.checked_below != below || !matches!(state.end, End::Running) {
                progress = (state.checked_below, Instant::now());
                continue; // pass 2 went on since: decide again
            }
            state.waiting_for = Some(later.into());
            let waiting = Instant::now();
            let (state, wait) = fates
                .settled
                .wait_timeout(state, WAIT_REPORT)
                .unwrap_or_else(|e| e.into_inner());
            self.waited += waiting.elapsed();
            if wait.timed_out() {
                if state.checked_below != progress.0 {
                    progress = (state.checked_below, Instant::now());
                }
                log::log!(
                    wait_level(progress.1.elapsed(), self.stuck),
                    "dedup: the copy of kept.jsonl has waited {:.0}s for the verify pass to settle record {record} (pairs checked below record {}, {:.0}s ago)",
                    started.elapsed().as_secs_f64(),
                    state.checked_below,
                    progress.1.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// The fate of `record`, from the pairs of its candidate component
    /// (those pass 2 has not checked yet, whose later record is at or
    /// above `checked_below`, checked here), when the component is small
    /// enough; `None` when
    /// it is not, or a record could not be read (pass 2 will say why).
    fn check_here(&mut self, record: u32, checked_below: u64) -> Option<bool> {
        if let Some(&fate) = self.checked_here.get(&record) {
            return Some(fate);
        }
        let threshold = self.checker.as_ref()?.threshold;
        let nodes = self.component_of(self.dense(record))?;
        // Its pairs, each once (from its earlier node).
        let mut pairs = Vec::new();
        for &v in &nodes {
            let (from, to) = (self.starts[v as usize], self.starts[v as usize + 1]);
            for &(w, later) in &self.edges[from as usize..to as usize] {
                if w > v {
                    pairs.push((v, w, later));
                }
            }
        }
        // The shingle sets of the records of the pairs pass 2 has not
        // checked yet.
        let checker = self.checker.as_mut()?;
        let mut sets: HashMap<u32, Vec<u64>> = HashMap::new();
        for &(v, w, later) in &pairs {
            if u64::from(later) < checked_below {
                continue;
            }
            for r in [self.members[v as usize], self.members[w as usize]] {
                if let std::collections::hash_map::Entry::Vacant(slot) = sets.entry(r) {
                    let set = checker
                        .set_of(r)
                        .map_err(|e| log::debug!("dedup: the copy could not check record {r}: {e}"))
                        .ok()?;
                    slot.insert(set);
                }
            }
        }
        let local = |v: u32| nodes.binary_search(&v).expect("in the component") as u32;
        let mut component = UnionFind::new(nodes.len());
        for &(v, w, later) in &pairs {
            let (a, b) = (self.members[v as usize], self.members[w as usize]);
            let verified = if u64::from(later) < checked_below {
                self.verified.contains(&(a, b))
            } else {
                jaccard(&sets[&a], &sets[&b]) >= threshold
            };
            if verified {
                component.union(local(v), local(w));
            }
        }
        for (i, &v) in nodes.iter().enumerate() {
            let removed = component.find(i as u32) != i as u32;
            self.checked_here.insert(self.members[v as usize], removed);
        }
        self.checked_here.get(&record).copied()
    }

    /// The nodes of `me`'s candidate component, in input order; `None`
    /// when it has more than [`CHECKED_BY_COPY`].
    fn component_of(&mut self, me: u32) -> Option<Vec<u32>> {
        self.search += 1;
        self.seen[me as usize] = self.search;
        let mut nodes = vec![me];
        let mut i = 0;
        while i < nodes.len() {
            let v = nodes[i] as usize;
            i += 1;
            for &(w, _) in &self.edges[self.starts[v] as usize..self.starts[v + 1] as usize] {
                if self.seen[w as usize] != self.search {
                    if nodes.len() == CHECKED_BY_COPY {
                        return None;
                    }
                    self.seen[w as usize] = self.search;
                    nodes.push(w);
                }
            }
        }
        nodes.sort_unstable();
        Some(nodes)
    }
}

/// Checks the fates the copy `decided` before pass 2 ended against pass
/// 2's final result.
fn agree(decided: &[(u32, bool)], removed: &RecordSet) -> Result<(), NotCopied> {
    match decided
        .iter()
        .find(|&&(record, fate)| removed.contains(record.into()) != fate)
    {
        Some(&(record, fate)) => Err(NotCopied::Redo(format!(
            "the copy beside the verify pass found record {record} {}, the verify pass {}",
            if fate { "removed" } else { "kept" },
            if fate { "kept it" } else { "removed it" }
        ))),
        None => Ok(()),
    }
}

impl Removed for Following {
    fn removed(&mut self, index: u64) -> Result<bool, NotCopied> {
        if self.fates.abandoned.load(Ordering::Relaxed) {
            return Err(NotCopied::Stopped);
        }
        if let Some(removed) = &self.last {
            return removed.try_contains(index).map_err(unread);
        }
        while self
            .doubtful
            .get(self.next)
            .is_some_and(|&r| u64::from(r) < index)
        {
            self.next += 1;
        }
        match self.doubtful.get(self.next) {
            Some(&record) if u64::from(record) == index => {
                self.next += 1;
                self.settle(record)
            }
            _ => Ok(false),
        }
    }
}

/// `kept.jsonl` being copied on its own thread beside pass 2. Dropping it
/// before [`KeptCopy::finish`] abandons the copy (its file is deleted)
/// and waits for the thread.
pub struct KeptCopy {
    fates: Arc<Fates>,
    done: mpsc::Receiver<Copied>,
    thread: Option<JoinHandle<()>>,
    /// How long a wait goes without progress before it is a warning.
    stuck: Duration,
}

/// What the copy's thread hands back.
struct Copied {
    result: Result<Written, NotCopied>,
    /// The fates it decided before pass 2's result arrived.
    decided: Vec<(u32, bool)>,
    /// Its own time, from start to end.
    elapsed: Duration,
}

impl KeptCopy {
    /// Starts copying the records pass 1 `integrated` whose fate pass 2
    /// (over `candidate_pairs`) settles through [`KeptCopy::fates`]. A
    /// wait of either side for the other is a warning only past `stuck`
    /// without progress (the run's stall timeout).
    pub fn start(
        target: CopyTarget,
        integrated: Arc<RecordSet>,
        candidate_pairs: &[(u32, u32)],
        checker: Checker,
        stuck: Duration,
    ) -> std::io::Result<Self> {
        let fates = Arc::new(Fates::default());
        let spans = Arc::clone(&checker.spans);
        let mut following = Following::new(Arc::clone(&fates), candidate_pairs, Some(checker));
        following.stuck = stuck;
        let (send, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("drainpipe-kept".into())
            .spawn(move || {
                let started = Instant::now();
                let result = copy_kept(&target, &spans, &integrated, &mut following);
                following.fates.close();
                // The receiver is gone only if the job itself panicked.
                let _ = send.send(Copied {
                    result,
                    decided: following.decided,
                    elapsed: started.elapsed(),
                });
            })?;
        Ok(KeptCopy {
            fates,
            done,
            thread: Some(thread),
            stuck,
        })
    }

    /// Where pass 2 tells what it has settled.
    pub fn fates(&self) -> Arc<Fates> {
        Arc::clone(&self.fates)
    }

    /// Pass 2 completed and removed `removed`: the copy finishes with that
    /// and its file is returned (uncommitted), with the copy's own time.
    /// [`NotCopied::Redo`] when it decided a record otherwise or panicked;
    /// [`NotCopied::Failed`] when a run of the set could not be read.
    pub fn finish(mut self, removed: &RecordSet) -> (Result<Written, NotCopied>, Duration) {
        // The copy's thread reads on from where it is, the check below
        // from the first record decided: a cursor each.
        let theirs = Arc::new(removed.apart());
        self.fates.end(End::Finished(Arc::clone(&theirs)));
        let (result, elapsed) = match self.join() {
            Ok(copied) => {
                let result = agree(&copied.decided, removed).and(copied.result);
                (result, copied.elapsed)
            }
            Err(panicked) => (Err(panicked), Duration::ZERO),
        };
        (read_cleanly(&[&theirs, removed]).and(result), elapsed)
    }

    /// Waits for the thread's result, saying so every [`WAIT_REPORT`].
    fn join(&mut self) -> Result<Copied, NotCopied> {
        let started = Instant::now();
        let copied = loop {
            match self.done.recv_timeout(WAIT_REPORT) {
                Ok(copied) => break Some(copied),
                Err(RecvTimeoutError::Timeout) => {
                    log::log!(
                        wait_level(started.elapsed(), self.stuck),
                        "dedup: waiting for the copy of kept.jsonl to end ({:.0}s)",
                        started.elapsed().as_secs_f64()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        };
        let joined = self.thread.take().expect("joined once").join();
        match (copied, joined) {
            (Some(copied), _) => Ok(copied),
            (None, Err(panic)) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(NotCopied::Redo(format!(
                    "the copy of kept.jsonl beside the verify pass panicked: {message}"
                )))
            }
            (None, Ok(())) => Err(NotCopied::Redo(
                "the copy of kept.jsonl beside the verify pass ended without a result".into(),
            )),
        }
    }
}

impl Drop for KeptCopy {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.fates.end(End::Abandoned);
            // The file, uncommitted, is deleted with the result.
            match self.join().map(|copied| copied.result) {
                Ok(_) | Err(NotCopied::Stopped) => {}
                Err(NotCopied::Failed(e) | NotCopied::Redo(e)) => {
                    log::warn!("dedup: the abandoned copy of kept.jsonl: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::SplitMix64;
    use crate::jobs::dedup::clusters::Clusters;

    #[test]
    fn a_wait_for_the_other_side_is_a_warning_only_past_the_stall_timeout() {
        let stuck = Duration::from_secs(30);
        for still_for in [
            WAIT_REPORT,
            2 * WAIT_REPORT,
            stuck - Duration::from_millis(1),
        ] {
            assert_eq!(
                wait_level(still_for, stuck),
                log::Level::Info,
                "{still_for:?}"
            );
        }
        for still_for in [stuck, 10 * stuck] {
            assert_eq!(
                wait_level(still_for, stuck),
                log::Level::Warn,
                "{still_for:?}"
            );
        }
    }

    /// The candidate pairs of a random graph, sorted by later record.
    fn random_pairs(rng: &mut SplitMix64, records: u32, pairs: usize) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = (0..pairs)
            .filter_map(|_| {
                let a = (rng.next_u64() % u64::from(records)) as u32;
                let b = (rng.next_u64() % u64::from(records)) as u32;
                (a != b).then(|| (a.min(b), a.max(b)))
            })
            .collect();
        out.sort_unstable_by_key(|&(a, b)| (b, a));
        out.dedup();
        out
    }

    #[test]
    fn fates_decided_while_pairs_arrive_are_those_of_the_final_clusters() {
        let mut rng = SplitMix64::new(17);
        let mut early = 0;
        for round in 0..300 {
            let records = 2 + (rng.next_u64() % 60) as u32;
            let wanted = (rng.next_u64() % 50) as usize;
            let pairs = random_pairs(&mut rng, records, wanted);
            // Each candidate pair verified with probability 1/2.
            let verified: Vec<(u32, u32, f64)> = pairs
                .iter()
                .filter(|_| rng.next_u64().is_multiple_of(2))
                .map(|&(a, b)| (a, b, 0.9))
                .collect();
            let clusters = Clusters::from_pairs(&verified);
            let mut expected = BitSet::new();
            for (r, _, _) in clusters.removed.to_vec().unwrap() {
                expected.insert(r.into());
            }
            // The Verifier's calls, one per record, in order; after each,
            // every fate that is settled is asked for.
            let fates = Arc::new(Fates::default());
            let mut following = Following::new(Arc::clone(&fates), &pairs, None);
            let (mut told, mut cursor, mut asked) = (0, 0, 0u64);
            let mut doubtful = following.doubtful.clone().into_iter().peekable();
            for x in 0..records {
                while cursor < pairs.len() && pairs[cursor].1 <= x {
                    cursor += 1;
                }
                let upto = verified.partition_point(|p| p.1 <= x);
                let below = pairs.get(cursor).map_or(u64::MAX, |p| u64::from(p.1));
                fates.checked(below, &verified[told..upto]);
                told = upto;
                following.absorb(&mut fates.lock());
                while asked < u64::from(records) {
                    let fate = if doubtful.peek().is_some_and(|&r| u64::from(r) == asked) {
                        match following.try_decide(asked as u32, below) {
                            Ok(fate) => {
                                doubtful.next();
                                early += usize::from(below <= u64::from(records));
                                fate
                            }
                            Err(later) => {
                                assert!(u64::from(later) >= below, "round {round}");
                                break;
                            }
                        }
                    } else {
                        false
                    };
                    assert_eq!(
                        fate,
                        expected.contains(asked),
                        "round {round}, record {asked}"
                    );
                    asked += 1;
                }
            }
            assert_eq!(
                asked,
                u64::from(records),
                "round {round}: every fate settled"
            );
        }
        assert!(
            early > 1000,
            "most fates settle before the pass ends: {early}"
        );
    }

    #[test]
    fn only_records_after_the_first_of_their_component_are_doubtful() {
        // Components {1, 4, 9} and {2, 3}.
        let following = Following::new(Arc::default(), &[(1, 4), (2, 3), (4, 9)], None);
        assert_eq!(following.members, [1, 2, 3, 4, 9]);
        assert_eq!(following.doubtful, [3, 4, 9]);
    }

    #[test]
    fn a_rejected_pair_settles_a_record_as_kept_before_its_component_ends() {
        // 5's only pair, with 1, is rejected when record 5 is checked; the
        // component goes on to 90 through 1.
        let fates = Arc::new(Fates::default());
        let mut following = Following::new(Arc::clone(&fates), &[(1, 5), (1, 90)], None);
        fates.checked(5, &[]);
        following.absorb(&mut fates.lock());
        assert_eq!(following.try_decide(5, 5), Err(5), "pair (1, 5) unchecked");
        fates.checked(6, &[]);
        following.absorb(&mut fates.lock());
        assert_eq!(following.try_decide(5, 6), Ok(false));
        // Verified, 90 is removed as soon as its pair is checked.
        fates.checked(91, &[(1, 90, 1.0)]);
        following.absorb(&mut fates.lock());
        assert_eq!(following.try_decide(90, 91), Ok(true));
    }

    /// A JSON Lines file of `texts` and a checker over it.
    /// A copy of the `integrated` records of `texts` beside pass 2 over
    /// the pairs (0, 2) and (1, 2), once it has decided every record.
    fn decided_copy(
        target: CopyTarget,
        integrated: &BitSet,
        dir: &std::path::Path,
        texts: &[&str],
    ) -> KeptCopy {
        let copy = KeptCopy::start(
            target,
            Arc::new(RecordSet::in_memory(integrated)),
            &[(0, 2), (1, 2)],
            checker_over(dir, texts),
            Settings::default().stall_timeout,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !copy.fates.lock().closed {
            assert!(Instant::now() < deadline, "the copy did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        copy
    }

    fn checker_over(dir: &std::path::Path, texts: &[&str]) -> Checker {
        use crate::jobs::dedup::spans::Place;
        let path = dir.join("records.jsonl");
        let mut bytes = Vec::new();
        let mut spans = Spans::default();
        for (i, text) in texts.iter().enumerate() {
            let line = serde_json::json!({ "id": i, "text": text }).to_string();
            let place = Place {
                span: Some(drainpipe_actors::Span {
                    input: 0,
                    offset: bytes.len() as u64,
                }),
                len: line.len(),
                line: i as u64 + 1,
            };
            spans.record(i as u64, place);
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        std::fs::write(&path, bytes).unwrap();
        Checker::new(vec![path], Arc::new(spans), TextFields::default(), 2, 0.8)
    }

    #[test]
    fn a_fate_hanging_on_a_pair_far_ahead_is_checked_by_the_copy_itself() {
        let dir = tempfile::tempdir().unwrap();
        let same = "one two three four five six seven eight";
        let other = "nine ten eleven twelve thirteen fourteen";
        // Record 1's fate hangs on record 2, which pass 2 has not reached:
        // its pairs (0, 2) and (1, 2) decide whether it joins record 0.
        for (texts, removed) in [
            ([same, same, same], [false, true, true]),
            ([same, other, same], [false, false, true]),
        ] {
            let fates = Arc::new(Fates::default());
            let checker = checker_over(dir.path(), &texts);
            let mut following =
                Following::new(Arc::clone(&fates), &[(0, 2), (1, 2)], Some(checker));
            // Nothing checked yet: no waiting, the copy reads and decides.
            let fates_now: Vec<bool> = (0..3).map(|r| following.removed(r).unwrap()).collect();
            assert_eq!(fates_now, removed, "{texts:?}");
            assert_eq!(following.waited, Duration::ZERO);
            // Pass 2 ends with the same answer.
            let mut set = BitSet::new();
            for (r, &gone) in removed.iter().enumerate() {
                if gone {
                    set.insert(r as u64);
                }
            }
            assert!(agree(&following.decided, &RecordSet::in_memory(&set)).is_ok());
        }
    }

    #[test]
    fn a_component_too_large_to_check_here_waits_for_pass_2() {
        let dir = tempfile::tempdir().unwrap();
        let texts = vec!["a b c"; CHECKED_BY_COPY + 2];
        let checker = checker_over(dir.path(), &texts);
        // A chain 0 - 1 - 2 - ...: one component of more than the limit.
        let pairs: Vec<(u32, u32)> = (1..texts.len() as u32).map(|r| (r - 1, r)).collect();
        let fates = Arc::new(Fates::default());
        let mut following = Following::new(Arc::clone(&fates), &pairs, Some(checker));
        assert_eq!(following.check_here(1, 0), None);
        let waiter = std::thread::spawn(move || following.removed(1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "decided without pass 2");
        fates.checked(2, &[(0, 1, 1.0)]);
        assert!(
            waiter.join().unwrap().unwrap(),
            "removed once pass 2 verified (0, 1)"
        );
    }

    #[test]
    fn decisions_made_before_pass_2_ended_are_checked_against_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let same = "one two three four five six seven eight";
        let texts = [same, same, same];
        let target = CopyTarget {
            inputs: checker_over(dir.path(), &texts).inputs,
            temp: std::sync::Arc::new(drainpipe_actors::TempSpace::new(dir.path())),
            output: drainpipe_actors::OutputDir::create(dir.path().join("out")).unwrap(),
            handle: drainpipe_actors::RunHandle::default(),
        };
        let integrated: BitSet = {
            let mut all = BitSet::new();
            (0..3).for_each(|r| all.insert(r));
            all
        };
        // Records 1 and 2 are removed; a "result" that says only 2 is.
        let (mut right, mut wrong) = (BitSet::new(), BitSet::new());
        right.insert(1);
        right.insert(2);
        wrong.insert(2);
        for (result, agrees) in [(right, true), (wrong, false)] {
            // The copy decides every record before pass 2 ends.
            let copy = decided_copy(target.clone(), &integrated, dir.path(), &texts);
            match copy.finish(&RecordSet::in_memory(&result)).0 {
                Ok(written) => {
                    assert!(agrees, "a disagreement went unnoticed");
                    assert_eq!(written.kept, 1);
                }
                Err(NotCopied::Redo(message)) => {
                    assert!(!agrees, "{message}");
                    assert!(message.contains("record 1"), "{message}");
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_removed_set_whose_run_cannot_be_read_fails_the_copy() {
        use crate::jobs::dedup::spill::record_sets::SetWriter;
        let dir = tempfile::tempdir().unwrap();
        let same = "one two three four five six seven eight";
        let texts = [same, same, same];
        let target = CopyTarget {
            inputs: checker_over(dir.path(), &texts).inputs,
            temp: Arc::new(drainpipe_actors::TempSpace::new(dir.path())),
            output: drainpipe_actors::OutputDir::create(dir.path().join("out")).unwrap(),
            handle: drainpipe_actors::RunHandle::default(),
        };
        // Records 1 and 2 removed, and members past the input that push
        // their word to a run on disk, then cut short.
        let sets = Arc::new(drainpipe_actors::TempSpace::new(dir.path().join("sets")));
        let mut writer = SetWriter::new("removed", Some(Arc::clone(&sets)), Some(64));
        for record in [1, 2].into_iter().chain((1..20).map(|word| word * 64)) {
            writer.insert(record).unwrap();
        }
        let removed = writer.finish().unwrap();
        assert!(removed.bytes_on_disk() > 0);
        for run in std::fs::read_dir(sets.folder()).unwrap() {
            let path = run.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
        let mut integrated = BitSet::new();
        (0..3).for_each(|r| integrated.insert(r));
        let copy = decided_copy(target, &integrated, dir.path(), &texts);
        // Not a disagreement to copy again from: a failure.
        match copy.finish(&removed).0 {
            Err(NotCopied::Failed(message)) => {
                assert!(message.contains("removed records"), "{message}")
            }
            other => panic!("{:?}", other.map(|w| w.kept)),
        }
    }

    #[test]
    fn an_abandoned_pass_stops_a_waiting_copy() {
        let fates = Arc::new(Fates::default());
        let mut following = Following::new(Arc::clone(&fates), &[(0, 1)], None);
        let waiter = std::thread::spawn(move || following.removed(1));
        std::thread::sleep(Duration::from_millis(50));
        fates.end(End::Abandoned);
        assert!(matches!(waiter.join().unwrap(), Err(NotCopied::Stopped)));
        // And a copy between two uncertain records stops at its next one.
        let mut copying = Following::new(Arc::clone(&fates), &[(0, 1)], None);
        assert!(matches!(copying.removed(5), Err(NotCopied::Stopped)));
    }
}
