//! The pipeline: `source → batch → plugin chain → sink`, with dead letters beside it.
//!
//! One thread drives the whole chain a batch at a time, so an event's path through the
//! pipeline is a handful of function calls and memory copies, never a channel hop.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::batch::EventBatch;
use crate::config::{BatchConfig, EventFields, PipelineConfig, SinkConfig};
use crate::dead_letter::DeadLetters;
use crate::plugin::{LoadedPlugin, PluginRuntime, PluginStage, SideInputs, StageCounters};
use crate::sink::{self, Records, Sink};
use crate::source::{self, Ingest, Source, SourceState};

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
            "{}: {} in, {} out, {} rejected, {} unparseable, {} failed, {} dead letters in {:.2} s ({:.0} records/s)",
            if self.stopped { "stopped" } else { "done" },
            m.records_in,
            m.records_out,
            m.rejected,
            m.unparseable,
            m.failed,
            m.dead_letters,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

/// A pipeline ready to run.
pub struct Pipeline {
    source: Box<dyn Source>,
    fields: EventFields,
    stages: Vec<PluginStage>,
    sink: Box<dyn Sink>,
    dead_sink: Box<dyn Sink>,
    batch: BatchConfig,
    _side_inputs: SideInputs,
}

/// Loads side inputs and every plugin (compiled, type-checked) without running anything.
pub fn load_plugins(
    config: &PipelineConfig,
    runtime: &PluginRuntime,
    watch: bool,
) -> Result<(SideInputs, Vec<LoadedPlugin>)> {
    let side_inputs = SideInputs::load(&config.side_inputs, watch)?;
    let plugins = config
        .plugins
        .iter()
        .map(|p| runtime.load(p))
        .collect::<Result<_>>()?;
    Ok((side_inputs, plugins))
}

impl Pipeline {
    /// Builds a pipeline: loads side inputs and plugins, starts the plugins, opens the
    /// source, and only then creates the sinks (so a pipeline that cannot start leaves
    /// existing output alone).
    pub fn build(config: &PipelineConfig, runtime: &PluginRuntime) -> Result<Self> {
        let (side_inputs, plugins) = load_plugins(config, runtime, true)?;
        let stages = plugins
            .into_iter()
            .map(|p| PluginStage::start(runtime, p, side_inputs.clone()))
            .collect::<Result<_>>()?;
        let source = source::build(&config.source)?;
        let sink = sink::build(&config.sink).context("cannot open the [sink]")?;
        let dead_config = config.dead_letter.clone().unwrap_or(SinkConfig::Stderr {});
        let dead_sink = sink::build(&dead_config).context("cannot open the [dead_letter] sink")?;
        Ok(Self {
            source,
            fields: config.source.event_fields(),
            stages,
            sink,
            dead_sink,
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
        let mut exhausted = false;
        while !exhausted && !stop.load(Ordering::Relaxed) {
            batch.clear();
            dead.clear();
            let (state, unparseable) = self.gather(&mut batch, &mut dead, stop)?;
            exhausted = state == SourceState::Exhausted;
            metrics.records_in += batch.len() as u64 + unparseable;
            metrics.unparseable += unparseable;
            for stage in &mut self.stages {
                stage.run(&mut batch, &mut dead)?;
            }
            let records = Records {
                bytes: &batch.columns.values,
                ends: &batch.columns.value_ends,
            };
            self.sink.write(records)?;
            self.sink.flush()?;
            if !dead.is_empty() {
                self.dead_sink.write(dead.records())?;
                self.dead_sink.flush()?;
            }
            metrics.records_out += batch.len() as u64;
            metrics.dead_letters += dead.len() as u64;
            metrics.batches += 1;
            self.count_stage_outcomes(&mut metrics);
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
    /// something in it, or the source is exhausted.
    fn gather(
        &mut self,
        batch: &mut EventBatch,
        dead: &mut DeadLetters,
        stop: &AtomicBool,
    ) -> Result<(SourceState, u64)> {
        let max = self.batch.max_records;
        let wait = self.batch.max_wait.0;
        let mut ingest = Ingest::new(batch, dead, &self.fields);
        let mut deadline = Instant::now() + wait;
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
                if !ingest.is_empty() {
                    return Ok((state, ingest.unparseable()));
                }
                deadline = now + wait;
            }
        }
    }

    fn count_stage_outcomes(&self, metrics: &mut Metrics) {
        let (rejected, failed) = self
            .stages
            .iter()
            .map(|s| s.counters())
            .fold((0, 0), |(r, f), c| (r + c.rejected, f + c.failed));
        metrics.rejected = rejected;
        metrics.failed = failed;
    }
}
