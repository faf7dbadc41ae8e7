//! Step 1 on other hosts, through a NATS JetStream broker.
//!
//! The Coordinator drives a [`RemotePool`] exactly as it drives the local
//! `SyncArbiter` pool: `ProcessBatch` in, `BatchDone` out once the
//! Integrator holds the batch. The pool publishes each batch (its records
//! inside, compressed) to the run's work-queue stream; `drainpipe worker`
//! processes ([`worker::run`]) pull batches, run the same step-1 code as
//! a local Processor ([`crate::processor`]) and publish the result before
//! they ack; the pool hands each batch's result to the Integrator once,
//! whatever the broker redelivers. `docs/DISTRIBUTED.md` is the contract.
//!
//! - `link.rs`: connecting, the run's stream and its names;
//! - `claim.rs`: claiming a run's name on the broker, atomically;
//! - `wire.rs`: what travels (work and results) and how it is packed;
//! - `pool.rs`: the [`RemotePool`] actor, in the Coordinator's process;
//! - `pack.rs`: packing a batch into work messages, off the pool's thread;
//! - `publish.rs`: publishing a batch's parts, with retries;
//! - `stats.rs`: what the broker did, for `summary.json`;
//! - `step.rs`: a job's step 1 behind an object, for workers that take
//!   batches of any job ([`Registry`]);
//! - `worker.rs`: the worker host's pull loops.

mod claim;
mod link;
mod pack;
mod pool;
mod publish;
mod stats;
mod step;
mod wire;
pub mod worker;

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::job::Job;

pub use link::{connect, Link};
pub(crate) use pack::ContextFn;
pub(crate) use pool::PoolWiring;
pub use pool::RemotePool;
pub use stats::RemoteStats;
pub use step::{Registry, Step, StepFactory, StepOnly};

/// A job whose step 1 can run on worker hosts: its outputs serialize, and
/// it can name itself and its parameters so a worker builds the same job
/// ([`Registry`]).
pub trait RemoteJob: Job<Output: Serialize + DeserializeOwned> {
    /// The job's parameters, as the worker's [`StepFactory`] for
    /// [`RemoteJob::remote_name`] reads them.
    fn params(&self) -> Vec<u8>;

    /// The name workers know the job by in their [`Registry`]; the job's
    /// name unless the job has several kinds of step 1 (the passes of a
    /// job of several passes), which need a name each.
    fn remote_name(&self) -> &str {
        self.name()
    }

    /// What step 1 needs to know about the records at input indices
    /// `records` besides the job's parameters: per-run state about those
    /// records (which are candidates, which were removed), that a worker
    /// has no other way to learn. It travels inside each part of a batch,
    /// so no worker needs a shared filesystem or a message of its own.
    /// Nothing, by default.
    fn context(&self, records: Range<u64>) -> Vec<u8> {
        let _ = records;
        Vec::new()
    }

    /// On a worker: the job that runs step 1 on the records at `records`,
    /// given their [`RemoteJob::context`]; `Ok(None)` (the default) runs
    /// this job itself. `Err` says why the context is unusable (the
    /// part's records are then rejected with the reason).
    fn with_context(&self, records: Range<u64>, context: &[u8]) -> Result<Option<Self>, String>
    where
        Self: Sized,
    {
        let _ = (records, context);
        Ok(None)
    }
}

/// Where the broker is and how to log in.
#[derive(Debug, Clone)]
pub struct Broker {
    /// `nats://host:port` or `tls://host:port` (comma-separated for
    /// several servers).
    pub url: String,
    /// A NATS credentials file (`--nats-creds`).
    pub creds: Option<PathBuf>,
    /// PEM certificates of the authorities the server's certificate is
    /// checked against (`--nats-ca`), in place of the system's; given, the
    /// connection must be TLS whatever the URL's scheme.
    pub ca: Option<PathBuf>,
    /// How long connecting may take before the broker counts as
    /// unreachable.
    pub connect_timeout: Duration,
}

