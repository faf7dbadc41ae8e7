//! Connecting to the broker and the run's stream.
//!
//! One work-queue stream per pipeline run (one per pass of a job of
//! several passes), named after the run and the job, with two subjects:
//! `work` (batches, pulled by the workers' shared consumer) and `result`
//! (answers, pulled by the pool's consumer). A work-queue stream removes
//! a message once its consumer acks it, so what the broker holds is what
//! is in flight, which the Coordinator's window bounds. Both consumers
//! filter on their own subject, as a work-queue stream requires.
//!
//! A run's stream is removed by the run when it ends. A run killed with
//! `kill -9` cannot: its pool beats ([`Link::beat`]) on a third subject
//! (`alive`, one message kept), and any worker that sees a run's stream
//! stay unchanged, heartbeat included, for longer than the run said it
//! could be away from the broker (in the stream's description) removes it
//! ([`Reaper`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};

use super::claim::{self, Claim};
use super::{Broker, RemoteError, RemoteSettings};

/// Every run's stream name starts with this; workers find runs by it.
pub(crate) const STREAM_PREFIX: &str = "DRAINPIPE-";
/// The workers' consumer, shared by every worker of every host.
pub(crate) const WORKERS: &str = "workers";
/// The pool's consumer of results.
const COORDINATOR: &str = "coordinator";
/// The subject on which a new run announces its stream, so idle workers
/// look for it at once (core NATS: not stored; workers also list streams
/// periodically).
pub(crate) const RUNS_SUBJECT: &str = "drainpipe.runs";
/// Room left in a message for its headers and framing.
pub(crate) const HEADROOM: usize = 4096;
/// How often a run's pool beats.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// A run's stream description begins with this; the seconds after it
/// are how long the run may go without a heartbeat before it counts as
/// dead.
const STALE_AFTER: &str = "drainpipe run; stale after ";

/// Connects to `broker`: a broker that does not answer within its connect
/// deadline is [`RemoteError::Unreachable`]. Once connected, the client
/// reconnects by itself if the connection drops.
pub async fn connect(
    broker: &Broker,
) -> Result<(async_nats::Client, jetstream::Context), RemoteError> {
    let unreachable = |cause: String| RemoteError::Unreachable {
        url: broker.shown_url(),
        cause,
    };
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(broker.connect_timeout)
        .name("drainpipe");
    if let Some(creds) = &broker.creds {
        options = options
            .credentials_file(creds)
            .await
            .map_err(|e| unreachable(format!("credentials file {}: {e}", creds.display())))?;
    }
    if let Some(ca) = &broker.ca {
        // Read here so a file that cannot be used is named; the client
        // reads it again when it connects.
        check_ca_file(ca).map_err(unreachable)?;
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    // Each server of a comma-separated list: the client reads a single
    // string as one URL, and refused a list as an invalid port.
    let servers: Vec<&str> = broker.url.split(',').collect();
    let client = tokio::time::timeout(broker.connect_timeout, options.connect(servers))
        .await
        .map_err(|_| {
            let cause = format!("no answer within {:?}", broker.connect_timeout);
            unreachable(with_tls_hint(&broker.url, cause))
        })?
        .map_err(|e| unreachable(with_tls_hint(&broker.url, e.to_string())))?;
    let js = jetstream::new(client.clone());
    Ok((client, js))
}

/// `Err` naming `ca` when it holds no PEM certificate: the client would
/// otherwise fail the handshake with a message that does not name it.
fn check_ca_file(ca: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read(ca).map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    if text
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        Ok(())
    } else {
        Err(format!(
            "CA file {}: no PEM certificate in it",
            ca.display()
        ))
    }
}

/// A name for one instance of a run, different for each `Link::open`
/// (a process opens a run's stream once): its process id and the time,
/// in hex.
fn instance() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("p{:x}t{micros:x}", std::process::id())
}

/// `cause`, and when the URL asks for TLS, that it does: a server without
/// TLS fails the handshake with a message that does not say so.
fn with_tls_hint(url: &str, cause: String) -> String {
    if url.split(',').any(|u| u.trim_start().starts_with("tls://")) {
        format!("{cause} (the URL asks for TLS: is TLS enabled on the server?)")
    } else {
        cause
    }
}

