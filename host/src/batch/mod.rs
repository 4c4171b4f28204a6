//! The unit the pipeline moves: a batch of events, packed column by column exactly as it
//! crosses into a plugin, plus where each event came from.
//!
//! Invariants: every per-event column (value and key ends, timestamps, origins, header
//! ends) has one entry per event; end offsets ascend within their buffers.

mod columns;
mod records;

pub use columns::{wit, Columns, Headers, Packed, Rejection};
pub use records::{RecordBuffer, Records};

/// How many records cross from one thread to another at once when batches are smaller:
/// a reader's group of batches, a Kafka group worker's block for a task. Small batches
/// (`max_records = 1`) then do not wake the receiving thread one by one, and what waits
/// between threads stays bounded.
///
/// Four default batches: when the source has them at hand (a file, a backlog), they
/// cross together, which makes a file into a window with 10k keys ~25% faster than one
/// at a time (docs/benchmarks.md, eleventh session). A batch then waits at most for the
/// parsing of the three after it (~0.4 ms), and only for input already read; the
/// batches in flight take 2–3 MiB more than with 1024.
pub const HANDOVER_RECORDS: usize = 4096;

/// Where and when an event came from: its source partition, its position there (a line
/// number for files and stdin, a sequence number for the generator), and the job's
/// watermark just before it was read — the watermark it is judged by downstream, whatever
/// the batching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The source partition.
    pub partition: u32,
    /// The position within the partition.
    pub position: u64,
    /// The job's watermark just before the event was read.
    pub watermark: i64,
}

/// A batch of events: the packed columns plugins receive, and each event's [`Origin`].
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    /// The packed columns (values, keys, timestamps, headers).
    pub columns: Columns,
    /// The origin of each event, parallel to the columns.
    pub origins: Vec<Origin>,
}

/// Item `i` of a packed byte column.
pub fn packed_item<'a>(bytes: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &bytes[start..ends[i] as usize]
}

pub(crate) fn end_offset(len: usize) -> u32 {
    u32::try_from(len).expect("a batch column over 4 GiB; lower [batch] max_records")
}

impl EventBatch {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Removes every event, keeping the buffers for the next batch.
    pub fn clear(&mut self) {
        let c = &mut self.columns;
        c.values.clear();
        c.value_ends.clear();
        c.keys.clear();
        c.key_ends.clear();
        c.timestamps.clear();
        c.headers = None;
        self.origins.clear();
    }

    /// Appends one event.
    pub fn push(&mut self, origin: Origin, key: &[u8], timestamp: i64, value: &[u8]) {
        self.columns.values.extend_from_slice(value);
        self.push_written(origin, key, timestamp);
    }

    /// The values column, for a source that writes an event's value in place before
    /// calling [`EventBatch::push_written`].
    pub fn values_mut(&mut self) -> &mut Vec<u8> {
        &mut self.columns.values
    }

    /// Appends one event whose value was just written to the end of the values column.
    pub fn push_written(&mut self, origin: Origin, key: &[u8], timestamp: i64) {
        let c = &mut self.columns;
        c.value_ends.push(end_offset(c.values.len()));
        c.keys.extend_from_slice(key);
        c.key_ends.push(end_offset(c.keys.len()));
        c.timestamps.push(timestamp);
        if let Some(h) = &mut c.headers {
            let end = h.header_ends.last().copied().unwrap_or(0);
            h.header_ends.push(end);
        }
        self.origins.push(origin);
    }

    /// Gives the event just appended these headers (name, value); the headers column is
    /// created on the first event that has any (earlier events get none).
    pub fn attach_headers(&mut self, headers: &[(&[u8], &[u8])]) {
        if headers.is_empty() {
            return;
        }
        let n = self.len();
        let h = self.columns.headers.get_or_insert_with(|| Headers {
            header_ends: vec![0; n],
            ..Headers::default()
        });
        for (name, value) in headers {
            h.names.extend_from_slice(name);
            h.name_ends.push(end_offset(h.names.len()));
            h.values.extend_from_slice(value);
            h.value_ends.push(end_offset(h.values.len()));
        }
        if let Some(last) = h.header_ends.last_mut() {
            *last = end_offset(h.name_ends.len());
        }
    }

    /// The headers (name, value) of event `i`.
    pub fn headers(&self, i: usize) -> Vec<(&[u8], &[u8])> {
        let Some(h) = &self.columns.headers else {
            return Vec::new();
        };
        let first = if i == 0 {
            0
        } else {
            h.header_ends[i - 1] as usize
        };
        (first..h.header_ends[i] as usize)
            .map(|j| {
                (
                    packed_item(&h.names, &h.name_ends, j),
                    packed_item(&h.values, &h.value_ends, j),
                )
            })
            .collect()
    }

