//! The default budget, read from sample `/proc` and `/sys/fs/cgroup`
//! files laid out under a temporary root.

use super::*;

const MEMINFO: &str = "MemTotal:       24683772 kB\nMemFree:         1000000 kB\nMemAvailable:    8388608 kB\nBuffers:          200000 kB\n";

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A root folder holding `files` (path, contents).
fn root(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn v2_mount() -> String {
    "24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n\
     22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        .to_owned()
}

fn budget(dir: &tempfile::TempDir) -> Budget {
    Budget::default_for(Available::read(dir.path()), 40 * MIB)
}

#[test]
fn the_default_memory_budget_follows_the_cgroup_limit() {
    // cgroup v2, a container's namespace: `0::/`, 512 MiB limit, 100 MiB
    // used: 412 MiB of room, less than MemAvailable's 8 GiB.
    let dir = root(&[
        ("proc/meminfo", MEMINFO.into()),
        ("proc/self/cgroup", "0::/\n".into()),
        ("proc/self/mountinfo", v2_mount()),
        ("sys/fs/cgroup/memory.max", format!("{}\n", 512 * MIB)),
        ("sys/fs/cgroup/memory.current", format!("{}\n", 100 * MIB)),
    ]);
    let available = Available::read(dir.path());
    assert_eq!(available.mem_available, Some(8 * GIB));
    assert_eq!(available.cgroup_room, Some(412 * MIB));
    assert_eq!(budget(&dir).bytes, 206 * MIB, "half of the least");

    // Without the limit, MemAvailable rules.
    let dir = root(&[
        ("proc/meminfo", MEMINFO.into()),
        ("proc/self/cgroup", "0::/\n".into()),
        ("proc/self/mountinfo", v2_mount()),
        ("sys/fs/cgroup/memory.max", "max\n".into()),
        ("sys/fs/cgroup/memory.current", format!("{}\n", 100 * MIB)),
    ]);
    assert_eq!(Available::read(dir.path()).cgroup_room, None);
    assert_eq!(budget(&dir).bytes, 4 * GIB);
}

#[test]
fn a_limit_on_an_ancestor_cgroup_counts_too() {
    // The process is in /user.slice/app.scope, unlimited; its parent
    // user.slice has 2 GiB with 1.5 GiB used.
    let dir = root(&[
        ("proc/meminfo", MEMINFO.into()),
        ("proc/self/cgroup", "0::/user.slice/app.scope\n".into()),
        ("proc/self/mountinfo", v2_mount()),
        (
            "sys/fs/cgroup/user.slice/app.scope/memory.max",
            "max\n".into(),
        ),
        (
            "sys/fs/cgroup/user.slice/app.scope/memory.current",
            "1000\n".into(),
        ),
        (
            "sys/fs/cgroup/user.slice/memory.max",
            format!("{}\n", 2 * GIB),
        ),
        (
            "sys/fs/cgroup/user.slice/memory.current",
            format!("{}\n", 1536 * MIB),
        ),
    ]);
    assert_eq!(Available::read(dir.path()).cgroup_room, Some(512 * MIB));
    assert_eq!(budget(&dir).bytes, 256 * MIB);
}

#[test]
fn cgroup_v1_limits_are_read_and_its_unlimited_value_is_no_limit() {
    // As on a host with the v1 memory controller (and a v2 hierarchy
    // without it, mounted beside).
    let mounts = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    let cgroups = "4:memory:/jobs/a\n1:cpu:/\n0::/\n";
    let files = |limit: u64| {
        root(&[
            ("proc/meminfo", MEMINFO.into()),
            ("proc/self/cgroup", cgroups.into()),
            ("proc/self/mountinfo", mounts.into()),
            (
                "sys/fs/cgroup/memory/jobs/a/memory.limit_in_bytes",
                format!("{limit}\n"),
            ),
            (
                "sys/fs/cgroup/memory/jobs/a/memory.usage_in_bytes",
                format!("{}\n", 24 * MIB),
            ),
            (
                "sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n".into(),
            ),
            (
                "sys/fs/cgroup/memory/memory.usage_in_bytes",
                format!("{}\n", 3 * GIB),
            ),
        ])
    };
    let dir = files(1024 * MIB);
    assert_eq!(Available::read(dir.path()).cgroup_room, Some(1000 * MIB));
    assert_eq!(budget(&dir).bytes, 500 * MIB);
    let dir = files(9223372036854771712);
    assert_eq!(Available::read(dir.path()).cgroup_room, None);
    assert_eq!(budget(&dir).bytes, 4 * GIB);
}

#[test]
fn a_cgroup_path_under_the_mounts_own_root_is_found() {
    // Without a cgroup namespace the mount's root and the process's path
    // share a prefix (`/docker/ID` in both).
    let mounts = "24 30 0:22 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let dir = root(&[
        ("proc/meminfo", MEMINFO.into()),
        ("proc/self/cgroup", "0::/docker/abc/worker\n".into()),
        ("proc/self/mountinfo", mounts.into()),
        (
            "sys/fs/cgroup/worker/memory.max",
            format!("{}\n", 300 * MIB),
        ),
        ("sys/fs/cgroup/worker/memory.current", "0\n".into()),
    ]);
    assert_eq!(Available::read(dir.path()).cgroup_room, Some(300 * MIB));
}

#[test]
fn a_default_budget_is_never_below_the_fixed_overhead_nor_made_up() {
    let dir = root(&[("proc/meminfo", "MemAvailable:      40960 kB\n".into())]);
    let b = budget(&dir);
    assert_eq!(
        b.bytes,
        40 * MIB,
        "20 MiB would be half; the overhead is 40"
    );
    assert!(b.origin().contains("or the least budget"), "{}", b.origin());
    let nothing = root(&[]);
    assert_eq!(Available::read(nothing.path()), Available::default());
    assert_eq!(budget(&nothing).bytes, UNKNOWN_AVAILABLE_BUDGET);
}

#[test]
fn a_budget_below_the_fixed_overhead_is_refused_naming_the_least() {
    let settings = Settings {
        workers: 2,
        window: 4,
        ..Settings::default()
    };
    let least = fixed_overhead(&settings);
    assert_eq!(least, 16 * MIB + 5 * 4 * MIB + 5 * MIB);
    let e = Budget::resolve(Some(least - 1), &settings).unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("give at least --max-memory 41M"),
        "{message}"
    );
    assert!(message.contains("the 4 batches in flight"), "{message}");
    let b = Budget::resolve(Some(least), &settings).unwrap();
    assert_eq!((b.bytes, b.source), (least, Source::Given));
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(size(512), "512 B");
    assert_eq!(size(1536), "1.5 KiB");
    assert_eq!(size(62 * MIB), "62.0 MiB");
    assert_eq!(mebibytes_up(MIB + 1), "2M");
}
