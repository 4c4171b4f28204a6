//! The read side of a pipeline: the source, the fields every event is read by, and the
//! watermarks. During a run of a job without `parallelism` it lives on its own thread and
//! gathers the next batches while the pipeline processes the current ones, so reading and
//! parsing overlap the plugins, windows and sinks on a second core. A worker (a job with
//! `parallelism`, one core per worker) reads on the pipeline's own thread between groups
//! ([`Input::next_group`]): the same groups, in the same order, with the same cuts.
//!
//! Invariants:
//! - Batches arrive in the order read, each with the cut after it (the source's position
//!   and the watermarks once the batch was gathered, exactly as a reader on the
//!   pipeline's thread would have left them), so the pipeline processes, judges lateness
//!   and checkpoints as if it read each batch itself, never what is read ahead.
//! - Batches cross in groups: a batch gathered as usual (until `max_records` or
//!   `max_wait`), then those the source can fill at once, without waiting, up to
//!   [`HANDOVER_RECORDS`]. Small batches (`max_records = 1`) thus cross many at a time
//!   when records come faster than one by one, instead of waking the pipeline's thread
//!   for each, and a batch never waits for a later one.
//! - At most one group waits; a stopping reader still delivers what it gathered, so
//!   nothing read is dropped.
//! - Checkpoints that complete reach the source between groups, in order.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::batch::{EventBatch, HANDOVER_RECORDS};
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

/// What reading keeps from one group to the next.
#[derive(Default)]
pub struct Reading {
    /// Buffers of a batch gathered empty, for the next.
    spare: Option<(EventBatch, DeadLetters)>,
    /// The error that ended reading, given after the group gathered before it.
    failure: Option<anyhow::Error>,
    /// Whether reading has ended.
    ended: bool,
}

/// Batches that cross to the pipeline together, in order.
pub type Group = Vec<Gathered>;

/// The channels between the pipeline and its reader thread.
pub struct ReaderEnds {
    /// Groups of gathered batches, in order (or the error that ended reading).
    pub batches: SyncSender<Result<Group>>,
    /// Buffers of processed batches, to gather into again without allocating.
    pub recycled: Receiver<(EventBatch, DeadLetters)>,
    /// Checkpoints that completed, for the source.
    pub completed: Receiver<(u64, SourcePosition)>,
}

/// The pipeline's ends of the channels to its reader thread.
pub struct PipelineEnds {
    /// Groups of gathered batches, in order.
    pub gathered: Receiver<Result<Group>>,
    /// Where a processed batch's buffers go back.
    pub recycle: Sender<(EventBatch, DeadLetters)>,
    /// Where completed checkpoints and their positions go, for the source.
    pub completions: Sender<(u64, SourcePosition)>,
}

