//! Dedup's state on disk under a memory budget (`--max-memory`): pass 1's
//! band lists and id keys spill to sorted runs in the run's temporary
//! space ([`bands`]) when they would pass their share of the budget, and
//! are merged band by band into the candidate pairs when the pass ends
//! (the pairs, as they are made, spill in turn past their share:
//! [`pairs`]);
//! past their share in pass 2, the pairs pass 1 hands it go to two sorted
//! runs it reads front to back ([`pair_files`]);
//! pass 2's held shingle sets spill to runs keyed by the later partner,
//! merged back as the pass advances ([`held`]), and its candidates' ids
//! past their share to runs in record order, joined back for the
//! clustered records when it ends (to a run of their own when they were on
//! disk: [`ids`]), and its verified pairs past their share to sorted runs
//! ([`verified`]); the records' places go to
//! runs in record order, read back by passes 2 and 3 ([`places`]); the
//! clusters' connected components past their share are made with sorted
//! runs ([`components`]), and under a `--keep` policy other than `first`
//! the kept record of each with more sorts ([`ranked`]); and the removed
//! records, named by id for `clusters.jsonl`, are sorted twice, past
//! their share in runs merged back ([`named`]), and against saved
//! indexes those removed as indexed records' duplicates are named with
//! their roots' ids by a sort and a join ([`indexed`]).
//!
//! | module | holds |
//! |---|---|
//! | [`runs`] | the sorted-run file format: [`runs::Entry`], its writer and streaming reader |
//! | [`runs::blocks`] | the framing of every spill file, sorted runs and [`held`]'s alike: checksummed blocks, the end, the whole-file checks |
//! | [`levels`] | the merge in levels, when a band has more runs than the budget has room for readers |
//! | [`merge`] | the k-way merge of runs (and sorted lists in memory), with a record offset for runs of another numbering (a saved index's) |
//! | [`writer`] | a full chunk sorted and written as runs on a thread of its own, one chunk in flight at most |
//! | [`bands`] | the budget's shares, pass 1's chunks handed to the writer, their runs merged into candidate pairs and repeated ids, and what a checkpoint names |
//! | [`pairs`] | pass 1's candidate pairs as the merge makes them, past their share sorted runs merged into the pairs without their repeats across bands |
//! | [`across`] | against saved indexes, the candidate pairs across handed to pass 2's verification of them, past their share (beside the run's own) one sorted run read front to back |
//! | [`pair_files`] | the candidate pairs handed to pass 2, past their share written by the later record and, with each one's last partner, by the earlier one, and read back front to back |
//! | [`held`] | pass 2's held shingle sets written as runs keyed by the later partner, and the merge that hands them back as it arrives (a sort-based join) |
//! | [`ids`] | pass 2's candidates' ids and `--keep` keys past their share, written in record order and joined back for the clustered records when the pass ends |
//! | [`verified`] | pass 2's verified pairs past their share, written as sorted runs in the order it makes them, named by its checkpoints and result, removed once the outputs are committed |
//! | [`places`] | the records' places past their share, written in record order and read back front to back by passes 2 and 3 |
//! | [`sorter`] | an external sort of entries pushed in any order within a share: runs past it, merged (in levels past the readers' room) into one stream, each `(key, record)` once |
//! | [`components`] | the clusters' connected components past their share: contraction rounds of union-find over pieces of the pairs, resolved back with sort-merge joins |
//! | [`ranked`] | the clusters past their share under `--keep longest`, `shortest` or `field:`: the components' members sorted by root with their keys, each cluster's kept record chosen as its members pass in record order, the removed records sorted back by record |
//! | [`joined`] | the clusters of a run against saved indexes past their share: the components of the joined pairs, split into this run's removed records, those removed as indexed records' duplicates, and the indexed clusters joined to an earlier one |
//! | [`indexed`] | against saved indexes, the records removed as indexed records' duplicates: past their share sorted by root, joined with the roots' ids read in order, sorted back by record into one run read as often as asked |
//! | [`named`] | the removed records named by id for `clusters.jsonl`, from streams in record order: sorted by kept record, joined with the ids, sorted by removed record (in memory while they fit their share, else runs merged), joined with the ids again |
//! | [`repeats`] | pass 1's repeated ids past their share: sorted by later record into one run its result names, confirmed with a sort by first record, a read of the input in record order and a sort by later record, joined |
//! | [`leftovers`] | the runs a resumed pass removes: those written after its checkpoint |
//!
//! Sequential IO only: a run is written once, front to back, and read once
//! the same way; nothing is looked up by record on disk.

pub mod across;
pub mod bands;
pub mod components;
pub mod held;
pub mod ids;
pub mod indexed;
pub mod joined;
pub mod leftovers;
pub mod levels;
pub mod merge;
pub mod named;
pub mod pair_files;
pub mod pairs;
#[cfg(test)]
mod pinned;
pub mod places;
pub mod ranked;
pub mod record_sets;
pub mod repeats;
pub mod runs;
pub mod sorter;
pub mod verified;
pub mod writer;
