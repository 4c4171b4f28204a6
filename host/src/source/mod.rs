//! Sources: where events come from. Each kind is one module behind [`Source`].
//!
//! A source is pulled by the pipeline: [`Source::poll`] appends events to the batch being
//! gathered, blocking no longer than the deadline the pipeline gives, so the batching
//! knobs (`max_records`, `max_wait`) work the same for every kind.
//!
//! A source owns its state: its identity, partitions and position go into its own
//! checkpoint section (`source`), which only this module reads back, and it hears when a
//! checkpoint completes (where a broker source commits its offsets).

pub mod fields;
mod file;
mod generator;
mod json_scan;
pub mod kafka;
mod stdin;

use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::batch::{EventBatch, Origin};
use crate::checkpoint::{Checkpointed, Section};
use crate::clock::now_millis;
use crate::config::{EventFields, SourceConfig};
use crate::dead_letter::{DeadLetters, DeadValue};
use crate::watermark::Watermarks;

pub use fields::{extract, Extracted};
pub use file::{FileSource, FileSourceConfig};
pub use generator::{Generator, GeneratorConfig};
pub use kafka::{KafkaSource, KafkaSourceConfig, PartitionOffset};
pub use stdin::{StdinSource, StdinSourceConfig};

/// Whether a source may produce more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// More events may come.
    Open,
    /// The source is bounded and has no more events.
    Exhausted,
}

/// Where a source is, per kind: what its checkpoint section records to resume it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourcePosition {
    /// A file: the byte offset of the next line and its 1-based number minus one.
    File {
        /// Bytes consumed.
        offset: u64,
        /// Lines consumed.
        line: u64,
    },
    /// The generator: the next `seq` to emit.
    Generator {
        /// The next sequence number.
        next_seq: u64,
    },
    /// A source that cannot be replayed (stdin).
    #[default]
    Unreplayable,
    /// Kafka: the next offset of each partition.
    Kafka {
        /// One entry per partition, in source-partition order.
        offsets: Vec<PartitionOffset>,
    },
}

/// The name of a source's checkpoint section.
pub const SECTION: &str = "source";
/// The format version of the source section this Eddy writes.
const SECTION_VERSION: u32 = 1;

/// What a source's checkpoint section holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SourceSection {
    /// The source as [`Source::describe`] names it.
    name: String,
    /// Its number of partitions.
    partitions: u32,
    /// Its position.
    position: SourcePosition,
}

/// A source of events, pulled a batch at a time.
pub trait Source: Send {
    /// Names the source in dead letters and logs, e.g. `file:payments.jsonl`.
    fn describe(&self) -> String;

    /// Number of partitions, each with its own position and watermark.
    fn partitions(&self) -> u32 {
        1
    }

    /// Where the source is: what a checkpoint records to resume it.
    fn position(&self) -> SourcePosition;

    /// Moves the source to a position a checkpoint recorded.
    fn seek(&mut self, position: &SourcePosition) -> Result<()>;

    /// Settles where the run starts before anything is read (a broker source resolves
    /// `start` to concrete offsets), so the checkpoint a job takes as it starts records
    /// a position that resumes exactly there. Sources that know their start from the
    /// outset have nothing to do.
    fn settle_start(&mut self) -> Result<()> {
        Ok(())
    }

    /// Partitions gained or lost since the last call (a consumer-group rebalance); the
    /// pipeline applies them before gathering the next batch. Sources with fixed
    /// partitions have none.
    fn assignment_changes(&mut self) -> Vec<AssignmentChange> {
        Vec::new()
    }

    /// Checkpoint `id`, whose cut was at `position`, is durable (a broker source commits
    /// those offsets to its group here).
    fn checkpoint_completed(&mut self, _id: u64, _position: &SourcePosition) -> Result<()> {
        Ok(())
    }

