//! A worker host: `--workers` step-1 threads fed by twice as many pull
//! loops (slots), each taking one batch at a time from the runs on the
//! broker, running step 1 on it with the same
//! code as a local Processor, publishing the answer and only then acking
//! the batch. A worker that dies holding a batch never acked it, so the
//! broker gives it to another worker after the ack wait; the pool drops
//! whichever answer comes second.
//!
//! Stopping (SIGINT, SIGTERM, SIGHUP: the caller sets `stop`): no slot
//! takes a new batch; each finishes and answers the one it holds; then
//! `run` returns.
//! Every wait is bounded: a fetch expires after [`POLL`] (and is dropped
//! at once when its run's stream is removed, as at the end of each pass of
//! a job of several passes), a publication is retried until
//! [`ANSWER_DEADLINE`] and the batch is then handed back (nak) for another
//! worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, context::PublishErrorKind, AckKind};
use futures::StreamExt;
use tokio::sync::watch;

use super::link::{connect, Reaper, RUNS_SUBJECT, STREAM_PREFIX, WORKERS};
use super::step::{Registry, Step};
use super::wire::{pack, unpack, Answer, Work, PART_HEADER, UNPACKED_LIMIT};
use super::{Broker, RemoteError};

/// How long one fetch waits for a batch before the slot looks at `stop`
/// and at the runs again.
pub const POLL: Duration = Duration::from_millis(500);
/// How long a slot tries to publish an answer before it hands the batch
/// back to the broker.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(60);
/// How often the runs on the broker are listed when no new run is
/// announced (an announcement, on [`RUNS_SUBJECT`], lists them at once; it
/// is not kept by the broker, so a missed one costs this long).
const DISCOVER: Duration = Duration::from_millis(200);

/// How a worker host runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The broker.
    pub broker: Broker,
    /// Batches processed at once (pull loops, each step 1 on a thread of
    /// its own).
    pub workers: usize,
}

/// What a worker did, when it stops.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Batches (parts) answered.
    pub answered: AtomicU64,
    /// Records in them.
    pub records: AtomicU64,
    /// Batches handed back to the broker (answer not published in time).
    pub handed_back: AtomicU64,
    /// Work messages that could not be read, dropped with an error.
    pub unreadable: AtomicU64,
    /// Batches (parts) held now: taken, not yet answered or handed back.
    pub held: AtomicU64,
    /// Answers dropped because their run had ended (its stream removed,
    /// or made anew by a resumed run of the same name) while the batch
    /// was being worked on: nobody waits for them.
    pub abandoned: AtomicU64,
}

/// A job as a batch names it: its name and parameters.
type JobKey = (String, Vec<u8>);

/// What every slot shares.
struct Shared {
    js: jetstream::Context,
    registry: Registry,
    steps: Mutex<HashMap<JobKey, Arc<dyn Step>>>,
    /// The runs' streams, as last listed in full: a slot waiting for a run
    /// is woken when one is found, and a slot whose pending fetch is on a
    /// stream that is no longer listed drops it (`removed`).
    runs: watch::Sender<Vec<String>>,
    /// One permit per step-1 thread (`--workers`). Twice as many slots
    /// pull: while one part is in step 1, the next is fetched and the last
    /// answered, so the broker's round trips overlap the work instead of
    /// adding to it (they were half of a one-slot worker's time).
    compute: tokio::sync::Semaphore,
    stop: Arc<AtomicBool>,
    report: Arc<WorkerReport>,
}

/// Runs a worker host until `stop` is set, then lets every slot finish the
/// batch it holds. `Err` only when the broker cannot be reached at start.
pub fn run(
    settings: WorkerSettings,
    registry: Registry,
    stop: Arc<AtomicBool>,
) -> Result<WorkerReport, RemoteError> {
    let report = Arc::new(WorkerReport::default());
    run_reporting(settings, registry, stop, Arc::clone(&report))?;
    Ok(Arc::into_inner(report).expect("every slot has ended"))
}

