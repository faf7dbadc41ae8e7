//! The sort and write of a full chunk on a thread of its own, so that
//! pass 1's Integrator goes on filling the next chunk (and the processors
//! go on sending) while the last one goes to disk.
//!
//! At most one chunk is in flight ([`Background`]): the Integrator hands
//! one over only once the one before it is written, so the memory held is
//! the lists still in memory and one chunk being written
//! ([`super::bands::Budget`] sizes them for that). The written chunk's
//! lists come back emptied, their room kept, to take the next chunk.
//!
//! A write that fails is carried back with its cause ([`RunError`], which
//! names the file) and returned by the next wait; a writer thread that
//! panics has its panic resumed on the waiting thread. A wait that lasts
//! logs what it waits for every [`DIAGNOSE_EVERY`], and has a deadline
//! ([`deadline_for`]): a write that has not finished by then (a disk that
//! stopped answering) fails the wait with a message naming the spill, its
//! thread and the time waited, and the thread is left behind rather than
//! waited for forever; the run then stops as for any failed spill.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use drainpipe_actors::TempSpace;

use super::runs::{Entry, RunError, RunInfo, RunWriter};
use crate::jobs::dedup::buckets::fingerprint;
use crate::jobs::dedup::ids::IdKeys;

/// Names of the files this module writes in the temporary space start
/// and end so; a resumed run removes those its checkpoint does not name.
pub const PREFIX: &str = "dedup-";
/// See [`PREFIX`].
pub const SUFFIX: &str = ".sorted";

/// How often a wait for a write still going on says so.
pub const DIAGNOSE_EVERY: Duration = Duration::from_secs(30);

/// The least time a chunk's write is given before a wait for it fails.
pub const LEAST_DEADLINE: Duration = Duration::from_secs(300);

/// The slowest writing a chunk is waited for: a disk slower than this
/// (sorting included) is taken for one that stopped answering.
pub const SLOWEST_BYTES_PER_S: u64 = 1 << 20;

/// How long a wait for a chunk of `bytes` (its lists) may last:
/// [`LEAST_DEADLINE`], plus the time to write it at
/// [`SLOWEST_BYTES_PER_S`] (a budget of 4 GiB spills chunks of about
/// 1 GiB: 5 minutes plus 17).
pub fn deadline_for(bytes: usize) -> Duration {
    LEAST_DEADLINE + Duration::from_secs(bytes as u64 / SLOWEST_BYTES_PER_S)
}

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
    /// The records' twin fingerprints, by `record - base`: computed from
    /// the lists on the writer's thread ([`prints_of`]), not as records
    /// are integrated.
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
    // At most 18 bytes a band entry (two variable-length integers and a
    // fingerprint), 15 an id key, and each file's framing.
    let entries: usize = chunk.bands.iter().map(Vec::len).sum();
    let estimate =
        entries as u64 * 18 + chunk.ids.len() as u64 * 15 + (chunk.bands.len() as u64 + 1) * 64;
    temp.ensure_room(estimate).map_err(|cause| RunError::Io {
        path: temp.folder().to_owned(),
        cause,
    })?;
    if chunk.prints.is_empty() {
        chunk.prints = prints_of(&chunk.bands, chunk.base);
    }
    let shared: &Chunk = chunk;
    let bands = (shared.bands.iter().enumerate())
        .map(|(b, band)| write_band(temp, shared, b, band, scratch))
        .collect::<Result<Vec<RunInfo>, RunError>>()?;
    let ids = write_ids(temp, shared)?;
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
    let Scratch(sorted, other) = scratch;
    sort_band(chunk.base, &chunk.prints, band, sorted, other);
    let entries = sorted.iter().map(|&(e, print)| Entry {
        key: e >> 32,
        record: e as u32,
        print,
    });
    let seq = chunk.seq;
    write_run(temp, &format!("band-{b:03}-run-{seq:06}"), true, entries)
}

