//! How `--max-memory` is split between the state of dedup's passes: the
//! one place that says it. The structures that grow with the input either
//! stay within their share here (and go to disk past it, or are dropped
//! when they only save time).
//!
//! The passes run one after the other, so each pass has the whole budget
//! for what it holds alone; what a pass hands the next (the bits, the
//! places, the candidate pairs) is counted in both.
//!
//! | pass | structure | bytes | share |
//! |---|---|---|---|
//! | 1 | band lists and id keys until they first spill: every record's | `8 * bands + 8` a record; `8 * bands + 32 + 8 * threads` sorted in memory at the end | [`Shares::unspilled`]: the state but the places' share; a run that fits spills nothing |
//! | 1 | band lists and id keys once they spilled: the latest records, and the chunk being written (the oldest ones) | `8 * bands + 8` a record held, `8 * bands + 64` a record written (fingerprint, sort's room) | [`Shares::unspilled`] while the pass goes on; at its end, the latest ones kept (`8 * bands + 32 + 32 * threads` a record, a band sorted a merging thread) within [`Shares::chunks`], a quarter, and merged from there beside the runs |
//! | 1-3 | the records' places (`spans`) | 12 a record | [`Shares::places`]: an eighth; past it, all go to disk in record order ([`crate::jobs::dedup::spill::places`]: a segment of at most 3 MiB in memory while pass 1 writes, one block while passes 2 and 3 read them back) |
//! | 1 | the merge's read buffers | 128 KiB a run | [`Shares::merge`]: an eighth; past it, runs merge in levels first |
//! | 1 | the candidate pairs as the merge makes them, repeats across bands included | 8 a pair, lists grown by doubling | [`Shares::pairs`]: a quarter; past it sorted runs, merged without the repeats. Against indexes, the pairs across (an indexed record and one of the run's) with them, split apart as the runs are merged ([`crate::jobs::dedup::spill::pairs::PairSpill::finish_across`]) |
//! | 2 | held shingle sets | `8 * shingles + 40` a held record | [`Shares::held`]: a quarter; past it, sorted runs joined back |
//! | 2 | against indexes: the indexed records' shingle sets the pairs across are verified with, read before pass 2 in indexed record order | `8 * shingles + 40` an indexed record held; on disk, its set once a pair across | [`Shares::indexed_sets`]: a sixteenth; past it, those held go to sorted runs of `(record, indexed record, set)` ([`crate::jobs::dedup::spill::held`]), read back front to back as pass 2 reads the records |
//! | 2 | the candidates' ids (and `--keep` keys) | about 20 a candidate | [`Shares::candidate_ids`]: an eighth, kept before an id's vectors grow; past it, the ids of candidates that can no longer be in a cluster are dropped, and when that leaves more than half the share, every id goes to disk in record order ([`crate::jobs::dedup::spill::ids`]: a segment of a quarter of the share in memory), joined back for the clustered records when the pass ends. Against indexes none is dropped: past the share all go to disk, joined back for the clustered records and those in a pair across |
//! | 2 | the verified pairs | 16 a pair, lists grown by doubling | [`Shares::verified_pairs`]: a sixteenth; past it, all go to sorted runs in the order pass 2 makes them ([`crate::jobs::dedup::spill::verified`]: a segment of a quarter of the share in memory), and the clustered records' ids, when they were on disk, to a run of their own ([`crate::jobs::dedup::spill::ids`]) |
//! | 2 | against indexes: the verified pairs across | 16 a pair, lists grown by doubling | [`Shares::verified_pairs_across`]: a thirty-second; past it, as the run's own ([`crate::jobs::dedup::spill::verified::PairsSpill::across`]), then sorted by indexed record within it ([`crate::jobs::dedup::spill::sorter`]) and streamed to the clusters, each indexed record replaced by its root as the index's roots are read front to back |
//! | 2-3 | the clusters: while they are made, the union-find over the clustered records (with their best similarity and cluster sizes); then the removed records with their kept record, held through pass 3 | about 112 a verified pair in memory ([`crate::jobs::dedup::clusters::IN_MEMORY_PAIR_BYTES`]); 16 a removed record | [`Shares::clusters`]: a quarter; past it, the components are made with sorted runs ([`crate::jobs::dedup::spill::components`]; against indexes, of the pairs across and the run's own, less the 16 bytes a pair across held until they are read: [`crate::jobs::dedup::spill::joined`]), under a `--keep` policy other than `first` without an index each one's kept record chosen with more sorts ([`crate::jobs::dedup::spill::ranked`]), and the removed records past a quarter of the share go to a run read front to back |
//! | 2-3 | against indexes: the records removed as an indexed record's duplicates, as the clusters make them, then named with their root's id (sorted by root, joined with the ids read in order, sorted back by record), held through pass 3 | 16 a record as made; 36 a record sorted by root; 24 a record and its root's id named | [`Shares::indexed_duplicates`]: a sixteenth (a quarter of the clusters'), for them as made and named; the sort by root holds half the clusters' share while nothing else of the clusters' is made. Past it, runs ([`crate::jobs::dedup::spill::indexed`]): the named ones merged into one run read front to back by pass 3, `clusters.jsonl` and the saved index's roots |
//! | 1-3 | the sets with a bit a record: the records pass 1 integrated (passes 1-3), pass 2's candidates and the records it shingles, against indexes the records in a pair across (pass 2), the removed records (pass 3) | 1 bit a record each (125 MB for 10^9 records) | [`Shares::record_set`] each: a hundred-and-twenty-eighth; past it, written to disk in record order (9 bytes for 64 records, sparse words skipped), and read back through a window of at most 256 KiB a reader ([`crate::jobs::dedup::spill::record_sets`]) |
//! | 1-2 | the candidate pairs, without repeats, handed to pass 2, and each earlier record's last partner | 8 a pair, 8 an earlier record (counted as 16 a pair) | [`Shares::verify_pairs`]: a sixteenth; past it, pass 1 writes them to two sorted runs, by the later record and by the earlier one with its last partner, which pass 2 reads front to back ([`crate::jobs::dedup::spill::pair_files`]: a block of each, and the last partner of each held set only) |
//! | 1-2 | against indexes: the candidate pairs across, handed to pass 2's verification of them | 8 a pair (counted as 16, beside the run's own held in memory) | [`Shares::verify_pairs`], with the run's own; past it, pass 1 merges them into one sorted run by the run's record, which pass 2 reads front to back ([`crate::jobs::dedup::spill::across`]) |
//! | 2 | the candidate records' places, read from the places before pass 2 reads them (`Wanted`), and their indices | 28 a candidate record | [`Shares::candidate_places`]: a quarter, counted as two records a candidate pair; past it, pass 2 reads the whole input instead |
//! | 1-2 | the repeated ids: `(first, later)` pairs of records with the same id key, made by pass 1's merge, then confirmed against the records' ids before pass 2 | 8 a pair; while confirmed, 36 a pair sorted by first record, and each pair's two records with their id and place sorted by later record | [`Shares::repeated_ids`]: a quarter, a sixteenth while pass 1's merge makes them; past it, one sorted run by later record named by pass 1's result ([`crate::jobs::dedup::spill::repeats`]), confirmed with a sort by first record, one read of the input in record order and a sort by later record (each within half the share) joined front to back |
//! | 3 | the removed records named by id for `clusters.jsonl`, sorted by kept then by removed record | 24 a removed record, and the kept record's id | [`Shares::clusters_file`]: a quarter, half a sort; past it, runs merged ([`crate::jobs::dedup::spill::named`]: a block and a read buffer a run) |
//!
//! What is not counted (the allocator's slack, the batch buffers, the
//! threads, the program) is the rest of the budget and the fixed overhead
//! on top of it ([`crate::memory_budget`]). The slack is kept small by
//! [`crate::allocator`]: blocks of 1 MiB or more mapped on their own, and
//! what a pass freed given back before the next (20M short documents
//! under 128M: 347 MB peak before, 176 MB after, `docs/PERFORMANCE.md`).