/// As [`run`], counting into `report` as it goes, so that another thread
/// (a signal handler saying where the worker is) reads the counts live.
pub fn run_reporting(
    settings: WorkerSettings,
    registry: Registry,
    stop: Arc<AtomicBool>,
    report: Arc<WorkerReport>,
) -> Result<(), RemoteError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("drainpipe-worker-io")
        .enable_all()
        .build()
        .map_err(|e| RemoteError::Unreachable {
            url: settings.broker.shown_url(),
            cause: format!("cannot start the runtime: {e}"),
        })?;
    runtime.block_on(async move {
        let (client, js) = connect(&settings.broker).await?;
        log::info!(
            "worker connected to {} with {} slots",
            settings.broker.shown_url(),
            settings.workers
        );
        let shared = Arc::new(Shared {
            js,
            registry,
            steps: Mutex::default(),
            runs: watch::Sender::new(Vec::new()),
            compute: tokio::sync::Semaphore::new(settings.workers),
            stop,
            report,
        });
        let discover = tokio::spawn(discover(Arc::clone(&shared), client));
        let slots: Vec<_> = (0..2 * settings.workers)
            .map(|slot| tokio::spawn(work(Arc::clone(&shared), slot)))
            .collect();
        for slot in slots {
            if let Err(e) = slot.await {
                log::error!("a worker slot ended abnormally: {e}");
            }
        }
        discover.abort();
        // Awaited so its clone of `shared` is dropped.
        let _ = discover.await;
        Ok(())
    })
}

/// Lists the runs' streams when a run is announced, and every
/// [`DISCOVER`] besides, so runs that start after the worker are found at
/// once (waiting for the next listing cost each run up to 0.7 s), and
/// removes those of runs that died without removing them ([`Reaper`]).
async fn discover(shared: Arc<Shared>, client: async_nats::Client) {
    let mut reaper = Reaper::default();
    let mut announced = match client.subscribe(RUNS_SUBJECT).await {
        Ok(subscriber) => Some(subscriber),
        Err(e) => {
            log::debug!("not hearing of new runs ({e}): listing them every {DISCOVER:?}");
            None
        }
    };
    loop {
        let listed: Vec<_> = shared.js.streams().collect().await;
        // Only a listing in full says which runs there are: a slot drops
        // its fetch on a stream no longer listed, so a stream missing from
        // a broken listing must not count as removed.
        if let Ok(listed) = listed.into_iter().collect::<Result<Vec<_>, _>>() {
            let infos: Vec<_> = listed
                .into_iter()
                .filter(|info| info.config.name.starts_with(STREAM_PREFIX))
                .collect();
            let names: Vec<String> = infos.iter().map(|i| i.config.name.clone()).collect();
            shared.runs.send_if_modified(|runs| {
                let changed = *runs != names;
                *runs = names;
                changed
            });
            reaper.sweep(&shared.js, &infos).await;
        }
        match announced.as_mut() {
            Some(subscriber) => {
                let _ = tokio::time::timeout(DISCOVER, subscriber.next()).await;
            }
            None => tokio::time::sleep(DISCOVER).await,
        }
    }
}

