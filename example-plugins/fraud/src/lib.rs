//! `fraud`: flags a key (user or card) whose spend within a horizon crosses a threshold.
//!
//! Stateful: per event key it keeps, in host-owned keyed state, the spend since the start
//! of the current horizon. The event that takes the spend to `threshold` or above is
//! emitted as an alert, with `spend` (the total) and `alert` fields added; other events
//! are dropped. The total restarts when an event falls `horizon_ms` or more after the
//! horizon's first event.
//!
//! Config: `threshold` (required), `field` (default `amount`), `horizon_ms` (default
//! 3600000). Events need a key: set `key_field` on the source.

use eddy_plugin_sdk::{host, Batch, Config, Output, Plugin, Transform};

/// The keyed-state name of the running spend.
const SPEND: &str = "spend";

/// Spend-threshold alerts per key.
#[derive(Debug)]
pub struct Fraud {
    threshold: f64,
    field: String,
    horizon_ms: i64,
}

/// The per-key state: the horizon's start and the spend since.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spend {
    since: i64,
    total: f64,
}

impl Spend {
    fn decode(bytes: &[u8]) -> Option<Self> {
        let since = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let total = f64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self { since, total })
    }

    fn encode(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.since.to_le_bytes());
        out[8..].copy_from_slice(&self.total.to_le_bytes());
        out
    }
}

impl Plugin for Fraud {
    fn init(config: &Config) -> Result<Self, String> {
        let threshold = config
            .parse("threshold")?
            .ok_or("missing config key `threshold`")?;
        Ok(Self {
            threshold,
            field: config.get("field").unwrap_or("amount").to_owned(),
            horizon_ms: config.parse("horizon_ms")?.unwrap_or(3_600_000),
        })
    }
}

impl Transform for Fraud {
    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) {
        for event in batch.iter() {
            let key = event.key();
            if key.is_empty() {
                out.reject(
                    &event,
                    "fraud needs keyed events: set `key_field` on the source",
                );
                continue;
            }
            let Some(amount) = event.field(&self.field).and_then(|f| f.as_f64()) else {
                out.reject(&event, format!("no numeric field `{}`", self.field));
                continue;
            };
            let ts = event.timestamp();
            let before = host::state_get(key, SPEND)
                .and_then(|b| Spend::decode(&b))
                .filter(|s| ts - s.since < self.horizon_ms)
                .unwrap_or(Spend {
                    since: ts,
                    total: 0.0,
                });
            let after = Spend {
                total: before.total + amount,
                ..before
            };
            host::state_set(key, SPEND, &after.encode());
            if before.total < self.threshold && after.total >= self.threshold {
                out.emit_with(&event, |buf| {
                    let value = event.value();
                    let body_end = value
                        .iter()
                        .rposition(|&b| b == b'}')
                        .unwrap_or(value.len());
                    buf.extend_from_slice(&value[..body_end]);
                    buf.extend_from_slice(
                        format!(r#","spend":{},"alert":"spend-threshold"}}"#, after.total)
                            .as_bytes(),
                    );
                });
            }
        }
    }
}

eddy_plugin_sdk::export_transform!(Fraud);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_plugin_sdk::{mock::MockHost, PackedBatch};

    #[test]
    fn alerts_once_when_spend_crosses_the_threshold() {
        let host = MockHost::new();
        let config = Config::new([("threshold", "100"), ("horizon_ms", "1000")]);
        let mut fraud = host.init::<Fraud>(&config).unwrap();
        let batch = PackedBatch::from_events([
            ("u1", 0, r#"{"amount": 60}"#),
            ("u2", 10, r#"{"amount": 99}"#),
            ("u1", 20, r#"{"amount": 50}"#),
            ("u1", 30, r#"{"amount": 50}"#),
        ]);
        let out = host.process(&mut fraud, &batch);
        assert_eq!(out.origins(), &[2]);
        let alert: serde_json::Value = out.batch().view().get(0).unwrap().parse().unwrap();
        assert_eq!(alert["spend"], 110.0);
        assert_eq!(alert["alert"], "spend-threshold");
        let state = Spend::decode(&host.state("u1", SPEND).unwrap()).unwrap();
        assert_eq!(
            state,
            Spend {
                since: 0,
                total: 160.0
            }
        );
    }

    #[test]
    fn the_horizon_restarts_the_total() {
        let host = MockHost::new();
        let config = Config::new([("threshold", "100"), ("horizon_ms", "1000")]);
        let mut fraud = host.init::<Fraud>(&config).unwrap();
        let batch = PackedBatch::from_events([
            ("u1", 0, r#"{"amount": 60}"#),
            ("u1", 1000, r#"{"amount": 60}"#),
        ]);
        assert!(host.process(&mut fraud, &batch).batch().is_empty());
    }

    #[test]
    fn rejects_unkeyed_and_malformed_events() {
        let host = MockHost::new();
        let mut fraud = host
            .init::<Fraud>(&Config::new([("threshold", "1")]))
            .unwrap();
        let batch =
            PackedBatch::from_events([("", 0, r#"{"amount": 6}"#), ("u", 0, r#"{"x": 1}"#)]);
        let out = host.process(&mut fraud, &batch);
        assert_eq!(out.rejected().len(), 2);
    }
}
