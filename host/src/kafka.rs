//! What the Kafka source and sink share: how long a request to the cluster may take,
//! retrying the calls a run cannot start without while the cluster is unreachable, and
//! reading partitions to their end (the sink's recovery), and logging librdkafka's errors.
//!
//! Invariants:
//! - A retried call is attempted for at most [`STARTUP_PATIENCE`], with waits doubling
//!   from 100 ms to 5 s, and each failure is logged with what is being retried.
//! - Client and poll errors, which librdkafka repeats every few tens of milliseconds
//!   while the cluster is down, are logged through [`crate::log_limit`]: when they begin,
//!   then once per its quiet period with a count.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::log_limit::Repeats;

/// How long one request to the cluster (metadata, offsets) may take.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a run keeps retrying the cluster before it gives up starting: long enough for
/// a broker restart, short enough that a wrong address is reported in time.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(120);

/// librdkafka's client errors, logged as rdkafka's default context logs them but with
/// repeats limited: while the cluster is down, librdkafka reports the same error every
/// few tens of milliseconds ([`crate::log_limit`]). The end-of-partition notice, which a
/// consumer that asks for it (`enable.partition.eof`) also gets as a global error, is
/// not an error and is not logged.
#[derive(Debug, Default)]
pub struct ClientErrors(Repeats);

impl ClientErrors {
    /// Logs a client error (a [`ClientContext::error`] callback).
    pub fn log(&self, error: &KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        self.0.log(
            format!("librdkafka: {error}: {reason}"),
            Instant::now(),
            |line| tracing::error!("{line}"),
        );
    }
}

/// The context of a consumer that needs no callback of its own: its client errors are
/// logged as [`ClientErrors`] logs them.
#[derive(Debug, Default)]
pub struct LoggingContext(ClientErrors);

impl ClientContext for LoggingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.log(&error, reason);
    }
}

impl ConsumerContext for LoggingContext {}

/// Logs a consumer's poll error, after which it goes on polling (librdkafka reconnects):
/// `what` names the consumer; repeats are limited as [`ClientErrors`]' are.
pub fn log_poll_error(repeats: &Repeats, what: &str, error: &KafkaError) {
    repeats.log(
        format!("{what}: {error}; retrying"),
        Instant::now(),
        |line| tracing::warn!("{line}"),
    );
}

/// Reads `partitions` of `topic` (partition, first offset) to their ends and calls `each`
/// with every message. `client` holds the brokers and any reading settings (an isolation
/// level). The end is where the broker's fetches say a partition ends (not an offsets
/// query, which some brokers answer behind their log). `what` names the reading in
/// messages; the reading gives up after [`STARTUP_PATIENCE`].
pub fn read_to_end(
    mut client: ClientConfig,
    topic: &str,
    partitions: &[(i32, i64)],
    what: &str,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<()> {
    if partitions.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer<LoggingContext> = client
        .set("group.id", "eddy-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(LoggingContext::default())
        .map_err(|e| anyhow::anyhow!("cannot create a consumer for {what}: {e}"))?;
    let mut list = TopicPartitionList::new();
    for &(partition, from) in partitions {
        list.add_partition_offset(topic, partition, Offset::Offset(from.max(0)))?;
    }
    consumer.assign(&list)?;
    let mut reading: Vec<i32> = partitions.iter().map(|&(p, _)| p).collect();
    let started = Instant::now();
    let poll_errors = Repeats::default();
    while !reading.is_empty() {
        if started.elapsed() > STARTUP_PATIENCE {
            bail!("gave up {what} after {STARTUP_PATIENCE:?}; check the Kafka cluster");
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => reading.retain(|&r| r != p),
            Some(Err(e)) => log_poll_error(&poll_errors, what, &e),
            Some(Ok(message)) if reading.contains(&message.partition()) => each(&message),
            Some(Ok(_)) => {}
        }
    }
    Ok(())
}

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