/// One slot: takes a batch from any run, answers it, until stopped.
async fn work(shared: Arc<Shared>, slot: usize) {
    let mut consumers: HashMap<String, PullConsumer> = HashMap::new();
    let mut turn = slot;
    let mut listed = shared.runs.subscribe();
    while !shared.stop.load(Ordering::SeqCst) {
        let runs = listed.borrow_and_update().clone();
        consumers.retain(|stream, _| runs.contains(stream));
        if runs.is_empty() {
            // Woken as soon as a run is found.
            let _ = tokio::time::timeout(POLL, listed.changed()).await;
            continue;
        }
        turn = turn.wrapping_add(1);
        let stream = &runs[turn % runs.len()];
        let consumer = match consumers.get(stream) {
            Some(c) => c.clone(),
            None => match consumer_of(&shared.js, stream).await {
                Some(c) => consumers.entry(stream.clone()).or_insert(c).clone(),
                None => {
                    tokio::time::sleep(POLL / 5).await;
                    continue;
                }
            },
        };
        let fetched = consumer
            .fetch()
            .max_messages(1)
            .expires(POLL)
            .messages()
            .await;
        let mut messages = match fetched {
            Ok(m) => m,
            Err(e) => {
                log::debug!("fetching from {stream}: {e}");
                consumers.remove(stream);
                tokio::time::sleep(POLL / 5).await;
                continue;
            }
        };
        let ack_wait = consumer.cached_info().config.ack_wait;
        let mut removing = shared.runs.subscribe();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(Ok(message)) => answer(&shared, message, ack_wait).await,
                    Some(Err(e)) => log::debug!("fetching from {stream}: {e}"),
                    None => break,
                },
                () = removed(&mut removing, stream) => {
                    log::debug!("{stream} was removed: its pending fetch is dropped");
                    break;
                }
            }
        }
    }
}

/// Resolves once `stream` is no longer among the runs listed. A fetch
/// pending on a stream that is removed gets the server's `409 Consumer
/// Deleted`, which the client yields as an error without ending the
/// fetch: it waited out the fetch's expiry and 5 s more, so each pass of a
/// job of several passes (a stream each) began that late on every slot.
async fn removed(runs: &mut watch::Receiver<Vec<String>>, stream: &str) {
    loop {
        if !runs.borrow_and_update().iter().any(|s| s == stream) {
            return;
        }
        if runs.changed().await.is_err() {
            // The listing has ended (the worker is stopping): never.
            std::future::pending::<()>().await;
        }
    }
}

/// The workers' consumer of `stream`, if the run is still there.
async fn consumer_of(js: &jetstream::Context, stream: &str) -> Option<PullConsumer> {
    let stream = js.get_stream(stream).await.ok()?;
    stream.get_consumer(WORKERS).await.ok()
}

/// Processes one work message: step 1 on a blocking thread while the
/// broker hears, every third of the ack wait, that the batch is in
/// progress; then the answer is published and confirmed, and only then is
/// the batch acked.
async fn answer(shared: &Arc<Shared>, message: jetstream::Message, ack_wait: Duration) {
    let delivered = message.info().map_or(1, |i| i.delivered.max(1) as u64);
    let part = message
        .headers
        .as_ref()
        .and_then(|h| h.get(PART_HEADER))
        .and_then(|v| v.as_str().parse::<u32>().ok());
    let work = unpack::<Work>(&message.payload, UNPACKED_LIMIT);
    let _held = Held::new(&shared.report.held);
    let (Some(part), Ok(work)) = (part, work) else {
        shared.report.unreadable.fetch_add(1, Ordering::Relaxed);
        log::error!("an unreadable batch on {}: dropped", message.subject);
        let _ = message.ack_with(AckKind::Term).await;
        return;
    };
    let (seq, records) = (work.batch.seq, work.batch.len() as u64);
    log::trace!("fetched batch {seq} part {part}");
    log::info!("took batch {seq} part {part} ({records} records, delivery {delivered})");
    fail::fail_point!("worker::took_batch");
    hold_for_a_test(seq, part).await;
    // A worker that dies on batch 2 (tests of poison batches).
    fail::fail_point!(
        "worker::dies_on_batch_2",
        seq == 2,
        |_| std::process::abort()
    );
    let packed = {
        let _permit = shared.compute.acquire().await.expect("never closed");
        let step = shared.step(&work.job, &work.params);
        let job = work.job.clone();
        let context = work.context;
        let computing =
            tokio::task::spawn_blocking(move || match (step, work.batch.into_batch()) {
                (Ok(step), Some(batch)) => step.answer(&batch, &context, part, delivered),
                (Err(why), _) => Err(format!("job {job}: {why}")),
                (_, None) => Err("the batch's records do not fit its bytes".into()),
            });
        in_progress(&message, computing, ack_wait).await
    };
    let packed = match packed {
        Ok(bytes) => bytes,
        Err(why) => {
            // Every record rejected with the reason: accounted for.
            log::error!("batch {seq} part {part}: {why}");
            match rejecting(seq, part, delivered, &message, &why) {
                Some(bytes) => bytes,
                None => return,
            }
        }
    };
    let base = message.subject.as_str();
    let base = base.strip_suffix(".work").unwrap_or(base);
    let subject = format!("{base}.result");
    // The subject names the run's instance (`Link::open`), so the id of a
    // killed run's answer never takes a resumed run's.
    let id = format!("{subject}.{seq}.{part}");
    let stream = message.info().map_or("", |i| i.stream);
    let published = publish_answer(shared, stream, &subject, &id, packed).await;
    if published == Published::Stored {
        // A plain ack, not a double ack: one round trip less per part. An
        // ack the broker never gets only brings the part again, and its
        // second answer is dropped by the pool.
        if let Err(e) = message.ack().await {
            log::warn!("ack of batch {seq} part {part}: {e} (it may be answered twice; the run drops the second)");
        }
        log::trace!("answered batch {seq} part {part}");
        shared.report.answered.fetch_add(1, Ordering::Relaxed);
        shared.report.records.fetch_add(records, Ordering::Relaxed);
    } else if published == Published::RunGone {
        shared.report.abandoned.fetch_add(1, Ordering::Relaxed);
        log::warn!("batch {seq} part {part}: its run has ended; answer dropped");
    } else {
        shared.report.handed_back.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
            log::warn!("handing back batch {seq} part {part}: {e} (the broker redelivers it after the ack wait)");
        }
    }
}