/// A run's connection to the broker and its stream.
#[derive(Clone)]
pub struct Link {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) stream: String,
    pub(crate) work_subject: String,
    alive_subject: String,
    pub(crate) results: consumer::PullConsumer,
    /// The largest message the broker takes, less [`HEADROOM`].
    pub(crate) max_message: usize,
    pub(crate) url: String,
    /// The run's name, this run's on the broker until it ends.
    claim: Claim,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Connects and makes the stream of run `settings.run` for job `job`
    /// afresh: a stream of that name left by a killed run is removed first,
    /// so none of its batches is taken for this run's; a live run of the
    /// same name is never touched: this run is refused
    /// ([`RemoteError::RunInUse`]).
    pub async fn open(settings: &RemoteSettings, job: &str) -> Result<Link, RemoteError> {
        if !super::valid_run_name(&settings.run) {
            return Err(RemoteError::RunName(settings.run.clone()));
        }
        let (client, js) = connect(&settings.broker).await?;
        let url = settings.broker.shown_url();
        let refused = |what: &str, cause: String| RemoteError::JetStream {
            url: url.clone(),
            what: what.to_owned(),
            cause,
        };
        let job: String = job
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let stream_name = format!("{STREAM_PREFIX}{}-{job}", settings.run);
        // The subjects name this instance of the run: a worker still holding
        // a batch of a killed run of the same name publishes its late answer
        // on the dead instance's subject, which no stream takes, so it can
        // neither pass for this run's answer nor take its message id (the
        // broker drops a second message of the same id as a duplicate: the
        // resumed run then waited for an answer that never came).
        let instance = instance();
        let base = format!("drainpipe.{}.{job}.{instance}", settings.run);
        let (work_subject, result_subject) = (format!("{base}.work"), format!("{base}.result"));
        let alive_subject = format!("{base}.alive");
        // The broker may be away that long before the run stops itself;
        // past it (and several heartbeats) the run is surely dead.
        let stale_after = settings.deadline.max(5 * HEARTBEAT).as_secs();
        // Never a live namesake's stream removed, nor one stream for two.
        let claim = claim_the_name(&js, &settings.run, &url, &instance).await?;
        // Not there is the usual answer; any other refusal shows below.
        let _ = js.delete_stream(&stream_name).await;
        let stream = js
            .create_stream(stream::Config {
                name: stream_name.clone(),
                subjects: vec![
                    work_subject.clone(),
                    result_subject.clone(),
                    alive_subject.clone(),
                ],
                description: Some(format!("{STALE_AFTER}{stale_after}s")),
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| refused(&format!("creating stream {stream_name}"), e.to_string()))?;
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(WORKERS.to_owned()),
                filter_subject: work_subject.clone(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_deliver: settings.max_deliver,
                ..Default::default()
            })
            .await
            .map_err(|e| refused("creating the workers' consumer", e.to_string()))?;
        let results = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(COORDINATOR.to_owned()),
                filter_subject: result_subject,
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .map_err(|e| refused("creating the results' consumer", e.to_string()))?;
        log::info!("run {}: stream {stream_name} made", settings.run);
        // Idle workers list the streams at once; one that misses this finds
        // the run at its next periodic listing.
        if let Err(e) = client
            .publish(RUNS_SUBJECT, stream_name.clone().into())
            .await
        {
            log::debug!("announcing {stream_name}: {e}");
        }
        let max_message = client.server_info().max_payload.saturating_sub(HEADROOM);
        Ok(Link {
            client,
            js,
            stream: stream_name,
            work_subject,
            alive_subject,
            results,
            max_message,
            url,
            claim,
        })
    }

    /// The subject on which the broker says that a batch reached its most
    /// deliveries without an ack.
    pub(crate) fn max_deliveries_subject(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{WORKERS}",
            self.stream
        )
    }

    /// Says the run is alive: one small message on the stream's `alive`
    /// subject, the previous ones purged (nothing consumes them).
    pub(crate) async fn beat(&self) {
        let beat = async {
            let ack = self
                .js
                .publish(self.alive_subject.clone(), bytes::Bytes::new())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())?;
            let stream = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| e.to_string())?;
            stream
                .purge()
                .filter(self.alive_subject.clone())
                .keep(1)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        };
        match tokio::time::timeout(HEARTBEAT, beat).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("heartbeat of {}: {e}", self.stream),
            Err(_) => log::debug!("heartbeat of {}: no answer", self.stream),
        }
    }

    /// Removes the run's stream (at the end of the run, in Releasing):
    /// whatever it still holds belongs to no run any more.
    pub(crate) async fn remove(&self) {
        match tokio::time::timeout(Duration::from_secs(5), self.js.delete_stream(&self.stream))
            .await
        {
            Ok(Ok(_)) => log::debug!("removed stream {}", self.stream),
            Ok(Err(e)) => log::warn!("could not remove stream {}: {e}", self.stream),
            Err(_) => log::warn!("could not remove stream {}: no answer in 5s", self.stream),
        }
        claim::release(&self.js, &self.claim).await;
    }
}

/// Makes run name `run` this run's: refused ([`RemoteError::RunInUse`])
/// when a namesake is alive, or claimed it at the same moment.
async fn claim_the_name(
    js: &jetstream::Context,
    run: &str,
    url: &str,
    instance: &str,
) -> Result<Claim, RemoteError> {
    // The claim seen before the check: the name is taken only if it is
    // still that one, so of two runs that both see no one, one goes on
    // (`claim.rs`).
    let seen = claim::last(js, run)
        .await
        .map_err(|cause| RemoteError::JetStream {
            url: url.to_owned(),
            what: format!("reading the claim of run name {run}"),
            cause,
        })?;
    // A namesake that still beats is another live run's: never removed.
    refuse_a_live_namesake(js, run, url, seen.is_some()).await?;
    claim::take(js, run, seen, url, instance).await
}

