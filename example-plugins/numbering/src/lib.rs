//! `numbering`: adds a running number to every event, counting across the whole stream.
//!
//! The count lives in the plugin's own memory, not in keyed state (it belongs to no key),
//! so the plugin exports the `state` interface: the host snapshots the count at every
//! checkpoint and restores it after a restart, and the numbering goes on exactly where it
//! was. Without that, a restarted job would number from 0 again.
//!
//! Config: `field` (default `n`), the field the number is written to.

use eddy_plugin_sdk::{Batch, Config, Output, Plugin, Stateful, Transform};

/// Numbers events.
#[derive(Debug)]
pub struct Numbering {
    field: String,
    next: u64,
}

impl Plugin for Numbering {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            field: config.get("field").unwrap_or("n").to_owned(),
            next: 0,
        })
    }
}

impl Transform for Numbering {
    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) {
        for event in batch.iter() {
            let n = self.next;
            self.next += 1;
            out.emit_with(&event, |buf| {
                append_field(buf, event.value(), &self.field, n)
            });
        }
    }
}

/// Writes the JSON object `object` with `"field": n` added at its end.
fn append_field(buf: &mut Vec<u8>, object: &[u8], field: &str, n: u64) {
    let object = object.trim_ascii();
    let Some(body) = object.strip_suffix(b"}") else {
        buf.extend_from_slice(object);
        return;
    };
    buf.extend_from_slice(body);
    if body.trim_ascii_end() != b"{" {
        buf.push(b',');
    }
    buf.push(b'"');
    buf.extend_from_slice(field.as_bytes());
    buf.extend_from_slice(b"\":");
    buf.extend_from_slice(n.to_string().as_bytes());
    buf.push(b'}');
}

impl Stateful for Numbering {
    const STATE_VERSION: u32 = 1;

    fn snapshot(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&self.next.to_le_bytes());
        Ok(())
    }

    fn restore(&mut self, version: u32, bytes: &[u8]) -> Result<(), String> {
        if version != 1 {
            return Err(format!(
                "state version {version} is unknown to this build (1)"
            ));
        }
        let bytes = bytes
            .try_into()
            .map_err(|_| format!("the count is 8 bytes, not {}", bytes.len()))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

eddy_plugin_sdk::export_transform!(Numbering);
eddy_plugin_sdk::export_state!(Numbering);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_plugin_sdk::{mock::MockHost, PackedBatch};

    fn numbers(host: &MockHost, plugin: &mut Numbering, batch: &PackedBatch) -> Vec<u64> {
        let out = host.process(plugin, batch);
        out.batch()
            .view()
            .iter()
            .map(|e| {
                e.parse::<serde_json::Value>().unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn numbers_go_on_across_batches_and_a_snapshot_restore() {
        let host = MockHost::new();
        let mut plugin = host
            .init::<Numbering>(&Config::new([("field", "n")]))
            .unwrap();
        let batch = PackedBatch::from_events([("a", 1, r#"{"x": 1}"#), ("b", 2, "{}")]);
        assert_eq!(numbers(&host, &mut plugin, &batch), vec![0, 1]);
        let mut state = Vec::new();
        plugin.snapshot(&mut state).unwrap();
        let mut restored = host
            .init::<Numbering>(&Config::new([("field", "n")]))
            .unwrap();
        restored.restore(Numbering::STATE_VERSION, &state).unwrap();
        assert_eq!(numbers(&host, &mut restored, &batch), vec![2, 3]);
        assert!(restored.restore(2, &state).is_err());
        assert!(restored.restore(1, b"short").is_err());
    }

    #[test]
    fn the_field_is_appended_to_any_object() {
        let mut buf = Vec::new();
        append_field(&mut buf, br#"{"a":1}"#, "n", 7);
        buf.push(b' ');
        append_field(&mut buf, b"{ }", "n", 8);
        assert_eq!(buf, br#"{"a":1,"n":7} { "n":8}"#);
    }
}
