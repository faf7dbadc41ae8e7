//! A merge in levels: when a band has more runs than the budget has room
//! for readers (a block of [`BLOCK_BYTES`], a read buffer and a batch of
//! entries each), runs are merged into
//! larger ones in the temporary space until few enough are left, so that
//! any budget above the minimum works for any input size.
//!
//! [`reduce`] merges the first `fan_in` runs (fewer, when fewer suffice)
//! into one, put at the end of the list, until at most `fan_in` are left:
//! runs of disjoint records merge in any grouping into the same list, so
//! the final merge gives what one merge of all of them would. Only the
//! excess is merged again, and each entry is read and written once more a
//! level.
//!
//! The runs a checkpoint may name (pass 1's own) stay on disk until the
//! pass's result is written, so that a run killed while it merges still
//! resumes from its checkpoint; the intermediate runs are removed as soon
//! as they are merged in turn (no checkpoint names them). Both are counted
//! in the temporary space's bytes.
//!
//! A merge in levels runs in pass 1's finish, and its time grows with the
//! input: every merge beats the finish's heartbeat as it reads
//! ([`Merge::beating`]), and [`reduce`] beats it once a run written, so
//! the run's deadline for the finish counts from the last of them.

use drainpipe_actors::{Heartbeat, TempSpace};

use super::merge::{EntrySource, Merge, BATCH_BYTES};
use super::runs::{RunError, RunInfo, RunReader, BLOCK_BYTES, READ_BUFFER};
use super::writer::write_run;

/// The bytes of reader buffers one run of a merge holds.
pub const READER_BYTES: u64 = (BLOCK_BYTES + READ_BUFFER + BATCH_BYTES) as u64;

/// The part of the name of an intermediate run, between the list's name
/// and its number.
const MERGED: &str = "merge";

/// The most runs a merge may read at once, with `bytes` for the buffers
/// of `merges` merges at a time, and the descriptors
/// [`descriptor_room`] leaves for all of them: never below 2.
pub fn fan_in(bytes: u64, merges: usize) -> usize {
    let readers = (bytes / READER_BYTES).min(descriptor_room());
    let per_merge = readers / merges.max(1) as u64;
    usize::try_from(per_merge).unwrap_or(usize::MAX).max(2)
}

/// The runs the spills may hold open at once: half the descriptors the
/// process may open (`RLIMIT_NOFILE`'s soft limit, 1,024 on many
/// systems), the other half left to the inputs, the outputs, the
/// runtime and another pass's runs. A budget's room for readers can pass
/// the limit (a gigabyte has room for about 13,000), and a merge that
/// opened that many runs would fail with "too many open files" after the
/// whole input was read.
pub fn descriptor_room() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !got || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit.rlim_cur / 2
}

/// Opens the run `info` in `temp`.
pub fn open(temp: &TempSpace, info: &RunInfo) -> Result<RunReader, RunError> {
    let path = temp.path(&info.name).map_err(|cause| RunError::Io {
        path: temp.folder().join(&info.name),
        cause,
    })?;
    RunReader::open(&path, Some(info))
}

/// The merge of `runs` in `temp`, beating `heartbeat` as it reads.
pub fn merge(temp: &TempSpace, runs: &[RunInfo], heartbeat: &Heartbeat) -> Result<Merge, RunError> {
    let mut merge = Merge::new();
    merge.beating(heartbeat);
    for info in runs {
        merge.add(open(temp, info)?)?;
    }
    Ok(merge)
}

/// True for a run [`reduce`] wrote.
pub fn is_intermediate(info: &RunInfo) -> bool {
    info.name.contains(&format!("-{MERGED}-"))
}