/// The shares of one run's budget, `max_memory` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// The run's budget in bytes (`--max-memory`).
    pub max_memory: u64,
}

impl Shares {
    /// Pass 1's Integrator state: half the budget (the other half covers
    /// the allocator's slack and the candidate pairs as they are made).
    pub fn pass1_state(self) -> u64 {
        self.max_memory / 2
    }

    /// Pass 1's band lists until they first spill: its state but for the
    /// places' share. A run whose lists fit it (sorted in memory at the
    /// end, as with no budget) spills nothing.
    pub fn unspilled(self) -> u64 {
        self.pass1_state() - self.places()
    }

    /// Pass 1's band lists once they have spilled, as the pass ends: half
    /// its state, for the latest records, kept in memory and merged beside
    /// the runs. While the pass goes on, they and the chunk being written
    /// stay within [`Shares::unspilled`].
    pub fn chunks(self) -> u64 {
        self.pass1_state() / 2
    }

    /// Pass 1's merge readers when it ends: a quarter of its state (the
    /// latest records, kept in memory and merged beside the runs, stay
    /// within [`Shares::chunks`]).
    pub fn merge(self) -> u64 {
        self.pass1_state() / 4
    }

    /// The candidate pairs as pass 1's merge makes them (each band's, the
    /// repeats across bands included), the threads' lists together: half
    /// its state, beside the latest records kept ([`Shares::chunks`]), the
    /// merge's readers and the places, all within the budget. Past it
    /// they go to sorted runs ([`crate::jobs::dedup::spill::pairs`]).
    pub fn pairs(self) -> u64 {
        self.pass1_state() / 2
    }