/// How long a run that finds streams of its name on the broker watches
/// them for a heartbeat before it takes them for a killed run's: three
/// heartbeats, so a live run, even one that opened its stream just now and
/// has not beaten yet, shows itself.
const NAMESAKE_WATCH: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());

/// The streams of runs named `run` (any job or pass: their subjects are
/// `drainpipe.<run>.*`), each with its heartbeat's subject.
async fn list_namesakes(js: &jetstream::Context, run: &str) -> Vec<(String, String)> {
    use futures::StreamExt as _;
    let subjects = format!("drainpipe.{run}.");
    js.streams()
        .filter_map(|info| async move { info.ok() })
        .filter_map(|info| {
            let alive = info
                .config
                .subjects
                .iter()
                .find(|s| s.starts_with(&subjects) && s.ends_with(".alive"))
                .cloned();
            let stream = info.config.name;
            async move { alive.map(|alive| (stream, alive)) }
        })
        .collect()
        .await
}

/// Refuses run `run` ([`RemoteError::RunInUse`]) when a stream of a run of
/// that name is alive: a new heartbeat appears on it within
/// [`NAMESAKE_WATCH`]. A run resumed under its name after `kill -9` finds
/// its old streams silent and goes on (it removes its own below). With
/// the name `claimed` (by a run killed, or one that is making its stream
/// now), it also watches for a namesake's stream to appear; with no claim
/// and no namesake it does not wait.
async fn refuse_a_live_namesake(
    js: &jetstream::Context,
    run: &str,
    url: &str,
    claimed: bool,
) -> Result<(), RemoteError> {
    let namesakes = list_namesakes(js, run).await;
    if namesakes.is_empty() && !claimed {
        return Ok(());
    }
    let in_use = |why: String| RemoteError::RunInUse {
        run: run.to_owned(),
        why,
        url: url.to_owned(),
    };
    let last_beat = |stream: String, alive: String| async move {
        let stream = js.get_stream_no_info(&stream).await.ok()?;
        let beat = stream.get_last_raw_message_by_subject(&alive).await.ok()?;
        Some(beat.sequence)
    };
    let mut first = Vec::with_capacity(namesakes.len());
    for (stream, alive) in &namesakes {
        first.push(last_beat(stream.clone(), alive.clone()).await);
    }
    log::info!(
        "the run name {run} is claimed on the broker (streams: {}): watching up to {NAMESAKE_WATCH:?} for a heartbeat",
        namesakes.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ")
    );
    let started = Instant::now();
    while started.elapsed() < NAMESAKE_WATCH {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for ((stream, alive), before) in namesakes.iter().zip(&first) {
            // None after a beat: the stream is gone, its run ended.
            let now = last_beat(stream.clone(), alive.clone()).await;
            if now.is_some() && now != *before {
                return Err(in_use(format!("its stream {stream} beats")));
            }
        }
        if claimed {
            let new = list_namesakes(js, run).await;
            if let Some((stream, _)) = new.iter().find(|n| !namesakes.contains(n)) {
                return Err(in_use(format!("its stream {stream} was just made")));
            }
        }
    }
    Ok(())
}

/// Removes the streams of runs that died without removing them: a run's
/// stream that has not changed (its heartbeat included) for longer than
/// its description says a live run can go without one.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    /// Each run's stream: its last sequence number, and since when the
    /// reaper has seen it unchanged.
    seen: HashMap<String, (u64, Instant)>,
}

impl Reaper {
    /// Looks at the runs' streams listed in `infos` and removes the dead.
    pub(crate) async fn sweep(&mut self, js: &jetstream::Context, infos: &[stream::Info]) {
        self.seen
            .retain(|name, _| infos.iter().any(|i| &i.config.name == name));
        for info in infos {
            let Some(stale_after) = stale_after(info) else {
                continue;
            };
            let name = &info.config.name;
            let last = info.state.last_sequence;
            let seen = self
                .seen
                .entry(name.clone())
                .or_insert((last, Instant::now()));
            if seen.0 != last {
                *seen = (last, Instant::now());
                continue;
            }
            if seen.1.elapsed() <= stale_after {
                continue;
            }
            match js.delete_stream(name).await {
                Ok(_) => log::warn!(
                    "removed {name}: its run has given no sign of life for {}s (a coordinator killed without ending its run)",
                    seen.1.elapsed().as_secs()
                ),
                Err(e) => log::debug!("removing the dead run's stream {name}: {e}"),
            }
            self.seen.remove(name);
        }
    }
}

/// How long the run of the stream `info` may go without a heartbeat;
/// `None` for a stream that does not say (not a run's, or an older one's:
/// left alone).
fn stale_after(info: &stream::Info) -> Option<Duration> {
    let description = info.config.description.as_deref()?;
    let seconds = description.strip_prefix(STALE_AFTER)?.strip_suffix('s')?;
    seconds.parse().ok().map(Duration::from_secs)
}