    /// Appends events `range` of `other`, in order.
    pub fn extend_from(&mut self, other: &EventBatch, range: std::ops::Range<usize>) {
        for i in range {
            self.push(
                other.origins[i],
                other.key(i),
                other.columns.timestamps[i],
                other.value(i),
            );
            self.attach_headers(&other.headers(i));
        }
    }

    /// Events `range` of this batch, as a batch of their own.
    pub fn slice(&self, range: std::ops::Range<usize>) -> EventBatch {
        let mut piece = EventBatch::default();
        piece.extend_from(self, range);
        piece
    }

    /// Event `i`'s value.
    pub fn value(&self, i: usize) -> &[u8] {
        packed_item(&self.columns.values, &self.columns.value_ends, i)
    }

    /// Event `i`'s key.
    pub fn key(&self, i: usize) -> &[u8] {
        packed_item(&self.columns.keys, &self.columns.key_ends, i)
    }

    /// Keeps only the events at `kept` (ascending, in range), in place.
    pub fn retain(&mut self, kept: &[u32]) {
        if kept.len() == self.len() {
            return;
        }
        let c = &mut self.columns;
        let (mut value_len, mut key_len) = (0usize, 0usize);
        for (new, &old) in kept.iter().enumerate() {
            let old = old as usize;
            value_len = compact(&mut c.values, &mut c.value_ends, old, new, value_len);
            key_len = compact(&mut c.keys, &mut c.key_ends, old, new, key_len);
            c.timestamps[new] = c.timestamps[old];
            self.origins[new] = self.origins[old];
        }
        c.values.truncate(value_len);
        c.keys.truncate(key_len);
        for column in [&mut c.value_ends, &mut c.key_ends] {
            column.truncate(kept.len());
        }
        c.timestamps.truncate(kept.len());
        self.origins.truncate(kept.len());
        if let Some(h) = c.headers.take() {
            c.headers = Some(retain_headers(&h, kept));
        }
    }
}

/// Moves item `old` of a packed column to slot `new` (`new <= old`), whose start is `at`;
/// returns the new end.
fn compact(bytes: &mut [u8], ends: &mut [u32], old: usize, new: usize, at: usize) -> usize {
    let start = if old == 0 { 0 } else { ends[old - 1] as usize };
    let end = ends[old] as usize;
    bytes.copy_within(start..end, at);
    let new_end = at + (end - start);
    ends[new] = end_offset(new_end);
    new_end
}

fn retain_headers(h: &Headers, kept: &[u32]) -> Headers {
    let mut out = Headers {
        header_ends: Vec::with_capacity(kept.len()),
        ..Headers::default()
    };
    for &event in kept {
        let event = event as usize;
        let first = if event == 0 {
            0
        } else {
            h.header_ends[event - 1] as usize
        };
        for header in first..h.header_ends[event] as usize {
            out.names
                .extend_from_slice(packed_item(&h.names, &h.name_ends, header));
            out.name_ends.push(end_offset(out.names.len()));
            out.values
                .extend_from_slice(packed_item(&h.values, &h.value_ends, header));
            out.value_ends.push(end_offset(out.values.len()));
        }
        out.header_ends.push(end_offset(out.name_ends.len()));
    }
    out
}

/// Checks that packed columns returned by a plugin are consistent: one entry per event in
/// every per-event column, and end offsets ascending within their buffers.
pub fn check_columns(c: &Columns) -> Result<usize, String> {
    let n = c.timestamps.len();
    if c.value_ends.len() != n || c.key_ends.len() != n {
        return Err(format!(
            "columns disagree on the number of events ({} timestamps, {} value ends, {} key ends)",
            n,
            c.value_ends.len(),
            c.key_ends.len()
        ));
    }
    check_ends("value", &c.value_ends, c.values.len())?;
    check_ends("key", &c.key_ends, c.keys.len())?;
    if let Some(h) = &c.headers {
        if h.header_ends.len() != n {
            return Err("header ends do not have one entry per event".into());
        }
        check_ends("header", &h.header_ends, h.name_ends.len())?;
        if h.name_ends.len() != h.value_ends.len() {
            return Err("header names and values differ in number".into());
        }
        check_ends("header name", &h.name_ends, h.names.len())?;
        check_ends("header value", &h.value_ends, h.values.len())?;
    }
    Ok(n)
}

