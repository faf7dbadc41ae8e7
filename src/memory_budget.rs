//! The run's memory budget (`--max-memory`) and the disk space it may
//! spill to: the default budget from the memory available to the process,
//! the least budget a run accepts, and the up-front estimate of the
//! temporary space a run needs.
//!
//! The budget is for the run's state (dedup's band index, for example):
//! what grows with the input. On top of it the process holds a fixed
//! overhead whatever the input: the batch buffers of the window, the
//! threads, the program itself ([`fixed_overhead`]). A budget below that
//! overhead is refused, so the overhead is never more than the budget and
//! the process's peak stays under twice the budget however small it is.
//!
//! Without `--max-memory` the budget is [`DEFAULT_SHARE`] of the memory
//! available to the process: the smaller of `MemAvailable` in
//! `/proc/meminfo` and the room its cgroups leave (cgroup v2:
//! `memory.max` less `memory.current`; v1: `memory.limit_in_bytes` less
//! `memory.usage_in_bytes`; the least over the process's cgroup and each
//! of its ancestors, found through `/proc/self/cgroup` and
//! `/proc/self/mountinfo`). Half, because the page cache that the input's
//! reads and the spill runs go through needs room too, and other
//! processes may start. Everything is read under a root folder, `/` for
//! the process, a folder of sample files in tests.

use std::path::{Path, PathBuf};

use drainpipe_actors::Settings;

/// The share of the available memory the default budget takes: one half.
pub const DEFAULT_SHARE: (u64, u64) = (1, 2);

/// The budget when the memory available cannot be read (no `/proc`).
pub const UNKNOWN_AVAILABLE_BUDGET: u64 = 1 << 30;

/// The program, the allocator's arenas and the actix runtime: measured at
/// 15 MiB of peak RSS for a small run.
pub const BASE_OVERHEAD: u64 = 16 << 20;

/// What each thread (processors, Source, Integrator, signals) holds
/// besides the batches: its stack and its scratch buffers.
pub const PER_THREAD: u64 = 1 << 20;

/// A cgroup limit at or above this is no limit (v1 writes 2^63 rounded
/// down to a page for "unlimited").
const NO_LIMIT: u64 = 1 << 62;

/// What is known of the memory available to the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Available {
    /// `MemAvailable` of `/proc/meminfo`, in bytes.
    pub mem_available: Option<u64>,
    /// The least room any of the process's cgroups leaves (limit less
    /// usage), when one of them has a limit.
    pub cgroup_room: Option<u64>,
}

impl Available {
    /// What the process has, read from the system.
    pub fn probe() -> Self {
        Self::read(Path::new("/"))
    }

    /// What the files under `root` (laid out as `/proc` and
    /// `/sys/fs/cgroup` are) say.
    pub fn read(root: &Path) -> Self {
        let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
        let mem_available = read("proc/meminfo").and_then(|text| mem_available(&text));
        let cgroup_room = match (read("proc/self/cgroup"), read("proc/self/mountinfo")) {
            (Some(cgroups), Some(mounts)) => cgroup_room(root, &cgroups, &mounts),
            _ => None,
        };
        Available {
            mem_available,
            cgroup_room,
        }
    }

    /// The smaller of the two, when either is known.
    pub fn least(&self) -> Option<u64> {
        match (self.mem_available, self.cgroup_room) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `MemAvailable` in `/proc/meminfo`'s text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// One memory cgroup of the process: where its hierarchy is mounted and
/// the files that hold its limit and usage.
struct MemoryCgroup {
    /// The process's cgroup folder (under `root`).
    leaf: PathBuf,
    /// The hierarchy's mount point (under `root`): the walk up stops there.
    top: PathBuf,
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1).
    limit: &'static str,
    /// `memory.current` (v2) or `memory.usage_in_bytes` (v1).
    usage: &'static str,
}

/// The least room (limit less usage) of the memory cgroups the process is
/// in and of their ancestors, given `/proc/self/cgroup` and
/// `/proc/self/mountinfo`; `None` when none has a limit.
pub fn cgroup_room(root: &Path, cgroups: &str, mountinfo: &str) -> Option<u64> {
    memory_cgroups(root, cgroups, mountinfo)
        .iter()
        .filter_map(|cgroup| {
            let mut least: Option<u64> = None;
            let mut dir = cgroup.leaf.as_path();
            loop {
                if let Some(room) = room_in(dir, cgroup) {
                    least = Some(least.map_or(room, |l| l.min(room)));
                }
                if dir == cgroup.top {
                    break least;
                }
                dir = dir.parent().filter(|p| p.starts_with(&cgroup.top))?;
            }
        })
        .min()
}

/// Limit less usage in one cgroup folder, if it has a limit.
fn room_in(dir: &Path, cgroup: &MemoryCgroup) -> Option<u64> {
    let number = |name: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let limit = number(cgroup.limit).filter(|&l| l < NO_LIMIT)?;
    Some(limit.saturating_sub(number(cgroup.usage).unwrap_or(0)))
}

/// The process's memory cgroups: the v2 one (line `0::PATH`) in the
/// `cgroup2` mount, and the v1 one (a line naming the `memory`
/// controller) in the `cgroup` mount with the `memory` option.
fn memory_cgroups(root: &Path, cgroups: &str, mountinfo: &str) -> Vec<MemoryCgroup> {
    let mut found = Vec::new();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let v2 = controllers.is_empty();
        if !v2 && !controllers.split(',').any(|c| c == "memory") {
            continue;
        }
        let Some((mount_root, mount_point)) = mount_of(mountinfo, v2) else {
            continue;
        };
        // The path is relative to the cgroup namespace's root, which is
        // the mount's root when the namespace mounted it.
        let inside = path.strip_prefix(mount_root.as_str()).unwrap_or(path);
        let top = root.join(mount_point.trim_start_matches('/'));
        let leaf = top.join(inside.trim_start_matches('/'));
        let (limit, usage) = if v2 {
            ("memory.max", "memory.current")
        } else {
            ("memory.limit_in_bytes", "memory.usage_in_bytes")
        };
        found.push(MemoryCgroup {
            leaf,
            top,
            limit,
            usage,
        });
    }
    found
}

