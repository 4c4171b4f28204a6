//! The Kafka sink: each record is produced to one topic, keyed and timestamped from its
//! fields, through an idempotent producer.
//!
//! Delivery (see [`Delivery`]):
//! - `at-least-once`: every checkpoint waits until the broker has acknowledged everything
//!   sent before its cut, so a checkpoint never covers a record the broker may not have.
//! - `deduplicated`: as above, and every record carries its identity in the `eddy-id`
//!   header: `<source partition>:<offset>:<index>` for an event (its index among the
//!   outputs of that input), `w:<hash>` for a window result (a hash of the result, which
//!   holds its key, bounds and value, so each firing of a window differs). The
//!   checkpoint records, per output partition, the offset after the last record it covers.
//!   A recovering sink reads the topic from there to its end, and skips each record whose
//!   identity it finds there, once per copy found (so equal results are counted, not
//!   collapsed).
//!
//! - `transactional`: one Kafka transaction per checkpoint epoch, committed when the
//!   checkpoint completes (see [`transactions`]).
//!
//! Invariants: a delivery failure fails the run (the job resumes from its last checkpoint
//! and nothing is lost); a checkpoint section is written only after every record before
//! the cut was acknowledged.

mod config;
mod transactions;

pub use config::{Delivery, KafkaSinkConfig};
pub use transactions::CommitLog;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Serialize};

use super::{Records, Sink};
use crate::batch::Origin;
use crate::checkpoint::{Checkpointed, Section};
use crate::config::EventFields;
use crate::kafka::{
    read_to_end, retry_with_backoff, topic_partitions, ClientErrors, CLUSTER_TIMEOUT,
};
use crate::source::extract;
use transactions::Transactions;

/// The header that carries a record's identity (`deduplicated`).
pub const IDENTITY_HEADER: &str = "eddy-id";
/// The format version of the sink's checkpoint section.
const SECTION_VERSION: u32 = 1;
/// How long a checkpoint waits for the broker to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a `deduplicated` sink's checkpoint section holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DedupState {
    /// The topic written.
    topic: String,
    /// Per output partition: the offset after the last record the checkpoint covers.
    from: Vec<i64>,
    /// Identities found after a crash that the replay has not produced again yet, with
    /// how many copies remain.
    unmatched: Vec<(Vec<u8>, u32)>,
}

/// Delivery reports, as the producer's callbacks leave them.
#[derive(Debug, Default)]
struct Delivered {
    /// Per partition: the offset after the highest acknowledged record.
    next: Vec<i64>,
    /// Records the broker refused or that timed out, and the first reason.
    failed: u64,
    first_error: Option<String>,
}

