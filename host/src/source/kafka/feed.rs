//! One Kafka partition as a source of its own, fed by a group worker's consumer: the
//! source of a partition task (`parallelism`, consumer groups).
//!
//! Invariants: records arrive in offset order; the position is the offset after the last
//! record handed to the pipeline, never one only buffered here; the source is exhausted
//! only when the worker hangs up, after handing over everything it fetched.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};

use super::PartitionOffset;
use crate::source::{Ingest, Source, SourcePosition, SourceRecord, SourceState};

/// One record of a [`Fetched`] block.
#[derive(Debug, Clone, Copy)]
struct FetchedRecord {
    offset: i64,
    timestamp: Option<i64>,
    /// End of its key (which starts where the previous record ends).
    key_end: u32,
    /// Whether it has a key.
    has_key: bool,
    /// End of its value (which starts at `key_end`).
    value_end: u32,
    /// End of its headers in [`Fetched::headers`] (they start where the previous
    /// record's end).
    headers_end: u32,
    /// End of its bytes: its headers' names and values follow its value.
    end: u32,
}

/// Records of one partition as the worker fetched them, packed back to back (key, value,
/// then each header's name and value), so handing them to a task allocates per block,
/// not per record.
#[derive(Debug, Default)]
pub struct Fetched {
    bytes: Vec<u8>,
    records: Vec<FetchedRecord>,
    /// Each header's name start, name end (= value start) and value end in `bytes`.
    headers: Vec<[u32; 3]>,
}

impl Fetched {
    /// Appends a record.
    pub fn push<'h>(
        &mut self,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        self.bytes.extend_from_slice(key.unwrap_or_default());
        let key_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        let value_end = self.bytes.len() as u32;
        for (name, value) in headers {
            let start = self.bytes.len() as u32;
            self.bytes.extend_from_slice(name);
            let name_end = self.bytes.len() as u32;
            self.bytes.extend_from_slice(value);
            self.headers
                .push([start, name_end, self.bytes.len() as u32]);
        }
        self.records.push(FetchedRecord {
            offset,
            timestamp,
            key_end,
            has_key: key.is_some(),
            value_end,
            headers_end: self.headers.len() as u32,
            end: self.bytes.len() as u32,
        });
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Record `i`, its headers gathered into `headers` (cleared first).
    fn record<'a: 'h, 'h>(
        &'a self,
        i: usize,
        headers: &'h mut Vec<(&'a [u8], &'a [u8])>,
    ) -> (FetchedRecord, SourceRecord<'h>) {
        let r = self.records[i];
        let (start, first_header) = match i.checked_sub(1).map(|p| self.records[p]) {
            Some(previous) => (previous.end, previous.headers_end),
            None => (0, 0),
        };
        headers.clear();
        headers.extend(
            self.headers[first_header as usize..r.headers_end as usize]
                .iter()
                .map(|&[s, n, e]| {
                    (
                        &self.bytes[s as usize..n as usize],
                        &self.bytes[n as usize..e as usize],
                    )
                }),
        );
        let key = &self.bytes[start as usize..r.key_end as usize];
        (
            r,
            SourceRecord {
                value: &self.bytes[r.key_end as usize..r.value_end as usize],
                key: r.has_key.then_some(key),
                timestamp: r.timestamp,
                headers,
            },
        )
    }
}

/// A completed checkpoint's offset of a partition, for the worker to commit to the group.
pub type Commit = PartitionOffset;

/// A partition fed by a group worker.
pub struct PartitionFeed {
    topic: String,
    partition: i32,
    blocks: Receiver<Fetched>,
    block: Fetched,
    /// The next record of `block` to hand over.
    at: usize,
    /// The offset after the last record handed over (-1: none yet; then `resume` holds
    /// the start).
    next: i64,
    /// Where the feed starts: set by a restore (for the worker to move its consumer
    /// there), or by the worker from `[source] start` when there is no checkpoint.
    resume: Arc<AtomicI64>,
    commits: Sender<Commit>,
}

impl PartitionFeed {
    /// A feed of `partition` of `topic` receiving `blocks`, starting at `start`, or where
    /// `resume` says when `start` is -1. A restore moves the start to the checkpoint's
    /// offset and publishes it in `resume`; completed checkpoints' offsets go to
    /// `commits`.
    pub fn new(
        topic: &str,
        partition: i32,
        start: i64,
        blocks: Receiver<Fetched>,
        resume: Arc<AtomicI64>,
        commits: Sender<Commit>,
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            blocks,
            block: Fetched::default(),
            at: 0,
            next: start,
            resume,
            commits,
        }
    }
}

