//! The RemotePool actor: the processor pool of a distributed run, in the
//! Coordinator's process. It answers `ProcessBatch` with `BatchDone` as
//! the local pool does, only after the Integrator holds the batch, so the
//! Coordinator and the stop protocol cannot tell the two apart.
//!
//! A batch is published as parts that each fit in one broker message
//! (`wire.rs`), and waits (`Waiting`) until every part is answered. Answers
//! come through the run's result consumer as a stream of messages; the
//! first answer of a part is kept, and any later one (a redelivered batch
//! that two workers both answered) is counted and dropped, so the
//! Integrator gets each batch once. The pool acks an answer once it holds
//! it.
//!
//! The broker is watched ([`BrokerState`]): while it is unreachable the
//! stall report names it; once it has been away past the run's deadline
//! the pool runs step 1 of every part it still waits for here, with the
//! run's own job (the records are in the parts it kept), so the
//! Coordinator can drain, take a checkpoint and stop the run (exit 70)
//! without losing a record.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_nats::jetstream;
use futures::channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::failure::Failure;
use crate::integrator::{Deliver, Integrator, RejectedRecord};
use crate::job::Integrate;
use crate::observe::Observed;
use crate::processor::{BatchDone, ProcessBatch};

use super::link::{Link, HEARTBEAT};
use super::pack::{ContextFn, Packer};
use super::publish::publish_all;
use super::stats::RemoteStats;
use super::step::Step;
use super::wire::{unpack, Answer, UNPACKED_LIMIT};

mod away;

/// How often the pool looks whether the Coordinator has let it go.
const LOOK: Duration = Duration::from_millis(20);
/// How often the pool looks whether the broker is reachable.
const BROKER_LOOK: Duration = Duration::from_millis(250);

/// The broker, as the pool sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerState {
    /// Connected.
    Up,
    /// Unreachable since then; the client reconnects by itself.
    Away { since: Instant },
    /// Unreachable past the run's deadline: step 1 runs here from now on,
    /// and the Coordinator stops the run.
    Gone,
}

/// A batch published and not yet fully answered.
struct Waiting<O> {
    records: u64,
    parts: Vec<Option<Answer<O>>>,
    /// Each part's work message, kept (shared with the publication, no
    /// copy) to reject its records should no worker ever answer it.
    work: Vec<Option<bytes::Bytes>>,
    /// The parts' sequence numbers in the stream, once published.
    stream_seqs: Vec<u64>,
    reply: oneshot::Sender<BatchDone>,
}

/// The remote pool actor, generic over the job's step-2 state.
pub struct RemotePool<I: Integrate> {
    link: Link,
    /// Packs batches on blocking threads (`pack.rs`).
    packer: Arc<Packer>,
    integrator: Addr<Integrator<I>>,
    observed: Arc<Observed>,
    /// Boxed: the outputs need not be `Unpin`, the actor must be.
    waiting: HashMap<u64, Box<Waiting<I::Output>>>,
    /// `(batch, part)` of each work message in the stream, by its stream
    /// sequence number (the broker's advisories name messages by it).
    published: HashMap<u64, (u64, u32)>,
    stats: Arc<RemoteStats>,
    /// How long a publication may be retried before the batch is lost.
    publish_deadline: Duration,
    /// The job's context of a part's records.
    context: ContextFn,
    /// The run's own job: step 1 here once the broker is gone.
    local: Arc<dyn Step>,
    broker: BrokerState,
    /// How long the broker may stay away.
    deadline: Duration,
    /// Dropped (after the stream is removed) when the pool has stopped:
    /// the Coordinator's Releasing waits for it, as for the local pool's
    /// threads.
    alive: Option<mpsc::Sender<()>>,
}

/// Everything a [`RemotePool`] is started with.
pub(crate) struct PoolWiring<I: Integrate> {
    pub link: Link,
    pub job: String,
    pub params: Vec<u8>,
    pub integrator: Addr<Integrator<I>>,
    pub observed: Arc<Observed>,
    pub stats: Arc<RemoteStats>,
    pub publish_deadline: Duration,
    pub context: ContextFn,
    pub local: Arc<dyn Step>,
    pub deadline: Duration,
    pub alive: mpsc::Sender<()>,
}

