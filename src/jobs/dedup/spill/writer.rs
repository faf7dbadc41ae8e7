//! The sort and write of a full chunk on a thread of its own, so that
//! pass 1's Integrator goes on filling the next chunk (and the processors
//! go on sending) while the last one goes to disk.
//!
//! At most one chunk is in flight ([`Background`]): the Integrator hands
//! one over only once the one before it is written, so the memory held is
//! two chunks at most, the one being filled and the one being written
//! ([`super::bands::Budget::chunk_records`] sizes them for that). The
//! written chunk's lists come back emptied, their room kept, to be filled
//! next: the two chunks' buffers take turns.
//!
//! A write that fails is carried back with its cause ([`RunError`], which
//! names the file) and returned by the next wait; a writer thread that
//! panics has its panic resumed on the waiting thread. A wait that lasts
//! logs what it waits for every [`DIAGNOSE_EVERY`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use drainpipe_actors::TempSpace;

use super::runs::{Entry, RunError, RunInfo, RunWriter};
use crate::jobs::dedup::ids::IdKeys;

/// Names of the files this module writes in the temporary space start
/// and end so; a resumed run removes those its checkpoint does not name.
pub const PREFIX: &str = "dedup-";
/// See [`PREFIX`].
pub const SUFFIX: &str = ".sorted";

/// How often a wait for a write still going on says so.
pub const DIAGNOSE_EVERY: Duration = Duration::from_secs(30);

/// One chunk of pass 1's state: the records from `base` to `end`.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The spill's number (its runs' names carry it).
    pub seq: usize,
    /// The chunk's first record.
    pub base: u64,
    /// The record after the chunk's last.
    pub end: u64,
    /// Per band, `key << 32 | record` of each record, in record order.
    pub bands: Vec<Vec<u64>>,
    /// The records' id keys.
    pub ids: IdKeys,
    /// The records' twin fingerprints, by `record - base`.
    pub prints: Vec<u64>,
}

impl Chunk {
    /// Heap bytes its lists hold.
    pub fn heap_bytes(&self) -> usize {
        let bands: usize = self.bands.iter().map(|b| b.capacity() * 8).sum();
        bands + self.ids.heap_bytes() + self.prints.capacity() * 8
    }
}

/// The runs one chunk was written to.
#[derive(Debug)]
pub struct Written {
    /// One run per band, in band order.
    pub bands: Vec<RunInfo>,
    /// The run of id keys.
    pub ids: RunInfo,
    /// The record after the chunk's last.
    pub end: u64,
}

/// What a write gives back: the chunk, emptied (its room kept), the
/// sort's scratch, and the runs written or why not.
type Outcome = (Chunk, Scratch, Result<Written, RunError>);

/// The room a band's sort takes: the band's entries with their
/// fingerprints, twice (16 bytes each).
#[derive(Debug, Default)]
pub struct Scratch(Vec<(u64, u64)>, Vec<(u64, u64)>);

impl Scratch {
    /// Bytes a band of `entries` entries takes in it.
    pub fn bytes_for(entries: usize) -> usize {
        entries * 32
    }
}

