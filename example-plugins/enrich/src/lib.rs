//! `enrich`: adds the fields of a side-input row to each event.
//!
//! Config: `table` (a `[[side_input]]` name), `field` (the event field whose value is the
//! row's key) and `on_missing` (`keep`, the default, passes the event on unchanged;
//! `reject` sends it to the dead-letter sink; `drop` drops it).
//!
//! ```toml
//! [[plugin]]
//! name = "with-user"
//! path = "enrich.wasm"
//! config = { table = "users", field = "user" }
//! ```

use eddy_plugin_sdk::{host, json, Batch, Config, Output, Plugin, Transform};

/// What to do with an event whose key has no row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnMissing {
    Keep,
    Reject,
    Drop,
}

/// Merges a side-input row into each event.
#[derive(Debug)]
pub struct Enrich {
    table: String,
    field: String,
    on_missing: OnMissing,
}

impl Plugin for Enrich {
    fn init(config: &Config) -> Result<Self, String> {
        let on_missing = match config.get("on_missing").unwrap_or("keep") {
            "keep" => OnMissing::Keep,
            "reject" => OnMissing::Reject,
            "drop" => OnMissing::Drop,
            other => {
                return Err(format!(
                    "config key `on_missing` = {other:?}: expected keep, reject or drop"
                ))
            }
        };
        let table = config.require("table")?.to_owned();
        // Looks the table up once, so a table the pipeline does not declare stops the
        // pipeline at start (the host names it) rather than failing every batch.
        let _ = host::lookup(&table, b"");
        Ok(Self {
            table,
            field: config.require("field")?.to_owned(),
            on_missing,
        })
    }
}

impl Transform for Enrich {
    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) {
        for event in batch.iter() {
            let key = event.field(&self.field).map(|f| match f.as_str() {
                Some(text) => text.into_owned().into_bytes(),
                None => f.raw().to_vec(),
            });
            let row = key.as_deref().and_then(|k| host::lookup(&self.table, k));
            match (row, self.on_missing) {
                (Some(row), _) => out.emit_with(&event, |buf| {
                    if !json::merge_objects(buf, event.value(), &row) {
                        buf.extend_from_slice(event.value());
                    }
                }),
                (None, OnMissing::Keep) => out.forward(&event),
                (None, OnMissing::Reject) => out.reject(
                    &event,
                    format!("no row in `{}` for field `{}`", self.table, self.field),
                ),
                (None, OnMissing::Drop) => {}
            }
        }
    }
}

eddy_plugin_sdk::export_transform!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_plugin_sdk::{mock::MockHost, PackedBatch};

    fn host() -> MockHost {
        MockHost::new().with_row("users", "u1", r#"{"name": "Ada", "tier": "gold"}"#)
    }

    #[test]
    fn merges_the_row_into_the_event() {
        let host = host();
        let mut enrich = host
            .init::<Enrich>(&Config::new([("table", "users"), ("field", "user")]))
            .unwrap();
        let batch = PackedBatch::from_events([
            ("u1", 5, r#"{"user": "u1", "amount": 3}"#),
            ("u2", 6, r#"{"user": "u2"}"#),
        ]);
        let out = host.process(&mut enrich, &batch);
        let values: Vec<serde_json::Value> = out
            .batch()
            .view()
            .iter()
            .map(|e| e.parse().unwrap())
            .collect();
        assert_eq!(values[0]["name"], "Ada");
        assert_eq!(values[0]["amount"], 3);
        assert_eq!(values[1], serde_json::json!({"user": "u2"}));
        assert_eq!(out.origins(), &[0, 1]);
        assert_eq!(out.batch().timestamps, vec![5, 6]);
    }

    #[test]
    fn rejects_or_drops_when_asked() {
        let host = host();
        let batch = PackedBatch::from_events([("u2", 1, r#"{"user": "u2"}"#)]);
        let config = Config::new([
            ("table", "users"),
            ("field", "user"),
            ("on_missing", "reject"),
        ]);
        let out = host.process(&mut host.init::<Enrich>(&config).unwrap(), &batch);
        assert_eq!(out.rejected().len(), 1);
        assert!(out.batch().is_empty());
        let config = Config::new([
            ("table", "users"),
            ("field", "user"),
            ("on_missing", "drop"),
        ]);
        let out = host.process(&mut host.init::<Enrich>(&config).unwrap(), &batch);
        assert!(out.rejected().is_empty() && out.batch().is_empty());
    }
}
