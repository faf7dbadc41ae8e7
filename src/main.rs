//! The `drainpipe` binary: parses the command line, installs logging, the
//! signal thread, the panic hook and the progress display, runs the job,
//! writes `summary.json` and maps the outcome to an exit code. `anyhow`
//! lives here, at the edge.

mod cli;
mod logging;
mod progress;
mod signals;
mod space;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use drainpipe::jobs;
use drainpipe::memory_budget::Budget;
use drainpipe_actors::{ExitCode as Code, FolderLock, LockError, OutputDir, RunHandle};

use crate::cli::{Cli, JobCommand};

fn main() -> ExitCode {
    // Before any thread starts: the arenas a thread takes are then fixed.
    drainpipe::allocator::cap_arenas();
    drainpipe::allocator::fix_mmap_threshold();
    let cli = Cli::parse();
    if let Err(refusal) = cli.validate() {
        refusal.exit();
    }
    let level = match &cli.job {
        JobCommand::Worker(w) => match w.verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        },
        job => job
            .common()
            .map_or(log::LevelFilter::Warn, |c| c.log_level()),
    };
    logging::install(level);
    quiet_panics_on_processor_threads();
    // Faults named in the FAILPOINTS environment variable (test builds only).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match run(&cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            logging::say(format_args!("drainpipe: error: {e:#}"));
            ExitCode::from(error_code(&e).code() as u8)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<i32> {
    let common = match &cli.job {
        JobCommand::Generate(args) => {
            quiet_when_stdout_closes(generate(args))?;
            return Ok(Code::Complete.code());
        }
        JobCommand::Worker(args) => return worker(args),
        JobCommand::Dedup { common, params } if params.explain => {
            return explain(common, params);
        }
        job => job.common().expect("every job has the common options"),
    };
    let output = OutputDir::create(&common.output)?;
    // Before anything in the folder is read or written; held to the end.
    let Some(lock) = take_folder(&output)? else {
        return Ok(Code::Usage.code());
    };
    let handle = RunHandle::new();
    let silent = common.no_progress || common.quiet;
    let progress = (progress::factory(silent), progress::stages(silent));
    // Checked against its least value by `Cli::validate`.
    let budget = Budget::resolve(common.max_memory, &common.settings())?;
    let temp = space::space_for(common, &output)?;
    let ctx = common.context(
        &cli.job.identity(),
        output.clone(),
        handle.clone(),
        progress,
        (&budget, temp.clone()),
    );
    let about = signals::RunAbout {
        job: job_name(&cli.job),
        fingerprint: ctx.fingerprint.clone(),
        temp: temp.clone(),
    };
    signals::install(handle, output.clone(), about)
        .context("installing the SIGINT/SIGTERM/SIGHUP handler")?;
    if let Err(refusal) = check_output_folder(&ctx, common.force) {
        logging::say(format_args!("drainpipe: {refusal}"));
        return Ok(Code::Usage.code());
    }
    if common.force && !ctx.resume {
        // Starting over: no state of an earlier run, of any job, survives
        // to block or confuse a later one.
        jobs::remove_resumable_state(&ctx.output)?;
    }
    // From here the run's temporary folder is removed however the run
    // ends, unless a checkpoint may need it; dropped before the lock.
    let _temp_removal = space::RemoveOnExit {
        temp: temp.clone(),
        output: output.clone(),
    };
    let memory = || space::MemoryUse::now(&budget, &temp);
    if let Err(e) = space::prepare(&cli.job, &ctx, &lock, &budget) {
        write_failure_summary(&output, &cli.job, &ctx.fingerprint, &e, &memory());
        return Err(e);
    }
    #[cfg(feature = "failpoints")]
    {
        space::injected_spill(&temp)?;
        fail::fail_point!("main::job");
    }
    let ran = match &cli.job {
        JobCommand::Vocab { .. } => jobs::vocab::run(&ctx),
        JobCommand::Dedup { params, .. } => jobs::dedup::run(&ctx, &params.params()),
        JobCommand::Generate(_) | JobCommand::Worker(_) => unreachable!("handled above"),
    };
    match ran {
        Ok(report) => conclude(common, report, &memory(), &output),
        Err(e) => {
            write_failure_summary(&output, &cli.job, &ctx.fingerprint, &e, &memory());
            Err(e)
        }
    }
}

/// The end of a run that has its report: the signal that stopped it named,
/// a run that integrated none of the records it read failed, the summary
/// written and said. The exit code.
fn conclude(
    common: &cli::CommonArgs,
    mut report: drainpipe_actors::RunReport,
    memory: &space::MemoryUse,
    output: &OutputDir,
) -> anyhow::Result<i32> {
    if let Some((code, signal)) = signals::stopped_by(report.exit_code) {
        // Stopped as SIGINT would stop it, but the code names the signal.
        report.exit_code = code;
        report.cause = format!("{} ({signal})", report.cause);
    }
    jobs::fail_if_every_record_was_rejected(&mut report);
    report.peak_rss_bytes = memory.peak_rss_bytes;
    space::write_summary(&report, memory, output)?;
    say_summary(common, &report);
    Ok(report.exit_code)
}