impl PartitionFeed {
    /// The offset of the next record to hand over.
    fn next(&self) -> i64 {
        if self.next >= 0 {
            self.next
        } else {
            self.resume.load(Ordering::Acquire)
        }
    }
}

impl Source for PartitionFeed {
    fn describe(&self) -> String {
        format!("kafka:{}/{}", self.topic, self.partition)
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Kafka {
            offsets: vec![PartitionOffset {
                topic: self.topic.clone(),
                partition: self.partition,
                next: self.next(),
            }],
        }
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let SourcePosition::Kafka { offsets } = position else {
            bail!("incompatible state: a Kafka partition cannot resume from {position:?}");
        };
        let Some(own) = offsets
            .iter()
            .find(|o| o.topic == self.topic && o.partition == self.partition)
        else {
            bail!(
                "incompatible state: it holds no offset of {}/{}",
                self.topic,
                self.partition
            );
        };
        self.next = own.next;
        self.resume.store(own.next, Ordering::Release);
        Ok(())
    }

    fn checkpoint_completed(&mut self, _id: u64, position: &SourcePosition) -> Result<()> {
        if let SourcePosition::Kafka { offsets } = position {
            for offset in offsets {
                let _ = self.commits.send(offset.clone());
            }
        }
        Ok(())
    }

    fn poll(
        &mut self,
        ingest: &mut Ingest<'_>,
        max: usize,
        deadline: Instant,
    ) -> Result<SourceState> {
        while ingest.len() < max {
            if self.at == self.block.len() {
                let wait = deadline.saturating_duration_since(Instant::now());
                match self.blocks.recv_timeout(wait) {
                    Ok(block) => {
                        self.block = block;
                        self.at = 0;
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return Ok(SourceState::Exhausted),
                }
                continue;
            }
            self.hand_over(ingest, max);
        }
        Ok(SourceState::Open)
    }
}

impl PartitionFeed {
    /// Hands the current block's records to `ingest` until either runs out.
    fn hand_over(&mut self, ingest: &mut Ingest<'_>, max: usize) {
        let mut headers = Vec::new();
        while self.at < self.block.len() && ingest.len() < max {
            let resume = self.resume.load(Ordering::Acquire);
            let (meta, record) = self.block.record(self.at, &mut headers);
            self.at += 1;
            let next = if self.next >= 0 { self.next } else { resume };
            if meta.offset < next {
                continue; // fetched before the consumer was moved to the resume offset
            }
            self.next = meta.offset + 1;
            ingest.push_record(0, meta.offset as u64, record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::EventBatch;
    use crate::config::EventFields;
    use crate::dead_letter::DeadLetters;
    use crate::watermark::Watermarks;

    #[test]
    fn hands_over_blocks_in_order_and_tracks_the_offset() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (commits, _) = std::sync::mpsc::channel();
        let resume = Arc::new(AtomicI64::new(-1));
        let mut feed = PartitionFeed::new("t", 2, 5, rx, resume.clone(), commits);
        let mut block = Fetched::default();
        let trace: &[(&[u8], &[u8])] = &[(b"trace", b"t-5"), (b"tenant", b"acme")];
        block.push(4, Some(1), None, br#"{"a":0}"#, []); // before the start: skipped
        block.push(5, Some(2), Some(b"k"), br#"{"a":1}"#, trace.iter().copied());
        block.push(6, Some(3), None, br#"{"a":2}"#, []);
        tx.send(block).unwrap();
        drop(tx);
        let fields = EventFields::default();
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::new("t");
        let mut watermarks = Watermarks::new(1, std::time::Duration::ZERO, None);
        let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
        let deadline = Instant::now() + std::time::Duration::from_millis(50);
        assert_eq!(
            feed.poll(&mut ingest, 10, deadline).unwrap(),
            SourceState::Exhausted
        );
        assert_eq!(batch.len(), 2);
        assert_eq!((batch.key(0), batch.key(1)), (&b"k"[..], &b""[..]));
        assert_eq!(batch.value(1), br#"{"a":2}"#);
        assert_eq!(batch.columns.timestamps, vec![2, 3]);
        let headers = batch
            .columns
            .headers
            .as_ref()
            .expect("headers reach the batch");
        assert_eq!(
            headers.header_ends,
            vec![2, 2],
            "two on the first event, none on the second"
        );
        assert_eq!(
            (&headers.names[..], &headers.values[..]),
            (&b"tracetenant"[..], &b"t-5acme"[..])
        );
        let SourcePosition::Kafka { offsets } = feed.position() else {
            panic!()
        };
        assert_eq!(offsets[0].next, 7);
        feed.seek(&SourcePosition::Kafka { offsets }).unwrap();
        assert_eq!(resume.load(Ordering::Acquire), 7);
    }
}
