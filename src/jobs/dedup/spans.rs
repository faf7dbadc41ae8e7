//! Where each record of pass 1 lies in the input files, so the later
//! passes need not read the whole input again: pass 2 reads the candidate
//! records only ([`crate::input::Reread`]), pass 3 copies the kept
//! records' byte ranges ([`super::passes::kept::copy`]).
//!
//! Only records from uncompressed regular files have a place
//! ([`drainpipe_actors::Span`]); as soon as one integrated record comes
//! without one (a compressed file, a directory, the demo corpus), the
//! table is dropped and the later passes read the input in full, as
//! before. 12 bytes per record in memory.
//!
//! Under a memory budget, past their share, the places of the records
//! before [`Spans::base`] are on disk, in record order, in the runs
//! [`Spans::runs`] names ([`crate::jobs::dedup::spill::places`] writes
//! them and reads them back front to back); the table holds the places
//! from `base` on. Without a budget `base` is 0 and nothing is on disk.

use drainpipe_actors::Span;
use serde::{Deserialize, Serialize};

use super::spill::runs::RunInfo;

/// Marks a record without a place (rejected by pass 1).
const NONE: u64 = u64::MAX;

/// Where one record is, as step 1 of pass 1 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The input and offset, when the reader knows them.
    pub span: Option<Span>,
    /// The record's length in bytes.
    pub len: usize,
    /// Its 1-based line in its input.
    pub line: u64,
}

/// A record's place, as the later passes use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The input (its position among the run's inputs).
    pub input: u32,
    /// Offset of the record's first byte.
    pub offset: u64,
    /// Length in bytes, without the line terminator.
    pub len: u32,
    /// 1-based line.
    pub line: u64,
}

/// The places of the records pass 1 integrated, by record index. Saved
/// as it is: the codec's variable-length integers take 5 bytes for an
/// offset below 4 GiB, 9 above, 1-3 for a length; the runs on disk are
/// named, not copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spans {
    /// The records before this one have their places in `runs`.
    base: u64,
    /// The runs of places on disk, in record order.
    runs: Vec<RunInfo>,
    /// The places of the records from `base` on.
    offsets: Vec<u64>,
    lens: Vec<u32>,
    /// `(index of the input's line 1, input)`, once per input, in order.
    inputs: Vec<(u64, u32)>,
    complete: bool,
}

impl Default for Spans {
    fn default() -> Self {
        Spans {
            base: 0,
            runs: Vec::new(),
            offsets: Vec::new(),
            lens: Vec::new(),
            inputs: Vec::new(),
            complete: true,
        }
    }
}

impl Spans {
    /// Records the place of the record at `index` (records come in input
    /// order; the ones skipped in between were rejected).
    pub fn record(&mut self, index: u64, place: Place) {
        if !self.complete {
            return;
        }
        let at = index.checked_sub(self.base).map(usize::try_from);
        let (Some(span), Ok(len), Some(Ok(at))) = (place.span, u32::try_from(place.len), at) else {
            return self.drop_all();
        };
        if at < self.offsets.len() || place.line == 0 || place.line > index + 1 {
            // Out of order, or a line number that cannot be: a reader
            // this table does not understand.
            return self.drop_all();
        }
        let first = index + 1 - place.line;
        if self.inputs.last() != Some(&(first, span.input)) {
            self.inputs.push((first, span.input));
        }
        self.offsets.resize(at, NONE);
        self.lens.resize(at, 0);
        self.offsets.push(span.offset);
        self.lens.push(len);
    }

    /// Forgets every place; the runs on disk stay named until their
    /// writer removes them ([`Spans::forget_runs`]).
    fn drop_all(&mut self) {
        let runs = std::mem::take(&mut self.runs);
        *self = Spans {
            runs,
            ..Spans::unknown()
        };
    }

    /// A table that knows no place: the later passes read the input.
    pub fn unknown() -> Spans {
        Spans {
            complete: false,
            ..Spans::default()
        }
    }

    /// True when every integrated record has its place.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The place of the record at `index`, if pass 1 integrated it, the
    /// table is complete and the place is in memory (at or after
    /// [`Spans::base`]; a place on disk is read in record order by
    /// [`crate::jobs::dedup::spill::places::PlaceCursor`]).
    pub fn get(&self, index: u64) -> Option<Located> {
        let at = usize::try_from(index.checked_sub(self.base)?).ok()?;
        let offset = *self.offsets.get(at)?;
        if offset == NONE {
            return None;
        }
        self.locate(index, offset, self.lens[at])
    }

