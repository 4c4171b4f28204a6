//! What the host offers a plugin: logging, keyed state, side-input lookups and numeric
//! fields parsed for a whole batch.
//!
//! In a Wasm build these call the Eddy host; in a native build (`cargo test`) they call the
//! [`crate::mock::MockHost`] the test runs the plugin on.

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

/// Writes `message` to the host's log, tagged with the plugin's name.
pub fn log(level: Level, message: &str) {
    backend::log(level, message)
}

/// Reads keyed state `name` for `key`. `key` must be the key of an event in the batch
/// being processed: state belongs to keys, and the host keeps it with the key's partition.
pub fn state_get(key: &[u8], name: &str) -> Option<Vec<u8>> {
    backend::state_get(key, name)
}

/// Sets keyed state `name` for `key` (same rule for `key` as [`state_get`]).
pub fn state_set(key: &[u8], name: &str, value: &[u8]) {
    backend::state_set(key, name, value)
}

/// Deletes keyed state `name` for `key` (same rule for `key` as [`state_get`]).
pub fn state_delete(key: &[u8], name: &str) {
    backend::state_delete(key, name)
}

/// Looks up the row with key `key` in the side-input table `table`: a JSON object.
pub fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
    backend::lookup(table, key)
}

/// The number in field `name` of every event of the batch being processed, parsed by the
/// host; empty when the host has not parsed that field for this batch (see
/// `field-numbers` in the WIT contract). [`crate::Batch::numbers`] asks this itself.
pub(crate) fn field_numbers(name: &str) -> Vec<f64> {
    backend::field_numbers(name)
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::Level;
    use crate::guest::lifecycle::eddy::plugin::host as wit;

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(level, message)
    }

    pub fn state_get(key: &[u8], name: &str) -> Option<Vec<u8>> {
        wit::state_get(key, name)
    }

    pub fn state_set(key: &[u8], name: &str, value: &[u8]) {
        wit::state_set(key, name, value)
    }

    pub fn state_delete(key: &[u8], name: &str) {
        wit::state_delete(key, name)
    }

    pub fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
        wit::lookup(table, key)
    }

    pub fn field_numbers(name: &str) -> Vec<f64> {
        wit::field_numbers(name)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod backend {
    pub use crate::mock::current::log;
    pub use crate::mock::current::{field_numbers, lookup, state_delete, state_get, state_set};
}