/// The producer's callbacks: deliveries, and client errors (logged with repeats
/// limited, so that an outage is not logged every few milliseconds).
#[derive(Debug, Default)]
struct Reports(Mutex<Delivered>, ClientErrors);

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        self.1.log(&error, reason);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(message) => {
                let p = message.partition() as usize;
                if d.next.len() <= p {
                    d.next.resize(p + 1, -1);
                }
                d.next[p] = d.next[p].max(message.offset() + 1);
            }
            Err((e, _)) => {
                d.failed += 1;
                d.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Produces records to a Kafka topic.
pub struct KafkaSink {
    producer: BaseProducer<Reports>,
    config: KafkaSinkConfig,
    /// The fields the key and timestamp come from.
    fields: EventFields,
    /// `deduplicated`: the section's state, kept current.
    dedup: Option<Dedup>,
    /// `transactional`: the producer holding the epoch waiting for its checkpoint.
    transactions: Option<Transactions>,
    role: String,
}

/// A `deduplicated` sink's bookkeeping.
struct Dedup {
    state: DedupState,
    /// Identities still to skip, with their remaining copies.
    skip: HashMap<Vec<u8>, u32>,
    /// The writer's scope, prefixed to identities.
    scope: Option<String>,
    identity: Vec<u8>,
}

impl KafkaSink {
    /// Connects a producer to the cluster for `role` (`sink`, `dead_letter`, `late`).
    /// A `deduplicated` sink resuming from `recover` reads back what the topic received
    /// since that checkpoint. A `transactional` sink fences its earlier instance and
    /// begins its first transaction.
    pub fn open(config: &KafkaSinkConfig, role: &str, recover: Option<&Section>) -> Result<Self> {
        config.check()?;
        let mut client = client_config(config);
        client
            .set("enable.idempotence", "true")
            .set("linger.ms", "1");
        let (producer, transactions) = match config.delivery {
            Delivery::Transactional => {
                let (producer, transactions) = Transactions::open(config, role, &client)?;
                (producer, Some(transactions))
            }
            _ => {
                let producer: BaseProducer<Reports> = client
                    .create_with_context(Reports::default())
                    .with_context(|| {
                        format!(
                            "cannot create a Kafka producer for {}; check [sink] and [sink.properties]",
                            config.brokers
                        )
                    })?;
                (producer, None)
            }
        };
        let partitions = topic_partitions(
            producer.client(),
            &config.brokers,
            &config.topic,
            "[sink] topic",
        )?;
        let dedup = match config.delivery {
            Delivery::Deduplicated => Some(Dedup::open(&producer, config, partitions, recover)?),
            Delivery::AtLeastOnce | Delivery::Transactional => None,
        };
        Ok(Self {
            producer,
            fields: EventFields {
                time_field: config.timestamp_field.clone(),
                key_field: config.key_field.clone(),
                max_future_ms: None,
            },
            config: config.clone(),
            dedup,
            transactions,
            role: role.to_owned(),
        })
    }

    /// Fails if the broker refused or timed out any record.
    fn check_delivered(&self) -> Result<()> {
        let d = self
            .producer
            .context()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if d.failed > 0 {
            bail!(
                "{} records could not be delivered to Kafka topic {} ({}); the job stops \
                 and resumes from its last checkpoint, so none is lost",
                d.failed,
                self.config.topic,
                d.first_error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok(())
    }

    /// Sends one record, waiting while the producer's queue is full.
    fn send(&self, value: &[u8], headers: Option<OwnedHeaders>) -> Result<()> {
        // Only records whose key or timestamp comes from a field are parsed.
        let wants_fields = self.fields.key_field.is_some() || self.fields.time_field.is_some();
        let found = wants_fields
            .then(|| extract(value, &self.fields).ok())
            .flatten();
        let key = found.as_ref().and_then(|f| f.key.as_deref());
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.config.topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(ts) = found.as_ref().and_then(|f| f.timestamp) {
            record = record.timestamp(ts);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                    self.check_delivered()?;
                }
                Err((e, _)) => bail!("cannot produce to Kafka topic {}: {e}", self.config.topic),
            }
        }
    }

    /// Waits until the broker acknowledged everything sent.
    fn flush_all(&self) -> Result<()> {
        let started = Instant::now();
        while self.producer.in_flight_count() > 0 {
            if started.elapsed() > FLUSH_TIMEOUT {
                bail!(
                    "Kafka did not acknowledge {} records to topic {} within {FLUSH_TIMEOUT:?}; \
                     check the cluster",
                    self.producer.in_flight_count(),
                    self.config.topic
                );
            }
            self.producer.poll(Duration::from_millis(5));
            self.check_delivered()?;
        }
        self.producer.poll(Duration::ZERO);
        self.check_delivered()
    }
}

impl Dedup {
    /// Starts deduplicating: from the end of each partition on a fresh run; on recovery,
    /// from the checkpoint's offsets, skipping what the topic received after them.
    fn open(
        producer: &BaseProducer<Reports>,
        config: &KafkaSinkConfig,
        partitions: usize,
        recover: Option<&Section>,
    ) -> Result<Self> {
        let ends: Vec<i64> = (0..partitions as i32)
            .map(|p| {
                retry_with_backoff(&format!("reading the end of {}/{p}", config.topic), || {
                    producer
                        .client()
                        .fetch_watermarks(&config.topic, p, CLUSTER_TIMEOUT)
                        .map(|(_, high)| high)
                        .map_err(anyhow::Error::from)
                })
            })
            .collect::<Result<_>>()?;
        let mut dedup = Self {
            state: DedupState {
                topic: config.topic.clone(),
                from: ends.clone(),
                unmatched: Vec::new(),
            },
            skip: HashMap::new(),
            scope: config.identity_scope.clone(),
            identity: Vec::new(),
        };
        let Some(section) = recover else {
            return Ok(dedup);
        };
        let recovered: DedupState = section.meta(SECTION_VERSION)?;
        if recovered.topic != config.topic {
            return Ok(dedup); // the sink now writes another topic: nothing to skip there
        }
        for (identity, copies) in recovered.unmatched {
            *dedup.skip.entry(identity).or_default() += copies;
        }
        let written = read_identities(config, &recovered.from)?;
        for identity in written {
            *dedup.skip.entry(identity).or_default() += 1;
        }
        for (p, from) in recovered.from.iter().enumerate() {
            if let Some(slot) = dedup.state.from.get_mut(p) {
                *slot = *from;
            }
        }
        tracing::info!(
            "Kafka sink {}: {} records written after the checkpoint will be skipped when \
             the replay produces them again",
            config.topic,
            dedup.skip.values().map(|&n| n as u64).sum::<u64>()
        );
        Ok(dedup)
    }

    /// The identity of record `i` of `records`: from its origin, or its content.
    fn identify(&mut self, records: &Records<'_>, origins: Option<&[Origin]>, i: usize) {
        use std::io::Write;
        self.identity.clear();
        if let Some(scope) = &self.scope {
            self.identity.extend_from_slice(scope.as_bytes());
            self.identity.push(b'/');
        }
        match origins {
            Some(origins) => {
                let origin = origins[i];
                let index = origins[..i]
                    .iter()
                    .rev()
                    .take_while(|o| {
                        o.partition == origin.partition && o.position == origin.position
                    })
                    .count();
                let _ = write!(
                    self.identity,
                    "{}:{}:{index}",
                    origin.partition, origin.position
                );
            }
            None => {
                let hash = xxhash_rust::xxh3::xxh3_128(records.get(i));
                let _ = write!(self.identity, "w:{hash:032x}");
            }
        }
    }

    /// Whether the current identity was written before the crash (and uses up one copy).
    fn already_written(&mut self) -> bool {
        if self.skip.is_empty() {
            return false;
        }
        match self.skip.get_mut(self.identity.as_slice()) {
            Some(copies) => {
                *copies -= 1;
                if *copies == 0 {
                    self.skip.remove(self.identity.as_slice());
                }
                true
            }
            None => false,
        }
    }
}

/// The `eddy-id` headers of the records in `topic` from `from` (per partition) to the
/// partitions' ends. The end is where the broker's fetch says the partition ends, not a
/// separate offsets query: the sink has stopped writing, and a broker whose offsets
/// answer lags its log (tansu 0.6 reports the last batch's first offset) would otherwise
/// hide the last records written.
fn read_identities(config: &KafkaSinkConfig, from: &[i64]) -> Result<Vec<Vec<u8>>> {
    let partitions: Vec<(i32, i64)> = (0..)
        .zip(from.iter().copied())
        .filter(|&(_, from)| from >= 0)
        .collect();
    let mut identities = Vec::new();
    read_to_end(
        client_config(config),
        &config.topic,
        &partitions,
        &format!(
            "reading back Kafka topic {} to deduplicate after a crash",
            config.topic
        ),
        |message| {
            let identity = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == IDENTITY_HEADER));
            if let Some(h) = identity {
                identities.push(h.value.unwrap_or_default().to_vec());
            }
        },
    )?;
    Ok(identities)
}

