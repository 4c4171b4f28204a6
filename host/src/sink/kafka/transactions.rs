//! `delivery = "transactional"`: one Kafka transaction per checkpoint epoch.
//!
//! Two transactional producers take turns, `<prefix>-0` and `<prefix>-1`. While one writes
//! the current epoch, the other holds the epoch cut at the last checkpoint, acknowledged
//! and still open, until that checkpoint is durable; then it writes the epoch's commit
//! marker (key `<prefix>`, value the checkpoint id) to the transaction log topic inside the
//! same transaction, and commits. The coordinator completes a checkpoint before it cuts the
//! next one, so two producers are enough and the stream never waits for a commit.
//!
//! librdkafka cannot finish another producer's transaction, so a crash after a checkpoint
//! became durable but before its transaction committed leaves a checkpoint whose output
//! Kafka aborts. Recovery therefore asks [`CommitLog`] before choosing a checkpoint: it
//! initialises both producer ids (open transactions abort, a commit already under way
//! completes, and a zombie still running can no longer commit: it is fenced) and reads the
//! log `read_committed`. The job resumes from the newest checkpoint whose marker committed
//! and replays from there; newer checkpoints are set aside.
//!
//! Invariants: a transaction holds exactly the records between two checkpoint cuts, and
//! its own marker; a checkpoint is resumed from only if its marker committed.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use super::{KafkaSinkConfig, Reports};
use crate::checkpoint::{Section, Snapshot};
use crate::kafka::{read_to_end, retry_with_backoff, topic_partitions, CLUSTER_TIMEOUT};

/// The format version of the transactional sink's checkpoint section.
const SECTION_VERSION: u32 = 1;
/// How long a commit or abort may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The name of the transactional sink's section for `role`.
fn section_name(role: &str) -> String {
    format!("sink/{role}/transactions")
}

/// What a transactional sink's checkpoint section holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochCut {
    /// The transactional id prefix (the commit markers' key).
    prefix: String,
    /// The transaction log topic.
    log: String,
    /// The log's end offset at the cut: this checkpoint's marker comes after it.
    log_from: i64,
}

/// The producer that is not writing the current epoch, and the epoch it holds.
pub(super) struct Transactions {
    spare: BaseProducer<Reports>,
    /// The checkpoint whose epoch `spare` holds, open until that checkpoint completes.
    pending: Option<u64>,
    prefix: String,
    log: String,
    /// The output topic (for messages).
    topic: String,
}

impl Transactions {
    /// Creates both producers of the sink in `role`, initialises them (fencing any
    /// earlier instance) and begins the first epoch on the one returned to write.
    pub(super) fn open(
        config: &KafkaSinkConfig,
        role: &str,
        client: &ClientConfig,
    ) -> Result<(BaseProducer<Reports>, Self)> {
        let prefix = config.transactional_prefix(role);
        let [current, spare] = fence(client, &prefix)?;
        let log = config.transaction_log().to_owned();
        topic_partitions(
            current.client(),
            &config.brokers,
            &log,
            "[sink] transaction_log",
        )
        .context(
            "a transactional Kafka sink writes its commit markers to this topic; create it \
             (one partition, cleanup.policy=compact) or name another with [sink] transaction_log",
        )?;
        current
            .begin_transaction()
            .map_err(|e| transaction_error(e, "begin", &prefix, &config.topic))?;
        Ok((
            current,
            Self {
                spare,
                pending: None,
                prefix,
                log,
                topic: config.topic.clone(),
            },
        ))
    }

    /// Cuts the epoch at checkpoint `id`: `current` (everything it sent acknowledged)
    /// becomes the spare holding epoch `id`, and the spare begins the next epoch.
    pub(super) fn cut(
        &mut self,
        current: &mut BaseProducer<Reports>,
        id: u64,
        role: &str,
    ) -> Result<Section> {
        if let Some(waiting) = self.pending {
            bail!(
                "checkpoint {waiting} never completed, so its Kafka transaction on {} is still \
                 open; the job stops and resumes from its last completed checkpoint",
                self.topic
            );
        }
        let log_from = current
            .client()
            .fetch_watermarks(&self.log, 0, CLUSTER_TIMEOUT)
            .map(|(_, high)| high)
            .with_context(|| format!("cannot read the end of transaction log {}", self.log))?;
        std::mem::swap(current, &mut self.spare);
        self.pending = Some(id);
        current
            .begin_transaction()
            .map_err(|e| transaction_error(e, "begin", &self.prefix, &self.topic))?;
        Section::new(section_name(role), SECTION_VERSION).with_meta(&EpochCut {
            prefix: self.prefix.clone(),
            log: self.log.clone(),
            log_from,
        })
    }