/// `dedup --explain`: the parameters' consequences, the memory budget and
/// whether the run's state fits in it, on stdout.
fn explain(common: &cli::CommonArgs, params: &cli::DedupArgs) -> anyhow::Result<i32> {
    let text = jobs::dedup::explain(&params.params()) + &space::explain(common, params)?;
    let written = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())
        .context("writing to stdout");
    quiet_when_stdout_closes(written)?;
    Ok(Code::Complete.code())
}

/// The summary is what a default run shows besides progress; `-q` keeps
/// it for a run that failed, whose errors it lists.
fn say_summary(common: &cli::CommonArgs, report: &drainpipe_actors::RunReport) {
    if !common.quiet || report.exit_code != Code::Complete.code() {
        logging::say(report.human());
        if let Some(lines) = dedup_summary(report) {
            logging::say(lines);
        }
    }
    if !report.result.is_null() {
        log::debug!("result: {}", report.result);
    }
}

/// `drainpipe worker`: step 1 of distributed runs until SIGINT, SIGTERM or
/// SIGHUP (the first finishes the batches held, then exits 0; a second
/// exits at once, as SIGQUIT does; `signals::worker`).
fn worker(args: &cli::WorkerArgs) -> anyhow::Result<i32> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(drainpipe_actors::remote::worker::WorkerReport::default());
    signals::worker::install(Arc::clone(&stop), Arc::clone(&report))
        .context("installing the signal handlers")?;
    let registry = jobs::registry::worker_registry();
    drainpipe_actors::remote::worker::run_reporting(
        args.settings(),
        registry,
        stop,
        Arc::clone(&report),
    )?;
    let count = |n: &AtomicU64| n.load(Ordering::Relaxed);
    log::info!(
        "worker stopped: {} parts answered, {} handed back, {} unreadable, {} of ended runs dropped",
        count(&report.answered),
        count(&report.handed_back),
        count(&report.unreadable),
        count(&report.abandoned)
    );
    Ok(Code::Complete.code())
}

/// Locks the output folder, then completes a commit a killed run began
/// and removes the temporary files it left, saying so. `None` when another
/// run holds the folder (said here; the run exits 2).
fn take_folder(output: &OutputDir) -> anyhow::Result<Option<FolderLock>> {
    let lock = match output.lock(&command_line()) {
        Ok(lock) => lock,
        Err(held @ LockError::Held { .. }) => {
            logging::say(format_args!("drainpipe: {held}"));
            return Ok(None);
        }
        Err(LockError::Io(e)) => return Err(e.into()),
    };
    let folder = output.path().display();
    let completed = output.complete_commit(&lock)?;
    if !completed.is_empty() {
        let names = completed.join(", ");
        log::warn!("completed the commit a killed run began in {folder}: {names}");
    }
    let removed = output.remove_temporaries(&lock)?;
    if !removed.is_empty() {
        let (n, names) = (removed.len(), removed.join(", "));
        log::warn!("removed {n} temporary files a killed run left in {folder}: {names}");
    }
    Ok(Some(lock))
}

/// The command line, for the lock file: a run refused because another
/// holds the folder names what that one is doing. Cut short past 300
/// characters (a command naming thousands of inputs).
fn command_line() -> String {
    let mut line = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some((cut, _)) = line.char_indices().nth(300) {
        line.truncate(cut);
        line.push_str(" ...");
    }
    line
}

/// A command whose output is read by another (`generate | head`) stops
/// quietly, with success, when that reader has had enough and closed the
/// pipe, as `cat` or `seq` would (they die of SIGPIPE, which Rust
/// programs ignore); any other error stays an error.
fn quiet_when_stdout_closes(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e)
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// `summary.json` for a run that ended before it had a report (exit 70 or
/// 74 from an error): an earlier run's summary must not stand in the folder
/// as if it were this run's. A failure to write it is logged; the run's
/// own error is what the caller reports.
fn write_failure_summary(
    output: &OutputDir,
    job: &JobCommand,
    fingerprint: &str,
    e: &anyhow::Error,
    memory: &space::MemoryUse,
) {
    let summary = serde_json::json!({
        "job": job_name(job),
        "fingerprint": fingerprint,
        "exit": "failed",
        "exit_code": error_code(e).code(),
        "cause": format!("{e:#}"),
        "note": if output.file(drainpipe_actors::COMMIT_JOURNAL).exists() {
            "the run ended while committing its outputs: some are in place, the others under temporary names; the next run into this folder completes the commit"
        } else {
            "the run ended before it could report: none of its outputs was committed; any other file in this folder is an earlier run's"
        },
        "memory": memory,
    });
    let mut json = serde_json::to_vec_pretty(&summary).expect("a JSON value serializes");
    json.push(b'\n');
    if let Err(write) = output.write_all("summary.json", &json) {
        log::error!("could not write summary.json: {write}");
    }
}

