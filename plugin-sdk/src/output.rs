//! What a plugin hands back to the host for one batch.

use crate::batch::{offset, Event, PackedBatch};

/// One refused input event and the reason, bound for the dead-letter sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the event in the input batch.
    pub index: u32,
    /// Why the plugin refused it.
    pub reason: String,
}

/// A filter's verdict on a batch: which events to keep, which to reject.
///
/// Events must be kept in ascending order (the order [`crate::Batch::iter`] yields them).
#[derive(Debug, Default)]
pub struct Selection {
    pub(crate) kept: Vec<u32>,
    pub(crate) rejected: Vec<Rejection>,
}

impl Selection {
    /// An empty selection with room to keep `events` events without reallocating.
    pub fn with_capacity(events: usize) -> Self {
        Self {
            kept: Vec::with_capacity(events),
            rejected: Vec::new(),
        }
    }

    /// Keeps `event`.
    #[inline]
    pub fn keep(&mut self, event: &Event<'_>) {
        self.kept.push(event.index());
    }

    /// Rejects `event`: it goes to the dead-letter sink with `reason`.
    pub fn reject(&mut self, event: &Event<'_>, reason: impl Into<String>) {
        self.rejected.push(Rejection {
            index: event.index(),
            reason: reason.into(),
        });
    }

    /// Indices of the kept events.
    pub fn kept(&self) -> &[u32] {
        &self.kept
    }

    /// The rejected events.
    pub fn rejected(&self) -> &[Rejection] {
        &self.rejected
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn into_parts(self) -> (Vec<u32>, Vec<Rejection>) {
        (self.kept, self.rejected)
    }
}

/// A transform's output for a batch: new events, each tied to the input event it came from.
///
/// Outputs must be emitted in the order of their inputs (all outputs of event 3 before
/// any of event 4); an input may have zero, one or many outputs.
#[derive(Debug, Default)]
pub struct Output {
    pub(crate) batch: PackedBatch,
    pub(crate) origins: Vec<u32>,
    pub(crate) rejected: Vec<Rejection>,
}

impl Output {
    /// Emits `event` unchanged.
    pub fn forward(&mut self, event: &Event<'_>) {
        self.emit(event, event.value());
    }

    /// Emits a new value for `event`, keeping its key and event time.
    pub fn emit(&mut self, event: &Event<'_>, value: &[u8]) {
        self.emit_with(event, |buf| buf.extend_from_slice(value));
    }

    /// Emits a value for `event` written in place by `write`, which appends the new JSON
    /// object to the buffer it is given. This avoids an intermediate allocation.
    pub fn emit_with(&mut self, event: &Event<'_>, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.batch.values);
        self.finish(event, event.key(), event.timestamp());
    }

    /// Emits a value for `event` with its own key and event time.
    pub fn emit_keyed(&mut self, event: &Event<'_>, key: &[u8], timestamp: i64, value: &[u8]) {
        self.batch.values.extend_from_slice(value);
        self.finish(event, key, timestamp);
    }

    /// Serializes `value` as the new JSON value of `event`.
    pub fn emit_json<T: serde::Serialize>(
        &mut self,
        event: &Event<'_>,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let before = self.batch.values.len();
        if let Err(e) = serde_json::to_writer(&mut self.batch.values, value) {
            self.batch.values.truncate(before);
            return Err(e);
        }
        self.finish(event, event.key(), event.timestamp());
        Ok(())
    }

    /// Rejects `event`: it goes to the dead-letter sink with `reason`.
    pub fn reject(&mut self, event: &Event<'_>, reason: impl Into<String>) {
        self.rejected.push(Rejection {
            index: event.index(),
            reason: reason.into(),
        });
    }

    /// The events emitted so far.
    pub fn batch(&self) -> &PackedBatch {
        &self.batch
    }

    /// For each emitted event, the index of the input it came from.
    pub fn origins(&self) -> &[u32] {
        &self.origins
    }

    /// The rejected events.
    pub fn rejected(&self) -> &[Rejection] {
        &self.rejected
    }

    /// Closes the value just appended to the values column.
    fn finish(&mut self, event: &Event<'_>, key: &[u8], timestamp: i64) {
        let batch = &mut self.batch;
        batch.value_ends.push(offset(batch.values.len()));
        batch.keys.extend_from_slice(key);
        batch.key_ends.push(offset(batch.keys.len()));
        batch.timestamps.push(timestamp);
        self.origins.push(event.index());
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn into_parts(self) -> (PackedBatch, Vec<u32>, Vec<Rejection>) {
        (self.batch, self.origins, self.rejected)
    }
}
