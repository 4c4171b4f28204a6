//! Read-only views of the events in a batch.
//!
//! The host hands a plugin a whole batch at once, packed column by column (see the WIT
//! contract in `wit/eddy.wit`). [`Batch`] and [`Event`] borrow from those columns: walking
//! a batch allocates nothing.

use crate::json::{self, Field};

/// The packed columns of a batch, as they cross the Wasm boundary. Plugin authors use
/// [`Batch`]; this type is for the SDK and for tests that build batches by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedBatch {
    /// All values back to back.
    pub values: Vec<u8>,
    /// End offset of each event's value.
    pub value_ends: Vec<u32>,
    /// All keys back to back.
    pub keys: Vec<u8>,
    /// End offset of each event's key.
    pub key_ends: Vec<u32>,
    /// Event time of each event (ms since the Unix epoch).
    pub timestamps: Vec<i64>,
    /// Headers, when any event has one.
    pub headers: Option<PackedHeaders>,
}

/// Headers of all events in a batch, packed (see `packed-headers` in the WIT contract).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedHeaders {
    /// End index into the header list of each event's headers.
    pub header_ends: Vec<u32>,
    /// Header names back to back.
    pub names: Vec<u8>,
    /// End offset of each header's name.
    pub name_ends: Vec<u32>,
    /// Header values back to back.
    pub values: Vec<u8>,
    /// End offset of each header's value.
    pub value_ends: Vec<u32>,
}

impl PackedBatch {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// A batch of `(key, event time, value)` events, e.g. for tests.
    pub fn from_events<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        events: impl IntoIterator<Item = (K, i64, V)>,
    ) -> Self {
        let mut batch = Self::default();
        for (key, timestamp, value) in events {
            batch.push(key.as_ref(), timestamp, value.as_ref());
        }
        batch
    }

    /// Appends one event without headers.
    pub fn push(&mut self, key: &[u8], timestamp: i64, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.value_ends.push(offset(self.values.len()));
        self.keys.extend_from_slice(key);
        self.key_ends.push(offset(self.keys.len()));
        self.timestamps.push(timestamp);
        if let Some(headers) = &mut self.headers {
            let end = headers.header_ends.last().copied().unwrap_or(0);
            headers.header_ends.push(end);
        }
    }

    /// Removes every event, keeping the allocated buffers.
    pub fn clear(&mut self) {
        self.values.clear();
        self.value_ends.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.timestamps.clear();
        self.headers = None;
    }

    /// A borrowed view of this batch.
    pub fn view(&self) -> Batch<'_> {
        Batch {
            values: &self.values,
            value_ends: &self.value_ends,
            keys: &self.keys,
            key_ends: &self.key_ends,
            timestamps: &self.timestamps,
            headers: self.headers.as_ref(),
            from_host: false,
        }
    }

    /// A view of the batch the host (or the mock host) is running the plugin on, whose
    /// [`Batch::numbers`] asks the host first.
    pub(crate) fn host_view(&self) -> Batch<'_> {
        Batch {
            from_host: true,
            ..self.view()
        }
    }
}

/// Converts a buffer length to a packed end offset. Batches are bounded far below 4 GiB
/// (a Wasm32 memory cannot hold more), so this cannot overflow for a batch that fits.
pub(crate) fn offset(len: usize) -> u32 {
    u32::try_from(len).expect("a packed batch column exceeds 4 GiB")
}

/// Where item `i` of a packed column is: from the previous item's end to its own.
fn item_range(ends: &[u32], i: usize) -> std::ops::Range<usize> {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    start..ends[i] as usize
}

/// Slice `i` of a packed byte column.
fn item<'a>(bytes: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    &bytes[item_range(ends, i)]
}

/// The next slice of a packed byte column walked in order: from `*start` to `end`, after
/// which `*start` moves to `end`.
#[inline]
fn next_item<'a>(bytes: &'a [u8], start: &mut usize, end: u32) -> &'a [u8] {
    let end = end as usize;
    let slice = &bytes[*start..end];
    *start = end;
    slice
}

/// A batch of events, borrowed from the host's packed columns.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    values: &'a [u8],
    value_ends: &'a [u32],
    keys: &'a [u8],
    key_ends: &'a [u32],
    timestamps: &'a [i64],
    headers: Option<&'a PackedHeaders>,
    /// Whether this is the batch the host is running the plugin on.
    from_host: bool,
}