/// Sorts `entries` (`key << 32 | record` and a fingerprint, in record
/// order) by key, records of a key staying in record order: a radix sort
/// in three passes of 11 bits over the key's 32 (as
/// [`crate::jobs::dedup::lsh::sort_by_key`], with the fingerprint moved
/// along), `scratch` its room.
fn sort_by_band_key(entries: &mut Vec<(u64, u64)>, scratch: &mut Vec<(u64, u64)>) {
    const BITS: u32 = 11;
    const DIGITS: usize = 1 << BITS;
    const SHIFTS: [u32; 3] = [32, 32 + BITS, 32 + 2 * BITS];
    let digit = |entry: u64, shift: u32| ((entry >> shift) as usize) & (DIGITS - 1);
    let mut starts = vec![[0usize; DIGITS]; SHIFTS.len()];
    for &(entry, _) in entries.iter() {
        for (counts, &shift) in starts.iter_mut().zip(&SHIFTS) {
            counts[digit(entry, shift)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(entries.len(), (0, 0));
    for (start, &shift) in starts.iter_mut().zip(&SHIFTS) {
        let mut sum = 0;
        for slot in start.iter_mut() {
            (*slot, sum) = (sum, sum + *slot);
        }
        for &item in entries.iter() {
            let d = digit(item.0, shift);
            scratch[start[d]] = item;
            start[d] += 1;
        }
        std::mem::swap(entries, scratch);
    }
}

/// Sorts each of `chunk`'s lists and writes it as a sorted run into
/// `temp`, then empties them.
pub fn write_chunk(
    temp: &TempSpace,
    chunk: &mut Chunk,
    scratch: &mut Scratch,
) -> Result<Written, RunError> {
    write_chunk_on(temp, chunk, scratch, 1)
}

/// [`write_chunk`] on up to `threads` threads (the calling one included,
/// with `scratch`; each other with a scratch of its own), each taking the
/// next list not yet written: for the last chunk, which the merge waits
/// for while the processors are idle. The runs are the same, however
/// many threads write them.
pub fn write_chunk_on(
    temp: &TempSpace,
    chunk: &mut Chunk,
    scratch: &mut Scratch,
    threads: usize,
) -> Result<Written, RunError> {
    // At most 18 bytes a band entry (two variable-length integers and a
    // fingerprint), 15 an id key, and each file's framing.
    let entries: usize = chunk.bands.iter().map(Vec::len).sum();
    let estimate =
        entries as u64 * 18 + chunk.ids.len() as u64 * 15 + (chunk.bands.len() as u64 + 1) * 64;
    temp.ensure_room(estimate).map_err(|cause| RunError::Io {
        path: temp.folder().to_owned(),
        cause,
    })?;
    let lists = chunk.bands.len() + 1;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let shared: &Chunk = chunk;
    // List `lists - 1` is the id keys'.
    let work = |scratch: &mut Scratch| {
        let mut written = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let list = next.fetch_add(1, Ordering::Relaxed);
            if list >= lists {
                break;
            }
            let run = match shared.bands.get(list) {
                Some(band) => write_band(temp, shared, list, band, scratch),
                None => write_ids(temp, shared),
            };
            match run {
                Ok(info) => written.push((list, info)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(written)
    };
    let mut written = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(lists))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name(format!("dedup-spill-{}", shared.seq))
                    .spawn_scoped(scope, || work(&mut Scratch::default()))
                    .map_err(|e| log::warn!("writing the last spill on fewer threads: {e}"))
                    .ok()
            })
            .collect();
        let mine = work(scratch);
        helpers.into_iter().fold(mine, |result, helper| {
            let theirs = helper
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            match (result, theirs) {
                (Ok(mut all), Ok(more)) => {
                    all.extend(more);
                    Ok(all)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        })
    })?;
    written.sort_unstable_by_key(|&(list, _)| list);
    let mut runs = written.into_iter().map(|(_, info)| info);
    let bands: Vec<RunInfo> = runs.by_ref().take(lists - 1).collect();
    let ids = runs.next().expect("the id keys' run");
    chunk.bands.iter_mut().for_each(Vec::clear);
    chunk.prints.clear();
    Ok(Written {
        bands,
        ids,
        end: chunk.end,
    })
}

/// Sorts band `b` of `chunk` (its entries `band`) with each entry's
/// fingerprint, and writes it as a run.
fn write_band(
    temp: &TempSpace,
    chunk: &Chunk,
    b: usize,
    band: &[u64],
    scratch: &mut Scratch,
) -> Result<RunInfo, RunError> {
    let Scratch(scratch, other) = scratch;
    let (base, prints) = (chunk.base, &chunk.prints);
    // Each entry with its record's fingerprint, looked up while the band
    // is in record order (front to back through the prints); once sorted
    // by key, the lookups would jump about the whole chunk.
    scratch.clear();
    scratch.extend(band.iter().map(|&e| {
        let print = u64::from(e as u32)
            .checked_sub(base)
            .and_then(|at| prints.get(at as usize))
            .copied()
            .unwrap_or(0);
        (e, print)
    }));
    sort_by_band_key(scratch, other);
    let entries = scratch.iter().map(|&(e, print)| Entry {
        key: e >> 32,
        record: e as u32,
        print,
    });
    let seq = chunk.seq;
    write_run(temp, &format!("band-{b:03}-run-{seq:06}"), true, entries)
}

/// Sorts `chunk`'s id keys and writes them as a run.
fn write_ids(temp: &TempSpace, chunk: &Chunk) -> Result<RunInfo, RunError> {
    let entries = chunk.ids.sorted().into_iter().map(|(key, record)| Entry {
        key,
        record,
        print: 0,
    });
    write_run(temp, &format!("ids-run-{:06}", chunk.seq), false, entries)
}

/// Writes `entries` as the run `name` (with [`PREFIX`] and [`SUFFIX`])
/// into `temp`, counting its bytes there.
pub fn write_run(
    temp: &TempSpace,
    name: &str,
    with_prints: bool,
    entries: impl Iterator<Item = Entry>,
) -> Result<RunInfo, RunError> {
    let name = format!("{PREFIX}{name}{SUFFIX}");
    let path = temp.path(&name).map_err(|cause| RunError::Io {
        path: temp.folder().join(&name),
        cause,
    })?;
    let mut writer = RunWriter::create(&path, with_prints)?;
    for entry in entries {
        writer.push(entry)?;
    }
    let info = writer.finish()?;
    temp.wrote(info.bytes);
    Ok(info)
}

/// A chunk being written on its own thread.
#[derive(Debug)]
struct Pending {
    seq: usize,
    outcome: mpsc::Receiver<Outcome>,
    thread: JoinHandle<()>,
}

/// Writes chunks on a thread of their own, one at a time.
#[derive(Debug, Default)]
pub struct Background {
    pending: Option<Pending>,
    /// Written while no thread could be started: the outcome, at once.
    done: Option<Outcome>,
}

impl Background {
    /// True while a chunk is handed over and not yet waited for.
    pub fn in_flight(&self) -> bool {
        self.pending.is_some() || self.done.is_some()
    }

    /// Starts writing `chunk` into `temp` with `scratch` for its sorts.
    /// The chunk before must have been waited for ([`Background::wait`]).
    /// A thread the system refuses to start means writing it here.
    pub fn start(&mut self, temp: &Arc<TempSpace>, chunk: Chunk, scratch: Scratch) {
        assert!(!self.in_flight(), "a chunk is written at a time");
        let seq = chunk.seq;
        // Taken by the thread, or back here if none can be started.
        let work = Arc::new(Mutex::new(Some((chunk, scratch))));
        let (send, outcome) = mpsc::sync_channel(1);
        let (space, taken) = (Arc::clone(temp), Arc::clone(&work));
        let job = move || {
            let Some((mut chunk, mut scratch)) = taken.lock().ok().and_then(|mut w| w.take())
            else {
                return;
            };
            let result = write_chunk(&space, &mut chunk, &mut scratch);
            // The receiver is gone only if the Integrator is gone.
            let _ = send.send((chunk, scratch, result));
        };
        match std::thread::Builder::new()
            .name(format!("dedup-spill-{seq}"))
            .spawn(job)
        {
            Ok(thread) => {
                self.pending = Some(Pending {
                    seq,
                    outcome,
                    thread,
                })
            }
            Err(e) => {
                log::warn!("dedup pass 1: writing spill {seq} on the Integrator's thread: {e}");
                let (mut chunk, mut scratch) = work
                    .lock()
                    .expect("a chunk's slot")
                    .take()
                    .expect("no thread took the chunk");
                let result = write_chunk(temp, &mut chunk, &mut scratch);
                self.done = Some((chunk, scratch, result));
            }
        }
    }

    /// Waits for the chunk in flight, if any: its emptied lists, the
    /// scratch, and its runs or why it could not be written. Says every
    /// [`DIAGNOSE_EVERY`] what it still waits for.
    pub fn wait(&mut self) -> Option<Outcome> {
        if let Some(done) = self.done.take() {
            return Some(done);
        }
        let pending = self.pending.take()?;
        let started = Instant::now();
        let outcome = loop {
            match pending.outcome.recv_timeout(DIAGNOSE_EVERY) {
                Ok(outcome) => break Some(outcome),
                Err(RecvTimeoutError::Timeout) => log::warn!(
                    "dedup pass 1: still writing spill {} after {:.0} s (sorted runs, \
                     thread dedup-spill-{})",
                    pending.seq,
                    started.elapsed().as_secs_f64(),
                    pending.seq
                ),
                // The thread ended without a word: it panicked.
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        };
        if let Err(panic) = pending.thread.join() {
            std::panic::resume_unwind(panic);
        }
        outcome
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // A run dropped with a chunk in flight (a stop, a failure) still
        // waits for its thread, so that no file is written after.
        if let Some(pending) = self.pending.take() {
            let _ = pending.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of records `base..base + records` with `bands` bands of
    /// keys drawn from a few values (so keys repeat), fingerprints and
    /// id keys.
    fn chunk(seq: usize, base: u64, records: u64, bands: usize) -> Chunk {
        let mut chunk = Chunk {
            seq,
            base,
            end: base + records,
            bands: vec![Vec::new(); bands],
            ..Chunk::default()
        };
        for r in base..base + records {
            for (b, band) in chunk.bands.iter_mut().enumerate() {
                let key = (r.wrapping_mul(2_654_435_761) >> (b % 7)) % 1_000;
                band.push(key << 32 | r);
            }
            chunk.prints.push(r.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            chunk.ids.record(r, r % 321);
        }
        chunk
    }

    #[test]
    fn a_chunk_written_on_several_threads_gives_the_runs_of_one_thread() {
        let one = tempfile::tempdir().unwrap();
        let several = tempfile::tempdir().unwrap();
        let (temp_one, temp_several) = (TempSpace::new(one.path()), TempSpace::new(several.path()));
        let mut a = chunk(3, 10_000, 20_000, 5);
        let mut b = chunk(3, 10_000, 20_000, 5);
        let first = write_chunk(&temp_one, &mut a, &mut Scratch::default()).unwrap();
        for threads in [2, 3, 8] {
            let mut b = chunk(3, 10_000, 20_000, 5);
            let other =
                write_chunk_on(&temp_several, &mut b, &mut Scratch::default(), threads).unwrap();
            assert_eq!(other.bands, first.bands, "{threads} threads");
            assert_eq!(other.ids, first.ids, "{threads} threads");
            assert!(b.bands.iter().all(Vec::is_empty) && b.prints.is_empty());
        }
        assert_eq!(first.bands.len(), 5);
        assert!(first.bands.iter().all(|r| r.entries == 20_000));
        let ids = chunk(3, 10_000, 20_000, 5).ids.sorted().len() as u64;
        assert!(ids > 19_000 && first.ids.entries == ids, "{ids}");
        assert!(a.bands.iter().all(Vec::is_empty));
        // A failed write is told, however many threads: the space's
        // parent is a file, where no folder can be made.
        let file = one.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err =
            write_chunk_on(&TempSpace::new(&file), &mut b, &mut Scratch::default(), 3).unwrap_err();
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
