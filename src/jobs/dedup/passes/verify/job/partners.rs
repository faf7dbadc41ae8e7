//! The candidate pairs as pass 2's Integrator ([`super::Verifier`]) reads
//! them, and each earlier record's last partner (after which its shingle
//! set is dropped), in one of two forms:
//!
//! - in memory ([`Partners::Memory`]): the pairs pass 1 held, and a table
//!   of every earlier record's last partner, looked up by binary search
//!   (8 bytes a pair and 8 an earlier record);
//! - on disk, past their share of the budget ([`Partners::Disk`]): the
//!   pairs' two files ([`crate::jobs::dedup::spill::pair_files`]), each
//!   read front to back beside the records, which arrive in record order:
//!   the pairs by their later record, and each candidate's last partner as
//!   it arrives, kept beside its set only while the set is held. A
//!   checkpoint names the position in the pairs (what the in-memory form
//!   calls its cursor); a resumed pass reads both files again from their
//!   start up to it.
//!
//! Either way the Integrator sees the same pairs in the same order, so
//! the outputs are the same.

use std::collections::HashMap;
use std::sync::Arc;

use drainpipe_actors::TempSpace;

use crate::jobs::dedup::spill::held::HeldSpill;
use crate::jobs::dedup::spill::pair_files::{pair_of, PairFiles, PairReader, PendingOnDisk};
use crate::jobs::dedup::spill::runs::RunError;

/// For each record that is the earlier one of some pair, its latest
/// partner (after which its set is dropped), sorted by record: 8 bytes a
/// record, looked up by binary search.
fn last_partners(pairs: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut last = pairs.to_vec();
    last.sort_unstable();
    // Of each record's pairs, the last sorted is its latest partner.
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (a, b) in last {
        match out.last_mut() {
            Some(previous) if previous.0 == a => previous.1 = b,
            _ => out.push((a, b)),
        }
    }
    out.shrink_to_fit();
    out
}

/// `record`'s latest partner in [`last_partners`]' list.
fn last_of(list: &[(u32, u32)], record: u32) -> Option<u32> {
    list.binary_search_by_key(&record, |&(a, _)| a)
        .ok()
        .map(|at| list[at].1)
}

/// The pairs, and the last partners, as pass 2 reads them.
#[derive(Debug)]
pub enum Partners {
    /// Held whole.
    Memory {
        /// The pairs, sorted by the later record.
        pairs: Arc<Vec<(u32, u32)>>,
        /// The first pair whose later record has not arrived yet.
        cursor: usize,
        /// Each earlier record's last partner, sorted by record.
        last: Vec<(u32, u32)>,
    },
    /// Read from the pairs' files.
    Disk(Box<OnDisk>),
}

/// The pairs' files, read front to back.
#[derive(Debug)]
pub struct OnDisk {
    temp: Arc<TempSpace>,
    files: PairFiles,
    /// The pairs by later record, opened at first use and passed up to
    /// `from`.
    pairs: Option<PairReader>,
    from: u64,
    /// The last partners, opened at first use.
    last: Option<PairReader>,
    /// The last partner of each held set.
    held_last: HashMap<u32, u32>,
}

/// The records still waiting for a later partner after a given record
/// ([`Partners::waiting_after`]).
#[derive(Debug)]
pub enum Waiting<'a> {
    /// Looked up in the in-memory table: those whose last partner is
    /// after the record.
    Table(&'a [(u32, u32)], u32),
    /// Listed, sorted.
    Records(Vec<u32>),
}

impl Waiting<'_> {
    /// True when `record` waits for a later partner.
    pub fn contains(&self, record: u32) -> bool {
        match self {
            Waiting::Table(last, x) => last_of(last, record).is_some_and(|l| l > *x),
            Waiting::Records(records) => records.binary_search(&record).is_ok(),
        }
    }
}

impl Partners {
    /// The pairs held in memory.
    pub fn in_memory(pairs: Arc<Vec<(u32, u32)>>) -> Self {
        let last = last_partners(&pairs);
        Partners::Memory {
            pairs,
            cursor: 0,
            last,
        }
    }

    /// The pairs in `files`, in `temp`.
    pub fn on_disk(temp: Arc<TempSpace>, files: PairFiles) -> Self {
        Partners::Disk(Box::new(OnDisk {
            temp,
            files,
            pairs: None,
            from: 0,
            last: None,
            held_last: HashMap::new(),
        }))
    }

    /// How many pairs in all.
    pub fn count(&self) -> u64 {
        match self {
            Partners::Memory { pairs, .. } => pairs.len() as u64,
            Partners::Disk(disk) => disk.files.pairs(),
        }
    }

    /// Pairs passed: the index of the first pair whose later record has
    /// not arrived (what a checkpoint saves).
    pub fn position(&self) -> u64 {
        match self {
            Partners::Memory { cursor, .. } => *cursor as u64,
            Partners::Disk(disk) => disk.pairs.as_ref().map_or(disk.from, PairReader::passed),
        }
    }

    /// The next pair `(earlier, later)`, left in place.
    #[inline]
    pub fn peek(&mut self) -> Result<Option<(u32, u32)>, RunError> {
        match self {
            Partners::Memory { pairs, cursor, .. } => Ok(pairs.get(*cursor).copied()),
            Partners::Disk(disk) => Ok(disk.pairs()?.peek()?.map(pair_of)),
        }
    }