impl Broker {
    /// A broker at `url`, without credentials, trusting the system's
    /// certificate authorities, with a 5 s connect deadline.
    pub fn new(url: impl Into<String>) -> Self {
        Broker {
            url: url.into(),
            creds: None,
            ca: None,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Checks that the URL names servers a client can be pointed at
    /// (scheme, host, port; each of a list), before anything connects: a
    /// malformed URL is the command line's error (exit 2), where an
    /// unreachable broker is the broker's (exit 69). The message shows the
    /// URL without its password.
    pub fn check_url(&self) -> Result<(), String> {
        for one in self.url.split(',') {
            if let Err(e) = one.parse::<async_nats::ServerAddr>() {
                let shown = Broker::new(one).shown_url();
                return Err(format!("--nats {shown:?}: {e}"));
            }
        }
        Ok(())
    }

    /// The URL without any user or password in it, for messages and
    /// `summary.json`.
    pub fn shown_url(&self) -> String {
        self.url
            .split(',')
            .map(|one| match (one.find("://"), one.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}://***@{}", &one[..scheme], &one[at + 1..])
                }
                (None, Some(at)) => format!("***@{}", &one[at + 1..]),
                _ => one.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How a distributed run uses its broker.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// The broker.
    pub broker: Broker,
    /// The run's name: its stream is named after it, so two runs on one
    /// broker need two names. Letters, digits, `-` and `_`.
    pub run: String,
    /// How long a worker may hold a batch without news (it sends
    /// in-progress acks every third of it while it works) before the
    /// broker gives the batch to another worker.
    pub ack_wait: Duration,
    /// How many times the broker delivers a batch at most. Past it the
    /// batch's records are rejected (never lost, never a hang).
    pub max_deliver: i64,
    /// How long the broker may stay unreachable during the run: past it
    /// the run stops, failed (exit 70), after step 1 of the batches it
    /// held ran here and a checkpoint was taken (`--nats-deadline`).
    pub deadline: Duration,
}

impl RemoteSettings {
    /// Settings for run `run` on `broker`: ack wait 30 s, 5 deliveries,
    /// a broker unreachable for 60 s fails the run.
    pub fn new(broker: Broker, run: impl Into<String>) -> Self {
        RemoteSettings {
            broker,
            run: run.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            deadline: Duration::from_secs(60),
        }
    }
}

/// What went wrong with the broker.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The broker could not be reached (exit 69, `EX_UNAVAILABLE`, at the
    /// start of a run).
    #[error("cannot reach the NATS server at {url}: {cause}")]
    Unreachable {
        /// The URL, without credentials.
        url: String,
        /// Why.
        cause: String,
    },
    /// The broker answered, but JetStream refused what the run needs
    /// (it is off: start the server with `-js`).
    #[error("JetStream at {url} refused {what}: {cause} (is the server started with -js?)")]
    JetStream {
        /// The URL, without credentials.
        url: String,
        /// What was asked.
        what: String,
        /// Why.
        cause: String,
    },
    /// A run name that cannot name a stream.
    #[error("run name {0:?}: use 1 to 64 letters, digits, '-' or '_'")]
    RunName(String),
    /// Another run of the same name is alive on the broker (its stream
    /// beats, or it claimed the name at the same moment): its stream is
    /// left alone and this run is refused (exit 2, as for an output folder
    /// another run is writing).
    #[error(
        "--run {run}: a run of that name is alive on the NATS server at {url} ({why}): wait for it to end, or give another --run"
    )]
    RunInUse {
        /// The run's name.
        run: String,
        /// How the live run showed itself (its stream that beats).
        why: String,
        /// The URL, without credentials.
        url: String,
    },
}

/// True when `run` can name a run's stream.
pub fn valid_run_name(run: &str) -> bool {
    (1..=64).contains(&run.len())
        && run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_broker_url_is_never_shown() {
        let b = Broker::new("nats://user:secret@host:4222,tls://tok@other:4223,plain:1");
        let shown = b.shown_url();
        assert!(
            !shown.contains("secret") && !shown.contains("tok@"),
            "{shown}"
        );
        assert_eq!(shown, "nats://***@host:4222,tls://***@other:4223,plain:1");
    }

    #[test]
    fn run_names_are_those_a_stream_name_takes() {
        assert!(valid_run_name("run-1_a"));
        assert!(!valid_run_name("a.b") && !valid_run_name("") && !valid_run_name("a b"));
    }
}
