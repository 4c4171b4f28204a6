//! Dead letters: events the pipeline could not or would not process, with enough context
//! to find and replay each one.
//!
//! Each dead letter is one JSON object:
//! `{"reason": "...", "source": "file:in.jsonl", "partition": 0, "position": 12,
//!   "plugin": "big-spenders", "value": {...}}`, where `value` is the event itself, or
//! the raw line as a string when it was not valid JSON.

use crate::batch::Origin;
use crate::sink::Records;

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
    bytes: Vec<u8>,
    ends: Vec<u32>,
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
        let out = &mut self.bytes;
        out.extend_from_slice(b"{\"reason\":");
        write_json_string(out, reason.as_bytes());
        out.extend_from_slice(b",\"source\":");
        write_json_string(out, self.source.as_bytes());
        out.extend_from_slice(b",\"partition\":");
        out.extend_from_slice(itoa::Buffer::new().format(origin.partition).as_bytes());
        out.extend_from_slice(b",\"position\":");
        out.extend_from_slice(itoa::Buffer::new().format(origin.position).as_bytes());
        out.extend_from_slice(b",\"plugin\":");
        match plugin {
            Some(name) => write_json_string(out, name.as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"value\":");
        match value {
            DeadValue::Json(json) => out.extend_from_slice(json),
            DeadValue::Raw(raw) => write_json_string(out, raw),
        }
        out.push(b'}');
        self.ends
            .push(u32::try_from(out.len()).expect("dead letters of one batch exceed 4 GiB"));
    }

    /// Number of dead letters held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The encoded dead letters, for a sink.
    pub fn records(&self) -> Records<'_> {
        Records {
            bytes: &self.bytes,
            ends: &self.ends,
        }
    }

    /// Forgets every dead letter held, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Writes `text` (lossily decoded as UTF-8) as a JSON string.
fn write_json_string(out: &mut Vec<u8>, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    serde_json::to_writer(out, text.as_ref()).expect("writing JSON to a Vec cannot fail");
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
