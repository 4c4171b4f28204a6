//! The `aggregate` build of `chaos`: a window aggregate that counts events, or (with
//! `mode = "trap-any"`) panics on every fold — a new aggregate version broken on live
//! data, to test that a hot swap's probation rolls it back. Its accumulator is 8 bytes
//! (a little-endian count), even when empty, unlike most aggregates', so tests can tell
//! whose empty accumulator a window was given.

use eddy_plugin_sdk::{Aggregate, Config, Event, Plugin};

/// Counts events, or panics on every fold.
#[derive(Debug)]
pub struct ChaosCount {
    trap: bool,
}

impl Plugin for ChaosCount {
    fn init(config: &Config) -> Result<Self, String> {
        let trap = match config.get("mode").unwrap_or("count") {
            "count" => false,
            "trap-any" => true,
            other => {
                return Err(format!(
                    "config key `mode` = {other:?}: expected count or trap-any"
                ))
            }
        };
        Ok(Self { trap })
    }
}

impl Aggregate for ChaosCount {
    type Acc = u64;

    fn fold(&mut self, acc: &mut u64, _event: &Event<'_>) {
        assert!(!self.trap, "broken on live data, as configured");
        *acc += 1;
    }

    fn merge(&mut self, acc: &mut u64, other: u64) {
        *acc += other;
    }

    fn finish(&mut self, acc: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(acc.to_string().as_bytes());
    }

    fn encode(acc: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&acc.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<u64, String> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| "not an 8-byte count")?;
        Ok(u64::from_le_bytes(bytes))
    }
}

eddy_plugin_sdk::export_aggregate!(ChaosCount);