/// The twin fingerprints of the records of `bands` (each a list of
/// `key << 32 | record` in record order, from the record `base` on), by
/// `record - base`: entry `i` of every band is the same record (a record
/// has a key in every band, or none), so its keys are read across the
/// bands at `i`. A record without keys has none.
pub fn prints_of(bands: &[Vec<u64>], base: u64) -> Vec<u64> {
    let Some(first) = bands.first() else {
        return Vec::new();
    };
    let records = first
        .last()
        .map_or(0, |&e| (u64::from(e as u32) + 1).saturating_sub(base));
    let mut prints = vec![0; usize::try_from(records).unwrap_or(0)];
    let mut keys = Vec::with_capacity(bands.len());
    for (i, &entry) in first.iter().enumerate() {
        keys.clear();
        keys.extend(
            bands
                .iter()
                .filter_map(|b| b.get(i))
                .map(|&e| (e >> 32) as u32),
        );
        if let Some(at) = u64::from(entry as u32).checked_sub(base) {
            prints[at as usize] = fingerprint(&keys);
        }
    }
    prints
}

/// The entries `band` of the records from `base` on, each with its
/// record's fingerprint (`prints`, by `record - base`), sorted by key,
/// records of a key in record order: a list kept in memory, as its run
/// would hold it.
pub fn sorted_band(base: u64, prints: &[u64], band: &[u64]) -> Vec<(u64, u64)> {
    let (mut sorted, mut other) = (Vec::with_capacity(band.len()), Vec::new());
    sort_band(base, prints, band, &mut sorted, &mut other);
    sorted
}

/// Fills `sorted` with the entries `band` of the records from `base` on,
/// each with its record's fingerprint (`prints`), sorted by key (`other`
/// the sort's room).
fn sort_band(
    base: u64,
    prints: &[u64],
    band: &[u64],
    sorted: &mut Vec<(u64, u64)>,
    other: &mut Vec<(u64, u64)>,
) {
    // Each entry with its record's fingerprint, looked up while the band
    // is in record order (front to back through the prints); once sorted
    // by key, the lookups would jump about the whole chunk.
    sorted.clear();
    sorted.extend(band.iter().map(|&e| {
        let print = u64::from(e as u32)
            .checked_sub(base)
            .and_then(|at| prints.get(at as usize))
            .copied()
            .unwrap_or(0);
        (e, print)
    }));
    sort_by_band_key(sorted, other);
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
/// into `temp`, counting its bytes there. A run that fails half-way is
/// removed: no owner knows it, so none would.
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
    let write = || {
        let mut writer = RunWriter::create(&path, with_prints)?;
        for entry in entries {
            writer.push(entry)?;
        }
        writer.finish()
    };
    let info = write().inspect_err(|_| {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("removing the failed run {}: {e}", path.display());
            }
        }
    })?;
    temp.wrote(info.bytes);
    Ok(info)
}

