//! The read side of a pipeline: the source, the fields every event is read by, and the
//! watermarks. During a run it lives on its own thread and gathers the next batch while
//! the pipeline processes the current one, so reading and parsing overlap the plugins,
//! windows and sinks on a second core.
//!
//! Invariants:
//! - Batches arrive in the order read, each with the cut after it (the source's position
//!   and the watermarks once the batch was gathered, exactly as a reader on the
//!   pipeline's thread would have left them), so the pipeline processes, judges lateness
//!   and checkpoints as if it read each batch itself, never what is read ahead.
//! - At most one gathered batch waits; a stopping reader still delivers the batch it was
//!   gathering, so nothing read is dropped.
//! - Checkpoints that complete reach the source between batches, in order.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Instant;

use anyhow::Result;

use crate::batch::EventBatch;
use crate::config::{BatchConfig, EventFields};
use crate::dead_letter::DeadLetters;
use crate::source::{self, Ingest, Source, SourceCut, SourcePosition, SourceState};
use crate::watermark::Watermarks;

/// The source and what reading it needs.
pub struct Input {
    /// The source.
    pub source: Box<dyn Source>,
    /// The time and key fields, and the bound on event time ahead of the wall clock.
    pub fields: EventFields,
    /// The watermarks, advanced by every event read.
    pub watermarks: Watermarks,
    /// How much a batch gathers.
    pub batch: BatchConfig,
}

/// Where reading stood after a batch: what a checkpoint of the read side records.
#[derive(Debug, Clone)]
pub struct ReadCut {
    /// The source's position.
    pub source: SourceCut,
    /// The watermarks.
    pub watermarks: Watermarks,
}

/// A batch as the reader gathered it.
pub struct Gathered {
    /// The events.
    pub batch: EventBatch,
    /// Input that was not a valid event.
    pub dead: DeadLetters,
    /// Whether the source is exhausted after this batch.
    pub state: SourceState,
    /// How many records were not valid events.
    pub unparseable: u64,
    /// The source's position after the batch.
    pub position: SourcePosition,
    /// The watermarks after the batch.
    pub watermarks: Watermarks,
}

/// The channels between the pipeline and its reader thread.
pub struct ReaderEnds {
    /// Gathered batches, in order (or the error that ended reading).
    pub batches: SyncSender<Result<Gathered>>,
    /// Buffers of processed batches, to gather into again without allocating.
    pub recycled: Receiver<(EventBatch, DeadLetters)>,
    /// Checkpoints that completed, for the source.
    pub completed: Receiver<(u64, SourcePosition)>,
}

/// The pipeline's ends of the channels to its reader thread.
pub struct PipelineEnds {
    /// Gathered batches, in order.
    pub gathered: Receiver<Result<Gathered>>,
    /// Where a processed batch's buffers go back.
    pub recycle: Sender<(EventBatch, DeadLetters)>,
    /// Where completed checkpoints and their positions go, for the source.
    pub completions: Sender<(u64, SourcePosition)>,
}

/// The channels between a pipeline and its reader thread: at most one gathered batch
/// waits.
pub fn channels() -> (ReaderEnds, PipelineEnds) {
    let (batches, gathered) = mpsc::sync_channel(1);
    let (recycle, recycled) = mpsc::channel();
    let (completions, completed) = mpsc::channel();
    (
        ReaderEnds {
            batches,
            recycled,
            completed,
        },
        PipelineEnds {
            gathered,
            recycle,
            completions,
        },
    )
}

impl Input {
    /// The cut where reading stands now.
    pub fn cut(&self) -> ReadCut {
        ReadCut {
            source: SourceCut::of(self.source.as_ref()),
            watermarks: self.watermarks.clone(),
        }
    }

    /// Tells the source that checkpoint `id`, cut at `position`, completed.
    pub fn checkpoint_completed(&mut self, id: u64, position: &SourcePosition) -> Result<()> {
        self.source.checkpoint_completed(id, position)
    }

    /// Gathers batches into `ends.batches` until the source is exhausted, `stop` says so
    /// or the pipeline hangs up; the reader thread's body. Returns the input for the
    /// next run.
    pub fn read_ahead(mut self, ends: ReaderEnds, stop: &(dyn Fn() -> bool + Sync)) -> Self {
        loop {
            while let Ok((id, position)) = ends.completed.try_recv() {
                if let Err(e) = self.checkpoint_completed(id, &position) {
                    let _ = ends.batches.send(Err(e));
                    return self;
                }
            }
            let (mut batch, mut dead) = ends.recycled.try_recv().unwrap_or_else(|_| {
                let name = self.source.describe();
                (EventBatch::default(), DeadLetters::new(name))
            });
            batch.clear();
            dead.clear();
            let gathered = self
                .gather(&mut batch, &mut dead, stop)
                .map(|(state, unparseable)| Gathered {
                    batch,
                    dead,
                    state,
                    unparseable,
                    position: self.source.position(),
                    watermarks: self.watermarks.clone(),
                });
            let last = match &gathered {
                Ok(g) => g.state == SourceState::Exhausted || stop(),
                Err(_) => true,
            };
            if ends.batches.send(gathered).is_err() || last {
                return self;
            }
        }
    }

