//! What the Kafka source and sink share: how long a request to the cluster may take, and
//! retrying the calls a run cannot start without while the cluster is unreachable.
//!
//! Invariant: a retried call is attempted for at most [`STARTUP_PATIENCE`], with waits
//! doubling from 100 ms to 5 s, and each failure is logged with what is being retried.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How long one request to the cluster (metadata, offsets) may take.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a run keeps retrying the cluster before it gives up starting: long enough for
/// a broker restart, short enough that a wrong address is reported in time.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(120);

/// The context of consumers that read a partition to its end (`enable.partition.eof`):
/// it logs client errors as the default context does, except the end-of-partition notice
/// they asked for, which librdkafka also reports as a global error.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Calls `attempt` until it succeeds, waiting longer after each failure, for at most
/// [`STARTUP_PATIENCE`]; the last error says what was tried for how long.
pub fn retry_with_backoff<T>(what: &str, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() + wait < STARTUP_PATIENCE => {
                tracing::warn!("{what}: {e:#}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e.context(format!(
                    "gave up {what} after {:?}; check that the Kafka cluster is up and reachable",
                    started.elapsed()
                )))
            }
        }
    }
}

/// The number of partitions of `topic` on the cluster at `brokers`, retrying while the
/// cluster cannot be reached; a topic the cluster does not have is an error that names
/// `setting`, the pipeline setting that named the topic.
pub fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: &str,
    setting: &str,
) -> Result<usize> {
    let metadata = retry_with_backoff(
        &format!("reading the partitions of topic {topic} from {brokers}"),
        || {
            client
                .fetch_metadata(Some(topic), CLUSTER_TIMEOUT)
                .map_err(anyhow::Error::from)
        },
    )?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len()),
        _ => {
            bail!("Kafka at {brokers} has no topic {topic:?}; check {setting}, or create the topic")
        }
    }
}
