//! The built-in jobs and what every job's entry point receives.
//!
//! A job is a module with a type implementing `drainpipe_actors::Job` (and
//! its `Integrate` state) and a `run(&RunContext, args) -> RunReport` entry
//! point; the CLI (`src/cli.rs`) names it. Jobs that need more than one pass
//! over the input (like `dedup`) run several pipelines in sequence from
//! their entry point.

use drainpipe_actors::{ExitCode, Failure, OutputDir, RunReport};

pub mod dedup;
pub mod outputs;
pub mod pass;
pub mod registry;
pub mod vocab;

pub use pass::{
    open_source, run_pass, run_pass_into, run_pass_remote, run_pass_with, Engine, ProgressFactory,
    RunContext, StageFactory, StageProgress,
};

/// The file in `output` that holds an interrupted run's state to resume
/// from (a checkpoint, or a completed pass of `dedup`), if any.
pub fn resumable_state(output: &OutputDir) -> Option<&'static str> {
    std::iter::once(drainpipe_actors::CHECKPOINT_FILE)
        .chain(dedup::resume::PASS_FILES)
        .find(|name| output.file(name).exists())
}

/// Removes every file [`resumable_state`] looks for: `--force` starts
/// over, whatever job left them.
pub fn remove_resumable_state(output: &OutputDir) -> Result<(), drainpipe_actors::OutputError> {
    dedup::index::progress::remove_left_draft(output);
    std::iter::once(drainpipe_actors::CHECKPOINT_FILE)
        .chain(dedup::resume::PASS_FILES)
        .try_for_each(|name| output.remove_stale(name))
}

/// Fails a complete run that read records and integrated none of them
/// (exit 65): every record was rejected (a wrong `--text-field`, a file of
/// another format), so its outputs, written all the same, say nothing of
/// the input; `rejects.jsonl` gives each record's reason. A run that
/// rejected some records and integrated others stays complete (rejects are
/// reported, not fatal), and so does a run over an empty input, which read
/// nothing.
pub fn fail_if_every_record_was_rejected(report: &mut RunReport) {
    let r = &report.records;
    if report.exit_code == ExitCode::Complete.code() && r.read > 0 && r.integrated == 0 {
        let rejected = r.rejected;
        report.fail(Failure::AllRejected { rejected });
    }
}