    /// Gathers one batch: until it holds `max_records`, `max_wait` has passed, `stop`
    /// says so, or the source is exhausted (then the watermarks finish). A batch may be empty
    /// (an idle source): the pipeline then still answers control requests and fires
    /// windows that idleness released.
    pub fn gather(
        &mut self,
        batch: &mut EventBatch,
        dead: &mut DeadLetters,
        stop: &dyn Fn() -> bool,
    ) -> Result<(SourceState, u64)> {
        let max = self.batch.max_records;
        let deadline = Instant::now() + self.batch.max_wait.0;
        let changes = self.source.assignment_changes();
        if !changes.is_empty() {
            source::apply_assignment(&changes, &mut self.watermarks, Instant::now());
        }
        let mut ingest = Ingest::new(batch, dead, &self.fields, &mut self.watermarks);
        let (state, unparseable) = loop {
            let remaining = max - ingest.len();
            let state = self.source.poll(&mut ingest, remaining, deadline)?;
            let now = Instant::now();
            if state == SourceState::Exhausted || ingest.len() >= max || stop() || now >= deadline {
                ingest.tick(now);
                break (state, ingest.unparseable());
            }
        };
        if state == SourceState::Exhausted {
            self.watermarks.finish();
        }
        Ok((state, unparseable))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::source::FileSource;

    /// An input reading `lines` JSON lines (one bad) in batches of 10.
    fn input(dir: &std::path::Path, lines: u64) -> Input {
        let path = dir.join("in.jsonl");
        let mut file = std::fs::File::create(&path).unwrap();
        for i in 0..lines {
            if i == 13 {
                writeln!(file, "not json").unwrap();
            } else {
                writeln!(file, "{{\"ts\":{}}}", i * 1000).unwrap();
            }
        }
        Input {
            source: Box::new(FileSource::open(&path).unwrap()),
            fields: EventFields {
                time_field: Some("ts".into()),
                ..EventFields::default()
            },
            watermarks: Watermarks::new(1, Duration::ZERO, None),
            batch: BatchConfig {
                max_records: 10,
                ..BatchConfig::default()
            },
        }
    }

    fn lines_read(position: &SourcePosition) -> u64 {
        match position {
            SourcePosition::File { line, .. } => *line,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_batch_comes_with_the_cut_after_it_not_after_what_is_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let (ends, pipeline) = channels();
        let gathered = pipeline.gathered;
        let reader = std::thread::spawn(move || input(dir.path(), 95).read_ahead(ends, &|| false));
        let mut read = 0;
        let mut last_watermark = i64::MIN;
        while let Ok(next) = gathered.recv() {
            // Give the reader time to run ahead before looking at the cut.
            std::thread::sleep(Duration::from_millis(5));
            let g = next.unwrap();
            read += (g.batch.len() + g.dead.len()) as u64;
            assert_eq!(lines_read(&g.position), read);
            let newest = *g.batch.columns.timestamps.last().unwrap();
            let watermark = g.watermarks.current();
            if g.state == SourceState::Open {
                assert_eq!(watermark, newest - 1, "the watermark after the batch");
            } else {
                assert!(watermark > newest, "the last batch finishes the watermarks");
            }
            assert!(watermark > last_watermark);
            last_watermark = watermark;
        }
        assert_eq!(read, 95);
        let input = reader.join().unwrap();
        assert_eq!(lines_read(input.cut().source.position()), 95);
    }

    #[test]
    fn a_stopped_reader_delivers_the_batch_it_was_gathering_and_hangs_up() {
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let (ends, pipeline) = channels();
        let gathered = pipeline.gathered;
        let input = input(dir.path(), 1000);
        let should_stop = || stop.load(Ordering::Relaxed);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| input.read_ahead(ends, &should_stop));
            let first = gathered.recv().unwrap().unwrap();
            stop.store(true, Ordering::Relaxed);
            let mut delivered = (first.batch.len() + first.dead.len()) as u64;
            let mut last_position = first.position;
            while let Ok(next) = gathered.recv() {
                let g = next.unwrap();
                delivered += (g.batch.len() + g.dead.len()) as u64;
                last_position = g.position;
            }
            assert!(delivered < 1000, "stopped early");
            assert_eq!(
                lines_read(&last_position),
                delivered,
                "nothing read is dropped"
            );
            assert_eq!(
                lines_read(reader.join().unwrap().cut().source.position()),
                delivered
            );
        });
    }
}
