//! The built-in jobs.

pub mod vocab;
