//! The output files of every job, by name. A job's commit removes those
//! of the other jobs with its own: after `--force`, an earlier run of
//! another job must not leave its outputs beside this run's summary, as if
//! one run had written them all. A leaf: the jobs import it, it imports
//! none of them (the names are checked against the jobs' own constants in
//! `a_folder_holds_the_outputs_of_one_run_only`).

/// Every job's output files: `vocab`'s, then `dedup`'s (whose kept records
/// are one of `kept.jsonl` and `kept.parquet`).
pub const OUTPUT_FILES: [&str; 4] = ["vocab.tsv", "kept.jsonl", "kept.parquet", "clusters.jsonl"];

/// The output files of the jobs other than the one whose outputs are `own`.
pub fn others(own: &[&str]) -> Vec<&'static str> {
    OUTPUT_FILES
        .into_iter()
        .filter(|name| !own.contains(name))
        .collect()
}
