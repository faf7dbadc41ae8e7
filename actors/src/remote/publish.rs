//! Publishing a batch's parts for the pool: each confirmed by the broker
//! before the next, tried again while the broker is away (restarting),
//! until a deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use super::link::Link;
use super::stats::RemoteStats;

/// Publishes the parts of batch `seq` and waits for the broker to confirm
/// each; a publication not confirmed is tried again each second (the
/// broker may be restarting) until `deadline`. The message id lets the
/// broker drop a part published twice.
pub(crate) async fn publish_all(
    link: Link,
    seq: u64,
    parts: Vec<(u32, bytes::Bytes)>,
    stats: Arc<RemoteStats>,
    deadline: Duration,
) -> Result<Vec<(u32, u64)>, String> {
    let started = std::time::Instant::now();
    let mut stream_seqs = Vec::with_capacity(parts.len());
    for (part, payload) in parts {
        // The work subject names the run's instance: a resumed run's ids
        // never meet a killed one's in the broker's duplicate window.
        let id = format!("{}.{seq}.{part}", link.work_subject);
        stats.parts.fetch_add(1, Ordering::Relaxed);
        stats
            .work_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        loop {
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&id)
                .header(super::wire::PART_HEADER, part.to_string().as_str());
            let confirmed = match link
                .js
                .send_publish(link.work_subject.clone(), message)
                .await
            {
                Ok(ack) => ack.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match confirmed {
                Ok(ack) => {
                    log::trace!("published batch {seq} part {part}");
                    stream_seqs.push((part, ack.sequence));
                    break;
                }
                Err(e) if started.elapsed() < deadline => {
                    log::warn!("publishing batch {seq} part {part}: {e}; trying again");
                    stats.publish_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "the broker did not take part {part} within {}s: {e}",
                        deadline.as_secs()
                    ))
                }
            }
        }
    }
    Ok(stream_seqs)
}
