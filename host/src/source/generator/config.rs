//! `[source] kind = "generator"`.

use serde::Deserialize;

use crate::config::{ConfigDuration, EventFields};

/// `[source] kind = "generator"`: a seeded, synthetic payments stream.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Number of events; absent: endless.
    pub count: Option<u64>,
    /// Events per second; absent: as fast as the pipeline takes them.
    pub rate: Option<f64>,
    /// Distinct users.
    pub keys: u64,
    /// Source partitions (event `seq` goes to partition `seq % partitions`).
    pub partitions: u32,
    /// Event-time disorder bound: an event's time is up to this much before its place.
    pub max_disorder: ConfigDuration,
    /// Seed; the same seed gives the same stream.
    pub seed: u64,
    /// Event time of the first event, ms since the Unix epoch.
    pub start_ts: i64,
    /// The key field (`user` or `card`).
    pub key_field: String,
    /// With `parallelism = N`, worker `index` of `N` emits `seq` index, index + N, …: its
    /// share of the stream. Set by the workers, not the pipeline file.
    #[serde(skip)]
    pub share: (u64, u64),
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            count: None,
            rate: None,
            keys: 1000,
            partitions: 1,
            max_disorder: ConfigDuration::default(),
            seed: 0,
            start_ts: 1_700_000_000_000,
            key_field: "user".into(),
            share: (0, 1),
        }
    }
}

impl GeneratorConfig {
    /// The fields that carry event time and key: `ts` and the configured key field.
    pub fn event_fields(&self) -> EventFields {
        EventFields {
            time_field: Some("ts".into()),
            key_field: Some(self.key_field.clone()),
            max_future_ms: None,
        }
    }
}