    /// The place of the record at `index`, `len` bytes at `offset` of its
    /// input: its input and line from the table of inputs.
    pub fn locate(&self, index: u64, offset: u64, len: u32) -> Option<Located> {
        let k = self.inputs.partition_point(|&(first, _)| first <= index);
        let (first, input) = self.inputs[k.checked_sub(1)?];
        Some(Located {
            input,
            offset,
            len,
            line: index - first + 1,
        })
    }

    /// The records before this one have their places on disk.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The runs of places on disk, in record order.
    pub fn runs(&self) -> &[RunInfo] {
        &self.runs
    }

    /// True when some places are on disk.
    pub fn on_disk(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Records whose place (or mark of a rejected record) is in memory.
    pub fn in_memory(&self) -> usize {
        self.offsets.len()
    }

    /// The places in memory, as `(index, offset, len)` in record order
    /// (rejected records passed over).
    pub fn held(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        let base = self.base;
        (0u64..)
            .zip(self.offsets.iter().zip(&self.lens))
            .filter(|(_, (&offset, _))| offset != NONE)
            .map(move |(i, (&offset, &len))| (base + i, offset, len))
    }

    /// The places in memory were written to disk as `run`: they are
    /// freed, and the next record's place starts the table again.
    pub fn moved_to(&mut self, run: RunInfo) {
        self.base += self.offsets.len() as u64;
        self.runs.push(run);
        (self.offsets, self.lens) = (Vec::new(), Vec::new());
    }

    /// Forgets the runs on disk (of a table dropped, once its writer
    /// removed them).
    pub fn forget_runs(&mut self) -> Vec<RunInfo> {
        std::mem::take(&mut self.runs)
    }

    /// The inputs the records are in.
    pub fn inputs(&self) -> impl Iterator<Item = u32> + '_ {
        self.inputs.iter().map(|&(_, input)| input)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * 8 + self.lens.capacity() * 4 + self.inputs.capacity() * 16
    }

    /// The table as loaded, if its parts fit together; else one that knows
    /// no place (a damaged file that still passed its checksum), so the
    /// later passes read the input.
    pub fn checked(self) -> Spans {
        let ordered = self.inputs.windows(2).all(|w| w[0].0 < w[1].0);
        let on_disk: u64 = self.runs.iter().map(|r| r.entries).sum();
        let bases = on_disk <= self.base && self.runs.is_empty() == (self.base == 0);
        if self.offsets.len() == self.lens.len() && ordered && bases {
            self
        } else {
            Spans::unknown()
        }
    }
}

/// A place at `offset` of input `input`, for tests.
#[cfg(test)]
pub(crate) fn place(input: u32, offset: u64, len: usize, line: u64) -> Place {
    Place {
        span: Some(Span { input, offset }),
        len,
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_with_their_input_and_line() {
        let mut spans = Spans::default();
        spans.record(0, place(0, 3, 10, 1));
        // Record 1 (line 2 of input 0) was rejected.
        spans.record(2, place(0, 20, 5, 3));
        // Input 1's line 1 was rejected: its first record is line 2.
        spans.record(4, place(1, 7, 0, 2));
        assert!(spans.is_complete());
        let at = |input, offset, len, line| Located {
            input,
            offset,
            len,
            line,
        };
        assert_eq!(spans.get(0), Some(at(0, 3, 10, 1)));
        assert_eq!(spans.get(1), None);
        assert_eq!(spans.get(2), Some(at(0, 20, 5, 3)));
        assert_eq!(spans.get(3), None);
        assert_eq!(spans.get(4), Some(at(1, 7, 0, 2)));
        assert_eq!(spans.get(5), None);
        assert_eq!(spans.inputs().collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn one_record_without_a_place_drops_the_table() {
        let mut spans = Spans::default();
        spans.record(0, place(0, 0, 10, 1));
        spans.record(
            1,
            Place {
                span: None,
                len: 4,
                line: 2,
            },
        );
        spans.record(2, place(0, 20, 5, 3));
        assert!(!spans.is_complete());
        assert_eq!(spans.get(0), None);
        assert_eq!(spans.heap_bytes(), 0);
    }
}
