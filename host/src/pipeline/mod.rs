//! The pipeline: `source → batch → plugin chain → (keyed window) → sink`, with dead
//! letters and late events beside it, and checkpoints taken at batch boundaries.
//!
//! One thread drives the whole chain a batch at a time, so an event's path through the
//! pipeline is a handful of function calls and memory copies, never a channel hop.
//! Control (checkpoints, savepoints, stop) happens between batches, in one place: here.

mod control;
mod metrics;
mod restore;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

pub use control::{
    CheckpointStatus, Control, PartitionStatus, PluginStatus, SourceStatus, Status, StatusBoard,
};
pub use metrics::{Metrics, RunSummary};

use crate::batch::EventBatch;
use crate::checkpoint::{self, CheckpointDir, CheckpointWriter, Snapshot, SourceSnapshot};
use crate::config::{
    AggregateKind, BatchConfig, EventFields, PipelineConfig, SinkConfig, WindowConfig,
};
use crate::dead_letter::DeadLetters;
use crate::plugin::{LoadedPlugin, PluginRuntime, PluginStage, SideInputs, WasmAggregate};
use crate::sink::{self, FileMode, RecordBuffer, Records, Sink};
use crate::source::{self, Ingest, Source, SourceState};
use crate::watermark::{Watermarks, MIN_WATERMARK};
use crate::window::{Aggregator, Assigner, Builtin, WindowCounters, WindowOperator};

/// How a run starts.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start from the beginning even though checkpoints exist (they are removed, and
    /// file sinks start empty).
    pub fresh: bool,
    /// Start from this savepoint (a directory or file) instead of the checkpoints.
    pub from_savepoint: Option<PathBuf>,
}

/// Side inputs and plugins of a pipeline, loaded (compiled, type-checked), not running.
pub struct LoadedPipeline {
    /// The side-input tables.
    pub side_inputs: SideInputs,
    /// The `[[plugin]]` stages, in order.
    pub stages: Vec<LoadedPlugin>,
    /// The `[window]` aggregate plugin, if any.
    pub window_plugin: Option<LoadedPlugin>,
}

/// Loads side inputs and every plugin (compiled, type-checked) without running anything.
pub fn load_plugins(
    config: &PipelineConfig,
    runtime: &PluginRuntime,
    watch: bool,
) -> Result<LoadedPipeline> {
    let side_inputs = SideInputs::load(&config.side_inputs, watch)?;
    let stages = config
        .plugins
        .iter()
        .map(|p| runtime.load(p))
        .collect::<Result<_>>()?;
    let window_plugin = config
        .window
        .as_ref()
        .and_then(|w| w.plugin.as_ref())
        .map(|p| runtime.load(p))
        .transpose()?;
    Ok(LoadedPipeline {
        side_inputs,
        stages,
        window_plugin,
    })
}

/// The window operator a `[window]` section describes, with its loaded aggregate plugin.
fn build_window(
    config: &WindowConfig,
    plugin: Option<LoadedPlugin>,
    runtime: &PluginRuntime,
    side_inputs: &SideInputs,
) -> Result<WindowOperator> {
    let aggregator: Box<dyn Aggregator> = match (config.aggregate, plugin) {
        (AggregateKind::Plugin, Some(plugin)) => {
            Box::new(WasmAggregate::start(runtime, plugin, side_inputs.clone())?)
        }
        (kind, _) => Box::new(Builtin::new(kind, config.field.clone())),
    };
    Ok(WindowOperator::new(
        Assigner::from_config(config),
        config.allowed_lateness.as_millis(),
        aggregator,
    ))
}

