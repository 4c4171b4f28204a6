//! `[source] kind = "stdin"`.

use serde::Deserialize;

use crate::config::EventFields;

/// `[source] kind = "stdin"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// The event-time field (see [`EventFields::time_field`]).
    pub time_field: Option<String>,
    /// The key field (see [`EventFields::key_field`]).
    pub key_field: Option<String>,
}

impl StdinSourceConfig {
    /// The fields that carry event time and key.
    pub fn event_fields(&self) -> EventFields {
        EventFields {
            time_field: self.time_field.clone(),
            key_field: self.key_field.clone(),
            max_future_ms: None,
        }
    }
}
