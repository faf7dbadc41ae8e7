//! The run's memory budget and temporary space as the binary keeps them:
//! which temporary folder a run works in, what it removes when it starts
//! and ends, the up-front check that its spill fits on the disk, the
//! `--explain` lines on both, and the `memory` section of `summary.json`.
//!
//! The lifecycle (`docs/DEDUP.md`, "Temporary space"): a run that does not
//! resume removes whatever temporary folder an earlier run into the same
//! output folder left ([`prepare`]); every run removes its own when it
//! ends, on every path that unwinds ([`RemoveOnExit`]) and on a second
//! signal (`signals.rs`), unless the output folder then holds a checkpoint
//! or a pass result, which may name files in it for `--resume`.

use std::sync::Arc;

use anyhow::Context as _;
use drainpipe::jobs;
use drainpipe::memory_budget::{size, Budget};
use drainpipe::spill_estimate::{self, Estimate};
use drainpipe_actors::temp_space;
use drainpipe_actors::{FolderLock, OutputDir, TempSpace};
use serde::Serialize;

use crate::cli::{CommonArgs, DedupArgs, JobCommand};

/// The temporary space of a run into `output`: the folder an interrupted
/// run recorded, when resuming (its checkpoint may name files there),
/// else a new one where `--tmp-dir` says. Nothing is created yet.
pub fn space_for(common: &CommonArgs, output: &OutputDir) -> anyhow::Result<Arc<TempSpace>> {
    if common.resume {
        if let Some(folder) = temp_space::recorded(output) {
            if let Some(asked) = &common.tmp_dir {
                if !folder.starts_with(std::path::absolute(asked)?) {
                    log::warn!(
                        "--resume works in the temporary folder of the run it resumes, {}; --tmp-dir {} is not used",
                        folder.display(),
                        asked.display()
                    );
                }
            }
            return Ok(Arc::new(TempSpace::resumed(output, folder)?));
        }
    }
    let temp = TempSpace::for_output(output, common.tmp_dir.as_deref())
        .with_context(|| format!("the temporary folder for {}", output.path().display()))?;
    Ok(Arc::new(temp))
}

/// What a run that goes ahead does with the temporary space, under the
/// output folder's lock: without `--resume`, removes the folders an
/// earlier run left (saying so); then checks that the spill the run is
/// estimated to make fits on the disk (exit 74 when it does not).
pub fn prepare(
    job: &JobCommand,
    ctx: &jobs::RunContext,
    lock: &FolderLock,
    budget: &Budget,
) -> anyhow::Result<()> {
    if !ctx.resume {
        let removed = temp_space::remove_left(&ctx.output, lock)?;
        for folder in removed {
            log::warn!(
                "removed the temporary folder {} an earlier run into {} left",
                folder.display(),
                ctx.output.path().display()
            );
        }
    }
    let JobCommand::Dedup { common, params } = job else {
        return Ok(());
    };
    let Some(estimate) = estimate(common, params, budget) else {
        return Ok(());
    };
    let peak = estimate.peak_bytes();
    if peak > 0 {
        ctx.temp
            .ensure_room(peak)
            .with_context(|| refusal(&estimate))?;
    }
    Ok(())
}

/// The up-front refusal's message: the stage that needs the most, the
/// bytes each stage is estimated to need and the model's assumptions
/// (the error it wraps names the folder, the bytes needed and free).
fn refusal(e: &Estimate) -> String {
    format!(
        "refused before reading anything: this run may spill about {} of temporary files \
         at its peak, in {} ({} documents estimated; pass 1's band runs about {}, the \
         clusters' runs about {} for {} verified pairs, {} a document assumed; see \
         docs/DEDUP.md, \"Temporary space\")",
        size(e.peak_bytes()),
        e.peak_stage(),
        e.documents,
        size(e.spill_bytes),
        size(e.clusters_bytes),
        e.pairs,
        spill_estimate::PAIRS_PER_DOCUMENT
    )
}

/// The up-front estimate for `dedup` (the only job that spills); `None`
/// with parameters that are refused later.
fn estimate(common: &CommonArgs, params: &DedupArgs, budget: &Budget) -> Option<Estimate> {
    let banding = params.params().banding().ok()?;
    let documents = spill_estimate::documents(&common.inputs, common.demo_docs);
    let per_document = jobs::dedup::params::bytes_per_document(&banding);
    Some(spill_estimate::estimate(
        documents,
        Some(banding.bands as u64),
        per_document,
        budget.bytes,
    ))
}