/// A window definition as a checkpoint records it: window state restores only into the
/// same definition (the aggregate plugin's version may change).
fn window_spec(config: &WindowConfig) -> String {
    format!(
        "{:?} size={:?} slide={:?} gap={:?} offset={} lateness={} aggregate={:?} field={:?} plugin={:?}",
        config.kind,
        config.size.map(|d| d.as_millis()),
        config.slide.map(|d| d.as_millis()),
        config.gap.map(|d| d.as_millis()),
        config.offset.as_millis(),
        config.allowed_lateness.as_millis(),
        config.aggregate,
        config.field,
        config.plugin.as_ref().map(|p| &p.name),
    )
}

/// The result, dead-letter and late sinks.
struct Sinks {
    main: Box<dyn Sink>,
    dead: Box<dyn Sink>,
    /// The late sink, when it is not the dead-letter sink.
    late: Option<Box<dyn Sink>>,
}

impl Sinks {
    fn open(
        config: &PipelineConfig,
        transactional: bool,
        resume: Option<&Snapshot>,
    ) -> Result<Self> {
        let mode = |role: &'static str, sink: &SinkConfig| {
            if !transactional {
                return FileMode::Direct;
            }
            let recover = resume.and_then(|s| {
                s.sinks.iter().find(|k| {
                    k.role == role && matches!(sink, SinkConfig::File { path } if *path == k.path)
                })
            });
            FileMode::Transactional { role, recover }
        };
        let dead_config = config.dead_letter.clone().unwrap_or(SinkConfig::Stderr {});
        Ok(Self {
            main: sink::build(&config.sink, mode("sink", &config.sink))
                .context("cannot open the [sink]")?,
            dead: sink::build(&dead_config, mode("dead_letter", &dead_config))
                .context("cannot open the [dead_letter] sink")?,
            late: config
                .late
                .as_ref()
                .map(|late| {
                    sink::build(late, mode("late", late)).context("cannot open the [late] sink")
                })
                .transpose()?,
        })
    }

    fn all(&mut self) -> impl Iterator<Item = &mut Box<dyn Sink>> {
        [
            Some(&mut self.main),
            Some(&mut self.dead),
            self.late.as_mut(),
        ]
        .into_iter()
        .flatten()
    }
}

/// Periodic checkpoints of a running pipeline.
struct Checkpointing {
    dir: CheckpointDir,
    interval: std::time::Duration,
    incremental_above: usize,
    writer: CheckpointWriter,
    last_started: Instant,
    next_id: u64,
    last_completed: Option<CheckpointStatus>,
    /// The newest checkpoint written (or resumed from): what an incremental one builds on.
    last_written: Option<u64>,
}

/// A pipeline ready to run.
pub struct Pipeline {
    source: Box<dyn Source>,
    fields: EventFields,
    watermarks: Watermarks,
    stages: Vec<PluginStage>,
    window: Option<WindowOperator>,
    window_spec: Option<String>,
    sinks: Sinks,
    batch: BatchConfig,
    side_inputs: SideInputs,
    checkpointing: Option<Checkpointing>,
    metrics: Metrics,
    status: StatusBoard,
    /// When the status board was last refreshed; it is refreshed a few times a second,
    /// not per batch (building it allocates).
    status_refreshed: Instant,
}