impl<I: Integrate> RemotePool<I>
where
    I::Output: Serialize + DeserializeOwned,
{
    /// Starts the pool on the current arbiter (the System's).
    pub(crate) fn start_pool(w: PoolWiring<I>) -> Recipient<ProcessBatch> {
        RemotePool {
            packer: Arc::new(Packer::new(
                w.job,
                w.params,
                Arc::clone(&w.context),
                w.link.max_message,
            )),
            link: w.link,
            integrator: w.integrator,
            observed: w.observed,
            waiting: HashMap::new(),
            published: HashMap::new(),
            stats: w.stats,
            publish_deadline: w.publish_deadline,
            context: w.context,
            local: w.local,
            broker: BrokerState::Up,
            deadline: w.deadline,
            alive: Some(w.alive),
        }
        .start()
        .recipient()
    }
}

impl<I: Integrate> Actor for RemotePool<I>
where
    I::Output: Serialize + DeserializeOwned,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Answers are read before any batch is handled (`wait`), so none
        // published by this pool can be missed.
        let results = self.link.results.clone();
        let (client, advisories) = (self.link.client.clone(), self.link.max_deliveries_subject());
        ctx.wait(
            async move { (results.messages().await, client.subscribe(advisories).await) }
                .into_actor(self)
                .map(|(messages, advisories), act, ctx| {
                    // Failing either, batches wait; the Coordinator's stall
                    // report and deadline end the run.
                    match messages {
                        Ok(stream) => {
                            ctx.add_stream(stream);
                        }
                        Err(e) => log::error!("cannot read answers from {}: {e}", act.link.stream),
                    }
                    match advisories {
                        Ok(subscriber) => {
                            ctx.add_stream(subscriber);
                        }
                        Err(e) => log::error!("cannot hear of poison batches: {e}"),
                    }
                }),
        );
        ctx.run_interval(LOOK, |_, ctx| {
            // The Coordinator dropped its address (Releasing): stop.
            if !ctx.connected() {
                ctx.stop();
            }
        });
        ctx.run_interval(BROKER_LOOK, |act, ctx| act.watch_broker(ctx));
        // Workers remove the stream of a run that stops beating.
        ctx.run_interval(HEARTBEAT, |act, _| {
            let link = act.link.clone();
            actix::spawn(async move { link.beat().await });
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let (link, alive) = (self.link.clone(), self.alive.take());
        for (seq, _) in self.waiting.drain() {
            log::warn!("batch {seq} was still published when the pool stopped");
        }
        let gone = self.broker == BrokerState::Gone;
        actix::spawn(async move {
            if gone {
                // Not waited for: the workers remove the stream of a run
                // that stopped beating (`Reaper`), once the broker is back.
                log::warn!("the stream {} is left on the broker", link.stream);
            } else {
                link.remove().await;
            }
            drop(alive);
        });
    }
}

impl<I: Integrate> Handler<ProcessBatch> for RemotePool<I>
where
    I::Output: Serialize + DeserializeOwned,
{
    type Result = ResponseFuture<BatchDone>;

    fn handle(
        &mut self,
        ProcessBatch(batch): ProcessBatch,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let (seq, records) = (batch.seq(), batch.len() as u64);
        let (reply, answered) = oneshot::channel();
        if self.broker == BrokerState::Gone {
            self.here(batch, reply, ctx);
            return Box::pin(answered_or_lost(answered, seq, records));
        }
        let packer = Arc::clone(&self.packer);
        let packing = tokio::task::spawn_blocking(move || {
            let packed = packer.pack_parts(&batch);
            (batch, packed)
        });
        ctx.spawn(
            packing
                .into_actor(self)
                .map(move |packed, act, ctx| match packed {
                    // Gone while this batch was packed: step 1 here.
                    Ok((batch, _)) if act.broker == BrokerState::Gone => {
                        act.here(batch, reply, ctx)
                    }
                    Ok((_, packed)) => act.publish(seq, records, packed, reply, ctx),
                    Err(e) => {
                        let why = format!("packing it for the broker ended abnormally: {e}");
                        let _ = reply.send(lost(seq, records, why));
                    }
                }),
        );
        Box::pin(answered_or_lost(answered, seq, records))
    }
}

