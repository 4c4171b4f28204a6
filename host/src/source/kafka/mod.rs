//! The Kafka source: each partition of each topic is one source partition, with its own
//! position (the next offset), watermark and idleness.
//!
//! Invariants: source partition numbers follow the topics' order in the config and the
//! partitions' order within a topic, so a checkpoint names the same partition on every
//! run; a position holds a concrete offset for every partition from the moment the
//! partitions are assigned (never "latest"), so a checkpoint taken before a partition has
//! delivered anything resumes exactly where the run started; offsets are committed to the
//! group only for checkpoints that completed.

mod config;
mod feed;

pub use config::{KafkaSourceConfig, StartAt};
pub use feed::{Commit, Fetched, PartitionFeed};

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{Ingest, Source, SourcePosition, SourceRecord, SourceState};
use crate::kafka::{
    log_poll_error, retry_with_backoff, topic_partitions, LoggingContext, CLUSTER_TIMEOUT,
};
use crate::log_limit::Repeats;

/// The next offset to read of one partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition within the topic.
    pub partition: i32,
    /// The next offset to read.
    pub next: i64,
}

/// One partition read, in source-partition order.
#[derive(Debug)]
struct Assigned {
    topic_index: usize,
    partition: i32,
    next: i64,
    /// With `bounded`: the end offset at start; the partition is done once `next` reaches it.
    end: Option<i64>,
}

/// Reads Kafka topics through one consumer that is assigned every partition.
pub struct KafkaSource {
    consumer: BaseConsumer<LoggingContext>,
    /// The poll errors logged, so that an outage is not logged every poll.
    poll_errors: Repeats,
    config: KafkaSourceConfig,
    /// Every partition, in source-partition order.
    partitions: Vec<Assigned>,
    /// The first source partition of each topic.
    topic_base: Vec<u32>,
    /// Offsets a checkpoint recorded, applied when the partitions are assigned.
    resume: Option<Vec<PartitionOffset>>,
    /// Whether the consumer has been assigned its partitions (on the first poll).
    assigned: bool,
    /// Records of a partition reached past its bounded end are not read again.
    remaining: usize,
}

impl KafkaSource {
    /// Connects to the cluster and finds the topics' partitions, retrying with backoff
    /// while the cluster cannot be reached.
    pub fn open(config: &KafkaSourceConfig) -> Result<Self> {
        config.check()?;
        let reset = if config.start == "latest" {
            "latest"
        } else {
            "earliest"
        };
        let mut client = config.client_config(reset);
        client.set("enable.partition.eof", "false");
        let consumer: BaseConsumer<LoggingContext> = client
            .create_with_context(LoggingContext::default())
            .with_context(|| {
                format!(
                    "cannot create a Kafka consumer for {}; check [source] and [source.properties]",
                    config.brokers
                )
            })?;
        let mut partitions = Vec::new();
        let mut topic_base = Vec::new();
        for (topic_index, topic) in config.topics.iter().enumerate() {
            let count =
                topic_partitions(consumer.client(), &config.brokers, topic, "[source] topics")?;
            topic_base.push(partitions.len() as u32);
            partitions.extend((0..count as i32).map(|partition| Assigned {
                topic_index,
                partition,
                next: -1,
                end: None,
            }));
        }
        Ok(Self {
            consumer,
            poll_errors: Repeats::default(),
            config: config.clone(),
            remaining: partitions.len(),
            partitions,
            topic_base,
            resume: None,
            assigned: false,
        })
    }

    /// The source partition of `partition` of `topic`, if this source reads it.
    fn index_of(&self, topic: &str, partition: i32) -> Option<usize> {
        let t = self.config.topics.iter().position(|name| name == topic)?;
        let index = self.topic_base[t] as usize + usize::try_from(partition).ok()?;
        (self.partitions.get(index)?.topic_index == t).then_some(index)
    }