/// Merges runs of the list `runs` (named `list` in its runs' names, in
/// `temp`) until at most `fan_in` are left (see the module's docs), and
/// returns the bytes written. `with_prints`: the runs' entries carry
/// fingerprints. The pass's own runs merged are moved to `aside`: on disk
/// still, to be removed with the rest. Beats `heartbeat` as it goes.
pub fn reduce(
    temp: &TempSpace,
    runs: &mut Vec<RunInfo>,
    fan_in: usize,
    (list, with_prints): (&str, bool),
    aside: &mut Vec<RunInfo>,
    heartbeat: &Heartbeat,
) -> Result<u64, RunError> {
    let mut written = 0;
    let fan_in = fan_in.max(2);
    let mut merged = 0usize;
    while runs.len() > fan_in {
        let take = fan_in.min(runs.len() - fan_in + 1);
        let group: Vec<RunInfo> = runs.drain(..take).collect();
        let mut source = merge(temp, &group, heartbeat)?;
        let mut failed = None;
        let entries = std::iter::from_fn(|| match source.next_entry() {
            Ok(entry) => entry,
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        let name = format!("{list}-{MERGED}-{merged:06}");
        let info = write_run(temp, &name, with_prints, entries)?;
        if let Some(e) = failed {
            return Err(e);
        }
        for done in group {
            if !is_intermediate(&done) {
                aside.push(done);
                continue;
            }
            temp.remove(&done.name, done.bytes)
                .map_err(|cause| RunError::Io {
                    path: temp.folder().join(&done.name),
                    cause,
                })?;
        }
        written += info.bytes;
        runs.push(info);
        merged += 1;
        heartbeat.beat();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::dedup::spill::runs::Entry;

    fn drain(source: &mut dyn EntrySource) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some(e) = source.next_entry().unwrap() {
            out.push(e);
        }
        out
    }

    #[test]
    fn runs_past_the_fan_in_merge_in_levels_into_the_same_list() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempSpace::new(dir.path());
        // 11 runs of disjoint records, keys from a few values.
        let mut runs = Vec::new();
        let mut all = Vec::new();
        for r in 0..11u32 {
            let mut list: Vec<Entry> = (r * 500..r * 500 + 500)
                .map(|record| Entry {
                    key: u64::from(record.wrapping_mul(2_654_435_761) % 37),
                    record,
                    print: u64::from(record) * 5 + 1,
                })
                .collect();
            list.sort_unstable_by_key(Entry::order);
            all.extend_from_slice(&list);
            let name = format!("band-000-run-{r:06}");
            runs.push(write_run(&temp, &name, true, list.into_iter()).unwrap());
        }
        let own: u64 = runs.iter().map(|r| r.bytes).sum();
        all.sort_unstable_by_key(Entry::order);
        assert_eq!(fan_in(10 * READER_BYTES, 2), 5);
        assert_eq!(fan_in(0, 2), 2, "never below 2");
        let mut aside = Vec::new();
        let heartbeat = Heartbeat::default();
        let level = ("band-000", true);
        let written = reduce(&temp, &mut runs, 3, level, &mut aside, &heartbeat).unwrap();
        assert_eq!(aside.len(), 11, "the own runs, set aside");
        assert!(runs.len() <= 3, "{} runs left", runs.len());
        assert!(runs.iter().any(is_intermediate), "merged in levels");
        // Four merges (11 runs, 9, 7, 5, 3), a beat each (too few entries
        // for a merge's own beats).
        assert_eq!(heartbeat.beats(), 4);
        let got = drain(&mut merge(&temp, &runs, &heartbeat).unwrap());
        assert!(got == all, "the merge in levels gives another list");
        // The pass's own runs stay (a checkpoint may name them); of the
        // intermediate runs, only those left in the list are on disk.
        let dir = temp.dir().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let intermediate: Vec<&String> = names.iter().filter(|n| n.contains("-merge-")).collect();
        let left: Vec<&String> = runs
            .iter()
            .filter(|r| is_intermediate(r))
            .map(|r| &r.name)
            .collect();
        assert_eq!(intermediate, left);
        assert_eq!(names.len() - intermediate.len(), 11);
        // Every byte written counts, and more than the own runs were held.
        assert_eq!(temp.bytes_spilled(), own + written);
        assert!(written > own, "two levels at least: {written}");
        assert!(temp.peak_bytes() > own);
        // Few enough runs already: nothing is merged.
        let before = runs.clone();
        let again = reduce(&temp, &mut runs, 3, level, &mut aside, &heartbeat).unwrap();
        assert_eq!((again, &runs), (0, &before));
    }
}