/// How often a running pipeline refreshes its status board.
const STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Pipeline {
    /// Builds a pipeline, resuming from the newest good checkpoint (or the savepoint
    /// `options` names): loads side inputs and plugins, starts the plugins, opens the
    /// source, restores state, and only then opens the sinks (so a pipeline that cannot
    /// start leaves existing output alone).
    pub fn build(
        config: &PipelineConfig,
        runtime: &PluginRuntime,
        options: &RunOptions,
    ) -> Result<Self> {
        let LoadedPipeline {
            side_inputs,
            stages,
            window_plugin,
        } = load_plugins(config, runtime, true)?;
        let stages = stages
            .into_iter()
            .map(|p| PluginStage::start(runtime, p, side_inputs.clone()))
            .collect::<Result<Vec<_>>>()?;
        let window = config
            .window
            .as_ref()
            .map(|w| build_window(w, window_plugin, runtime, &side_inputs))
            .transpose()?;
        let source = source::build(&config.source)?;
        let watermarks = Watermarks::new(
            source.partitions(),
            config.watermark.max_delay.0,
            config.watermark.idle_timeout.map(|d| d.0),
        );
        let checkpoint_dir = config
            .checkpoint
            .as_ref()
            .map(|c| CheckpointDir::open(&c.dir, c.retain))
            .transpose()?;
        let resume = restore::find_snapshot(config, checkpoint_dir.as_ref(), options)?;
        let mut pipeline = Self {
            source,
            fields: config.source.event_fields(),
            watermarks,
            stages,
            window,
            window_spec: config.window.as_ref().map(window_spec),
            sinks: Sinks {
                main: Box::new(sink::NullSink::default()),
                dead: Box::new(sink::NullSink::default()),
                late: None,
            },
            batch: config.batch,
            side_inputs,
            checkpointing: None,
            metrics: Metrics::default(),
            status: StatusBoard::default(),
            status_refreshed: Instant::now(),
        };
        if let Some(snapshot) = &resume {
            pipeline.restore(snapshot)?;
        }
        pipeline.sinks = Sinks::open(config, checkpoint_dir.is_some(), resume.as_ref())?;
        if let (Some(dir), Some(c)) = (checkpoint_dir, &config.checkpoint) {
            pipeline
                .stages
                .iter_mut()
                .for_each(PluginStage::track_changes);
            if let Some(window) = &mut pipeline.window {
                window.track_changes();
            }
            pipeline.checkpointing = Some(Checkpointing {
                writer: CheckpointWriter::start(dir.clone()),
                dir,
                interval: c.interval.0,
                incremental_above: c.incremental_above,
                // A checkpoint resumed from is still in the directory: build on it. A
                // savepoint is not (the directory was cleared): start with a full one.
                last_written: resume
                    .as_ref()
                    .filter(|_| options.from_savepoint.is_none())
                    .map(|s| s.id),
                last_started: Instant::now(),
                next_id: resume.as_ref().map_or(1, |s| s.id + 1),
                last_completed: None,
            });
        }
        pipeline.refresh_status("starting");
        Ok(pipeline)
    }

    /// The status board the admin endpoint reads.
    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// Runs until the source is exhausted, `stop` is set or a `Stop` request arrives,
    /// calling `on_batch` with the counters after every batch. With checkpoints, the run
    /// ends with a final checkpoint, so all output is committed.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        control: Option<&Receiver<Control>>,
        mut on_batch: impl FnMut(&Metrics),
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let at_start = self.metrics;
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::new(self.source.describe());
        let mut late = DeadLetters::new(self.source.describe());
        let mut results = RecordBuffer::default();
        let mut exhausted = false;
        let mut stop_reply = None;
        self.refresh_status("running");
        while !exhausted && !stop.load(Ordering::Relaxed) && stop_reply.is_none() {
            batch.clear();
            dead.clear();
            late.clear();
            results.clear();
            let (state, unparseable) = self.gather(&mut batch, &mut dead, stop)?;
            exhausted = state == SourceState::Exhausted;
            if exhausted {
                self.watermarks.finish();
            }
            self.metrics.records_in += batch.len() as u64 + unparseable;
            self.metrics.unparseable += unparseable;
            for stage in &mut self.stages {
                stage.run(&mut batch, &mut dead)?;
            }
            let records = match &mut self.window {
                Some(window) => {
                    window.process(
                        &batch,
                        self.watermarks.current(),
                        &mut results,
                        &mut late,
                        &mut dead,
                    )?;
                    results.records()
                }
                None => Records {
                    bytes: &batch.columns.values,
                    ends: &batch.columns.value_ends,
                },
            };
            self.metrics.records_out += records.len() as u64;
            self.sinks.main.write(records)?;
            self.sinks.main.flush()?;
            if !dead.is_empty() {
                self.sinks.dead.write(dead.records())?;
                self.sinks.dead.flush()?;
            }
            if !late.is_empty() {
                let late_sink = self.sinks.late.as_mut().unwrap_or(&mut self.sinks.dead);
                late_sink.write(late.records())?;
                late_sink.flush()?;
            }
            self.metrics.dead_letters += dead.len() as u64;
            self.metrics.batches += 1;
            self.count_operator_outcomes();
            self.checkpoint_if_due()?;
            if let Some(control) = control {
                while let Ok(request) = control.try_recv() {
                    match request {
                        Control::Savepoint { dir, reply } => {
                            let _ = reply.send(self.savepoint(&dir).map_err(|e| format!("{e:#}")));
                        }
                        Control::Stop { savepoint, reply } => stop_reply = Some((savepoint, reply)),
                    }
                }
            }
            if self.status_refreshed.elapsed() >= STATUS_INTERVAL {
                self.refresh_status("running");
            }
            on_batch(&self.metrics);
        }
        let mut final_savepoint = Ok(None);
        if let Some((Some(dir), _)) = &stop_reply {
            final_savepoint = self.savepoint(dir).map(Some).map_err(|e| format!("{e:#}"));
        } else {
            self.final_checkpoint()?;
        }
        self.refresh_status(if exhausted { "finished" } else { "stopped" });
        if let Some((_, reply)) = stop_reply {
            let _ = reply.send(final_savepoint);
        }
        Ok(RunSummary {
            metrics: self.metrics,
            records_this_run: self.metrics.records_in - at_start.records_in,
            elapsed: started.elapsed(),
            stages: self
                .stages
                .iter()
                .map(|s| (s.name().to_owned(), s.hash().to_owned(), s.counters()))
                .collect(),
            stopped: !exhausted,
        })
    }

    /// Gathers one batch: until it holds `max_records`, `max_wait` has passed, or the
    /// source is exhausted. A batch may be empty (an idle source): the loop then still
    /// answers control requests and fires windows that idleness released.
    fn gather(
        &mut self,
        batch: &mut EventBatch,
        dead: &mut DeadLetters,
        stop: &AtomicBool,
    ) -> Result<(SourceState, u64)> {
        let max = self.batch.max_records;
        let deadline = Instant::now() + self.batch.max_wait.0;
        let mut ingest = Ingest::new(batch, dead, &self.fields, &mut self.watermarks);
        loop {
            let remaining = max - ingest.len();
            let state = self.source.poll(&mut ingest, remaining, deadline)?;
            let now = Instant::now();
            if state == SourceState::Exhausted
                || ingest.len() >= max
                || stop.load(Ordering::Relaxed)
                || now >= deadline
            {
                ingest.tick(now);
                return Ok((state, ingest.unparseable()));
            }
        }
    }

    fn count_operator_outcomes(&mut self) {
        let (rejected, failed) = self
            .stages
            .iter()
            .map(|s| s.counters())
            .fold((0, 0), |(r, f), c| (r + c.rejected, f + c.failed));
        self.metrics.rejected = rejected;
        self.metrics.failed = failed;
        if let Some(window) = &self.window {
            let WindowCounters {
                firings,
                late_accepted,
                late_rejected,
                unaggregatable: _,
            } = window.counters();
            self.metrics.firings = firings;
            self.metrics.late_accepted = late_accepted;
            self.metrics.late_rejected = late_rejected;
            self.metrics.open_windows = window.open_windows() as u64;
        }
        self.metrics.watermark = self.watermarks.current();
    }

    /// A consistent cut of the job at this batch boundary, with the sinks' staged epochs
    /// (each sink stages what it received since the last checkpoint as epoch `id`).
    fn snapshot(&mut self, id: u64, savepoint: bool, base: Option<u64>) -> Result<Snapshot> {
        let mut sinks = Vec::new();
        for sink in self.sinks.all() {
            sinks.extend(sink.pre_commit(id)?);
        }
        let incremental = base.is_some();
        let spec = self.window_spec.as_deref().unwrap_or_default();
        Ok(Snapshot {
            id,
            created_ms: now_millis(),
            savepoint,
            base,
            source: SourceSnapshot {
                name: self.source.describe(),
                partitions: self.source.partitions(),
                position: self.source.position(),
            },
            watermarks: self.watermarks.snapshot(),
            plugins: self
                .stages
                .iter_mut()
                .map(|s| s.snapshot(incremental))
                .collect(),
            window: self.window.as_mut().map(|w| w.snapshot(spec, incremental)),
            side_inputs: self.side_inputs.versions(),
            sinks,
            metrics: self.metrics,
        })
    }

    /// Whether the next checkpoint should be incremental, and on which checkpoint: when
    /// the state is large enough for a full copy to stall the stream. (Long chains are
    /// folded into full checkpoints by the checkpoint thread.)
    fn incremental_base(&self) -> Option<u64> {
        let c = self.checkpointing.as_ref()?;
        let window = self.window.as_ref().map_or(0, |w| w.open_windows());
        let total = window + self.stages.iter().map(|s| s.state_entries()).sum::<usize>();
        c.last_written.filter(|_| total >= c.incremental_above)
    }

    /// Restores a snapshot into the freshly built pipeline (sinks are opened afterwards).
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        restore::check_compatible(snapshot, self)?;
        self.source.seek(&snapshot.source.position)?;
        self.watermarks.restore(&snapshot.watermarks)?;
        for stage in &mut self.stages {
            if let Some(state) = snapshot.plugins.iter().find(|p| p.name == stage.name()) {
                stage.restore(state);
            }
        }
        if let (Some(window), Some(state)) = (&mut self.window, &snapshot.window) {
            window.restore(state);
        }
        self.metrics = snapshot.metrics;
        tracing::info!(
            "resumed from {} {} at {:?}",
            if snapshot.savepoint {
                "savepoint"
            } else {
                "checkpoint"
            },
            snapshot.id,
            snapshot.source.position
        );
        Ok(())
    }

    /// Handles a finished checkpoint write (committing the sinks' epochs it covers) and
    /// starts a new checkpoint when one is due.
    fn checkpoint_if_due(&mut self) -> Result<()> {
        self.finish_checkpoint(false)?;
        let Some(c) = &self.checkpointing else {
            return Ok(());
        };
        if c.writer.busy() || c.last_started.elapsed() < c.interval {
            return Ok(());
        }
        let id = c.next_id;
        let base = self.incremental_base();
        let snapshot = self.snapshot(id, false, base)?;
        let c = self.checkpointing.as_mut().expect("checked above");
        c.next_id += 1;
        c.last_started = Instant::now();
        c.writer.submit(snapshot)
    }

    /// Collects the outcome of the checkpoint being written (`wait`: blocks for it). A
    /// failed checkpoint is logged and the job goes on: its output stays staged and is
    /// covered by the next checkpoint.
    fn finish_checkpoint(&mut self, wait: bool) -> Result<()> {
        let Some(c) = &mut self.checkpointing else {
            return Ok(());
        };
        match c.writer.poll(wait) {
            None => Ok(()),
            Some((id, Ok(path))) => {
                c.last_written = Some(id);
                c.last_completed = Some(CheckpointStatus {
                    id,
                    path,
                    created_ms: now_millis(),
                });
                for sink in self.sinks.all() {
                    sink.commit()?;
                }
                Ok(())
            }
            Some((id, Err(e))) => {
                // Its changes are lost to the next incremental checkpoint: make that full.
                c.last_written = None;
                tracing::error!(
                    "checkpoint {id} failed, the job keeps its last good checkpoint and goes on: {e:#}"
                );
                Ok(())
            }
        }
    }

    /// The checkpoint that ends a run, so everything the run produced is committed.
    fn final_checkpoint(&mut self) -> Result<()> {
        self.finish_checkpoint(true)?;
        let Some(c) = &self.checkpointing else {
            return Ok(());
        };
        let id = c.next_id;
        let snapshot = self.snapshot(id, false, None)?;
        let c = self.checkpointing.as_mut().expect("checked above");
        c.next_id += 1;
        c.last_written = Some(id);
        let path = c.dir.write(&snapshot).context(
            "the final checkpoint failed; output since the last checkpoint is not committed",
        )?;
        c.last_completed = Some(CheckpointStatus {
            id,
            path,
            created_ms: snapshot.created_ms,
        });
        for sink in self.sinks.all() {
            sink.commit()?;
        }
        Ok(())
    }

    /// Takes a savepoint into `dir` at this batch boundary (also recorded as a checkpoint
    /// when the job checkpoints) and returns the savepoint's file.
    pub fn savepoint(&mut self, dir: &Path) -> Result<PathBuf> {
        self.finish_checkpoint(true)?;
        let id = self.checkpointing.as_ref().map_or(1, |c| c.next_id);
        let snapshot = self.snapshot(id, true, None)?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the savepoint directory {}", dir.display()))?;
        let path = dir.join(checkpoint::SAVEPOINT_FILE);
        for sink in &snapshot.sinks {
            sink::make_durable(sink)?;
        }
        checkpoint::write_atomic(&path, &checkpoint::encode(&snapshot)?)?;
        if let Some(c) = &mut self.checkpointing {
            c.next_id += 1;
            let written = c.dir.write(&snapshot)?;
            c.last_written = Some(id);
            c.last_completed = Some(CheckpointStatus {
                id,
                path: written,
                created_ms: snapshot.created_ms,
            });
        }
        for sink in self.sinks.all() {
            sink.commit()?;
        }
        tracing::info!("savepoint {id} written to {}", path.display());
        Ok(path)
    }

    fn refresh_status(&mut self, state: &str) {
        self.status_refreshed = Instant::now();
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        status.state = state.to_owned();
        status.source = SourceStatus {
            name: self.source.describe(),
            position: self.source.position(),
        };
        status.partitions = self
            .watermarks
            .partitions()
            .iter()
            .enumerate()
            .map(|(i, p)| PartitionStatus {
                partition: i as u32,
                position: p.position,
                max_event_time: p.max_timestamp,
                watermark: Some(self.watermarks.partition_watermark(p))
                    .filter(|&w| w != MIN_WATERMARK),
                idle: p.idle,
            })
            .collect();
        status.watermark = Some(self.watermarks.current()).filter(|&w| w != MIN_WATERMARK);
        status.metrics = self.metrics;
        status.open_windows = self.metrics.open_windows;
        status.last_checkpoint = self
            .checkpointing
            .as_ref()
            .and_then(|c| c.last_completed.clone());
        status.plugins = self
            .stages
            .iter()
            .map(|s| {
                let c = s.counters();
                PluginStatus {
                    name: s.name().to_owned(),
                    version: s.hash().to_owned(),
                    events_in: c.events_in,
                    events_out: c.events_out,
                    rejected: c.rejected,
                    failed: c.failed,
                }
            })
            .collect();
        status.side_inputs = self.side_inputs.versions();
    }
}

/// Fails a run that would write output over a sink that has some, with nothing to resume.
fn refuse_to_overwrite(config: &PipelineConfig) -> Result<()> {
    let sinks = [
        Some(&config.sink),
        config.dead_letter.as_ref(),
        config.late.as_ref(),
    ];
    for sink in sinks.into_iter().flatten() {
        if let SinkConfig::File { path } = sink {
            if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
                bail!(
                    "sink file {} already has output but there is no checkpoint to resume from; \
                     pass --fresh to start over (its output will be replaced)",
                    path.display()
                );
            }
        }
    }
    Ok(())
}
