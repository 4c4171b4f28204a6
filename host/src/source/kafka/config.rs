//! `[source] kind = "kafka"`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::config::EventFields;

/// `[source] kind = "kafka"`: reads topics of a Kafka cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topics read; each partition of each is one source partition.
    pub topics: Vec<String>,
    /// The consumer group: offsets are committed to it when a checkpoint completes (for lag
    /// monitoring; recovery uses the checkpoint's own offsets).
    pub group: String,
    /// Where a run without a checkpoint starts: `earliest`, `latest`, `committed` (the
    /// group's offsets; `earliest` where it has none) or an RFC 3339 timestamp.
    #[serde(default = "default_start")]
    pub start: String,
    /// Where event time comes from: `field` (`time_field`) or `kafka` (the record's
    /// timestamp). Defaults to `field` when `time_field` is set, else `kafka`.
    pub time: Option<String>,
    /// The event-time field (see [`EventFields::time_field`]).
    pub time_field: Option<String>,
    /// The key field; without it the record's key is the event's key.
    pub key_field: Option<String>,
    /// Read up to the partitions' end offsets as they are at start, then finish.
    #[serde(default)]
    pub bounded: bool,
    /// Extra librdkafka consumer properties (security, fetch sizes), passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_start() -> String {
    "earliest".into()
}

/// Where a run without a checkpoint starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record each partition still holds.
    Earliest,
    /// The end of each partition: only records produced from now on.
    Latest,
    /// The group's committed offsets, or the oldest record where it has none.
    Committed,
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// Properties Eddy sets itself, which `[source.properties]` may not override.
const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
];

impl KafkaSourceConfig {
    /// The settings of the source's consumers: the brokers, the group, offsets managed by
    /// Eddy (never committed or stored automatically), `auto.offset.reset` = `reset` for a
    /// position the broker no longer has, then `[source.properties]`.
    pub fn client_config(&self, reset: &str) -> rdkafka::ClientConfig {
        let mut client = rdkafka::ClientConfig::new();
        client
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset);
        for (key, value) in &self.properties {
            client.set(key, value);
        }
        client
    }

    /// The fields that carry event time and key.
    pub fn event_fields(&self) -> EventFields {
        EventFields {
            time_field: self.time_field.clone(),
            key_field: self.key_field.clone(),
            max_future_ms: None,
        }
    }

    /// Where to start without a checkpoint.
    pub fn start_at(&self) -> Result<StartAt> {
        Ok(match self.start.as_str() {
            "earliest" => StartAt::Earliest,
            "latest" => StartAt::Latest,
            "committed" => StartAt::Committed,
            other => {
                let time = humantime::parse_rfc3339_weak(other).with_context(|| {
                    format!(
                        "[source] start = {other:?} is not earliest, latest, committed or an \
                         RFC 3339 time such as 2026-11-28T09:00:00Z"
                    )
                })?;
                let ms = time
                    .duration_since(std::time::UNIX_EPOCH)
                    .context("[source] start is before 1970")?
                    .as_millis();
                StartAt::Timestamp(ms as i64)
            }
        })
    }

    /// Checks the settings that do not need the cluster.
    pub fn check(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            bail!("[source] brokers is empty; name the Kafka bootstrap servers, e.g. \"127.0.0.1:9092\"");
        }
        if self.topics.is_empty() {
            bail!("[source] topics is empty; name at least one topic to read");
        }
        if self.group.trim().is_empty() {
            bail!("[source] group is empty; name the consumer group, e.g. \"eddy-payments\"");
        }
        self.start_at()?;
        match (self.time.as_deref(), &self.time_field) {
            (None | Some("kafka"), None) | (None | Some("field"), Some(_)) => {}
            (Some("kafka"), Some(field)) => bail!(
                "[source] time = \"kafka\" takes event time from the record's timestamp, but \
                 time_field = {field:?} is also set; remove one of them"
            ),
            (Some("field"), None) => bail!(
                "[source] time = \"field\" needs time_field, the JSON field with the event time"
            ),
            (Some(other), _) => {
                bail!("[source] time = {other:?} is not \"field\" or \"kafka\"")
            }
        }
        if let Some(owned) = OWNED_PROPERTIES
            .iter()
            .find(|p| self.properties.contains_key(**p))
        {
            bail!(
                "[source.properties] {owned:?} is set by Eddy from [source]; use brokers, group \
                 and the checkpoint settings instead"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<KafkaSourceConfig> {
        let text = format!("brokers = \"b:9092\"\ntopics = [\"t\"]\ngroup = \"g\"\n{extra}");
        let config: KafkaSourceConfig = toml::from_str(&text)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn start_takes_the_four_forms() {
        assert_eq!(config("").unwrap().start_at().unwrap(), StartAt::Earliest);
        assert_eq!(
            config("start = \"1970-01-01T00:00:01Z\"")
                .unwrap()
                .start_at()
                .unwrap(),
            StartAt::Timestamp(1000)
        );
        let error = config("start = \"yesterday\"").unwrap_err().to_string();
        assert!(error.contains("RFC 3339"), "{error}");
    }

    #[test]
    fn time_and_owned_properties_are_checked() {
        assert!(config("time = \"kafka\"\ntime_field = \"ts\"").is_err());
        assert!(config("time = \"field\"").is_err());
        assert!(config("time_field = \"ts\"").is_ok());
        let error = config("[properties]\n\"group.id\" = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("group.id"), "{error}");
        assert!(config("[properties]\n\"fetch.min.bytes\" = \"1\"").is_ok());
    }
}