    /// Passes the pair [`Partners::peek`] gave.
    #[inline]
    pub fn pass(&mut self) {
        match self {
            Partners::Memory { cursor, .. } => *cursor += 1,
            Partners::Disk(disk) => {
                if let Some(reader) = &mut disk.pairs {
                    reader.pass();
                }
            }
        }
    }

    /// The last partner of `record`, which has just arrived (records
    /// arrive in increasing order); `None` when it is in no pair as the
    /// earlier record.
    pub fn last_on_arrival(&mut self, record: u32) -> Result<Option<u32>, RunError> {
        match self {
            Partners::Memory { last, .. } => Ok(last_of(last, record)),
            Partners::Disk(disk) => disk.last_of(record),
        }
    }

    /// Notes that `record`'s set is held until `last`.
    pub fn held(&mut self, record: u32, last: u32) {
        if let Partners::Disk(disk) = self {
            disk.held_last.insert(record, last);
        }
    }

    /// True when `later` is the last partner of the held `record`, which
    /// is then no longer noted as held.
    pub fn ends(&mut self, record: u32, later: u32) -> bool {
        match self {
            Partners::Memory { last, .. } => last_of(last, record) == Some(later),
            Partners::Disk(disk) => {
                let ends = disk.held_last.get(&record) == Some(&later);
                if ends {
                    disk.held_last.remove(&record);
                }
                ends
            }
        }
    }

    /// Writes the `held` sets to a run of `spill`, each once per pending
    /// partner (the pairs from the position on), and empties `held`.
    pub fn evict(
        &mut self,
        spill: &mut HeldSpill,
        held: &mut HashMap<u32, Vec<u64>>,
    ) -> Result<(), RunError> {
        match self {
            Partners::Memory { pairs, cursor, .. } => spill.evict(held, &pairs[*cursor..]),
            Partners::Disk(disk) => {
                let from = disk.pairs.as_ref().map_or(disk.from, PairReader::passed);
                let pending = PendingOnDisk {
                    temp: &disk.temp,
                    files: &disk.files,
                    from,
                };
                spill.evict(held, &pending)?;
                disk.held_last = HashMap::new();
                Ok(())
            }
        }
    }

    /// The records up to `x` still waiting for a later partner.
    pub fn waiting_after(&self, x: u32) -> Result<Waiting<'_>, RunError> {
        match self {
            Partners::Memory { last, .. } => Ok(Waiting::Table(last, x)),
            Partners::Disk(_) if x == u32::MAX => Ok(Waiting::Records(Vec::new())),
            Partners::Disk(disk) => {
                let mut reader = PairReader::open(&disk.temp, &disk.files.last)?;
                let mut records = Vec::new();
                while let Some(e) = reader.next_entry()? {
                    if e.key > u64::from(x) {
                        break;
                    }
                    if e.record > x {
                        records.push(e.key as u32);
                    }
                }
                Ok(Waiting::Records(records))
            }
        }
    }

    /// Takes up a checkpoint's position `cursor`, with the records whose
    /// sets it held (`held`, in increasing order), all arrived.
    pub fn restore(&mut self, cursor: u64, held: &[u32]) -> Result<(), String> {
        if cursor > self.count() {
            return Err(format!(
                "the checkpoint is past candidate pair {cursor}, this run has {}",
                self.count()
            ));
        }
        match self {
            Partners::Memory { cursor: at, .. } => *at = cursor as usize,
            Partners::Disk(disk) => {
                (disk.pairs, disk.from, disk.last) = (None, cursor, None);
                disk.held_last = HashMap::new();
                for &record in held {
                    let last = disk.last_of(record).map_err(|e| e.to_string())?;
                    if let Some(last) = last {
                        disk.held_last.insert(record, last);
                    }
                }
            }
        }
        Ok(())
    }

    /// Bytes of memory they hold.
    pub fn heap_bytes(&self) -> u64 {
        match self {
            Partners::Memory { pairs, last, .. } => {
                (last.capacity() * 8 + pairs.len() * std::mem::size_of::<(u32, u32)>()) as u64
            }
            Partners::Disk(disk) => {
                let readers = [&disk.pairs, &disk.last];
                let buffers: u64 = readers
                    .iter()
                    .filter_map(|r| r.as_ref())
                    .map(PairReader::heap_bytes)
                    .sum();
                // A table entry: the record, its partner, a control byte
                // and the table's slack.
                buffers + disk.held_last.capacity() as u64 * 12
            }
        }
    }
}

impl OnDisk {
    /// The pairs' reader, opened and passed up to the position first.
    fn pairs(&mut self) -> Result<&mut PairReader, RunError> {
        if self.pairs.is_none() {
            let mut reader = PairReader::open(&self.temp, &self.files.by_later)?;
            reader.skip(self.from)?;
            log::info!(
                "dedup pass 2: reading the {} candidate pairs from {} (from pair {})",
                self.files.pairs(),
                self.temp.folder().display(),
                self.from
            );
            self.pairs = Some(reader);
        }
        Ok(self.pairs.as_mut().expect("opened above"))
    }

    /// `record`'s last partner, from the last-partner file read up to it
    /// (records come in increasing order).
    fn last_of(&mut self, record: u32) -> Result<Option<u32>, RunError> {
        if self.last.is_none() {
            self.last = Some(PairReader::open(&self.temp, &self.files.last)?);
        }
        let reader = self.last.as_mut().expect("opened above");
        while let Some(e) = reader.peek()? {
            if e.key > u64::from(record) {
                break;
            }
            reader.pass();
            if e.key == u64::from(record) {
                return Ok(Some(e.record));
            }
        }
        Ok(None)
    }
}