/// The job's name, for `summary.json`.
fn job_name(job: &JobCommand) -> &'static str {
    match job {
        JobCommand::Vocab { .. } => "vocab",
        JobCommand::Dedup { .. } => "dedup",
        JobCommand::Generate(_) => "generate",
        JobCommand::Worker(_) => "worker",
    }
}

/// The lines a dedup run adds to the human summary: what it found and,
/// on the demo corpus, how accurate that is.
fn dedup_summary(report: &drainpipe_actors::RunReport) -> Option<String> {
    let r = &report.result;
    let removed = r.get("duplicates_removed")?;
    // Passes a resumed run loaded from an earlier one took no time here, so
    // a documents/s figure would overstate the speed: the time is given.
    let (ran, loaded) = r["passes"].as_array().map_or((0, 0), |p| {
        let loaded = p.iter().filter(|p| p.get("loaded").is_some()).count();
        (p.len() - loaded, loaded)
    });
    let speed = if loaded > 0 {
        format!(
            "resumed: {loaded} passes loaded, {ran} run in {:.2}s",
            report.elapsed_s
        )
    } else {
        format!(
            "{:.0} documents/s end to end over {ran} passes",
            report.records.read as f64 / report.elapsed_s.max(1e-9)
        )
    };
    let mut s = format!(
        "dedup: {removed} near-duplicates removed in {} clusters ({} candidate pairs, {} verified); {speed}",
        r["clusters"],
        r["candidate_pairs"],
        r["verified_pairs"],
    );
    if let Some(a) = r.get("accuracy") {
        s += &format!(
            "
dedup: precision {:.4}, recall {:.4} against the exact Jaccard ground truth ({} true duplicate pairs, {} found)",
            a["precision"].as_f64().unwrap_or(f64::NAN),
            a["recall"].as_f64().unwrap_or(f64::NAN),
            a["true_pairs"],
            a["predicted_pairs"]
        );
    }
    Some(s)
}

/// Writes the demo corpus as JSON Lines or Parquet.
fn generate(args: &cli::GenerateArgs) -> anyhow::Result<()> {
    use std::io::Write;
    if args.min_words > args.max_words {
        use clap::CommandFactory;
        cli::Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--min-words {} is more than --max-words {}",
                    args.min_words, args.max_words
                ),
            )
            .exit();
    }
    let corpus = drainpipe::corpus::Corpus::new(drainpipe::corpus::CorpusSpec {
        docs: args.docs,
        min_words: args.min_words as usize,
        max_words: args.max_words as usize,
        ..Default::default()
    });
    let write_docs = |out: &mut dyn Write| -> std::io::Result<()> {
        for doc in corpus.docs() {
            let line = serde_json::json!({ "id": doc.index, "text": doc.text });
            writeln!(out, "{line}")?;
        }
        out.flush()
    };
    let parquet = args.format == "parquet";
    if args.output.as_os_str() == "-" {
        if parquet {
            use clap::CommandFactory;
            cli::Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--format parquet writes a file: give --output",
                )
                .exit();
        }
        let stdout = std::io::stdout();
        write_docs(&mut std::io::BufWriter::new(stdout.lock())).context("writing to stdout")?;
        return Ok(());
    }
    let path = &args.output;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut file = OutputDir::create(folder)?.atomic(name)?;
    if parquet {
        let group = usize::try_from(args.row_group).unwrap_or(usize::MAX);
        file = corpus
            .write_parquet(file, group)
            .map_err(|e| drainpipe_actors::OutputError::new(path, std::io::Error::other(e)))?;
    } else {
        write_docs(&mut file).map_err(|e| drainpipe_actors::OutputError::new(path, e))?;
    }
    file.commit()?;
    Ok(())
}