/// The channels between a pipeline and its reader thread: at most one group waits.
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

    /// Settles where reading starts (see [`Source::settle_start`]) and returns that cut.
    pub fn settle_start(&mut self) -> Result<ReadCut> {
        self.source.settle_start()?;
        Ok(self.cut())
    }

    /// Tells the source that checkpoint `id`, cut at `position`, completed.
    pub fn checkpoint_completed(&mut self, id: u64, position: &SourcePosition) -> Result<()> {
        self.source.checkpoint_completed(id, position)
    }

    /// Gathers groups of batches into `ends.batches` until the source is exhausted, `stop`
    /// says so or the pipeline hangs up; the reader thread's body. Returns the input for
    /// the next run.
    pub fn read_ahead(mut self, ends: ReaderEnds, stop: &(dyn Fn() -> bool + Sync)) -> Self {
        let mut reading = Reading::default();
        while let Some(group) = self.next_group(&ends, &mut reading, stop) {
            if ends.batches.send(group).is_err() {
                break;
            }
        }
        self
    }

    /// The next group of batches (after handing the source the checkpoints that
    /// completed), the error that ended reading, or `None` once reading has ended (the
    /// source is exhausted or `stop` said so). A job that reads on the pipeline's own
    /// thread calls this between groups; [`Input::read_ahead`] calls it on the reader's.
    pub fn next_group(
        &mut self,
        ends: &ReaderEnds,
        reading: &mut Reading,
        stop: &dyn Fn() -> bool,
    ) -> Option<Result<Group>> {
        loop {
            if let Some(error) = reading.failure.take() {
                return Some(Err(error));
            }
            if reading.ended {
                return None;
            }
            while let Ok((id, position)) = ends.completed.try_recv() {
                if let Err(e) = self.checkpoint_completed(id, &position) {
                    reading.ended = true;
                    return Some(Err(e));
                }
            }
            let (group, goes_on) = self.gather_group(ends, &mut reading.spare, stop);
            match goes_on {
                Ok(true) => {}
                Ok(false) => reading.ended = true,
                Err(e) => {
                    reading.ended = true;
                    reading.failure = Some(e); // after the group gathered before it
                }
            }
            if !group.is_empty() {
                return Some(Ok(group));
            }
        }
    }

    /// Gathers a group: one batch as usual, then batches the source fills without
    /// waiting, until one comes short (the source has nothing more at hand), the group
    /// holds [`HANDOVER_RECORDS`] (more only when its first batch alone is larger), the source is exhausted or `stop` says so. Returns
    /// the group and whether reading goes on after it. An empty batch after the first is
    /// not kept: its buffers wait in `spare` for the next.
    fn gather_group(
        &mut self,
        ends: &ReaderEnds,
        spare: &mut Option<(EventBatch, DeadLetters)>,
        stop: &dyn Fn() -> bool,
    ) -> (Group, Result<bool>) {
        let mut group = Group::new();
        let mut records = 0;
        loop {
            let (mut batch, mut dead) = spare
                .take()
                .or_else(|| ends.recycled.try_recv().ok())
                .unwrap_or_else(|| {
                    let name = self.source.describe();
                    (EventBatch::default(), DeadLetters::new(name))
                });
            batch.clear();
            dead.clear();
            let wait = match group.is_empty() {
                true => self.batch.max_wait.0,
                false => Duration::ZERO,
            };
            let (state, unparseable) = match self.gather(&mut batch, &mut dead, wait, stop) {
                Ok(gathered) => gathered,
                Err(e) => return (group, Err(e)),
            };
            let len = batch.len() + dead.len();
            let last = state == SourceState::Exhausted || stop();
            if len == 0 && !group.is_empty() && !last {
                *spare = Some((batch, dead));
                return (group, Ok(true));
            }
            group.push(Gathered {
                batch,
                dead,
                state,
                unparseable,
                position: self.source.position(),
                watermarks: self.watermarks.clone(),
            });
            records += len;
            if last || len < self.batch.max_records || records >= HANDOVER_RECORDS {
                return (group, Ok(!last));
            }
        }
    }

    /// Gathers one batch: until it holds `max_records`, `wait` has passed, `stop` says
    /// so, or the source is exhausted (then the watermarks finish). A batch may be empty
    /// (an idle source): the pipeline then still answers control requests and fires
    /// windows that idleness released.
    fn gather(
        &mut self,
        batch: &mut EventBatch,
        dead: &mut DeadLetters,
        wait: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<(SourceState, u64)> {
        let max = self.batch.max_records;
        let deadline = Instant::now() + wait;
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
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::config::ConfigDuration;
    use crate::source::{FileSource, Generator, GeneratorConfig};

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

    /// Runs `input`'s reader to the end, taking each group as it comes (`between`
    /// runs first), and returns the groups and the input.
    fn read_all(input: Input, mut between: impl FnMut()) -> (Vec<Group>, Input) {
        let (ends, pipeline) = channels();
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| input.read_ahead(ends, &|| false));
            let mut groups = Vec::new();
            while let Ok(next) = pipeline.gathered.recv() {
                between();
                groups.push(next.unwrap());
            }
            (groups, reader.join().unwrap())
        })
    }

    #[test]
    fn each_batch_comes_with_the_cut_after_it_not_after_what_is_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        // Give the reader time to run ahead before looking at the cuts.
        let (groups, input) = read_all(input(dir.path(), 95), || {
            std::thread::sleep(Duration::from_millis(5))
        });
        let mut read = 0;
        let mut last_watermark = i64::MIN;
        for g in groups.into_iter().flatten() {
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
        assert_eq!(lines_read(input.cut().source.position()), 95);
    }

    #[test]
    fn reading_on_the_pipelines_thread_gives_what_the_reader_thread_gives() {
        let dir = tempfile::tempdir().unwrap();
        let summary = |groups: &[Group]| -> Vec<Vec<(usize, usize, u64, SourceState)>> {
            groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|b| {
                            (
                                b.batch.len(),
                                b.dead.len(),
                                lines_read(&b.position),
                                b.state,
                            )
                        })
                        .collect()
                })
                .collect()
        };
        let (ahead, _) = read_all(input(dir.path(), 95), || {});
        let mut inline = input(dir.path(), 95);
        let (ends, _pipeline) = channels();
        let mut reading = Reading::default();
        let mut groups = Vec::new();
        while let Some(group) = inline.next_group(&ends, &mut reading, &|| false) {
            groups.push(group.unwrap());
        }
        assert_eq!(summary(&groups), summary(&ahead));
        assert_eq!(lines_read(inline.cut().source.position()), 95);
        assert!(inline.next_group(&ends, &mut reading, &|| false).is_none());
    }

    #[test]
    fn small_batches_the_source_has_at_hand_cross_together_each_with_its_cut() {
        let dir = tempfile::tempdir().unwrap();
        let lines = HANDOVER_RECORDS * 2 + HANDOVER_RECORDS / 2;
        let mut one_by_one = input(dir.path(), lines as u64);
        one_by_one.batch.max_records = 1;
        let (groups, _) = read_all(one_by_one, || {});
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert!(
            sizes[..2] == [HANDOVER_RECORDS, HANDOVER_RECORDS],
            "groups of {sizes:?}"
        );
        let mut batches: Vec<Gathered> = groups.into_iter().flatten().collect();
        let end = batches.pop().unwrap();
        assert_eq!((end.batch.len(), end.state), (0, SourceState::Exhausted));
        assert_eq!(batches.len(), lines);
        for (i, g) in batches.iter().enumerate() {
            assert_eq!(g.batch.len() + g.dead.len(), 1);
            assert_eq!(lines_read(&g.position), i as u64 + 1);
        }
    }

    #[test]
    fn a_batch_does_not_wait_for_the_next_to_cross() {
        let paced = Input {
            source: Box::new(Generator::new(GeneratorConfig {
                count: Some(3),
                rate: Some(2.0),
                ..GeneratorConfig::default()
            })),
            fields: GeneratorConfig::default().event_fields(),
            watermarks: Watermarks::new(1, Duration::ZERO, None),
            batch: BatchConfig {
                max_records: 1,
                max_wait: ConfigDuration(Duration::from_secs(60)),
            },
        };
        let started = Instant::now();
        let mut crossed = Vec::new();
        let (groups, _) = read_all(paced, || crossed.push(started.elapsed()));
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 3);
        assert!(
            groups.iter().all(|g| g.len() == 1),
            "each event crosses as it comes"
        );
        // Events are due at 0, 0.5 and 1 s; a batch that waited for the next would
        // cross a second late.
        assert!(crossed[1] < Duration::from_millis(900), "{crossed:?}");
    }

    #[test]
    fn a_stopped_reader_delivers_the_batches_it_gathered_and_hangs_up() {
        let dir = tempfile::tempdir().unwrap();
        // The reader asks `stop` at least once per batch of 10: it is told to stop a few
        // groups in, however the two threads are scheduled (the first group may still
        // wait to be taken then).
        let asked = AtomicU64::new(0);
        let should_stop = || asked.fetch_add(1, Ordering::Relaxed) >= 1000;
        let (ends, pipeline) = channels();
        let gathered = pipeline.gathered;
        let input = input(dir.path(), 50_000);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| input.read_ahead(ends, &should_stop));
            let mut delivered = 0;
            let mut last_position = None;
            while let Ok(next) = gathered.recv() {
                for g in next.unwrap() {
                    delivered += (g.batch.len() + g.dead.len()) as u64;
                    last_position = Some(g.position);
                }
            }
            assert!(
                (HANDOVER_RECORDS as u64..50_000).contains(&delivered),
                "stopped after the first group, not at {delivered}"
            );
            assert_eq!(
                lines_read(&last_position.unwrap()),
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
