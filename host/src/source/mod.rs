//! Sources: where events come from. Each kind is one module behind [`Source`].
//!
//! A source is pulled by the pipeline: [`Source::poll`] appends events to the batch being
//! gathered, blocking no longer than the deadline the pipeline gives, so the batching
//! knobs (`max_records`, `max_wait`) work the same for every kind.
//!
//! A source owns its state: its identity, partitions and position go into its own
//! checkpoint section (`source`), which only this module reads back, and it hears when a
//! checkpoint completes (where a broker source commits its offsets).

mod fields;
mod file;
mod generator;
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
pub use file::FileSource;
pub use generator::Generator;
pub use stdin::StdinSource;

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
}

/// The name of a source's checkpoint section.
pub const SECTION: &str = "source";
/// The format version of the source section this Eddy writes.
const SECTION_VERSION: u32 = 1;

/// What a source's checkpoint section holds.
#[derive(Debug, Serialize, Deserialize)]
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

    /// Checkpoint `id`, which covers everything read so far up to its cut, is durable
    /// (a broker source commits its offsets here).
    fn checkpoint_completed(&mut self, _id: u64) -> Result<()> {
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
    })
}

impl Checkpointed for Box<dyn Source> {
    fn snapshot(&mut self, _id: u64, _incremental: bool) -> Result<Option<Section>> {
        let state = SourceSection {
            name: self.describe(),
            partitions: self.partitions(),
            position: self.position(),
        };
        Ok(Some(
            Section::new(SECTION, SECTION_VERSION).with_meta(&state)?,
        ))
    }

    fn checkpoint_completed(&mut self, id: u64) -> Result<()> {
        Source::checkpoint_completed(self.as_mut(), id)
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

/// Where a source puts what it reads: the batch being gathered, and dead letters for
/// input that is not a valid event.
pub struct Ingest<'a> {
    batch: &'a mut EventBatch,
    dead: &'a mut DeadLetters,
    fields: &'a EventFields,
    watermarks: &'a mut Watermarks,
    now: Instant,
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
        match extract(line, self.fields) {
            Ok(found) => {
                let timestamp = found.timestamp.unwrap_or_else(now_millis);
                let key = found.key.as_deref().unwrap_or_default();
                self.batch.values_mut().extend_from_slice(line);
                self.push_written(partition, position, key, timestamp);
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
        true
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