    /// Appends up to `max` records (events or dead letters) to `ingest`. Returns once
    /// `max` are appended, the source is exhausted, or `deadline` has passed; never blocks
    /// past `deadline`.
    fn poll(
        &mut self,
        ingest: &mut Ingest<'_>,
        max: usize,
        deadline: Instant,
    ) -> Result<SourceState>;
}

/// Builds the source a `[source]` section describes.
pub fn build(config: &SourceConfig) -> Result<Box<dyn Source>> {
    Ok(match config {
        SourceConfig::File(f) => Box::new(FileSource::open(&f.path)?),
        SourceConfig::Stdin(_) => Box::new(StdinSource::spawn()),
        SourceConfig::Generator(g) => Box::new(Generator::new(g.clone())),
        SourceConfig::Kafka(k) => Box::new(KafkaSource::open(k)?),
    })
}

/// A source as a checkpoint records it, at the cut after the last batch the pipeline
/// processed: its name, partitions and position. The pipeline checkpoints the cut, not the
/// source, because the source may have read ahead; checkpoints that complete are kept
/// for the source to hear ([`SourceCut::take_completed`]).
#[derive(Debug, Clone)]
pub struct SourceCut {
    section: SourceSection,
    /// The checkpoint being written and its position (at most one at a time).
    pending: Option<(u64, SourcePosition)>,
    completed: Vec<(u64, SourcePosition)>,
}

impl SourceCut {
    /// The cut of `source` where it is now.
    pub fn of(source: &dyn Source) -> Self {
        Self {
            section: SourceSection {
                name: source.describe(),
                partitions: source.partitions(),
                position: source.position(),
            },
            pending: None,
            completed: Vec::new(),
        }
    }

    /// Moves the cut to a later position of the same source, keeping completions not
    /// yet taken.
    pub fn advance(&mut self, position: SourcePosition) {
        self.section.position = position;
    }

    /// The source's name, as [`Source::describe`] gives it.
    pub fn name(&self) -> &str {
        &self.section.name
    }

    /// The position at the cut.
    pub fn position(&self) -> &SourcePosition {
        &self.section.position
    }

    /// Checkpoints completed since the last call and their positions, for the source
    /// ([`Source::checkpoint_completed`]).
    pub fn take_completed(&mut self) -> Vec<(u64, SourcePosition)> {
        std::mem::take(&mut self.completed)
    }
}

impl Checkpointed for SourceCut {
    fn snapshot(&mut self, id: u64, _incremental: bool) -> Result<Option<Section>> {
        self.pending = Some((id, self.section.position.clone()));
        Ok(Some(
            Section::new(SECTION, SECTION_VERSION).with_meta(&self.section)?,
        ))
    }

    fn checkpoint_completed(&mut self, id: u64) -> Result<()> {
        if let Some((pending, position)) = self.pending.take() {
            if pending == id {
                self.completed.push((id, position));
            }
        }
        Ok(())
    }
}

/// Resumes `source` from its checkpoint section, after checking the section was written
/// by the same source with the same partitions.
pub fn restore(source: &mut dyn Source, section: &Section) -> Result<()> {
    let state: SourceSection = section.meta(SECTION_VERSION)?;
    let name = source.describe();
    if state.name != name {
        bail!(
            "incompatible state: it was taken reading {}, the pipeline reads {name}",
            state.name
        );
    }
    if state.partitions != source.partitions() {
        bail!(
            "incompatible state: it has {} source partitions, the source now has {}",
            state.partitions,
            source.partitions()
        );
    }
    source.seek(&state.position)
}

/// One record as a source reads it: its value (a JSON object), and the key, timestamp and
/// headers a broker record carries besides.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceRecord<'a> {
    /// The value: a JSON object, UTF-8.
    pub value: &'a [u8],
    /// The record's key, used when the source has no `key_field`.
    pub key: Option<&'a [u8]>,
    /// The record's timestamp (ms since the Unix epoch), used when the source has no
    /// `time_field`.
    pub timestamp: Option<i64>,
    /// The record's headers (name, value), passed to plugins.
    pub headers: &'a [(&'a [u8], &'a [u8])],
}