/// A chunk being written on its own thread.
#[derive(Debug)]
struct Pending {
    seq: usize,
    outcome: mpsc::Receiver<Outcome>,
    thread: JoinHandle<()>,
    /// How long a wait for it may last ([`deadline_for`]).
    deadline: Duration,
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
        let deadline = deadline_for(chunk.heap_bytes());
        let space = Arc::clone(temp);
        self.start_with(chunk, scratch, deadline, move |chunk, scratch| {
            write_chunk(&space, chunk, scratch)
        });
    }

    /// [`Background::start`] with the write `write` and its `deadline`.
    fn start_with(
        &mut self,
        chunk: Chunk,
        scratch: Scratch,
        deadline: Duration,
        write: impl Fn(&mut Chunk, &mut Scratch) -> Result<Written, RunError> + Send + Sync + 'static,
    ) {
        assert!(!self.in_flight(), "a chunk is written at a time");
        let seq = chunk.seq;
        // Taken by the thread, or back here if none can be started.
        let work = Arc::new(Mutex::new(Some((chunk, scratch))));
        let (send, outcome) = mpsc::sync_channel(1);
        let write = Arc::new(write);
        let (taken, writes) = (Arc::clone(&work), Arc::clone(&write));
        let job = move || {
            // A thread that runs was started, so the chunk is there; were
            // it not, the panic reaches the Integrator's wait (a chunk
            // missing without a word would lose its band lists).
            let (mut chunk, mut scratch) = (taken.lock().unwrap_or_else(|p| p.into_inner()))
                .take()
                .expect("the chunk of a started spill thread");
            let result = (*writes)(&mut chunk, &mut scratch);
            // The receiver is gone only if the Integrator is gone (or
            // gave up waiting for it).
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
                    deadline,
                })
            }
            Err(e) => {
                log::warn!("dedup pass 1: writing spill {seq} on the Integrator's thread: {e}");
                let (mut chunk, mut scratch) = work
                    .lock()
                    .expect("a chunk's slot")
                    .take()
                    .expect("no thread took the chunk");
                let result = (*write)(&mut chunk, &mut scratch);
                self.done = Some((chunk, scratch, result));
            }
        }
    }

    /// Waits for the chunk in flight, if any: its emptied lists, the
    /// scratch, and its runs or why it could not be written. Says every
    /// [`DIAGNOSE_EVERY`] what it still waits for; past the chunk's
    /// deadline ([`deadline_for`]) gives up: the error names the spill,
    /// its thread and the time waited, and the thread is left to end on
    /// its own (its chunk is lost: the run fails).
    pub fn wait(&mut self) -> Result<Option<Outcome>, RunError> {
        if let Some(done) = self.done.take() {
            return Ok(Some(done));
        }
        let Some(pending) = self.pending.take() else {
            return Ok(None);
        };
        let started = Instant::now();
        let outcome = loop {
            let left = pending.deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                let message = format!(
                    "dedup pass 1: spill {} was not written within {:.0} s (thread dedup-spill-{} \
                     still running: a disk that stopped answering?); the run stops",
                    pending.seq,
                    started.elapsed().as_secs_f64(),
                    pending.seq
                );
                log::error!("{message}");
                // Not joined: the join would wait as long as the write.
                drop(pending.thread);
                return Err(RunError::Failed {
                    kind: std::io::ErrorKind::TimedOut,
                    message,
                });
            }
            match pending.outcome.recv_timeout(DIAGNOSE_EVERY.min(left)) {
                Ok(outcome) => break Some(outcome),
                Err(RecvTimeoutError::Timeout) if started.elapsed() < pending.deadline => {
                    log::warn!(
                        "dedup pass 1: still writing spill {} after {:.0} s (sorted runs, \
                         thread dedup-spill-{}; given up after {:.0} s)",
                        pending.seq,
                        started.elapsed().as_secs_f64(),
                        pending.seq,
                        pending.deadline.as_secs_f64()
                    )
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The thread ended without a word: it panicked.
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        };
        if let Err(panic) = pending.thread.join() {
            std::panic::resume_unwind(panic);
        }
        Ok(outcome)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // A run dropped with a chunk in flight (a stop, a failure) still
        // waits for its thread, so that no file is written after; but no
        // longer than the chunk's deadline.
        if let Some(pending) = self.pending.take() {
            match pending.outcome.recv_timeout(pending.deadline) {
                Ok(_) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = pending.thread.join();
                }
                Err(RecvTimeoutError::Timeout) => log::error!(
                    "dedup pass 1: spill {} still not written after {:.0} s; \
                     left behind (thread dedup-spill-{})",
                    pending.seq,
                    pending.deadline.as_secs_f64(),
                    pending.seq
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spill_write_that_does_not_finish_by_its_deadline_fails_the_wait_naming_it() {
        let (release, blocked) = mpsc::channel::<()>();
        let blocked = Mutex::new(blocked);
        let mut background = Background::default();
        let chunk = Chunk {
            seq: 7,
            ..Chunk::default()
        };
        // A write that hangs until released (a disk that stopped
        // answering), given a deadline of a few milliseconds.
        background.start_with(
            chunk,
            Scratch::default(),
            Duration::from_millis(20),
            move |chunk, _| {
                let _ = blocked.lock().unwrap().recv();
                Ok(Written {
                    bands: Vec::new(),
                    ids: RunInfo {
                        name: String::new(),
                        bytes: 0,
                        entries: 0,
                        checksum: 0,
                    },
                    end: chunk.end,
                })
            },
        );
        let err = background.wait().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("spill 7 was not written within"), "{text}");
        assert!(text.contains("dedup-spill-7"), "{text}");
        assert_eq!(err.into_io().kind(), std::io::ErrorKind::TimedOut);
        // Nothing is in flight any more: the next wait returns at once,
        // and the thread ends once its write does.
        assert!(!background.in_flight());
        assert!(background.wait().unwrap().is_none());
        release.send(()).unwrap();
    }

    #[test]
    fn a_write_that_finishes_in_time_gives_its_outcome() {
        let mut background = Background::default();
        let chunk = Chunk {
            seq: 1,
            end: 42,
            ..Chunk::default()
        };
        background.start_with(chunk, Scratch::default(), LEAST_DEADLINE, |chunk, _| {
            Err(RunError::Failed {
                kind: std::io::ErrorKind::Other,
                message: format!("chunk ending at {}", chunk.end),
            })
        });
        let (chunk, _, result) = background.wait().unwrap().unwrap();
        assert_eq!(chunk.end, 42);
        assert_eq!(result.unwrap_err().to_string(), "chunk ending at 42");
    }

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
    fn a_band_sorted_in_memory_holds_the_entries_of_its_written_run() {
        let one = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(one.path());
        let mut a = chunk(3, 10_000, 20_000, 5);
        let written = write_chunk(&temp, &mut a, &mut Scratch::default()).unwrap();
        assert_eq!(written.bands.len(), 5);
        assert!(written.bands.iter().all(|r| r.entries == 20_000));
        let ids = chunk(3, 10_000, 20_000, 5).ids.sorted().len() as u64;
        assert!(ids > 19_000 && written.ids.entries == ids, "{ids}");
        assert!(a.bands.iter().all(Vec::is_empty));
        let read = |info: &RunInfo| {
            let path = temp.path(&info.name).unwrap();
            let mut reader = super::super::runs::RunReader::open(&path, Some(info)).unwrap();
            let mut all = Vec::new();
            while reader.next_entries(&mut all, 1000).unwrap() {}
            all
        };
        let b = chunk(3, 10_000, 20_000, 5);
        for (band, info) in b.bands.iter().zip(&written.bands) {
            let entries: Vec<Entry> = sorted_band(b.base, &b.prints, band)
                .iter()
                .map(|&(e, print)| Entry {
                    key: e >> 32,
                    record: e as u32,
                    print,
                })
                .collect();
            assert!(entries == read(info), "another band");
        }
        let ids: Vec<(u64, u32)> = read(&written.ids)
            .iter()
            .map(|e| (e.key, e.record))
            .collect();
        assert_eq!(b.ids.sorted(), ids);
        // A failed write is told: the space's parent is a file, where no
        // folder can be made.
        let file = one.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let mut b = chunk(3, 10_000, 20_000, 5);
        let err = write_chunk(&TempSpace::new(&file), &mut b, &mut Scratch::default()).unwrap_err();
        assert!(err.to_string().contains("a-file"), "{err}");
    }

    #[test]
    fn the_fingerprints_read_from_the_lists_are_those_of_each_records_keys() {
        // Records 100..110 of 3 bands; 103 and 107 have no keys.
        let mut bands = vec![Vec::new(); 3];
        for r in (100u64..110).filter(|r| r % 4 != 3) {
            for (b, band) in bands.iter_mut().enumerate() {
                band.push((r * 7 + b as u64) << 32 | r);
            }
        }
        let prints = prints_of(&bands, 100);
        assert_eq!(prints.len(), 10);
        for (at, &print) in prints.iter().enumerate() {
            let r = 100 + at as u64;
            let keys: Vec<u32> = (0..3).map(|b| (r * 7 + b) as u32).collect();
            let expected = if r % 4 == 3 { 0 } else { fingerprint(&keys) };
            assert_eq!(print, expected, "record {r}");
        }
        assert!(prints_of(&[], 0).is_empty() && prints_of(&[Vec::new()], 5).is_empty());
        // Written without fingerprints, a chunk's runs carry them.
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        let mut c = Chunk {
            base: 100,
            end: 110,
            bands: bands.clone(),
            ..Chunk::default()
        };
        let written = write_chunk(&temp, &mut c, &mut Scratch::default()).unwrap();
        let path = temp.path(&written.bands[0].name).unwrap();
        let mut reader =
            super::super::runs::RunReader::open(&path, Some(&written.bands[0])).unwrap();
        let mut all = Vec::new();
        while reader.next_entries(&mut all, 100).unwrap() {}
        assert!(all
            .iter()
            .all(|e| e.print == prints[(e.record - 100) as usize]));
    }
}
