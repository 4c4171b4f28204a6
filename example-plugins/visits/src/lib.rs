//! `visits`: counts the events of each key and emits `{"key": …, "visits": n}` per event.
//!
//! The count is keyed state. Two releases of this plugin store it differently, to show a
//! keyed-state migration at a hot swap: release 1 (state version 1) as decimal text,
//! release 2 (feature `v2`, state version 2) as 8 little-endian bytes, converting what
//! release 1 wrote in `migrate`. A swap from 1 to 2 that skipped the migration would
//! read the text as bytes and lose the counts.

use eddy_plugin_sdk::{host, Batch, Config, Output, Plugin, Stateful, Transform};

/// The keyed-state name of the count.
const COUNT: &str = "visits";

/// Counts events per key.
#[derive(Debug)]
pub struct Visits;

impl Plugin for Visits {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(Visits)
    }
}

/// Reads a count as this release stores it.
fn decode(bytes: &[u8]) -> u64 {
    if cfg!(feature = "v2") {
        bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
    } else {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }
}

/// Writes a count as this release stores it.
fn encode(count: u64) -> Vec<u8> {
    if cfg!(feature = "v2") {
        count.to_le_bytes().to_vec()
    } else {
        count.to_string().into_bytes()
    }
}

impl Transform for Visits {
    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) {
        for event in batch.iter() {
            let count = host::state_get(event.key(), COUNT).map_or(0, |b| decode(&b)) + 1;
            host::state_set(event.key(), COUNT, &encode(count));
            let key = String::from_utf8_lossy(event.key()).replace(['"', '\\'], "");
            out.emit(
                &event,
                format!(r#"{{"key":"{key}","visits":{count}}}"#).as_bytes(),
            );
        }
    }
}

impl Stateful for Visits {
    const STATE_VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

    fn snapshot(&mut self, _out: &mut Vec<u8>) -> Result<(), String> {
        Ok(())
    }

    fn restore(&mut self, _version: u32, _bytes: &[u8]) -> Result<(), String> {
        Ok(())
    }

    fn migrate(
        &mut self,
        from_version: u32,
        _key: &[u8],
        _name: &str,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        match from_version {
            1 => {
                let text = std::str::from_utf8(value).map_err(|e| e.to_string())?;
                let count: u64 = text
                    .parse()
                    .map_err(|_| format!("a version-1 count is decimal text, not {text:?}"))?;
                Ok(Some(encode(count)))
            }
            other => Err(format!("cannot migrate state version {other}")),
        }
    }
}

eddy_plugin_sdk::export_transform!(Visits);
eddy_plugin_sdk::export_state!(Visits);