/// The pool's answer for batch `seq`, once it is given.
async fn answered_or_lost(
    answered: oneshot::Receiver<BatchDone>,
    seq: u64,
    records: u64,
) -> BatchDone {
    answered.await.unwrap_or_else(|_| {
        lost(
            seq,
            records,
            "the remote pool stopped before the batch was answered".into(),
        )
    })
}

/// The answer for a batch whose records are lost (the Coordinator stops
/// the run with exit 70).
fn lost(seq: u64, records: u64, why: String) -> BatchDone {
    BatchDone {
        seq,
        records,
        processed: 0,
        rejected: 0,
        busy: Duration::ZERO,
        delivery: Err(Failure::Lost(format!("batch {seq}: {why}"))),
    }
}

impl<I: Integrate>
    StreamHandler<Result<jetstream::Message, jetstream::consumer::pull::MessagesError>>
    for RemotePool<I>
where
    I::Output: Serialize + DeserializeOwned,
{
    fn handle(
        &mut self,
        item: Result<jetstream::Message, jetstream::consumer::pull::MessagesError>,
        ctx: &mut Context<Self>,
    ) {
        let message = match item {
            Ok(message) => message,
            Err(e) => {
                log::warn!("reading answers from {}: {e}", self.link.stream);
                return;
            }
        };
        self.stats
            .answer_bytes
            .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
        match unpack::<Answer<I::Output>>(&message.payload, UNPACKED_LIMIT) {
            Ok(answer) => {
                // Parts are sized so that their answers fit too (`pack.rs`).
                let work = self
                    .waiting
                    .get(&answer.seq)
                    .and_then(|w| w.work.get(answer.part as usize)?.as_ref().map(|b| b.len()));
                if let Some(work) = work {
                    self.packer.answered(work, message.payload.len());
                }
                self.hold(answer, ctx)
            }
            Err(e) => {
                self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                log::error!("an unreadable answer in {}: {e}", self.link.stream);
            }
        }
        // Held (or useless): the broker may forget it. A lost ack only
        // brings the answer again, which is then dropped as a duplicate.
        actix::spawn(async move {
            if let Err(e) = message.ack().await {
                log::debug!("ack of an answer: {e}");
            }
        });
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The default would stop the pool with batches waiting.
        log::error!("the answers of {} stopped coming", self.link.stream);
    }
}

