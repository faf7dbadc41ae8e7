//! Pass 3 of `dedup` without reading the input: when every kept record is
//! a JSON Lines record of an uncompressed file whose place pass 1 noted
//! ([`Spans`]), `kept.jsonl` is made of the kept records' bytes copied
//! from the input files, each run of consecutive kept lines as one range,
//! by the kernel ([`AtomicFile::copy_range`]). The output is that of the
//! pipeline pass ([`super::kept`]) byte for byte: each record's bytes and
//! a `\n`, whatever the input's line terminators.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use drainpipe_actors::AtomicFile;

use crate::input::{format_of, FORMAT_JSONL};

use super::bitset::BitSet;
use super::kept::{Written, KEPT_FILE};
use super::spans::Spans;
use crate::jobs::RunContext;

/// True when [`copy_kept`] can write `kept.jsonl` for these inputs.
pub fn can_copy(spans: &Spans, inputs: &[PathBuf]) -> bool {
    spans.is_complete()
        && spans.inputs().all(|input| {
            inputs
                .get(input as usize)
                .is_some_and(|path| format_of(path) == FORMAT_JSONL)
        })
}

/// A run of consecutive kept lines of one input: `[start, end)`.
struct Run {
    input: u32,
    start: u64,
    end: u64,
}

/// Writes `kept.jsonl` (uncommitted): the records pass 1 `integrated`,
/// less the `removed` ones, copied from the inputs. `None` when a stop was
/// requested before it was done.
pub fn copy_kept(
    ctx: &RunContext,
    spans: &Spans,
    integrated: &BitSet,
    removed: &BitSet,
) -> anyhow::Result<Option<Written>> {
    let mut out = ctx.output.atomic(KEPT_FILE)?;
    let mut files: Vec<Option<File>> = ctx.inputs.iter().map(|_| None).collect();
    let mut run: Option<Run> = None;
    let mut kept = 0u64;
    for index in integrated.iter().filter(|&i| !removed.contains(i)) {
        if kept.is_multiple_of(4096) && ctx.handle.stop_requested() {
            return Ok(None);
        }
        let at = spans
            .get(index)
            .with_context(|| format!("record {index} has no place in the input"))?;
        kept += 1;
        let (start, end) = (at.offset, at.offset + u64::from(at.len));
        match &mut run {
            // The next line, after a one-byte terminator: a `\n`.
            Some(r) if r.input == at.input && r.end + 1 == start => r.end = end,
            _ => {
                if let Some(done) = run.take() {
                    write_run(ctx, &mut out, &mut files, &done)?;
                }
                run = Some(Run {
                    input: at.input,
                    start,
                    end,
                });
            }
        }
    }
    if let Some(done) = run.take() {
        write_run(ctx, &mut out, &mut files, &done)?;
    }
    Ok(Some(Written { file: out, kept }))
}

fn write_run(
    ctx: &RunContext,
    out: &mut AtomicFile,
    files: &mut [Option<File>],
    run: &Run,
) -> anyhow::Result<()> {
    let path = &ctx.inputs[run.input as usize];
    let file = match &mut files[run.input as usize] {
        Some(file) => file,
        slot => slot.insert(
            File::open(path)
                .with_context(|| format!("opening {} to copy its kept records", path.display()))?,
        ),
    };
    out.copy_range(file, run.start, run.end - run.start)
        .and_then(|()| out.write_all(b"\n"))
        .with_context(|| {
            format!(
                "copying bytes {}..{} of {} into {}",
                run.start,
                run.end,
                path.display(),
                out.target().display()
            )
        })
}