fn check_ends(what: &str, ends: &[u32], len: usize) -> Result<(), String> {
    let mut previous = 0;
    for &end in ends {
        if end < previous || end as usize > len {
            return Err(format!(
                "{what} end offsets are not ascending within their buffer"
            ));
        }
        previous = end;
    }
    if ends.last().map_or(0, |&e| e as usize) != len {
        return Err(format!("{what} end offsets do not cover their buffer"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(position: u64) -> Origin {
        Origin {
            partition: 0,
            position,
            watermark: 0,
        }
    }

    fn batch(values: &[&str]) -> EventBatch {
        let mut b = EventBatch::default();
        for (i, v) in values.iter().enumerate() {
            b.push(
                origin(i as u64),
                format!("k{i}").as_bytes(),
                i as i64,
                v.as_bytes(),
            );
        }
        b
    }

    #[test]
    fn retain_compacts_every_column() {
        let mut b = batch(&["a", "bb", "ccc", "dddd"]);
        b.retain(&[1, 3]);
        assert_eq!(b.len(), 2);
        assert_eq!((b.value(0), b.value(1)), (&b"bb"[..], &b"dddd"[..]));
        assert_eq!((b.key(0), b.key(1)), (&b"k1"[..], &b"k3"[..]));
        assert_eq!(b.columns.timestamps, vec![1, 3]);
        assert_eq!(b.origins, vec![origin(1), origin(3)]);
        assert_eq!(check_columns(&b.columns), Ok(2));
        b.retain(&[]);
        assert!(b.is_empty() && b.columns.values.is_empty());
    }

    #[test]
    fn headers_attach_to_their_event_and_earlier_events_get_none() {
        let mut b = batch(&["a"]);
        b.push(origin(1), b"k", 1, b"b");
        b.attach_headers(&[(b"trace", b"t1"), (b"src", b"x")]);
        b.push(origin(2), b"k", 2, b"c");
        b.push(origin(3), b"k", 3, b"d");
        b.attach_headers(&[(b"trace", b"t3")]);
        let h = b.columns.headers.as_ref().unwrap();
        assert_eq!(h.header_ends, vec![0, 2, 2, 3]);
        assert_eq!(
            (h.names.as_slice(), h.values.as_slice()),
            (&b"tracesrctrace"[..], &b"t1xt3"[..])
        );
        assert_eq!(check_columns(&b.columns), Ok(4));
        b.retain(&[1, 3]);
        let h = b.columns.headers.as_ref().unwrap();
        assert_eq!(h.header_ends, vec![2, 3]);
        assert_eq!(check_columns(&b.columns), Ok(2));
    }

    #[test]
    fn slices_and_appends_keep_every_column() {
        let mut b = batch(&["a", "bb", "ccc"]);
        b.push(origin(3), b"k3", 3, b"dddd");
        b.attach_headers(&[(b"h", b"v")]);
        let right = b.slice(2..4);
        assert_eq!(check_columns(&right.columns), Ok(2));
        assert_eq!((right.value(1), right.key(1)), (&b"dddd"[..], &b"k3"[..]));
        assert_eq!(right.headers(1), vec![(&b"h"[..], &b"v"[..])]);
        assert!(right.headers(0).is_empty());
        let mut whole = b.slice(0..2);
        whole.extend_from(&right, 0..2);
        assert_eq!(whole.columns, b.columns);
        assert_eq!(whole.origins, b.origins);
    }

    #[test]
    fn retain_keeps_headers_with_their_events() {
        let mut b = batch(&["a", "b"]);
        b.columns.headers = Some(Headers {
            header_ends: vec![1, 2],
            names: b"xy".to_vec(),
            name_ends: vec![1, 2],
            values: b"12".to_vec(),
            value_ends: vec![1, 2],
        });
        b.retain(&[1]);
        let h = b.columns.headers.as_ref().unwrap();
        assert_eq!(
            (h.names.as_slice(), h.values.as_slice()),
            (&b"y"[..], &b"2"[..])
        );
        assert_eq!(check_columns(&b.columns), Ok(1));
    }

    #[test]
    fn inconsistent_columns_are_refused() {
        let mut b = batch(&["a", "b"]);
        b.columns.value_ends = vec![2, 1];
        assert!(check_columns(&b.columns).is_err());
        let mut b = batch(&["a", "b"]);
        b.columns.timestamps.pop();
        assert!(check_columns(&b.columns).is_err());
        let mut b = batch(&["a"]);
        b.columns.values.push(b'x');
        assert!(check_columns(&b.columns).is_err());
    }
}