/// With the failpoint `worker::hold_once_file_exists=return(FILE)`: once
/// FILE exists, each batch taken is held, unanswered, until `FILE.release`
/// exists (at most [`ANSWER_DEADLINE`] times ten). Tests that must kill a
/// coordinator while a worker holds one of its batches, and release the
/// answer only once the run's successor is there, use it with FILE the
/// run's checkpoint: events, not delays, whatever the machine's load.
async fn hold_for_a_test(seq: u64, part: u32) {
    let Some(file) = hold_file() else {
        return;
    };
    if !std::path::Path::new(&file).exists() {
        return;
    }
    let release = format!("{file}.release");
    log::info!("batch {seq} part {part}: held until {release} exists");
    let started = Instant::now();
    while !std::path::Path::new(&release).exists() {
        if started.elapsed() > 10 * ANSWER_DEADLINE {
            log::error!("batch {seq} part {part}: {release} never appeared; answering");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The file named by the failpoint `worker::hold_once_file_exists`.
fn hold_file() -> Option<String> {
    fail::fail_point!("worker::hold_once_file_exists", |file| file);
    None
}

/// One batch held, counted in [`WorkerReport::held`] until dropped.
struct Held<'a>(&'a AtomicU64);

impl<'a> Held<'a> {
    fn new(held: &'a AtomicU64) -> Self {
        held.fetch_add(1, Ordering::Relaxed);
        Held(held)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What became of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    /// The broker confirmed it.
    Stored,
    /// Its run's stream no longer takes its subject: the run has ended.
    RunGone,
    /// Not confirmed within [`ANSWER_DEADLINE`].
    NotStored,
}

/// Waits for step 1, telling the broker every third of `ack_wait` that the
/// batch is still being worked on.
async fn in_progress(
    message: &jetstream::Message,
    mut computing: tokio::task::JoinHandle<Result<Vec<u8>, String>>,
    ack_wait: Duration,
) -> Result<Vec<u8>, String> {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    loop {
        match tokio::time::timeout(every, &mut computing).await {
            Ok(Ok(result)) => return result,
            Ok(Err(e)) => return Err(format!("step 1 ended abnormally: {e}")),
            Err(_) => {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    log::warn!("in-progress ack: {e}");
                }
            }
        }
    }
}

/// An answer that rejects every record of the work in `message` with
/// `why` (the job is unknown here, or its parameters unusable).
fn rejecting(
    seq: u64,
    part: u32,
    delivered: u64,
    message: &jetstream::Message,
    why: &str,
) -> Option<Vec<u8>> {
    let rejects = super::wire::rejecting(&message.payload, why)?;
    // No outputs: an empty list reads as a list of any output type.
    let answer: Answer<()> = Answer {
        seq,
        part,
        delivered,
        busy_ns: 0,
        outputs: Vec::new(),
        rejects,
    };
    pack(&answer).ok()
}

/// Publishes an answer and waits for the broker's confirmation, trying
/// again each second until [`ANSWER_DEADLINE`], unless the run's `stream`
/// is gone or no longer takes `subject` (a resumed run made it anew).
async fn publish_answer(
    shared: &Shared,
    stream: &str,
    subject: &str,
    id: &str,
    packed: Vec<u8>,
) -> Published {
    let started = Instant::now();
    let payload = bytes::Bytes::from(packed);
    loop {
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .message_id(id);
        let confirmed = match shared.js.send_publish(subject.to_owned(), message).await {
            Ok(ack) => ack.await.map(|_| ()),
            Err(e) => Err(e),
        };
        match confirmed {
            Ok(()) => return Published::Stored,
            Err(e)
                if e.kind() == PublishErrorKind::StreamNotFound
                    && !takes(&shared.js, stream, subject).await =>
            {
                return Published::RunGone
            }
            Err(e) if started.elapsed() < ANSWER_DEADLINE => {
                log::warn!("publishing answer {id}: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                log::error!("publishing answer {id}: {e}; handing the batch back");
                return Published::NotStored;
            }
        }
    }
}

/// Whether the broker answers that `stream` exists and takes `subject`.
/// A broker that does not answer is taken to keep it (a restarting
/// broker says "no stream" for a while).
async fn takes(js: &jetstream::Context, stream: &str, subject: &str) -> bool {
    match js.get_stream(stream).await {
        Ok(s) => s.cached_info().config.subjects.iter().any(|s| s == subject),
        Err(e) => !matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND),
    }
}

impl Shared {
    /// The job `name` with `params`, built once per process.
    fn step(&self, name: &str, params: &[u8]) -> Result<Arc<dyn Step>, String> {
        let key = (name.to_owned(), params.to_vec());
        if let Some(step) = self.steps.lock().expect("steps lock").get(&key) {
            return Ok(Arc::clone(step));
        }
        let step = self.registry.build(name, params)?;
        self.steps
            .lock()
            .expect("steps lock")
            .insert(key, Arc::clone(&step));
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_fetch_pending_on_a_stream_is_dropped_once_the_stream_is_no_longer_listed() {
        let runs = watch::Sender::new(vec!["DRAINPIPE-a".to_owned(), "DRAINPIPE-b".to_owned()]);
        let mut listed = runs.subscribe();
        let mut gone = Box::pin(removed(&mut listed, "DRAINPIPE-a"));
        assert!(gone.as_mut().now_or_never().is_none(), "still listed");
        // Another run starts: the stream is still there.
        runs.send_replace(vec![
            "DRAINPIPE-a".to_owned(),
            "DRAINPIPE-b".to_owned(),
            "DRAINPIPE-c".to_owned(),
        ]);
        assert!(gone.as_mut().now_or_never().is_none(), "still listed");
        // The pass ends and the next begins: its stream is removed.
        runs.send_replace(vec!["DRAINPIPE-b".to_owned(), "DRAINPIPE-c".to_owned()]);
        assert!(gone.as_mut().now_or_never().is_some(), "dropped");
    }
}