    /// The records' places: a quarter of pass 1's state (they are read by
    /// passes 2 and 3 too, where the bits and held sets leave room). Past
    /// it they go to disk, and passes 2 and 3 read them back front to
    /// back.
    pub fn places(self) -> u64 {
        self.pass1_state() / 4
    }

    /// Pass 2's held shingle sets, with the read buffers of their runs: a
    /// quarter of the budget.
    pub fn held(self) -> u64 {
        self.max_memory / 4
    }

    /// Pass 2's candidates' ids and `--keep` keys: an eighth of the
    /// budget. Past it, those of candidates whose every partner has come
    /// and that no verified pair holds are dropped; what is left (the
    /// candidates still waiting for a partner, and the clustered ones)
    /// can grow with the corpus, so when it is more than half the share
    /// every id goes to disk in record order
    /// ([`crate::jobs::dedup::spill::ids`]), and the clustered records'
    /// are joined back when the pass ends.
    pub fn candidate_ids(self) -> u64 {
        self.max_memory / 8
    }

    /// The candidate pairs pass 2 reads, with each earlier record's last
    /// partner, in memory: a sixteenth of the budget. Past it, pass 1
    /// writes them to disk and pass 2 streams them
    /// ([`crate::jobs::dedup::spill::pair_files`]).
    pub fn verify_pairs(self) -> u64 {
        self.max_memory / 16
    }

    /// Pass 2's verified pairs: a sixteenth of the budget, counted 16
    /// bytes a pair. Past it they go to sorted runs
    /// ([`crate::jobs::dedup::spill::verified`]), read back in order.
    pub fn verified_pairs(self) -> u64 {
        self.max_memory / 16
    }

    /// Against indexes: pass 2's verified pairs across, a thirty-second
    /// of the budget, counted 16 bytes a pair. Past it they go to sorted
    /// runs as the run's own do ([`crate::jobs::dedup::spill::verified`]),
    /// sorted by indexed record within it for the clusters, which read
    /// them as a stream.
    pub fn verified_pairs_across(self) -> u64 {
        self.max_memory / 32
    }

    /// Against indexes: the indexed records' shingle sets that pass 2
    /// verifies the pairs across with, as they are read before it, a
    /// sixteenth of the budget. Past it, they go to sorted runs in the
    /// order pass 2 reads the records ([`crate::jobs::dedup::spill::held`],
    /// as its own held sets do), whose read buffers, merged in levels
    /// past half the share, are all pass 2 holds of them beside what was
    /// kept in memory.
    pub fn indexed_sets(self) -> u64 {
        self.max_memory / 16
    }

    /// The sorts that write `clusters.jsonl` (by kept record, then by
    /// removed record, each holding half of it): a quarter of the budget.
    /// They run after pass 2, before pass 3 reads a record, so beside them
    /// are only what pass 3 is handed (the places, an eighth, and the
    /// bits) and the copy of `kept.jsonl` running beside pass 2, which the
    /// rest leaves room for. Past it, runs merged
    /// ([`crate::jobs::dedup::spill::named`]): with a quarter, a budget of
    /// 128 MiB sorts 16 MiB chunks (about 400,000 removed records with
    /// ids of 20 bytes) and merges hundreds of runs in one level.
    pub fn clusters_file(self) -> u64 {
        self.max_memory / 4
    }

    /// The repeated ids while they are confirmed (after pass 1's merge,
    /// before pass 2): a quarter of the budget, beside the places and the
    /// candidate pairs handed on (pass 1's lists and merge are gone). A
    /// sixteenth of the budget (a quarter of it) while the merge makes
    /// them, beside the merge's own shares. Past it, they go to one sorted
    /// run, and confirming them sorts within it
    /// ([`crate::jobs::dedup::spill::repeats`]).
    pub fn repeated_ids(self) -> u64 {
        self.max_memory / 4
    }

    /// The repeated ids as pass 1's merge makes them: a quarter of
    /// [`Shares::repeated_ids`].
    pub fn repeated_ids_made(self) -> u64 {
        self.repeated_ids() / 4
    }

    /// Pass 2's list of the candidate records' places, when it reads the
    /// candidates only: a quarter of the budget. Past it (known from the
    /// candidate pairs before pass 2 starts), pass 2 reads the whole
    /// input instead, decoding only the records it needs.
    pub fn candidate_places(self) -> u64 {
        self.max_memory / 4
    }

    /// The clusters, made between passes 2 and 3: a quarter of the
    /// budget, for the union-find over every clustered record (its
    /// parents, best similarities and cluster sizes: about 112 bytes a
    /// verified pair, known before it starts), then for the removed
    /// records pass 3 reads. Pass 2's held sets and candidates' places are
    /// gone by then; what is left beside it is the places, the clustered
    /// records' ids and the bits. Past it, the components are made with
    /// sorted runs read front to back within it
    /// ([`crate::jobs::dedup::spill::components`]), and the removed
    /// records past a quarter of it are read back from a run.
    pub fn clusters(self) -> u64 {
        self.max_memory / 4
    }

