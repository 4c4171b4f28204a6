//! `distinct`: a window aggregate counting the distinct values of a field — e.g. how many
//! different cards a user paid with in a window, a classic fraud signal.
//!
//! Config: `field` (default `card`), `output` (`count`, the default, or `values` for the
//! sorted list of values).
//!
//! ```toml
//! [window]
//! kind = "tumbling"
//! size = "1m"
//! aggregate = "plugin"
//! plugin = { name = "cards", path = "distinct.wasm", config = { field = "card" } }
//! ```

use std::collections::BTreeSet;

use eddy_plugin_sdk::{Aggregate, Config, Event, Plugin};

/// Counts (or lists) the distinct values of a field.
#[derive(Debug)]
pub struct Distinct {
    field: String,
    list: bool,
}

impl Plugin for Distinct {
    fn init(config: &Config) -> Result<Self, String> {
        let list = match config.get("output").unwrap_or("count") {
            "count" => false,
            "values" => true,
            other => {
                return Err(format!(
                    "config key `output` = {other:?}: expected count or values"
                ))
            }
        };
        Ok(Self {
            field: config.get("field").unwrap_or("card").to_owned(),
            list,
        })
    }
}

impl Aggregate for Distinct {
    type Acc = BTreeSet<String>;

    fn fold(&mut self, acc: &mut Self::Acc, event: &Event<'_>) {
        if let Some(field) = event.field(&self.field) {
            let value = field.as_str().map_or_else(
                || String::from_utf8_lossy(field.raw()).into_owned(),
                |s| s.into_owned(),
            );
            acc.insert(value);
        }
    }

    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.extend(other);
    }

    fn finish(&mut self, acc: &Self::Acc, out: &mut Vec<u8>) {
        if self.list {
            serde_json::to_writer(out, acc).expect("writing JSON to a Vec cannot fail");
        } else {
            out.extend_from_slice(acc.len().to_string().as_bytes());
        }
    }

    /// Each value as a 4-byte little-endian length and its bytes.
    fn encode(acc: &Self::Acc, out: &mut Vec<u8>) {
        for value in acc {
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
    }

    fn decode(mut bytes: &[u8]) -> Result<Self::Acc, String> {
        let mut acc = BTreeSet::new();
        while !bytes.is_empty() {
            let (len, rest) = bytes.split_at_checked(4).ok_or("truncated accumulator")?;
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let (value, rest) = rest.split_at_checked(len).ok_or("truncated accumulator")?;
            acc.insert(String::from_utf8(value.to_vec()).map_err(|e| e.to_string())?);
            bytes = rest;
        }
        Ok(acc)
    }
}

eddy_plugin_sdk::export_aggregate!(Distinct);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_plugin_sdk::{mock::MockHost, PackedBatch};

    fn batch() -> PackedBatch {
        PackedBatch::from_events([
            ("u1", 1, r#"{"card":"c1"}"#),
            ("u1", 2, r#"{"card":"c2"}"#),
            ("u1", 3, r#"{"card":"c1"}"#),
            ("u1", 4, r#"{"other":1}"#),
        ])
    }

    #[test]
    fn counts_distinct_values() {
        let host = MockHost::new();
        let mut distinct = host.init::<Distinct>(&Config::default()).unwrap();
        assert_eq!(host.aggregate(&mut distinct, &batch()).unwrap(), "2");
    }

    #[test]
    fn lists_values_and_merges() {
        let host = MockHost::new();
        let mut distinct = host
            .init::<Distinct>(&Config::new([("output", "values")]))
            .unwrap();
        assert_eq!(
            host.aggregate(&mut distinct, &batch()).unwrap(),
            r#"["c1","c2"]"#
        );
        let mut a = BTreeSet::from(["x".to_string()]);
        distinct.merge(&mut a, BTreeSet::from(["y".to_string(), "x".to_string()]));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn accumulators_survive_encoding() {
        let acc = BTreeSet::from(["a\nb".to_string(), String::new(), "ü".to_string()]);
        let mut bytes = Vec::new();
        Distinct::encode(&acc, &mut bytes);
        assert_eq!(Distinct::decode(&bytes).unwrap(), acc);
        assert!(Distinct::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
