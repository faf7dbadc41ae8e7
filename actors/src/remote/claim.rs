//! Claiming a run's name on the broker, atomically.
//!
//! Watching a namesake's heartbeat (`link.rs`) tells a live run from a
//! killed one, but not two runs started within the same milliseconds:
//! both see no one, and both went on with one stream. So a run also claims
//! its name with a compare-and-set the broker does: one message per name
//! on `drainpipe_claim.<run>`, in a small stream of its own
//! ([`CLAIMS_STREAM`], at most one message per subject), published with
//! `Nats-Expected-Last-Subject-Sequence` set to the claim the run saw
//! before its check (0 for none). Of runs that saw the same claim, the
//! broker takes exactly one; the others are refused (exit 2, naming the
//! name). A run that ends removes its claim, so the next run of the name
//! does not wait; a killed run's claim stays and its successor takes it
//! over once the dead run's streams have stayed silent.

use async_nats::jetstream::{self, context::PublishErrorKind, stream};

use super::RemoteError;

/// The stream of claims. Not a run's stream (workers look only at those
/// named with `link::STREAM_PREFIX`).
pub(crate) const CLAIMS_STREAM: &str = "DRAINPIPE_CLAIMS";
/// A run's claim is the last message on this subject, then its name.
const CLAIMS_SUBJECT: &str = "drainpipe_claim";

/// A name this run holds: its claim's sequence number in the stream.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    subject: String,
    sequence: u64,
}

/// The subject of run `run`'s claim.
fn subject(run: &str) -> String {
    format!("{CLAIMS_SUBJECT}.{run}")
}

/// The claims stream, made if it is not there (by any number of runs at
/// once: the same settings each time).
async fn claims(js: &jetstream::Context) -> Result<stream::Stream, String> {
    let config = stream::Config {
        name: CLAIMS_STREAM.to_owned(),
        subjects: vec![format!("{CLAIMS_SUBJECT}.*")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    match js.get_or_create_stream(config).await {
        Ok(stream) => Ok(stream),
        // Made by another run between our look and our making it.
        Err(e) => js
            .get_stream(CLAIMS_STREAM)
            .await
            .map_err(|again| format!("{e}; then {again}")),
    }
}

/// The sequence number of the last claim of `run`, `None` when nobody
/// holds the name.
pub(crate) async fn last(js: &jetstream::Context, run: &str) -> Result<Option<u64>, String> {
    let stream = claims(js).await?;
    match stream.get_last_raw_message_by_subject(&subject(run)).await {
        Ok(message) => Ok(Some(message.sequence)),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Claims `run`, if its last claim is still `seen` (`None`: unclaimed).
/// [`RemoteError::RunInUse`] when another run claimed it in between.
pub(crate) async fn take(
    js: &jetstream::Context,
    run: &str,
    seen: Option<u64>,
    url: &str,
    instance: &str,
) -> Result<Claim, RemoteError> {
    let subject = subject(run);
    let message = jetstream::message::PublishMessage::build()
        .payload(instance.to_owned().into())
        .expected_last_subject_sequence(seen.unwrap_or(0));
    let refused = |cause: String| RemoteError::JetStream {
        url: url.to_owned(),
        what: format!("claiming the run name {run}"),
        cause,
    };
    let ack = match js.send_publish(subject.clone(), message).await {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    match ack {
        Ok(ack) => Ok(Claim {
            subject,
            sequence: ack.sequence,
        }),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(RemoteError::RunInUse {
            run: run.to_owned(),
            why: "another run claimed that name at the same time".to_owned(),
            url: url.to_owned(),
        }),
        Err(e) => Err(refused(e.to_string())),
    }
}

/// Gives the name back (at the end of the run). Had another run taken
/// it over since, our claim would be gone already (one message per name
/// is kept), and removing it is a no-op.
pub(crate) async fn release(js: &jetstream::Context, claim: &Claim) {
    let release = async {
        let stream = js
            .get_stream(CLAIMS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .delete_message(claim.sequence)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), release).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log::debug!("releasing {}: {e}", claim.subject),
        Err(_) => log::debug!("releasing {}: no answer in 5s", claim.subject),
    }
}