    /// Against indexes, the records removed as indexed records'
    /// duplicates: a quarter of the clusters' share, as the clusters
    /// make them (in record order, beside this run's removed records,
    /// another quarter) and once named with their roots' ids, held through
    /// pass 3 beside the clusters' removed records and
    /// [`Shares::clusters_file`]. Naming them sorts them by root first,
    /// within half the clusters' share. Past it, they go to runs
    /// ([`crate::jobs::dedup::spill::indexed`]), the named ones read front
    /// to back from one run.
    pub fn indexed_duplicates(self) -> u64 {
        self.clusters() / 4
    }

    /// Each set of records with a bit a record (those pass 1 integrated,
    /// pass 2's candidates, the removed ones, and against indexes those
    /// pass 2 reads for them): a hundred-and-twenty-eighth of the budget,
    /// 1 MiB (8 million records) under 128 MiB. Past it, written to disk
    /// in record order and read back through a window of 256 KiB at most
    /// ([`crate::jobs::dedup::spill::record_sets`]).
    pub fn record_set(self) -> u64 {
        self.max_memory / 128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_of_each_pass_stay_within_the_budget() {
        let s = Shares {
            max_memory: 128 << 20,
        };
        // Pass 1: the lists as they fill beside the places, and the
        // latest ones kept at the end beside the merge's readers.
        assert!(s.unspilled() + s.places() <= s.pass1_state());
        assert!(s.chunks() <= s.unspilled());
        assert!(s.chunks() + s.places() + s.merge() <= s.pass1_state());
        assert!(s.pass1_state() + s.places() <= s.max_memory);
        // Pass 1's merge: the pairs beside the readers and the places,
        // and the latest records kept.
        assert!(s.pairs() + s.merge() + s.places() <= s.pass1_state());
        assert!(s.chunks() + s.pairs() + s.merge() + s.places() <= s.max_memory);
        // Beside the merge, the repeated ids as it makes them.
        let merging = s.chunks() + s.pairs() + s.merge() + s.places();
        assert!(merging + s.repeated_ids_made() <= s.max_memory / 16 * 13);
        // Confirming the repeated ids, before pass 2: beside the places
        // and the candidate pairs handed on.
        assert!(s.repeated_ids() + s.places() + s.verify_pairs() <= s.max_memory / 2);
        // Pass 2: held sets, ids and the places handed on.
        assert!(s.held() + s.candidate_ids() + s.places() <= s.max_memory / 2);
        // Pass 2 with all it may hold: the candidate and verified pairs
        // in memory, and the list of the candidates' places beside them;
        // an eighth left for the readers of the runs and the allocator's
        // slack.
        let pass2 = s.held() + s.candidate_ids() + s.places() + s.candidate_places();
        assert!(pass2 + s.verify_pairs() + s.verified_pairs() <= s.max_memory / 8 * 7);
        // Against indexes, the indexed records' sets beside it, a
        // sixteenth more.
        let sets = s.indexed_sets();
        assert!(pass2 + s.verify_pairs() + s.verified_pairs() + sets <= s.max_memory / 16 * 15);
        // And the verified pairs across, a thirty-second more.
        let across = sets + s.verified_pairs_across();
        assert!(pass2 + s.verify_pairs() + s.verified_pairs() + across <= s.max_memory / 32 * 31);
        // And the four record sets pass 2 may hold then (integrated,
        // candidates, shingled, in a pair across), within its last
        // thirty-second.
        assert!(4 * s.record_set() <= s.max_memory / 32);
        // Between passes 2 and 3 and in pass 3: the clusters beside the
        // places and the clustered records' ids.
        assert!(s.clusters() + s.places() + s.candidate_ids() <= s.max_memory / 2);
        // Writing clusters.jsonl: its sorts beside the places handed to
        // pass 3, half the budget left for the copy beside pass 2.
        assert!(s.clusters_file() + s.places() <= s.max_memory / 2);
        // Against indexes: naming those removed as indexed records'
        // duplicates (the sort by root, half the clusters' share, beside
        // them as made, then beside the named ones, and this run's
        // removed records), then in pass 3 beside its sorts.
        let removed = s.clusters() / 4;
        let naming = s.clusters() / 2 + s.indexed_duplicates() + removed;
        assert_eq!(naming, s.clusters());
        assert!(naming + s.places() + s.candidate_ids() <= s.max_memory / 2);
        let pass3 = s.clusters_file() + s.places() + removed + s.indexed_duplicates();
        assert!(pass3 <= s.max_memory / 2);
    }
}
