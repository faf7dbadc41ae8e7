//! Guarantee: under `--max-memory`, the set of removed records pass 3
//! reads stays within its share of the budget (`src/jobs/dedup/budget.rs`,
//! `Shares::record_set`: a hundred-and-twenty-eighth): past it, it is
//! written to disk in record order and read back through a window that
//! moves forward (`src/jobs/dedup/spill/record_sets.rs`), whether pass 3
//! copies the kept records' bytes beside pass 2 or reads the whole input
//! (a gzipped one). The outputs are byte-identical to those of a run
//! without a budget, and the summary's `removed_records_spilled_bytes`
//! says what the set wrote (0 without a budget).

use drainpipe::jobs::dedup::budget::Shares;

use super::dedup_clusters_stay_within_their_share_on_a_corpus_of_many_duplicates::lines;
use crate::common::gz;
use crate::mixed::{assert_same_outputs, dedup_file};

#[test]
fn dedup_removed_records_past_their_share_go_to_disk_with_the_outputs_of_an_unbudgeted_run() {
    let dir = tempfile::tempdir().unwrap();
    // About 19,500 records, a third of them removed, spread over the
    // whole input.
    let text = lines(3_000).join("\n") + "\n";
    let plain = dir.path().join("input.jsonl");
    std::fs::write(&plain, &text).unwrap();
    let zipped = dir.path().join("input.jsonl.gz");
    std::fs::write(&zipped, gz(text.as_bytes())).unwrap();
    // A share of 2 KiB: the bits of 16,384 records.
    let budget = 256u64 << 10;
    let share = Shares { max_memory: budget }.record_set();
    for (input, reads) in [(&plain, "copied byte ranges"), (&zipped, "whole input")] {
        let (expected, unlimited) = dedup_file(input, None);
        assert_eq!(unlimited.result["removed_records_spilled_bytes"], 0);
        let records = unlimited.records.integrated;
        assert!(records > 8 * share, "{records} records");
        let (got, limited) = dedup_file(input, Some(budget));
        assert_eq!(limited.result["reads"]["kept"], reads);
        let spilled = limited.result["removed_records_spilled_bytes"]
            .as_u64()
            .unwrap();
        assert!(spilled > 0, "{reads}: the removed set stayed in memory");
        assert_eq!(
            limited.result["duplicates_removed"],
            unlimited.result["duplicates_removed"]
        );
        assert_same_outputs(&expected, &got, &format!("{reads}, budget {budget}"));
    }
}