/// The root and mount point of the cgroup v2 hierarchy (`v2`) or of the
/// v1 hierarchy holding the memory controller, from `mountinfo`'s lines
/// (`ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [TAGS] - FSTYPE SOURCE SUPER_OPTIONS`).
fn mount_of(mountinfo: &str, v2: bool) -> Option<(String, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (fstype, options) = (*right.first()?, *right.get(2).unwrap_or(&""));
        let wanted = if v2 {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && options.split(',').any(|o| o == "memory")
        };
        if !wanted {
            return None;
        }
        Some((unescape(left.get(3)?), unescape(left.get(4)?)))
    })
}

/// `mountinfo` writes a space, tab, newline and backslash in a path as
/// `\040`, `\011`, `\012` and `\134`.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The memory the process holds whatever its input, with `settings`:
/// [`BASE_OVERHEAD`], a buffer of `max_batch_bytes` for each batch in
/// flight and the one being filled, and [`PER_THREAD`] for each processor
/// and the three threads besides them.
pub fn fixed_overhead(settings: &Settings) -> u64 {
    let batches = settings.window as u64 + 1;
    let threads = settings.workers as u64 + 3;
    BASE_OVERHEAD + batches * settings.max_batch_bytes as u64 + threads * PER_THREAD
}

/// Where a run's budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--max-memory`.
    Given,
    /// [`DEFAULT_SHARE`] of what was available (at least the fixed
    /// overhead).
    Default(Available),
}

/// A run's memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The bytes the run's state may hold.
    pub bytes: u64,
    /// The fixed overhead on top of it ([`fixed_overhead`]).
    pub overhead: u64,
    /// Where it came from.
    pub source: Source,
}

/// A `--max-memory` below the fixed overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall {
    /// The budget asked for.
    pub given: u64,
    /// The least budget accepted: the fixed overhead.
    pub least: u64,
    /// Bytes of each batch buffer.
    pub batch_bytes: u64,
    /// Batches in flight.
    pub window: usize,
    /// Threads counted.
    pub threads: usize,
}

impl std::fmt::Display for TooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--max-memory {} is below the least budget of this run, {} ({} bytes): the memory \
             it holds whatever its input (a buffer of {} for each of the {} batches in flight \
             and the one being filled, {} threads, the program); give at least --max-memory {}, \
             or fewer --window or --workers",
            size(self.given),
            size(self.least),
            self.least,
            size(self.batch_bytes),
            self.window,
            self.threads,
            mebibytes_up(self.least)
        )
    }
}

impl std::error::Error for TooSmall {}

impl Budget {
    /// The budget `given` (`--max-memory`) or the default, checked against
    /// the fixed overhead of `settings`.
    pub fn resolve(given: Option<u64>, settings: &Settings) -> Result<Budget, TooSmall> {
        let overhead = fixed_overhead(settings);
        match given {
            Some(bytes) if bytes < overhead => Err(TooSmall {
                given: bytes,
                least: overhead,
                batch_bytes: settings.max_batch_bytes as u64,
                window: settings.window,
                threads: settings.workers + 3,
            }),
            Some(bytes) => Ok(Budget {
                bytes,
                overhead,
                source: Source::Given,
            }),
            None => Ok(Self::default_for(Available::probe(), overhead)),
        }
    }

    /// The default budget given what is `available`: its share, never
    /// below the fixed overhead.
    pub fn default_for(available: Available, overhead: u64) -> Budget {
        let (num, den) = DEFAULT_SHARE;
        let share = available
            .least()
            .map_or(UNKNOWN_AVAILABLE_BUDGET, |a| a / den * num);
        Budget {
            bytes: share.max(overhead),
            overhead,
            source: Source::Default(available),
        }
    }

    /// Where the budget came from, in words (`--explain`, `summary.json`).
    pub fn origin(&self) -> String {
        let Source::Default(a) = self.source else {
            return "--max-memory".to_owned();
        };
        let known = |v: Option<u64>| v.map_or_else(|| "unknown".to_owned(), size);
        let cgroup = a.cgroup_room.map_or_else(|| "no limit".to_owned(), size);
        let floor = if Some(self.bytes) == a.least().map(|l| l / DEFAULT_SHARE.1 * DEFAULT_SHARE.0)
        {
            ""
        } else {
            ", or the least budget when that is less"
        };
        format!(
            "default: half of the memory available to the process{floor} (MemAvailable {}, cgroup room {cgroup})",
            known(a.mem_available)
        )
    }
}

/// A byte count as people read it: `512 B`, `1.5 KiB`, `62.0 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `bytes` rounded up to whole MiB, as `--max-memory` takes it (`62M`).
fn mebibytes_up(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests;
