//! Dedup's state on disk under a memory budget: sorted runs ([`runs`])
//! and their merge ([`merge`]).
pub mod merge;
pub mod runs;
