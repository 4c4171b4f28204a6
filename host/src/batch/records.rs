//! Records on their way to a sink: JSON documents packed back to back, as the window
//! operator, dead letters and sinks exchange them.

use super::{end_offset, packed_item};

/// Records for a sink: JSON documents packed back to back, `ends[i]` closing record `i`.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    /// The records' bytes, back to back.
    pub bytes: &'a [u8],
    /// End offset of each record.
    pub ends: &'a [u32],
}

impl<'a> Records<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i`.
    pub fn get(&self, i: usize) -> &'a [u8] {
        packed_item(self.bytes, self.ends, i)
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// The most buffer a [`RecordBuffer`] keeps between uses.
const RETAINED_BYTES: usize = 8 << 20;

/// A growable buffer of records, packed as [`Records`] reads them.
#[derive(Debug, Default)]
pub struct RecordBuffer {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl RecordBuffer {
    /// Appends one record, written in place by `write`.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        self.ends.push(end_offset(self.bytes.len()));
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes of the records held.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records, for a sink.
    pub fn records(&self) -> Records<'_> {
        Records {
            bytes: &self.bytes,
            ends: &self.ends,
        }
    }

    /// Forgets every record, keeping the buffers unless a burst (a large window firing)
    /// grew them past [`RETAINED_BYTES`]: those are given back, so one burst does not
    /// pin its memory for the rest of the run.
    pub fn clear(&mut self) {
        if self.bytes.capacity() > RETAINED_BYTES {
            *self = Self::default();
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_keeps_a_small_buffer_and_gives_back_a_burst() {
        let mut buffer = RecordBuffer::default();
        buffer.push_with(|b| b.extend_from_slice(b"{}"));
        buffer.clear();
        let kept = buffer.bytes.capacity();
        assert!(kept > 0 && buffer.is_empty());
        for _ in 0..(RETAINED_BYTES / 1000 + 1) {
            buffer.push_with(|b| b.extend_from_slice(&[b' '; 1000]));
        }
        assert_eq!(buffer.records().len(), RETAINED_BYTES / 1000 + 1);
        buffer.clear();
        assert!(buffer.is_empty());
        assert!(
            buffer.bytes.capacity() <= kept,
            "the burst's buffer is given back"
        );
    }
}