impl Checkpointed for KafkaSink {
    fn snapshot(&mut self, id: u64, _incremental: bool) -> Result<Option<Section>> {
        self.flush_all()?;
        if let Some(transactions) = &mut self.transactions {
            return transactions
                .cut(&mut self.producer, id, &self.role)
                .map(Some);
        }
        let Some(dedup) = &mut self.dedup else {
            return Ok(None);
        };
        let delivered = self
            .producer
            .context()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (p, &next) in delivered.next.iter().enumerate() {
            if let Some(from) = dedup.state.from.get_mut(p) {
                *from = (*from).max(next);
            }
        }
        drop(delivered);
        dedup.state.unmatched = dedup
            .skip
            .iter()
            .map(|(identity, &copies)| (identity.clone(), copies))
            .collect();
        dedup.state.unmatched.sort();
        Ok(Some(
            Section::new(format!("sink/{}", self.role), SECTION_VERSION).with_meta(&dedup.state)?,
        ))
    }

    fn checkpoint_completed(&mut self, id: u64) -> Result<()> {
        match &mut self.transactions {
            Some(transactions) => transactions.complete(id),
            None => Ok(()),
        }
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, records: Records<'_>, origins: Option<&[Origin]>) -> Result<()> {
        self.check_delivered()?;
        for i in 0..records.len() {
            let headers = match &mut self.dedup {
                Some(dedup) => {
                    dedup.identify(&records, origins, i);
                    if dedup.already_written() {
                        continue;
                    }
                    Some(OwnedHeaders::new().insert(Header {
                        key: IDENTITY_HEADER,
                        value: Some(dedup.identity.as_slice()),
                    }))
                }
                None => None,
            };
            self.send(records.get(i), headers)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        self.check_delivered()
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Err(e) = self.flush_all() {
            tracing::error!("Kafka sink {}: {e:#}", self.config.topic);
        }
        if let Some(transactions) = &mut self.transactions {
            transactions.abort(&self.producer);
        }
    }
}

/// The client settings every connection of the sink shares: the brokers and
/// `[sink.properties]`.
fn client_config(config: &KafkaSinkConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    // A misspelt topic is an error, not a new topic (unless the properties say otherwise).
    client
        .set("bootstrap.servers", &config.brokers)
        .set("allow.auto.create.topics", "false");
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}
