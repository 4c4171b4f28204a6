//! `[source] kind = "file"`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::EventFields;

/// `[source] kind = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file, one JSON object per line.
    pub path: PathBuf,
    /// The event-time field (see [`EventFields::time_field`]).
    pub time_field: Option<String>,
    /// The key field (see [`EventFields::key_field`]).
    pub key_field: Option<String>,
}

impl FileSourceConfig {
    /// The fields that carry event time and key.
    pub fn event_fields(&self) -> EventFields {
        EventFields {
            time_field: self.time_field.clone(),
            key_field: self.key_field.clone(),
            max_future_ms: None,
        }
    }
}