/// A change to the partitions a source holds (a consumer-group rebalance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentChange {
    /// The source now reads this partition.
    Assigned(u32),
    /// The source no longer reads this partition.
    Revoked(u32),
}

/// Applies a source's assignment changes to the watermarks: a gained partition holds the
/// job's watermark back from its first event, a lost one no longer does.
pub fn apply_assignment(changes: &[AssignmentChange], watermarks: &mut Watermarks, now: Instant) {
    for change in changes {
        match *change {
            AssignmentChange::Assigned(p) => watermarks.assign(p, now),
            AssignmentChange::Revoked(p) => watermarks.revoke(p),
        }
    }
}

/// Where a source puts what it reads: the batch being gathered, and dead letters for
/// input that is not a valid event.
pub struct Ingest<'a> {
    batch: &'a mut EventBatch,
    dead: &'a mut DeadLetters,
    fields: &'a EventFields,
    watermarks: &'a mut Watermarks,
    now: Instant,
    /// The wall clock when the batch began gathering (ms), for `max_future`.
    wall_ms: i64,
    unparseable: u64,
}

impl<'a> Ingest<'a> {
    /// An ingest into `batch`, validating JSON events against `fields` and advancing
    /// `watermarks` with every event.
    pub fn new(
        batch: &'a mut EventBatch,
        dead: &'a mut DeadLetters,
        fields: &'a EventFields,
        watermarks: &'a mut Watermarks,
    ) -> Self {
        Self {
            batch,
            dead,
            fields,
            watermarks,
            now: Instant::now(),
            wall_ms: now_millis(),
            unparseable: 0,
        }
    }

    /// Appends one JSON line read at `position` of `partition`; a line that is not a valid
    /// event becomes a dead letter. Blank lines are skipped. Returns whether a record was
    /// added.
    pub fn push_json(&mut self, partition: u32, position: u64, line: &[u8]) -> bool {
        let line = line.trim_ascii();
        if line.is_empty() {
            return false;
        }
        self.push_record(
            partition,
            position,
            SourceRecord {
                value: line,
                ..SourceRecord::default()
            },
        );
        true
    }

    /// Appends one record as a broker delivers it (value, and maybe key, timestamp and
    /// headers) read at `position` of `partition`. The value must be a JSON object. The
    /// event's time is the source's `time_field` when it has one, else the record's
    /// timestamp, else the time it was read; its key likewise the `key_field`, else the
    /// record's key. A record that is not a valid event becomes a dead letter.
    pub fn push_record(&mut self, partition: u32, position: u64, record: SourceRecord<'_>) {
        let line = record.value;
        let checked = extract(line, self.fields).and_then(|found| {
            let timestamp = found.timestamp.or(record.timestamp);
            match (timestamp, self.fields.max_future_ms) {
                (Some(ts), Some(max)) if ts > self.wall_ms.saturating_add(max) => Err(format!(
                    "event time {ts} is more than {max} ms ahead of the wall clock \
                         ([watermark] max_future); it would make every later event late"
                )),
                _ => Ok((found, timestamp)),
            }
        });
        match checked {
            Ok((found, timestamp)) => {
                let timestamp = timestamp.unwrap_or_else(now_millis);
                let key = found.key.as_deref().or(record.key).unwrap_or_default();
                self.batch.values_mut().extend_from_slice(line);
                self.push_written(partition, position, key, timestamp);
                self.batch.attach_headers(record.headers);
            }
            Err(reason) => {
                self.unparseable += 1;
                let origin = Origin {
                    partition,
                    position,
                    watermark: self.watermarks.current(),
                };
                self.dead.push(&reason, origin, None, DeadValue::Raw(line));
            }
        }
    }