    /// Resolves every partition's starting offset (from the checkpoint, or `start`), and
    /// with `bounded` its end, then assigns them all to the consumer.
    fn assign(&mut self) -> Result<()> {
        let start = self.config.start_at()?;
        let committed = match (start, &self.resume) {
            (StartAt::Committed, None) => Some(self.committed_offsets()?),
            _ => None,
        };
        let by_time = match (start, &self.resume) {
            (StartAt::Timestamp(ms), None) => Some(self.offsets_for_time(ms)?),
            _ => None,
        };
        let mut list = TopicPartitionList::new();
        for i in 0..self.partitions.len() {
            let topic = self.config.topics[self.partitions[i].topic_index].clone();
            let partition = self.partitions[i].partition;
            let (low, high) = retry_with_backoff(
                &format!("reading the offsets of {topic}/{partition}"),
                || {
                    self.consumer
                        .fetch_watermarks(&topic, partition, CLUSTER_TIMEOUT)
                        .map_err(|e| anyhow::anyhow!("{e}"))
                },
            )?;
            let resumed = self.resume.as_ref().and_then(|offsets| {
                offsets
                    .iter()
                    .find(|o| o.topic == topic && o.partition == partition)
                    .map(|o| o.next)
            });
            let next = match resumed {
                Some(next) => next,
                None => match start {
                    StartAt::Earliest => low,
                    StartAt::Latest => high,
                    StartAt::Committed => committed
                        .as_ref()
                        .and_then(|c| c.get(i).copied().flatten())
                        .unwrap_or(low),
                    StartAt::Timestamp(_) => by_time
                        .as_ref()
                        .and_then(|t| t.get(i).copied().flatten())
                        .unwrap_or(high),
                },
            };
            let p = &mut self.partitions[i];
            p.next = next.max(low);
            if self.config.bounded {
                p.end = Some(high);
            }
            list.add_partition_offset(&topic, partition, Offset::Offset(p.next))
                .context("cannot build the partition list")?;
        }
        self.consumer
            .assign(&list)
            .context("cannot assign the Kafka partitions to the consumer")?;
        self.remaining = self.partitions.iter().filter(|p| !p.done()).count();
        self.assigned = true;
        Ok(())
    }

    /// The group's committed offset of each partition (`None` where it has none).
    fn committed_offsets(&self) -> Result<Vec<Option<i64>>> {
        let list = self.partition_list(Offset::Invalid)?;
        let committed = retry_with_backoff(
            &format!("reading group {}'s committed offsets", self.config.group),
            || {
                self.consumer
                    .committed_offsets(list.clone(), CLUSTER_TIMEOUT)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            },
        )?;
        Ok(self.offsets_in(&committed))
    }

    /// The first offset at or after `ms` in each partition (`None` past the end).
    fn offsets_for_time(&self, ms: i64) -> Result<Vec<Option<i64>>> {
        let list = self.partition_list(Offset::Offset(ms))?;
        let found = retry_with_backoff("finding the offsets for [source] start", || {
            self.consumer
                .offsets_for_times(list.clone(), CLUSTER_TIMEOUT)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })?;
        Ok(self.offsets_in(&found))
    }

