//! The jobs a worker host (`drainpipe worker`) can run: each job whose
//! step 1 may run remotely, by name, built from the parameters the batch
//! carries.

use drainpipe_actors::remote::Registry;

use super::dedup::passes::kept::pipeline::{KeptStep, REMOTE_NAME as DEDUP_KEPT};
use super::dedup::passes::signatures::{SignatureJob, REMOTE_NAME as DEDUP_SIGNATURES};
use super::dedup::passes::verify::job::{VerifyStep, REMOTE_NAME as DEDUP_VERIFY};
use super::vocab::Vocab;

/// Every built-in job that runs distributed.
pub fn worker_registry() -> Registry {
    let mut registry = Registry::new();
    registry.add("vocab", Vocab::from_params);
    registry.add(DEDUP_SIGNATURES, SignatureJob::from_params);
    registry.add(DEDUP_VERIFY, VerifyStep::from_params);
    registry.add(DEDUP_KEPT, KeptStep::from_params);
    registry
}
