//! The C allocator: its arenas capped and its mapping threshold fixed
//! before any thread starts, and what it keeps given back between passes.
//!
//! glibc's malloc gives each thread that contends for a lock an arena of
//! its own, up to eight per core, and memory freed into an arena stays
//! there for that arena's next allocations. Dedup's passes allocate on
//! the processors' threads (shingle sets, signatures) and free on the
//! Integrator's or the kept copy's: the freed pages sat in arenas no one
//! allocated from again, and pass 2's peak RSS at 5M documents under
//! `--max-memory 128M` was 194 MB against 151 MB with two arenas
//! (`docs/PERFORMANCE.md`, "Pass 2 under the budget"). Two arenas keep
//! that slack bounded by a constant whatever the thread count. A
//! `MALLOC_ARENA_MAX` in the environment is the user's choice and wins.
//!
//! Even within two arenas, glibc keeps what a pass frees for the next
//! allocations rather than returning it: only the top of the main heap is
//! trimmed, and the pages freed below a live chunk stay resident. Pass 2
//! of a budgeted dedup started where pass 1's peak had left the heap, so
//! [`give_back_freed`] is called between passes, once the pass's large
//! structures are dropped.
//!
//! glibc also raises its mapping threshold each time a mapped block is
//! freed (up to 32 MiB): after pass 1 frees its large buffers, the
//! vectors that double as they grow (the pairs, the ids, the tables)
//! come from the heap, and their freed halves stay there, between live
//! chunks that no trim returns. [`fix_mmap_threshold`] sets the threshold
//! at [`MMAP_THRESHOLD`], which also stops it moving: every block from
//! that size is mapped on its own, grows by `mremap` and is unmapped when
//! freed. At 5M documents under `--max-memory 128M` the peak went from
//! about 120 to 94 MB (`docs/PERFORMANCE.md`, "The allocator's slack").

/// How many arenas the process's allocator may hold.
pub const ARENA_MAX: i32 = 2;

/// Caps glibc's arenas at [`ARENA_MAX`], unless `MALLOC_ARENA_MAX` is
/// set; returns whether the cap was set. Call it before threads start.
/// Elsewhere than on glibc it does nothing.
pub fn cap_arenas() -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    set_arena_max(ARENA_MAX)
}

/// Allocations from this size on are mapped on their own and unmapped
/// when freed.
pub const MMAP_THRESHOLD: i32 = 1 << 20;

/// Fixes glibc's mapping threshold at [`MMAP_THRESHOLD`], unless
/// `MALLOC_MMAP_THRESHOLD_` is set; returns whether it was set. Call it
/// before threads start. Elsewhere than on glibc it does nothing.
pub fn fix_mmap_threshold() -> bool {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return false;
    }
    set_mmap_threshold(MMAP_THRESHOLD)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: i32) -> bool {
    // SAFETY: as for `set_arena_max`: a documented tunable, 1 on success.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_bytes: i32) -> bool {
    false
}

/// Returns to the system the free memory the allocator keeps, in every
/// arena (`malloc_trim`). Call it where a large state has just been
/// freed: it walks the free lists, a few milliseconds. Elsewhere than on
/// glibc it does nothing.
pub fn give_back_freed() {
    trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: `malloc_trim` only releases free pages of the allocator's
    // own heaps; it takes no pointer and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: i32) -> bool {
    // SAFETY: `mallopt` only sets a tunable of the allocator; it is called
    // with a documented parameter and returns 1 on success.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_accepts_the_arena_cap() {
        assert!(set_arena_max(ARENA_MAX), "mallopt(M_ARENA_MAX) refused");
    }

    #[test]
    fn the_allocator_accepts_the_fixed_mmap_threshold() {
        assert!(
            set_mmap_threshold(MMAP_THRESHOLD),
            "mallopt(M_MMAP_THRESHOLD) refused"
        );
    }
}
