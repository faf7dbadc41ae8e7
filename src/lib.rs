//! drainpipe, the application: input formats, the built-in jobs and the
//! demo corpus, on top of the reusable actors of `drainpipe-actors`.
//!
//! # Layout
//!
//! - [`input`]: readers for JSON Lines, plain text, directories, `.gz` and
//!   `.zst`, stdin; the shared parser that turns a raw record into id + text.
//! - [`jobs`]: the built-in jobs, one module each, and the registry the CLI
//!   uses. A new job is one file here plus one line in the registry. What
//!   every job receives and how it runs a pass is [`jobs::pass`], a leaf
//!   the jobs import.
//! - [`corpus`]: the deterministic demo corpus.
//! - [`allocator`]: the C allocator's arenas capped, and freed memory
//!   given back between passes.
//! - [`baseline`]: the same jobs on plain threads, to measure what the
//!   actors cost (benchmarks only).
//!
//! The binary (`main.rs`, `cli.rs`) is the only place that knows about
//! signals, terminals and exit codes.
//!
//! Modules import one way: no two files use each other's items, directly
//! or around a circle (`tests/guarantees/the_modules_import_one_way.rs`
//! checks `src/` and `actors/src/`, and names a cycle it finds).

pub mod allocator;
pub mod baseline;
pub mod corpus;
pub mod input;
pub mod jobs;
pub mod memory_budget;
pub mod spill_estimate;