    /// Checkpoint `id` is durable: commits the epoch waiting for it, with its marker.
    pub(super) fn complete(&mut self, id: u64) -> Result<()> {
        let Some(epoch) = self.pending.filter(|&epoch| epoch <= id) else {
            return Ok(());
        };
        let marker = epoch.to_string();
        self.spare
            .send(
                BaseRecord::<str, str>::to(&self.log)
                    .partition(0)
                    .key(&self.prefix)
                    .payload(&marker),
            )
            .map_err(|(e, _)| {
                transaction_error(e, "write the marker of", &self.prefix, &self.topic)
            })?;
        self.spare
            .commit_transaction(COMMIT_TIMEOUT)
            .map_err(|e| transaction_error(e, "commit", &self.prefix, &self.topic))?;
        self.pending = None;
        Ok(())
    }

    /// Aborts what is open (the job is stopping without completing it). A crash leaves
    /// the same to the next start, which aborts it when it fences.
    pub(super) fn abort(&mut self, current: &BaseProducer<Reports>) {
        for (producer, open) in [(current, true), (&self.spare, self.pending.is_some())] {
            if open {
                if let Err(e) = producer.abort_transaction(COMMIT_TIMEOUT) {
                    tracing::warn!("Kafka sink {}: cannot abort a transaction: {e}", self.topic);
                }
            }
        }
        self.pending = None;
    }
}

/// Creates and initialises the producers `<prefix>-0` and `<prefix>-1`. Initialising
/// aborts what an earlier instance left open, and fences it.
fn fence(client: &ClientConfig, prefix: &str) -> Result<[BaseProducer<Reports>; 2]> {
    let make = |n: u32| -> Result<BaseProducer<Reports>> {
        let id = format!("{prefix}-{n}");
        let producer: BaseProducer<Reports> = client
            .clone()
            .set("transactional.id", &id)
            .create_with_context(Reports::default())
            .context("cannot create a transactional Kafka producer; check [sink.properties]")?;
        retry_with_backoff(&format!("initialising Kafka transactions of {id}"), || {
            producer
                .init_transactions(CLUSTER_TIMEOUT)
                .map_err(anyhow::Error::from)
        })?;
        Ok(producer)
    };
    Ok([make(0)?, make(1)?])
}

/// An error of the transaction protocol, said for the operator.
fn transaction_error(e: KafkaError, doing: &str, prefix: &str, topic: &str) -> anyhow::Error {
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    );
    if fenced {
        anyhow::anyhow!(
            "Kafka sink {topic}: another instance with transactional id {prefix} took over and \
             fenced this one ({e}); this instance stops without committing. If no other copy of \
             the job should run, check that two jobs do not share a [sink] transactional_id"
        )
    } else {
        anyhow::anyhow!(
            "Kafka sink {topic}: cannot {doing} the transaction of {prefix}: {e}; the job stops \
             and resumes from its last checkpoint, and the open transaction is aborted"
        )
    }
}

/// Which checkpoints' output a transactional sink committed, read from its transaction
/// log after fencing its earlier producers.
pub struct CommitLog {
    config: KafkaSinkConfig,
    role: String,
    prefix: String,
    /// Checkpoint ids whose markers were read.
    committed: BTreeSet<u64>,
    /// The offset the log was read from (it was read to its end).
    read_from: Option<i64>,
}

impl CommitLog {
    /// Fences the sink's earlier producers, so that what they left open is aborted or
    /// completed before the log is read.
    pub fn open(config: &KafkaSinkConfig, role: &str) -> Result<Self> {
        let prefix = config.transactional_prefix(role);
        fence(&super::client_config(config), &prefix)?;
        Ok(Self {
            config: config.clone(),
            role: role.to_owned(),
            prefix,
            committed: BTreeSet::new(),
            read_from: None,
        })
    }

    /// The output topic.
    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    /// Whether the output of `snapshot`'s epoch committed. A checkpoint with no section of
    /// this sink (written before it was transactional) has nothing to check.
    pub fn committed(&mut self, snapshot: &Snapshot) -> Result<bool> {
        let Some(section) = snapshot.section(&section_name(&self.role)) else {
            return Ok(true);
        };
        let cut: EpochCut = section.meta(SECTION_VERSION)?;
        if cut.prefix != self.prefix || cut.log != self.config.transaction_log() {
            return Ok(true); // written under another id or log: nothing of ours to find
        }
        if self.read_from.is_none_or(|from| cut.log_from < from) {
            self.read(cut.log_from)?;
        }
        Ok(self.committed.contains(&snapshot.id))
    }

    /// Reads the markers keyed by this sink's prefix from `from` to the log's end.
    fn read(&mut self, from: i64) -> Result<()> {
        let log = self.config.transaction_log().to_owned();
        let mut client = super::client_config(&self.config);
        client.set("isolation.level", "read_committed");
        let (prefix, committed) = (self.prefix.as_bytes(), &mut self.committed);
        read_to_end(
            client,
            &log,
            &[(0, from)],
            &format!("reading transaction log {log}"),
            |message| {
                if message.key() != Some(prefix) {
                    return;
                }
                let epoch = message
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|p| p.parse().ok());
                match epoch {
                    Some(epoch) => {
                        committed.insert(epoch);
                    }
                    None => tracing::warn!(
                        "transaction log {log} offset {}: not a checkpoint id; ignored",
                        message.offset()
                    ),
                }
            },
        )?;
        self.read_from = Some(from);
        Ok(())
    }
}
