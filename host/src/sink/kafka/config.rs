//! `[sink] kind = "kafka"`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Deserialize;

/// `[sink] kind = "kafka"`: produces each record to a topic.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic written.
    pub topic: String,
    /// The delivery guarantee.
    #[serde(default)]
    pub delivery: Delivery,
    /// The record field whose value becomes the Kafka key (and so picks the partition);
    /// without it records have no key.
    pub key_field: Option<String>,
    /// The record field (ms since the Unix epoch) that becomes the Kafka timestamp;
    /// without it the broker's produce time.
    pub timestamp_field: Option<String>,
    /// The prefix of the transactional ids (`transactional`); defaults to `eddy-<topic>`.
    /// Two jobs writing the same topic transactionally need different prefixes.
    pub transactional_id: Option<String>,
    /// The topic where a `transactional` sink writes, inside each transaction, which
    /// checkpoint it ends (its commit marker); recovery reads it to learn which
    /// checkpoints' output committed. It must exist; one partition suffices. Defaults to
    /// `eddy-transactions`.
    pub transaction_log: Option<String>,
    /// Extra librdkafka producer properties (security, batching), passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The partition task or worker writing (its identities are prefixed with it, so
    /// tasks writing one topic never share one). Set by the workers, not the file.
    #[serde(skip)]
    pub identity_scope: Option<String>,
}

/// How a Kafka sink makes its output survive a crash of the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Idempotent producer, flushed at every checkpoint: nothing lost; after a crash,
    /// what was written since the last checkpoint is written again.
    #[default]
    AtLeastOnce,
    /// One transaction per checkpoint epoch, committed when the checkpoint completes:
    /// `read_committed` consumers see each record once.
    Transactional,
    /// Each record carries its identity in a header; after a crash the sink reads back
    /// what the topic received since the last checkpoint and skips it: every consumer
    /// sees each record once, at once.
    Deduplicated,
}

/// Properties Eddy sets itself, which `[sink.properties]` may not override.
const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "transactional.id",
];

/// The transaction log topic when `transaction_log` is not set.
pub const DEFAULT_TRANSACTION_LOG: &str = "eddy-transactions";

impl KafkaSinkConfig {
    /// The topic of the commit markers (`transactional`).
    pub fn transaction_log(&self) -> &str {
        self.transaction_log
            .as_deref()
            .unwrap_or(DEFAULT_TRANSACTION_LOG)
    }

    /// The transactional id prefix of this sink in `role`: the configured prefix (or
    /// `eddy-<topic>`), the role, and the partition task writing, if any. Its producers
    /// are `<prefix>-0` and `<prefix>-1`; its commit markers are keyed by it.
    pub fn transactional_prefix(&self, role: &str) -> String {
        let base = self
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("eddy-{}", self.topic));
        match &self.identity_scope {
            Some(scope) => format!("{base}-{role}-{scope}"),
            None => format!("{base}-{role}"),
        }
    }

    /// Checks the settings that do not need the cluster.
    pub fn check(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            bail!("[sink] brokers is empty; name the Kafka bootstrap servers, e.g. \"127.0.0.1:9092\"");
        }
        if self.topic.trim().is_empty() {
            bail!("[sink] topic is empty; name the topic to write");
        }
        if let Some(owned) = OWNED_PROPERTIES
            .iter()
            .find(|p| self.properties.contains_key(**p))
        {
            bail!("[sink.properties] {owned:?} is set by Eddy from [sink] delivery and brokers");
        }
        Ok(())
    }
}
