//! Dead letters: events the pipeline could not or would not process, with enough context
//! to find and replay each one.
//!
//! Each dead letter is one JSON object:
//! `{"reason": "...", "source": "file:in.jsonl", "partition": 0, "position": 12,
//!   "plugin": "big-spenders", "value": {...}}`, where `value` is the event itself, or
//! the raw line as a string when it was not valid JSON.

use crate::batch::Origin;
use crate::batch::{RecordBuffer, Records};
use crate::json_text::write_str;

/// The event of a dead letter: valid JSON (embedded as is) or raw bytes (embedded as a
/// string).
#[derive(Debug, Clone, Copy)]
pub enum DeadValue<'a> {
    /// A JSON value, embedded verbatim.
    Json(&'a [u8]),
    /// Raw input that is not valid JSON, embedded as a (lossily decoded) string.
    Raw(&'a [u8]),
}

/// Dead letters of one batch, encoded as JSON lines ready for a sink.
#[derive(Debug, Default)]
pub struct DeadLetters {
    source: String,
    buffer: RecordBuffer,
}

impl DeadLetters {
    /// An empty buffer for dead letters from the source described as `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Adds one dead letter.
    pub fn push(
        &mut self,
        reason: &str,
        origin: Origin,
        plugin: Option<&str>,
        value: DeadValue<'_>,
    ) {
        self.push_record(reason, origin, plugin, None, value);
    }

    /// Adds a late event, naming the window `[start, end)` it was too late for (as
    /// `window_start` and `window_end` fields).
    pub fn push_late(&mut self, reason: &str, origin: Origin, window: (i64, i64), value: &[u8]) {
        self.push_record(reason, origin, None, Some(window), DeadValue::Json(value));
    }

    fn push_record(
        &mut self,
        reason: &str,
        origin: Origin,
        plugin: Option<&str>,
        window: Option<(i64, i64)>,
        value: DeadValue<'_>,
    ) {
        let source = &self.source;
        self.buffer.push_with(|out| {
            out.extend_from_slice(b"{\"reason\":");
            write_str(out, reason.as_bytes());
            out.extend_from_slice(b",\"source\":");
            write_str(out, source.as_bytes());
            number_field(out, b"partition", origin.partition);
            number_field(out, b"position", origin.position);
            out.extend_from_slice(b",\"plugin\":");
            match plugin {
                Some(name) => write_str(out, name.as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            if let Some((start, end)) = window {
                number_field(out, b"window_start", start);
                number_field(out, b"window_end", end);
            }
            out.extend_from_slice(b",\"value\":");
            match value {
                DeadValue::Json(json) => out.extend_from_slice(json),
                DeadValue::Raw(raw) => write_str(out, raw),
            }
            out.push(b'}');
        });
    }

    /// Number of dead letters held.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The encoded dead letters, for a sink.
    pub fn records(&self) -> Records<'_> {
        self.buffer.records()
    }

    /// Forgets every dead letter held, keeping the buffers.
    pub fn clear(&mut self) {
        self.buffer.clear();
    }
}

/// Writes `,"name":value` for an integer value.
fn number_field(out: &mut Vec<u8>, name: &[u8], value: impl itoa::Integer) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":");
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_json_and_raw_values() {
        let mut dl = DeadLetters::new("file:in.jsonl");
        let origin = Origin {
            partition: 0,
            position: 7,
            watermark: 0,
        };
        dl.push("bad \"json\"", origin, None, DeadValue::Raw(b"{oops"));
        dl.push(
            "too small",
            origin,
            Some("f"),
            DeadValue::Json(br#"{"a":1}"#),
        );
        let records = dl.records();
        let lines: Vec<serde_json::Value> = (0..2)
            .map(|i| serde_json::from_slice(records.get(i)).unwrap())
            .collect();
        assert_eq!(lines[0]["reason"], "bad \"json\"");
        assert_eq!(lines[0]["value"], "{oops");
        assert_eq!(lines[0]["position"], 7);
        assert!(lines[0]["plugin"].is_null());
        assert_eq!(lines[1]["value"]["a"], 1);
        assert_eq!(lines[1]["plugin"], "f");
        assert_eq!(lines[1]["source"], "file:in.jsonl");
    }
}
