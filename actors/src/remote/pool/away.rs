//! The pool when the broker is away: named in the stall report while the
//! client reconnects; past the run's deadline, step 1 of every part still
//! waiting (and of every later batch) runs here, with the run's own job,
//! so that the Coordinator's drain ends, a checkpoint is taken and the
//! run stops with exit 70, every record accounted for.

use std::time::Instant;

use actix::prelude::*;
use futures::channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::batch::Batch;
use crate::integrator::RejectedRecord;
use crate::job::Integrate;
use crate::observe::BrokerTrouble;
use crate::processor::BatchDone;

use super::super::wire::{unpack, Answer, Work, UNPACKED_LIMIT};
use super::{BrokerState, RemotePool, Waiting};

impl<I: Integrate> RemotePool<I>
where
    I::Output: Serialize + DeserializeOwned,
{
    /// Looks whether the broker is connected; tells the Coordinator (the
    /// stall report, the stop) what it finds.
    pub(super) fn watch_broker(&mut self, ctx: &mut Context<Self>) {
        let connected = matches!(
            self.link.client.connection_state(),
            async_nats::connection::State::Connected
        );
        self.broker = match (self.broker, connected) {
            (BrokerState::Gone, _) => return,
            (BrokerState::Up, true) => return,
            (BrokerState::Away { .. }, true) => {
                log::warn!("the broker at {} is reachable again", self.link.url);
                *self.observed.broker.lock().expect("broker status") = None;
                BrokerState::Up
            }
            (BrokerState::Up, false) => BrokerState::Away {
                since: Instant::now(),
            },
            (away @ BrokerState::Away { .. }, false) => away,
        };
        let BrokerState::Away { since } = self.broker else {
            return;
        };
        let away = since.elapsed();
        let gone = away >= self.deadline;
        let mut message = format!(
            "the broker at {} has been unreachable for {}s",
            self.link.url,
            away.as_secs()
        );
        if gone {
            message.push_str(&format!(
                " (--nats-deadline {}s): the run stops; step 1 of the {} batches it held runs here, and a checkpoint is taken for --resume",
                self.deadline.as_secs(),
                self.waiting.len()
            ));
        }
        *self.observed.broker.lock().expect("broker status") =
            Some(BrokerTrouble { message, gone });
        if gone {
            self.broker = BrokerState::Gone;
            self.run_waiting_here(ctx);
        }
    }

    /// Step 1 here of every part no worker has answered.
    fn run_waiting_here(&mut self, ctx: &mut Context<Self>) {
        let mut seqs: Vec<u64> = self.waiting.keys().copied().collect();
        seqs.sort_unstable();
        for seq in seqs {
            let w = &self.waiting[&seq];
            let unanswered: Vec<(usize, bytes::Bytes)> = (w.parts.iter().zip(&w.work))
                .enumerate()
                .filter_map(|(part, (answer, work))| match (answer, work) {
                    (None, Some(work)) => Some((part, work.clone())),
                    _ => None,
                })
                .collect();
            for (part, work) in unanswered {
                let answer = unpack::<Work>(&work, UNPACKED_LIMIT)
                    .ok()
                    .and_then(|work| Some((work.batch.into_batch()?, work.context)))
                    .and_then(|(batch, context)| self.step_here(&batch, &context, part as u32));
                // Packed by this pool: it reads back. Were it not to, the
                // conservation check reports the part's records as lost.
                if answer.is_none() {
                    log::error!("batch {seq} part {part}: its own work message cannot be read");
                }
                if let Some(w) = self.waiting.get_mut(&seq) {
                    w.parts[part] = answer;
                }
            }
            self.maybe_complete(seq, ctx);
        }
    }

    /// A batch handled once the broker is gone: step 1 here.
    pub(super) fn here(
        &mut self,
        batch: Batch,
        reply: oneshot::Sender<BatchDone>,
        ctx: &mut Context<Self>,
    ) {
        let (seq, records) = (batch.seq(), batch.len() as u64);
        let first = batch.first_index;
        let context = (self.context)(first..first + records);
        let answer = self.step_here(&batch, &context, 0);
        let waiting = Waiting {
            records,
            parts: vec![answer],
            work: vec![None],
            stream_seqs: Vec::new(),
            reply,
        };
        self.waiting.insert(seq, Box::new(waiting));
        self.maybe_complete(seq, ctx);
    }

    /// Step 1 of `batch` with the run's own job; if it cannot run, every
    /// record rejected with the reason.
    fn step_here(&self, batch: &Batch, context: &[u8], part: u32) -> Option<Answer<I::Output>> {
        let answer = self
            .local
            .answer(batch, context, part, 0)
            .and_then(|bytes| unpack(&bytes, UNPACKED_LIMIT).map_err(|e| e.to_string()));
        Some(answer.unwrap_or_else(|why| Answer {
            seq: batch.seq(),
            part,
            delivered: 0,
            busy_ns: 0,
            outputs: Vec::new(),
            rejects: rejected(batch, &format!("step 1 here failed: {why}")),
        }))
    }
}

/// Every record of `batch`, rejected with `why`.
fn rejected(batch: &Batch, why: &str) -> Vec<RejectedRecord> {
    batch
        .records()
        .map(|r| {
            let (index, location) = match r {
                Ok(r) => (r.index, r.location),
                Err(r) => (r.index, r.location),
            };
            RejectedRecord::new(index, location, why.to_owned())
        })
        .collect()
}
