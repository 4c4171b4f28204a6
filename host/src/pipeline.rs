//! The pipeline: `source → batch → plugin chain → (keyed window) → sink`, with dead
//! letters and late events beside it.
//!
//! One thread drives the whole chain a batch at a time, so an event's path through the
//! pipeline is a handful of function calls and memory copies, never a channel hop.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::batch::EventBatch;
use crate::config::{
    AggregateKind, BatchConfig, EventFields, PipelineConfig, SinkConfig, WindowConfig,
};
use crate::dead_letter::DeadLetters;
use crate::plugin::{
    LoadedPlugin, PluginRuntime, PluginStage, SideInputs, StageCounters, WasmAggregate,
};
use crate::sink::{self, RecordBuffer, Records, Sink};
use crate::source::{self, Ingest, Source, SourceState};
use crate::watermark::Watermarks;
use crate::window::{Aggregator, Assigner, Builtin, WindowCounters, WindowOperator};

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Records read from the source (including unparseable ones).
    pub records_in: u64,
    /// Records written to the sink.
    pub records_out: u64,
    /// Records that were not valid events (malformed JSON, missing time or key).
    pub unparseable: u64,
    /// Events rejected by plugins.
    pub rejected: u64,
    /// Events dead-lettered because a plugin failed on their batch.
    pub failed: u64,
    /// Records written to the dead-letter sink.
    pub dead_letters: u64,
    /// Batches processed.
    pub batches: u64,
    /// Window results emitted.
    pub firings: u64,
    /// Events that arrived after their window fired, within the allowed lateness.
    pub late_accepted: u64,
    /// Events past the allowed lateness, sent to the late sink.
    pub late_rejected: u64,
    /// The job's event-time watermark.
    pub watermark: i64,
    /// Open (key, window) pairs held by the window operator.
    pub open_windows: u64,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's counters.
    pub metrics: Metrics,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Each plugin stage: name, content hash and counters.
    pub stages: Vec<(String, String, StageCounters)>,
    /// Whether the run was stopped before its source was exhausted.
    pub stopped: bool,
}