impl<I: Integrate> RemotePool<I>
where
    I::Output: Serialize + DeserializeOwned,
{
    /// Publishes the packed parts of batch `seq` (the ones packed: a part
    /// rejected while packing is answered already) and waits for their
    /// answers; `reply` answers the Coordinator once the Integrator holds
    /// the batch.
    fn publish(
        &mut self,
        seq: u64,
        records: u64,
        packed: Vec<Result<Vec<u8>, RejectedRecord>>,
        reply: oneshot::Sender<BatchDone>,
        ctx: &mut Context<Self>,
    ) {
        let mut parts = Vec::with_capacity(packed.len());
        let mut work = Vec::with_capacity(packed.len());
        let mut publish = Vec::new();
        for (part, p) in packed.into_iter().enumerate() {
            match p {
                Ok(bytes) => {
                    let bytes = bytes::Bytes::from(bytes);
                    parts.push(None);
                    work.push(Some(bytes.clone()));
                    publish.push((part as u32, bytes));
                }
                Err(rejected) => {
                    work.push(None);
                    parts.push(Some(Answer {
                        seq,
                        part: part as u32,
                        delivered: 0,
                        busy_ns: 0,
                        outputs: Vec::new(),
                        rejects: vec![rejected],
                    }));
                }
            }
        }
        let waiting = Waiting {
            records,
            parts,
            work,
            stream_seqs: Vec::new(),
            reply,
        };
        self.waiting.insert(seq, Box::new(waiting));
        let publishing = publish_all(
            self.link.clone(),
            seq,
            publish,
            Arc::clone(&self.stats),
            self.publish_deadline,
        );
        ctx.spawn(
            publishing
                .into_actor(self)
                .map(move |published, act, ctx| match published {
                    Ok(stream_seqs) => {
                        if let Some(w) = act.waiting.get_mut(&seq) {
                            for &(part, stream_seq) in &stream_seqs {
                                act.published.insert(stream_seq, (seq, part));
                                w.stream_seqs.push(stream_seq);
                            }
                        }
                        act.maybe_complete(seq, ctx);
                    }
                    Err(why) => {
                        if let Some(w) = act.waiting.remove(&seq) {
                            let _ = w.reply.send(lost(seq, records, why));
                        }
                    }
                }),
        );
    }

    /// Keeps the first answer of each part.
    fn hold(&mut self, answer: Answer<I::Output>, ctx: &mut Context<Self>) {
        let seq = answer.seq;
        let Some(slot) = self
            .waiting
            .get_mut(&seq)
            .and_then(|w| w.parts.get_mut(answer.part as usize))
            .filter(|slot| slot.is_none())
        else {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "answer of batch {seq} part {} dropped: answered already",
                answer.part
            );
            return;
        };
        log::trace!("answer of batch {seq} part {} held", answer.part);
        if answer.delivered > 1 {
            self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        *slot = Some(answer);
        self.maybe_complete(seq, ctx);
    }

    /// When every part of batch `seq` is answered: hands the batch to the
    /// Integrator, then answers the Coordinator.
    fn maybe_complete(&mut self, seq: u64, ctx: &mut Context<Self>) {
        if !self
            .waiting
            .get(&seq)
            .is_some_and(|w| w.parts.iter().all(Option::is_some))
        {
            return;
        }
        let w = self.waiting.remove(&seq).expect("looked up above");
        for stream_seq in &w.stream_seqs {
            self.published.remove(stream_seq);
        }
        let (mut outputs, mut rejects, mut busy_ns) = (Vec::new(), Vec::new(), 0u64);
        for answer in w.parts.into_iter().flatten() {
            outputs.extend(answer.outputs);
            rejects.extend(answer.rejects);
            busy_ns += answer.busy_ns;
        }
        let (processed, rejected) = (outputs.len() as u64, rejects.len() as u64);
        let observed = Arc::clone(&self.observed);
        observed.integrator_mailbox.inc();
        let records = w.records;
        let reply = w.reply;
        ctx.spawn(
            self.integrator
                .send(Deliver {
                    seq,
                    outputs,
                    rejects,
                })
                .into_actor(self)
                .map(move |accepted, _, _| {
                    let delivery = match accepted {
                        Ok(result) => result,
                        Err(e) => {
                            observed.integrator_mailbox.dec();
                            Err(Failure::Internal(format!("integrator unreachable: {e}")))
                        }
                    };
                    let _ = reply.send(BatchDone {
                        seq,
                        records,
                        processed,
                        rejected,
                        busy: Duration::from_nanos(busy_ns),
                        delivery,
                    });
                }),
        );
    }
}

/// The part of the broker's max-deliveries advisory the pool reads.
#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

impl<I: Integrate> StreamHandler<async_nats::Message> for RemotePool<I>
where
    I::Output: Serialize + DeserializeOwned,
{
    /// A part the broker delivered the most times allowed, never acked:
    /// its records are rejected with the reason, so the run accounts for
    /// them and goes on.
    fn handle(&mut self, advisory: async_nats::Message, ctx: &mut Context<Self>) {
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&advisory.payload) else {
            log::warn!("an unreadable advisory on {}", advisory.subject);
            return;
        };
        let Some(&(seq, part)) = self.published.get(&advisory.stream_seq) else {
            return;
        };
        let Some(w) = self.waiting.get_mut(&seq) else {
            return;
        };
        let slot = part as usize;
        let (Some(None), Some(Some(work))) = (w.parts.get(slot), w.work.get(slot)) else {
            return;
        };
        let why = format!(
            "batch {seq} part {part} was delivered {} times and no worker answered it (every worker that took it died or gave up): a poison batch",
            advisory.deliveries
        );
        log::error!("{why}; its records are rejected");
        let Some(rejects) = super::wire::rejecting(work, &why) else {
            // Packed by this pool: cannot happen. Were it to, the
            // conservation check reports the records as lost.
            log::error!("batch {seq} part {part}: its own work message cannot be read");
            return;
        };
        self.stats.poisoned.fetch_add(1, Ordering::Relaxed);
        w.parts[slot] = Some(Answer {
            seq,
            part,
            delivered: advisory.deliveries,
            busy_ns: 0,
            outputs: Vec::new(),
            rejects,
        });
        self.maybe_complete(seq, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        log::warn!("advisories of {} stopped coming", self.link.stream);
    }
}
