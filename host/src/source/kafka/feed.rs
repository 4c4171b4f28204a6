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
    /// End of its key (which starts where the previous record's value ends).
    key_end: u32,
    /// Whether it has a key.
    has_key: bool,
    /// End of its value (which starts at `key_end`).
    value_end: u32,
}

/// Records of one partition as the worker fetched them, packed back to back (key, then
/// value), so handing them to a task allocates per block, not per record.
#[derive(Debug, Default)]
pub struct Fetched {
    bytes: Vec<u8>,
    records: Vec<FetchedRecord>,
}

impl Fetched {
    /// Appends a record.
    pub fn push(&mut self, offset: i64, timestamp: Option<i64>, key: Option<&[u8]>, value: &[u8]) {
        self.bytes.extend_from_slice(key.unwrap_or_default());
        let key_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.records.push(FetchedRecord {
            offset,
            timestamp,
            key_end,
            has_key: key.is_some(),
            value_end: self.bytes.len() as u32,
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

    fn record(&self, i: usize) -> (FetchedRecord, SourceRecord<'_>) {
        let r = self.records[i];
        let start = if i == 0 {
            0
        } else {
            self.records[i - 1].value_end
        };
        let key = &self.bytes[start as usize..r.key_end as usize];
        (
            r,
            SourceRecord {
                value: &self.bytes[r.key_end as usize..r.value_end as usize],
                key: r.has_key.then_some(key),
                timestamp: r.timestamp,
                headers: &[],
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
            let (meta, record) = self.block.record(self.at);
            self.at += 1;
            if meta.offset < self.next() {
                continue; // fetched before the consumer was moved to the resume offset
            }
            self.next = meta.offset + 1;
            ingest.push_record(0, meta.offset as u64, record);
        }
        Ok(SourceState::Open)
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
        block.push(4, Some(1), None, br#"{"a":0}"#); // before the start: skipped
        block.push(5, Some(2), Some(b"k"), br#"{"a":1}"#);
        block.push(6, Some(3), None, br#"{"a":2}"#);
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
        let SourcePosition::Kafka { offsets } = feed.position() else {
            panic!()
        };
        assert_eq!(offsets[0].next, 7);
        feed.seek(&SourcePosition::Kafka { offsets }).unwrap();
        assert_eq!(resume.load(Ordering::Acquire), 7);
    }
}