impl RunSummary {
    /// Records read per second.
    pub fn rate(&self) -> f64 {
        self.metrics.records_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.metrics;
        write!(
            f,
            "{}: {} in, {} out, {} rejected, {} unparseable, {} failed, {} dead letters",
            if self.stopped { "stopped" } else { "done" },
            m.records_in,
            m.records_out,
            m.rejected,
            m.unparseable,
            m.failed,
            m.dead_letters,
        )?;
        if m.firings > 0 || m.late_accepted > 0 || m.late_rejected > 0 {
            write!(
                f,
                ", {} window firings, {} late accepted, {} late rejected",
                m.firings, m.late_accepted, m.late_rejected
            )?;
        }
        write!(
            f,
            " in {:.2} s ({:.0} records/s)",
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

/// A pipeline ready to run.
pub struct Pipeline {
    source: Box<dyn Source>,
    fields: EventFields,
    watermarks: Watermarks,
    stages: Vec<PluginStage>,
    window: Option<WindowOperator>,
    sink: Box<dyn Sink>,
    dead_sink: Box<dyn Sink>,
    /// The late sink, when it is not the dead-letter sink.
    late_sink: Option<Box<dyn Sink>>,
    batch: BatchConfig,
    _side_inputs: SideInputs,
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

impl Pipeline {
    /// Builds a pipeline: loads side inputs and plugins, starts the plugins, opens the
    /// source, and only then creates the sinks (so a pipeline that cannot start leaves
    /// existing output alone).
    pub fn build(config: &PipelineConfig, runtime: &PluginRuntime) -> Result<Self> {
        let LoadedPipeline {
            side_inputs,
            stages,
            window_plugin,
        } = load_plugins(config, runtime, true)?;
        let stages = stages
            .into_iter()
            .map(|p| PluginStage::start(runtime, p, side_inputs.clone()))
            .collect::<Result<_>>()?;
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
        let sink = sink::build(&config.sink).context("cannot open the [sink]")?;
        let dead_config = config.dead_letter.clone().unwrap_or(SinkConfig::Stderr {});
        let dead_sink = sink::build(&dead_config).context("cannot open the [dead_letter] sink")?;
        let late_sink = config
            .late
            .as_ref()
            .map(|late| sink::build(late).context("cannot open the [late] sink"))
            .transpose()?;
        Ok(Self {
            source,
            fields: config.source.event_fields(),
            watermarks,
            stages,
            window,
            sink,
            dead_sink,
            late_sink,
            batch: config.batch,
            _side_inputs: side_inputs,
        })
    }

    /// Runs until the source is exhausted or `stop` is set, calling `on_batch` with the
    /// counters after every batch.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_batch: impl FnMut(&Metrics),
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let mut metrics = Metrics::default();
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::new(self.source.describe());
        let mut late = DeadLetters::new(self.source.describe());
        let mut results = RecordBuffer::default();
        let mut exhausted = false;
        while !exhausted && !stop.load(Ordering::Relaxed) {
            batch.clear();
            dead.clear();
            late.clear();
            results.clear();
            let (state, unparseable) = self.gather(&mut batch, &mut dead, stop)?;
            exhausted = state == SourceState::Exhausted;
            if exhausted {
                self.watermarks.finish();
            }
            metrics.records_in += batch.len() as u64 + unparseable;
            metrics.unparseable += unparseable;
            for stage in &mut self.stages {
                stage.run(&mut batch, &mut dead)?;
            }
            let records = match &mut self.window {
                Some(window) => {
                    let watermark = self.watermarks.current();
                    window.process(&batch, watermark, &mut results, &mut late, &mut dead)?;
                    results.records()
                }
                None => Records {
                    bytes: &batch.columns.values,
                    ends: &batch.columns.value_ends,
                },
            };
            metrics.records_out += records.len() as u64;
            self.sink.write(records)?;
            self.sink.flush()?;
            if !dead.is_empty() {
                self.dead_sink.write(dead.records())?;
                self.dead_sink.flush()?;
            }
            if !late.is_empty() {
                let late_sink = self.late_sink.as_mut().unwrap_or(&mut self.dead_sink);
                late_sink.write(late.records())?;
                late_sink.flush()?;
            }
            metrics.dead_letters += dead.len() as u64;
            metrics.batches += 1;
            metrics.watermark = self.watermarks.current();
            self.count_operator_outcomes(&mut metrics);
            on_batch(&metrics);
        }
        Ok(RunSummary {
            metrics,
            elapsed: started.elapsed(),
            stages: self
                .stages
                .iter()
                .map(|s| (s.name().to_owned(), s.hash().to_owned(), s.counters()))
                .collect(),
            stopped: !exhausted,
        })
    }

    /// Gathers one batch: until it holds `max_records`, or `max_wait` has passed with
    /// something in it, or the source is exhausted. An idle source returns an empty batch
    /// when idleness moved the watermark, so windows still fire on a quiet stream.
    fn gather(
        &mut self,
        batch: &mut EventBatch,
        dead: &mut DeadLetters,
        stop: &AtomicBool,
    ) -> Result<(SourceState, u64)> {
        let max = self.batch.max_records;
        let wait = self.batch.max_wait.0;
        let mut deadline = Instant::now() + wait;
        let mut ingest = Ingest::new(batch, dead, &self.fields, &mut self.watermarks);
        loop {
            let remaining = max - ingest.len();
            let state = self.source.poll(&mut ingest, remaining, deadline)?;
            if state == SourceState::Exhausted
                || ingest.len() >= max
                || stop.load(Ordering::Relaxed)
            {
                return Ok((state, ingest.unparseable()));
            }
            let now = Instant::now();
            if now >= deadline {
                let idleness_moved_watermark = ingest.tick(now);
                if !ingest.is_empty() || idleness_moved_watermark {
                    return Ok((state, ingest.unparseable()));
                }
                deadline = now + wait;
            }
        }
    }

    fn count_operator_outcomes(&self, metrics: &mut Metrics) {
        let (rejected, failed) = self
            .stages
            .iter()
            .map(|s| s.counters())
            .fold((0, 0), |(r, f), c| (r + c.rejected, f + c.failed));
        metrics.rejected = rejected;
        metrics.failed = failed;
        if let Some(window) = &self.window {
            let WindowCounters {
                firings,
                late_accepted,
                late_rejected,
                unaggregatable: _,
            } = window.counters();
            metrics.firings = firings;
            metrics.late_accepted = late_accepted;
            metrics.late_rejected = late_rejected;
            metrics.open_windows = window.open_windows() as u64;
        }
    }
}