    /// Every partition with `offset`.
    fn partition_list(&self, offset: Offset) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for p in &self.partitions {
            list.add_partition_offset(&self.config.topics[p.topic_index], p.partition, offset)
                .context("cannot build the partition list")?;
        }
        Ok(list)
    }

    /// The concrete offset of each partition in `list`, in source-partition order.
    fn offsets_in(&self, list: &TopicPartitionList) -> Vec<Option<i64>> {
        self.partitions
            .iter()
            .map(|p| {
                list.find_partition(&self.config.topics[p.topic_index], p.partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o),
                        _ => None,
                    })
            })
            .collect()
    }

    /// With `bounded`, marks partitions done whose consumer position passed their end with
    /// no record to show it (the end offset was a transaction marker or compacted away).
    fn find_bounded_ends(&mut self) -> Result<()> {
        if !self.config.bounded || self.remaining == 0 {
            return Ok(());
        }
        let positions = self
            .consumer
            .position()
            .context("cannot read the Kafka consumer's position")?;
        let positions = self.offsets_in(&positions);
        for (p, position) in self.partitions.iter_mut().zip(positions) {
            if let Some(position) = position {
                if !p.done() && position >= p.end.unwrap_or(i64::MAX) {
                    p.next = position;
                    self.remaining -= 1;
                }
            }
        }
        Ok(())
    }

    /// The offsets of `position` as a list to commit.
    fn commit_list(&self, position: &SourcePosition) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        if let SourcePosition::Kafka { offsets } = position {
            for o in offsets {
                list.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.next))
                    .context("cannot build the offsets to commit")?;
            }
        }
        Ok(list)
    }
}

impl Assigned {
    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }
}

impl Source for KafkaSource {
    fn describe(&self) -> String {
        format!("kafka:{}", self.config.topics.join(","))
    }

    fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Kafka {
            offsets: self
                .partitions
                .iter()
                .filter(|p| p.next >= 0)
                .map(|p| PartitionOffset {
                    topic: self.config.topics[p.topic_index].clone(),
                    partition: p.partition,
                    next: p.next,
                })
                .collect(),
        }
    }

    fn settle_start(&mut self) -> Result<()> {
        if !self.assigned {
            self.assign()?;
        }
        Ok(())
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let SourcePosition::Kafka { offsets } = position else {
            bail!("incompatible state: a Kafka source cannot resume from {position:?}");
        };
        self.resume = Some(offsets.clone());
        if self.assigned {
            self.assign()?;
        }
        Ok(())
    }

    fn checkpoint_completed(&mut self, _id: u64, position: &SourcePosition) -> Result<()> {
        let list = self.commit_list(position)?;
        if list.count() > 0 {
            // Only for lag monitoring: a failed commit is retried with the next checkpoint.
            if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
                tracing::warn!(
                    "cannot commit offsets to group {}: {e}; the next checkpoint retries",
                    self.config.group
                );
            }
        }
        Ok(())
    }

    fn poll(
        &mut self,
        ingest: &mut Ingest<'_>,
        max: usize,
        deadline: Instant,
    ) -> Result<SourceState> {
        if !self.assigned {
            self.assign()?;
        }
        while ingest.len() < max {
            if self.config.bounded && self.remaining == 0 {
                return Ok(SourceState::Exhausted);
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.consumer.poll(wait) else {
                self.find_bounded_ends()?;
                if wait.is_zero() {
                    break;
                }
                continue;
            };
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    // Transient (the broker away, a leader moving): librdkafka reconnects
                    // and the stream goes on from where it was.
                    log_poll_error(&self.poll_errors, "Kafka consumer", &e);
                    std::thread::sleep(Duration::from_millis(100).min(wait));
                    continue;
                }
            };
            let Some(index) = self.index_of(message.topic(), message.partition()) else {
                continue;
            };
            let offset = message.offset();
            let p = &mut self.partitions[index];
            if offset < p.next || p.done() {
                continue; // a fetch from before a seek, or past a bounded end
            }
            p.next = offset + 1;
            if p.done() {
                self.remaining -= 1;
            }
            let mut headers = Vec::new();
            if let Some(h) = message.headers() {
                headers.extend(
                    h.iter()
                        .map(|h| (h.key.as_bytes(), h.value.unwrap_or_default())),
                );
            }
            ingest.push_record(
                index as u32,
                offset as u64,
                SourceRecord {
                    value: message.payload().unwrap_or_default(),
                    key: message.key(),
                    timestamp: message.timestamp().to_millis(),
                    headers: &headers,
                },
            );
        }
        Ok(if self.config.bounded && self.remaining == 0 {
            SourceState::Exhausted
        } else {
            SourceState::Open
        })
    }
}