/// The `--explain` lines on the budget and on whether the run's state
/// fits in it, for `dedup`.
pub fn explain(common: &CommonArgs, params: &DedupArgs) -> anyhow::Result<String> {
    let budget = Budget::resolve(common.max_memory, &common.settings())?;
    let mut s = format!(
        "memory budget: {}, {}; the run holds about {} besides, whatever its input (batch buffers, threads)\n",
        size(budget.bytes),
        budget.origin(),
        size(budget.overhead)
    );
    let Some(e) = estimate(common, params, &budget) else {
        return Ok(s);
    };
    let input = if common.inputs.is_empty() {
        "the demo corpus".to_owned()
    } else {
        format!(
            "the input, at {} bytes a record",
            spill_estimate::TYPICAL_RECORD_BYTES
        )
    };
    s += &format!(
        "this run: about {} documents in {input}, pass 1's state about {}: ",
        e.documents,
        size(e.state_bytes)
    );
    if e.spill_bytes == 0 {
        s += "within the budget, nothing spills";
    } else {
        s += &format!("past the budget: about {} spills", size(e.spill_bytes));
    }
    if e.clusters_bytes == 0 {
        s += &format!(
            "; the clusters of {} verified pairs fit their share\n",
            e.pairs
        );
    } else {
        s += &format!(
            "; the clusters of {} verified pairs pass their share: their runs take about {}\n",
            e.pairs,
            size(e.clusters_bytes)
        );
    }
    if e.peak_bytes() == 0 {
        return Ok(s);
    }
    let temp = common
        .tmp_dir
        .clone()
        .unwrap_or_else(|| common.output.clone());
    let free = temp_space::free_bytes_at(&temp)?;
    let fits = if e.peak_bytes().saturating_add(temp_space::RESERVE) <= free {
        "fits"
    } else {
        "does not fit: the run would be refused (exit 74)"
    };
    s += &format!(
        "temporary disk at its peak, in {}: about {} in {} ({} free there): {fits}\n",
        e.peak_stage(),
        size(e.peak_bytes()),
        temp.display(),
        size(free)
    );
    Ok(s)
}

/// Removes the run's temporary folder when dropped, unless the output
/// folder then holds state `--resume` could continue from, which may name
/// files in it. Dropped at the end of the run, also when it fails or
/// panics (the unwinding drops it), before the folder's lock is released.
pub struct RemoveOnExit {
    /// The run's temporary space.
    pub temp: Arc<TempSpace>,
    /// The output folder.
    pub output: OutputDir,
}

impl Drop for RemoveOnExit {
    fn drop(&mut self) {
        finish(&self.temp, &self.output);
    }
}

/// What the end of a run does with its temporary folder (see
/// [`RemoveOnExit`]); also called by a second signal's exit.
pub fn finish(temp: &TempSpace, output: &OutputDir) {
    if let Some(state) = jobs::resumable_state(output) {
        if temp.folder().exists() {
            log::info!(
                "kept the temporary folder {} for --resume ({state} may refer to it)",
                temp.folder().display()
            );
        }
        return;
    }
    if let Err(e) = temp.remove_all() {
        // Not fatal: the next run into the folder removes it.
        log::warn!(
            "{e}; the next run into {} removes it",
            output.path().display()
        );
    }
}

/// The `memory` section of `summary.json`.
#[derive(Debug, Serialize)]
pub struct MemoryUse {
    /// The budget of the run's state, in bytes.
    pub budget_bytes: u64,
    /// Where it came from (`--max-memory`, or the default and why).
    pub budget: String,
    /// What the process holds besides its state, whatever its input.
    pub fixed_overhead_bytes: u64,
    /// The process's peak resident memory (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    /// The run's temporary folder.
    pub temp_folder: String,
    /// Bytes written to the temporary folder.
    pub bytes_spilled: u64,
    /// The most bytes the temporary folder held at once.
    pub peak_temp_bytes: u64,
}

impl MemoryUse {
    /// The section for a run with `budget` and `temp`, now.
    pub fn now(budget: &Budget, temp: &TempSpace) -> Self {
        MemoryUse {
            budget_bytes: budget.bytes,
            budget: budget.origin(),
            fixed_overhead_bytes: budget.overhead,
            peak_rss_bytes: peak_rss_bytes(),
            temp_folder: temp.folder().display().to_string(),
            bytes_spilled: temp.bytes_spilled(),
            peak_temp_bytes: temp.peak_bytes(),
        }
    }
}

/// The process's peak resident memory so far (`VmHWM` in
/// `/proc/self/status`), in bytes; `None` where there is no such file.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Writes `report` as `summary.json` with the `memory` section after its
/// fields, atomically.
pub fn write_summary(
    report: &drainpipe_actors::RunReport,
    memory: &MemoryUse,
    output: &OutputDir,
) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Summary<'a> {
        #[serde(flatten)]
        report: &'a drainpipe_actors::RunReport,
        memory: &'a MemoryUse,
    }
    let mut json = serde_json::to_vec_pretty(&Summary { report, memory })?;
    json.push(b'\n');
    output.write_all("summary.json", &json)?;
    Ok(())
}

/// A file created through the temporary space before the job runs, as a
/// spill would (tests of the lifecycle; failpoint `main::spill=return(NAME)`).
#[cfg(feature = "failpoints")]
pub fn injected_spill(temp: &TempSpace) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(Some(name)) = fail::eval("main::spill", |arg| arg) {
        let bytes = vec![b's'; 4096];
        temp.create(&name)?.write_all(&bytes)?;
        temp.wrote(bytes.len() as u64);
    }
    Ok(())
}
