//! Connecting to the broker and the run's stream.
//!
//! One work-queue stream per pipeline run (one per pass of a job of
//! several passes), named after the run and the job, with two subjects:
//! `work` (batches, pulled by the workers' shared consumer) and `result`
//! (answers, pulled by the pool's consumer). A work-queue stream removes
//! a message once its consumer acks it, so what the broker holds is what
//! is in flight, which the Coordinator's window bounds. Both consumers
//! filter on their own subject, as a work-queue stream requires.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::{Broker, RemoteError, RemoteSettings};

/// Every run's stream name starts with this; workers find runs by it.
pub(crate) const STREAM_PREFIX: &str = "DRAINPIPE-";
/// The workers' consumer, shared by every worker of every host.
pub(crate) const WORKERS: &str = "workers";
/// The pool's consumer of results.
const COORDINATOR: &str = "coordinator";
/// Room left in a message for its headers and framing.
pub(crate) const HEADROOM: usize = 4096;

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
    let client = tokio::time::timeout(broker.connect_timeout, options.connect(broker.url.as_str()))
        .await
        .map_err(|_| unreachable(format!("no answer within {:?}", broker.connect_timeout)))?
        .map_err(|e| unreachable(e.to_string()))?;
    let js = jetstream::new(client.clone());
    Ok((client, js))
}

/// A run's connection to the broker and its stream.
#[derive(Clone)]
pub struct Link {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) stream: String,
    pub(crate) work_subject: String,
    pub(crate) results: consumer::PullConsumer,
    /// The largest message the broker takes, less [`HEADROOM`].
    pub(crate) max_message: usize,
    pub(crate) url: String,
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
    /// so none of its batches is taken for this run's.
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
        let base = format!("drainpipe.{}.{job}", settings.run);
        let (work_subject, result_subject) = (format!("{base}.work"), format!("{base}.result"));
        // Not there is the usual answer; any other refusal shows below.
        let _ = js.delete_stream(&stream_name).await;
        let stream = js
            .create_stream(stream::Config {
                name: stream_name.clone(),
                subjects: vec![work_subject.clone(), result_subject.clone()],
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
        let max_message = client.server_info().max_payload.saturating_sub(HEADROOM);
        Ok(Link {
            client,
            js,
            stream: stream_name,
            work_subject,
            results,
            max_message,
            url,
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
    }
}