impl<'a> Batch<'a> {
    /// The number in top-level field `name` of every event, in order; NaN where an event
    /// has no such field or it is not a JSON number. One column for the batch, for
    /// plugins that read a numeric field of every event: the host parses it with native
    /// code (from its second batch on, once it knows the field; batches under 16 events
    /// are parsed here), which costs a Wasm plugin much less than parsing each value
    /// itself. Allocates the column, not per event.
    ///
    /// ```
    /// # use eddy_plugin_sdk::PackedBatch;
    /// let mut packed = PackedBatch::default();
    /// packed.push(b"k", 0, br#"{"amount": 42.5}"#);
    /// packed.push(b"k", 0, br#"{"amount": "n/a"}"#);
    /// let numbers = packed.view().numbers("amount");
    /// assert_eq!(numbers[0], 42.5);
    /// assert!(numbers[1].is_nan());
    /// ```
    pub fn numbers(&self, name: &str) -> Vec<f64> {
        // Below this, parsing here costs less than the host call.
        const ASK_FROM: usize = 16;
        if self.from_host && self.len() >= ASK_FROM {
            let numbers = crate::host::field_numbers(name);
            if numbers.len() == self.len() {
                return numbers;
            }
        }
        let mut numbers = Vec::with_capacity(self.len());
        json::field_numbers(self.values, self.value_ends, name, &mut numbers);
        numbers
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Event `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<Event<'a>> {
        let timestamp = *self.timestamps.get(index)?;
        Some(Event {
            value: item(self.values, self.value_ends, index),
            key: item(self.keys, self.key_ends, index),
            timestamp,
            index: offset(index),
            headers: self.headers,
        })
    }

    /// The events in order.
    #[inline]
    pub fn iter(&self) -> Events<'a> {
        Events {
            batch: *self,
            next: 0,
            value_start: 0,
            key_start: 0,
        }
    }
}

/// The events of a [`Batch`] in order (see [`Batch::iter`]). Each step slices the value
/// and key from where the previous event's ended, so walking a batch costs a few loads
/// per event.
#[derive(Debug, Clone)]
pub struct Events<'a> {
    batch: Batch<'a>,
    next: usize,
    value_start: usize,
    key_start: usize,
}

impl<'a> Iterator for Events<'a> {
    type Item = Event<'a>;

    #[inline]
    fn next(&mut self) -> Option<Event<'a>> {
        let index = self.next;
        let batch = &self.batch;
        let timestamp = *batch.timestamps.get(index)?;
        self.next += 1;
        Some(Event {
            value: next_item(batch.values, &mut self.value_start, batch.value_ends[index]),
            key: next_item(batch.keys, &mut self.key_start, batch.key_ends[index]),
            timestamp,
            index: offset(index),
            headers: batch.headers,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Events<'_> {}

/// One event of a batch: key, value (a JSON object), event time and headers.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    value: &'a [u8],
    key: &'a [u8],
    timestamp: i64,
    index: u32,
    headers: Option<&'a PackedHeaders>,
}

impl<'a> Event<'a> {
    /// Position of this event in its batch; outputs and rejections refer to events by it.
    #[inline]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The event's key (empty when the pipeline has no `key_field`).
    #[inline]
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The event's key as text, if it is UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.key()).ok()
    }

    /// The event's value: a JSON object, UTF-8.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// The event's value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value()).ok()
    }

    /// The event time, in milliseconds since the Unix epoch.
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// A top-level field of the value, without parsing the rest (see [`json::field`]).
    #[inline]
    pub fn field(&self, name: &str) -> Option<Field<'a>> {
        json::field(self.value(), name)
    }

    /// The value parsed into any deserializable type (allocates as that type does).
    pub fn parse<T: serde::Deserialize<'a>>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.value())
    }

    /// The event's headers as `(name, value)` pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let range = match self.headers {
            Some(h) => item_range(&h.header_ends, self.index as usize),
            None => 0..0,
        };
        let headers = self.headers;
        range.map(move |i| {
            let h = headers.expect("a non-empty header range implies headers");
            (
                item(&h.names, &h.name_ends, i),
                item(&h.values, &h.value_ends, i),
            )
        })
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_walk_packed_columns() {
        let mut packed = PackedBatch::default();
        packed.push(b"k1", 10, br#"{"a":1}"#);
        packed.push(b"", 20, br#"{"a":2}"#);
        let batch = packed.view();
        let events: Vec<_> = batch.iter().collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].key(), b"k1");
        assert_eq!(events[1].key(), b"");
        assert_eq!(events[1].timestamp(), 20);
        assert_eq!(events[1].field("a").unwrap().as_i64(), Some(2));
        assert_eq!(events[1].index(), 1);
        assert!(batch.get(2).is_none());
    }

    #[test]
    fn walking_a_batch_gives_what_indexing_gives() {
        let events = [
            ("a", 1, "{}"),
            ("", 2, ""),
            ("key", 3, r#"{"x":1}"#),
            ("", 4, ""),
        ];
        let packed = PackedBatch::from_events(events);
        let batch = packed.view();
        let mut walk = batch.iter();
        assert_eq!(walk.len(), 4);
        for (i, (key, timestamp, value)) in events.into_iter().enumerate() {
            let event = walk.next().unwrap();
            let indexed = batch.get(i).unwrap();
            assert_eq!(event.key(), key.as_bytes());
            assert_eq!(event.value(), value.as_bytes());
            assert_eq!(event.timestamp(), timestamp);
            assert_eq!(event.index(), i as u32);
            assert_eq!(
                (
                    indexed.key(),
                    indexed.value(),
                    indexed.timestamp(),
                    indexed.index()
                ),
                (event.key(), event.value(), event.timestamp(), event.index())
            );
            assert_eq!(walk.len(), 3 - i);
        }
        assert!(walk.next().is_none());
    }

    #[test]
    fn headers_are_per_event() {
        let mut packed = PackedBatch::default();
        packed.push(b"", 1, b"{}");
        packed.push(b"", 2, b"{}");
        packed.headers = Some(PackedHeaders {
            header_ends: vec![0, 2],
            names: b"ab".to_vec(),
            name_ends: vec![1, 2],
            values: b"xyz".to_vec(),
            value_ends: vec![1, 3],
        });
        let batch = packed.view();
        assert_eq!(batch.get(0).unwrap().headers().count(), 0);
        let second = batch.get(1).unwrap();
        assert_eq!(second.header("b"), Some(&b"yz"[..]));
        assert_eq!(second.headers().count(), 2);
    }
}