    /// The values column, for a source that writes an event's value in place (the
    /// generator) before calling [`Ingest::push_written`].
    pub fn values_mut(&mut self) -> &mut Vec<u8> {
        self.batch.values_mut()
    }

    /// Appends the event whose value was just written to [`Ingest::values_mut`], and
    /// advances the watermark by it.
    pub fn push_written(&mut self, partition: u32, position: u64, key: &[u8], timestamp: i64) {
        let watermark = self.watermarks.observe(partition, timestamp, self.now);
        self.watermarks.record_position(partition, position);
        let origin = Origin {
            partition,
            position,
            watermark,
        };
        self.batch.push_written(origin, key, timestamp);
    }

    /// Records appended so far (events and dead letters).
    pub fn len(&self) -> usize {
        self.batch.len() + self.dead.len()
    }

    /// Whether nothing has been appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks idle partitions at `now`; returns whether that advanced the watermark.
    pub fn tick(&mut self, now: Instant) -> bool {
        self.watermarks.tick(now)
    }

    /// Lines that were not valid events.
    pub fn unparseable(&self) -> u64 {
        self.unparseable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest_into(
        fields: EventFields,
        records: &[(u32, SourceRecord<'_>)],
    ) -> (EventBatch, DeadLetters, Watermarks) {
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::new("test");
        let mut watermarks = Watermarks::new(2, std::time::Duration::ZERO, None);
        let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
        for (i, (partition, record)) in records.iter().enumerate() {
            ingest.push_record(*partition, i as u64, *record);
        }
        (batch, dead, watermarks)
    }

    #[test]
    fn records_bring_their_key_timestamp_and_headers_when_no_field_says_otherwise() {
        let headers: &[(&[u8], &[u8])] = &[(b"trace", b"abc")];
        let record = SourceRecord {
            value: br#"{"user":"u1","ts":5}"#,
            key: Some(b"record-key"),
            timestamp: Some(1_000),
            headers,
        };
        let (batch, dead, _) = ingest_into(EventFields::default(), &[(0, record)]);
        assert_eq!((batch.len(), dead.len()), (1, 0));
        assert_eq!(batch.key(0), b"record-key");
        assert_eq!(batch.columns.timestamps, vec![1_000]);
        let h = batch.columns.headers.as_ref().unwrap();
        assert_eq!(
            (h.names.as_slice(), h.values.as_slice()),
            (&b"trace"[..], &b"abc"[..])
        );

        // With fields configured, the fields win.
        let fields = EventFields {
            time_field: Some("ts".into()),
            key_field: Some("user".into()),
            ..EventFields::default()
        };
        let (batch, _, _) = ingest_into(fields, &[(0, record)]);
        assert_eq!((batch.key(0), batch.columns.timestamps[0]), (&b"u1"[..], 5));
    }

    #[test]
    fn a_record_that_is_not_an_event_is_a_dead_letter() {
        let record = SourceRecord {
            value: b"not json",
            ..SourceRecord::default()
        };
        let (batch, dead, _) = ingest_into(EventFields::default(), &[(1, record)]);
        assert_eq!((batch.len(), dead.len()), (0, 1));
    }

    #[test]
    fn assignment_changes_reach_the_watermarks() {
        let record = |ts| SourceRecord {
            value: b"{}",
            timestamp: Some(ts),
            ..SourceRecord::default()
        };
        let (_, _, mut watermarks) =
            ingest_into(EventFields::default(), &[(0, record(100)), (1, record(50))]);
        assert_eq!(watermarks.current(), 49);
        apply_assignment(
            &[AssignmentChange::Revoked(1)],
            &mut watermarks,
            Instant::now(),
        );
        assert_eq!(watermarks.current(), 99);
        apply_assignment(
            &[AssignmentChange::Assigned(4)],
            &mut watermarks,
            Instant::now(),
        );
        assert!(watermarks.partitions()[4].assigned);
        assert_eq!(watermarks.current(), 99);
    }
}