/// Refuses an output folder holding another run's results or an
/// interrupted run's checkpoint, unless `--force` or `--resume` says what to
/// do with them, `--resume` where there is nothing to resume, and an input
/// that is the folder itself. Re-running the same command over its own
/// results is fine.
fn check_output_folder(ctx: &jobs::RunContext, force: bool) -> Result<(), String> {
    let folder = ctx.output.path().display();
    if let Some(input) = ctx.inputs.iter().find(|i| is_output_folder(i, ctx)) {
        // Left out of its own listing, it would be an empty input: a run
        // that reads nothing and exits 0.
        return Err(format!(
            "the input {} is the output folder {folder}: use -o for another folder",
            input.display()
        ));
    }
    if ctx.resume && jobs::resumable_state(&ctx.output).is_none() {
        // Refused before the run, like the other refusals: failing in the
        // job would replace the earlier run's summary with a failed one.
        return Err(format!(
            "no checkpoint in {folder} to resume from: run without --resume, or -o for the folder of the interrupted run"
        ));
    }
    if force || ctx.resume {
        return Ok(());
    }
    if let Some(name) = jobs::resumable_state(&ctx.output) {
        return Err(format!(
            "{folder} holds the checkpoint of an interrupted run ({name}): pass --resume to continue it, --force to start over, or -o for another folder"
        ));
    }
    let previous = std::fs::read(ctx.output.file("summary.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    if let Some(previous) = previous {
        let theirs = previous["fingerprint"].as_str().unwrap_or("unknown");
        if theirs != ctx.fingerprint {
            return Err(format!(
                "{folder} holds results of another run ({theirs}); pass --force to overwrite them or -o for another folder"
            ));
        }
    }
    Ok(())
}

/// Whether the input at `path` is the output folder itself (by any path
/// to it).
fn is_output_folder(path: &std::path::Path, ctx: &jobs::RunContext) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    id(path).is_some_and(|input| id(ctx.output.path()) == Some(input))
}

/// Maps an error that ended the run before a report existed to an exit
/// code: an unusable input is 65, IO problems are 74, anything else is an
/// internal error.
fn error_code(e: &anyhow::Error) -> Code {
    if let Some(code) = usage_or_broker_code(e) {
        return code;
    }
    // An index that cannot be used as asked knows its code.
    if let Some(index) = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<jobs::dedup::index::IndexError>())
    {
        return Code::from_code(index.exit_code()).unwrap_or(Code::Software);
    }
    // A typed failure knows its code.
    if let Some(failure) = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<drainpipe_actors::Failure>())
    {
        return failure.exit_code();
    }
    // An input that is not what the command says (a Parquet file without
    // the text column): a data error, EX_DATAERR.
    let unusable = e.chain().any(|cause| {
        cause
            .downcast_ref::<drainpipe_actors::InputError>()
            .and_then(|input| input.cause.get_ref())
            .is_some_and(|inner| inner.is::<drainpipe::input::UnusableInput>())
    });
    if unusable {
        return Code::TooManyRejects;
    }
    let io = e.chain().any(|cause| {
        cause.is::<std::io::Error>()
            || cause.is::<drainpipe_actors::OutputError>()
            || cause.is::<drainpipe_actors::InputError>()
    });
    if io {
        Code::Io
    } else {
        Code::Software
    }
}

/// The code of an error that says the command must change (a checkpoint
/// that cannot be resumed, a run name in use on the broker: 2) or that the
/// broker cannot be used (69), if it is one.
fn usage_or_broker_code(e: &anyhow::Error) -> Option<Code> {
    use drainpipe_actors::{CheckpointError, PipelineError};
    // A checkpoint that cannot be resumed from: the command asked for
    // something this output folder cannot give.
    let refused_resume = e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<CheckpointError>(),
            Some(
                CheckpointError::Missing(_)
                    | CheckpointError::Codec { .. }
                    | CheckpointError::OtherRun { .. }
            )
        ) || matches!(
            cause.downcast_ref::<PipelineError>(),
            Some(PipelineError::Resume(_))
        )
    });
    if refused_resume {
        return Some(Code::Usage);
    }
    // A run name another live run uses on the broker: like an output
    // folder another run is writing, the command must change.
    let name_in_use = e.chain().any(|cause| {
        use drainpipe_actors::remote::RemoteError;
        matches!(
            cause.downcast_ref::<RemoteError>(),
            Some(RemoteError::RunInUse { .. })
        ) || matches!(
            cause.downcast_ref::<PipelineError>(),
            Some(PipelineError::Remote(RemoteError::RunInUse { .. }))
        )
    });
    if name_in_use {
        return Some(Code::Usage);
    }
    // The broker of a distributed run (or of a worker) cannot be used.
    let unavailable = e.chain().any(|cause| {
        cause.is::<drainpipe_actors::remote::RemoteError>()
            || matches!(
                cause.downcast_ref::<PipelineError>(),
                Some(PipelineError::Remote(_))
            )
    });
    if unavailable {
        return Some(Code::Unavailable);
    }
    None
}

/// A panic in step 1 is caught and becomes a reject carrying the panic's
/// message; printing it from the default hook too would flood stderr, so on
/// processor threads it is logged at debug level instead.
fn quiet_panics_on_processor_threads() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_processor = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("drainpipe-processor"));
        if on_processor {
            log::debug!("caught in step 1 (record rejected): {info}");
        } else {
            default_hook(info);
        }
    }));
}
