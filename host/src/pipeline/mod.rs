//! The pipeline: `source → batch → plugin chain → (keyed window) → sink`, with dead
//! letters and late events beside it, and checkpoints taken at batch boundaries.
//!
//! One thread drives the whole chain a batch at a time, so an event's path through the
//! pipeline is a handful of function calls and memory copies; only whole batches cross
//! from the reader thread, which gathers the next ones meanwhile ([`reader`]).
//! Control (checkpoints, savepoints, stop) happens between batches: the run loop moves
//! batches and hands the job's components to the checkpoint coordinator at each batch
//! boundary, with the read side as it stood after the batch just processed.

mod control;
mod metrics;
mod reader;
mod restore;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use anyhow::{bail, Context, Result};

pub use crate::metrics::Metrics;
pub use control::{
    CheckpointStatus, Control, PartitionStatus, PluginStatus, ShadowAction, SourceStatus, Status,
    StatusBoard, SwapReport,
};
pub use metrics::RunSummary;
use reader::{Gathered, Input, PipelineEnds, ReadCut, Reading};

use crate::checkpoint::{self, CheckpointDir, Checkpointed, Coordinator, Snapshot, StoreLock};
use crate::config::{AggregateKind, EventFields, PipelineConfig, SinkConfig, WindowConfig};
use crate::dead_letter::DeadLetters;
use crate::metrics::{set_total, JobMetrics, MetricsRegistry};
use crate::plugin::{
    LoadedPlugin, PluginInstance, PluginRuntime, PluginStage, SideInputs, WasmAggregate,
};
use crate::sink::{self, RecordBuffer, Records, Sink, SinkMode};
use crate::source::{self, SourceState};
use crate::watermark::{Watermarks, MIN_WATERMARK};
use crate::window::{Aggregator, Assigner, Builtin, Results, WindowCounters, WindowOperator};

/// How a run starts.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start from the beginning even though checkpoints exist (they are removed, and
    /// file sinks start empty).
    pub fresh: bool,
    /// Start from this savepoint (a directory or file) instead of the checkpoints.
    pub from_savepoint: Option<PathBuf>,
    /// How long to wait for another holder of the checkpoint directory to let go before
    /// refusing (a partition task waits for the partition's previous owner; a job on its
    /// own refuses at once).
    pub lock_wait: std::time::Duration,
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
    )
    .with_spec(window_spec(config))
    .with_max_open_windows_per_key(config.max_open_windows_per_key))
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
        let mode = |role: &'static str| {
            if !transactional {
                return SinkMode::Direct;
            }
            SinkMode::Checkpointed {
                role,
                recover: resume.and_then(|s| s.section(&format!("sink/{role}"))),
            }
        };
        let dead_config = config
            .dead_letter
            .clone()
            .unwrap_or(SinkConfig::Stderr(Default::default()));
        Ok(Self {
            main: sink::build(&config.sink, mode("sink")).context("cannot open the [sink]")?,
            dead: sink::build(&dead_config, mode("dead_letter"))
                .context("cannot open the [dead_letter] sink")?,
            late: config
                .late
                .as_ref()
                .map(|late| sink::build(late, mode("late")).context("cannot open the [late] sink"))
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

impl Checkpointed for Box<dyn Sink> {
    fn snapshot(&mut self, id: u64, incremental: bool) -> Result<Option<checkpoint::Section>> {
        self.as_mut().snapshot(id, incremental)
    }

    fn checkpoint_completed(&mut self, id: u64) -> Result<()> {
        self.as_mut().checkpoint_completed(id)
    }
}

/// A pipeline ready to run.
pub struct Pipeline {
    /// The read side, home between runs (on the reader thread during one).
    input: Option<Input>,
    /// Whether the source is read a batch ahead on a second thread (`parallelism` not
    /// set), or on the pipeline's own thread (a worker: one core each).
    reads_ahead: bool,
    /// The read side after the last batch processed: what checkpoints record of it.
    cut: ReadCut,
    stages: Vec<PluginStage>,
    window: Option<WindowOperator>,
    sinks: Sinks,
    side_inputs: SideInputs,
    coordinator: Coordinator,
    /// Where the components swapped in are kept (a job that checkpoints).
    components: Option<PathBuf>,
    /// The claim on the checkpoint directory, held while the pipeline lives.
    _checkpoint_lock: Option<StoreLock>,
    metrics: JobMetrics,
    registry: MetricsRegistry,
    status: StatusBoard,
    /// When the status board was last refreshed; it is refreshed a few times a second,
    /// not per batch (building it allocates).
    status_refreshed: Instant,
}

/// A `Stop` request: the savepoint to take, and where its answer goes.
type StopReply = (
    Option<PathBuf>,
    Sender<std::result::Result<Option<PathBuf>, String>>,
);

/// How often a running pipeline refreshes its status board.
const STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Lends the coordinator every component of a pipeline that takes part in checkpoints,
/// in a fixed order: source, watermarks, plugin stages, window, sinks, side inputs,
/// counters.
macro_rules! with_components {
    ($pipeline:expr, |$coordinator:ident, $parts:ident| $body:expr) => {{
        let p = &mut *$pipeline;
        let $coordinator = &mut p.coordinator;
        let mut parts: Vec<&mut dyn Checkpointed> = vec![&mut p.cut.source, &mut p.cut.watermarks];
        parts.extend(p.stages.iter_mut().map(|s| s as &mut dyn Checkpointed));
        if let Some(window) = &mut p.window {
            parts.push(window);
        }
        parts.extend(p.sinks.all().map(|s| s as &mut dyn Checkpointed));
        parts.push(&mut p.side_inputs);
        parts.push(&mut p.metrics);
        let $parts = parts.as_mut_slice();
        $body
    }};
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
        Self::build_from(config, runtime, options, None)
    }

    /// Builds a pipeline as [`Pipeline::build`] does, reading `source` instead of the one
    /// `[source]` describes (a partition task's feed).
    pub fn build_with_source(
        config: &PipelineConfig,
        runtime: &PluginRuntime,
        options: &RunOptions,
        source: Box<dyn source::Source>,
    ) -> Result<Self> {
        Self::build_from(config, runtime, options, Some(source))
    }

    fn build_from(
        config: &PipelineConfig,
        runtime: &PluginRuntime,
        options: &RunOptions,
        source: Option<Box<dyn source::Source>>,
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
        let source = match source {
            Some(source) => source,
            None => source::build(&config.source)?,
        };
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
        // Claimed before anything in it or any sink is touched.
        let checkpoint_lock = checkpoint_dir
            .as_ref()
            .map(|dir| dir.lock_within(options.lock_wait))
            .transpose()?;
        let resume = restore::find_snapshot(config, checkpoint_dir.as_ref(), options)?;
        let input = Input {
            source,
            fields: EventFields {
                max_future_ms: Some(config.watermark.max_future.as_millis()).filter(|&ms| ms > 0),
                ..config.source.event_fields()
            },
            watermarks,
            batch: config.batch,
        };
        let mut pipeline = Self {
            cut: input.cut(),
            input: Some(input),
            reads_ahead: config.parallelism.is_none(),
            stages,
            window,
            sinks: Sinks {
                main: Box::new(sink::NullSink::default()),
                dead: Box::new(sink::NullSink::default()),
                late: None,
            },
            side_inputs,
            coordinator: Coordinator::savepoints_only(),
            _checkpoint_lock: checkpoint_lock,
            components: None,
            metrics: JobMetrics::default(),
            registry: MetricsRegistry::new(&JobMetrics::default(), []),
            status: StatusBoard::default(),
            status_refreshed: Instant::now(),
        };
        pipeline.components = checkpoint_dir.as_ref().and_then(CheckpointDir::components);
        if let Some(snapshot) = &resume {
            // Components swapped in come with a savepoint, or stay in the checkpoint
            // directory.
            let components = match &options.from_savepoint {
                Some(savepoint) => Some(checkpoint::components_dir(if savepoint.is_dir() {
                    savepoint
                } else {
                    crate::durable::parent_dir(savepoint)
                })),
                None => pipeline.components.clone(),
            };
            pipeline.restore(snapshot, runtime, components.as_deref())?;
        }
        if let Some(input) = &mut pipeline.input {
            pipeline.cut = input.settle_start()?;
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
            // A checkpoint resumed from is still in the directory: the next incremental
            // one may build on it. A savepoint is not (the directory was cleared).
            let resumed = resume
                .as_ref()
                .map(|s| (s.id, options.from_savepoint.is_none()));
            pipeline.coordinator =
                Coordinator::periodic(dir, c.interval.0, c.incremental_above, resumed);
        }
        let aggregate = pipeline.wasm_aggregate().map(|a| (a.name(), a.metrics()));
        pipeline.registry = MetricsRegistry::new(
            &pipeline.metrics,
            pipeline
                .stages
                .iter()
                .map(|s| (s.name(), s.metrics()))
                .chain(aggregate),
        );
        pipeline.refresh_status("starting");
        Ok(pipeline)
    }

    /// The status board the admin endpoint reads.
    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// The side-input tables plugins read (shared), for preparing new plugin versions.
    pub fn side_inputs(&self) -> SideInputs {
        self.side_inputs.clone()
    }

    /// The job's metrics registry, which the admin endpoint serves to Prometheus.
    pub fn metrics(&self) -> MetricsRegistry {
        self.registry.clone()
    }

    /// Runs until the source is exhausted, `stop` is set or a `Stop` request arrives,
    /// calling `on_batch` with the counters after every batch. With checkpoints, the run
    /// ends with a final checkpoint, so all output is committed. The source is read on a
    /// second thread, a batch ahead.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        control: Option<&Receiver<Control>>,
        on_batch: impl FnMut(&JobMetrics),
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let at_start = self.metrics.values();
        // A job with no checkpoint of its own yet records where it starts before it writes
        // anything: a crash before the first periodic checkpoint then resumes here, and a
        // deduplicating sink reads back what it wrote since.
        with_components!(self, |coordinator, parts| coordinator
            .initial_checkpoint(parts))?;
        let mut input = self
            .input
            .take()
            .context("the pipeline lost its source when an earlier run's reader thread panicked; build the pipeline again")?;
        for (id, position) in self.cut.source.take_completed() {
            input.checkpoint_completed(id, &position)?;
        }
        let stopping = AtomicBool::new(false);
        let should_stop = || stop.load(Ordering::Relaxed) || stopping.load(Ordering::Relaxed);
        let (ends, pipeline_ends) = reader::channels();
        let (outcome, input) = if self.reads_ahead {
            std::thread::scope(|scope| {
                let reader = std::thread::Builder::new()
                    .name("eddy-reader".into())
                    .spawn_scoped(scope, || input.read_ahead(ends, &should_stop))
                    .expect("cannot start the reader thread");
                let gathered = &pipeline_ends.gathered;
                let outcome = self.process_batches(
                    || gathered.recv().ok(),
                    &pipeline_ends,
                    &stopping,
                    control,
                    on_batch,
                );
                stopping.store(true, Ordering::Relaxed);
                drop(pipeline_ends); // a reader waiting to hand over a batch gives up
                let input = reader
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (outcome, input)
            })
        } else {
            let mut reading = Reading::default();
            let outcome = self.process_batches(
                || input.next_group(&ends, &mut reading, &should_stop),
                &pipeline_ends,
                &stopping,
                control,
                on_batch,
            );
            (outcome, input)
        };
        self.input = Some(input);
        let (exhausted, stop_reply) = outcome?;
        let mut final_savepoint = Ok(None);
        if let Some((Some(dir), _)) = &stop_reply {
            final_savepoint = self.savepoint(dir).map(Some).map_err(|e| format!("{e:#}"));
        } else {
            with_components!(self, |coordinator, parts| coordinator
                .final_checkpoint(parts))?;
        }
        if let Some(input) = &mut self.input {
            for (id, position) in self.cut.source.take_completed() {
                input.checkpoint_completed(id, &position)?;
            }
        }
        self.refresh_status(if exhausted { "finished" } else { "stopped" });
        if let Some((_, reply)) = stop_reply {
            let _ = reply.send(final_savepoint);
        }
        Ok(RunSummary {
            metrics: self.metrics.values(),
            records_this_run: self.metrics.records_in.get() - at_start.records_in,
            elapsed: started.elapsed(),
            stages: self
                .stages
                .iter()
                .map(|s| (s.name().to_owned(), s.hash().to_owned(), s.counters()))
                .collect(),
            stopped: !exhausted,
        })
    }

    /// The run loop: processes the groups of batches `next_group` gives (from the reader
    /// thread, or read on this one) until it gives none (the source is exhausted, or the
    /// run is stopped from outside or by a `Stop` request, which sets `stopping`); after a
    /// stop, the batch being gathered is processed too. Returns whether the source was
    /// exhausted, and the `Stop` request's reply.
    fn process_batches(
        &mut self,
        mut next_group: impl FnMut() -> Option<Result<reader::Group>>,
        ends: &PipelineEnds,
        stopping: &AtomicBool,
        control: Option<&Receiver<Control>>,
        mut on_batch: impl FnMut(&JobMetrics),
    ) -> Result<(bool, Option<StopReply>)> {
        let mut late = DeadLetters::new(self.cut.source.name());
        let mut results = RecordBuffer::default();
        let mut exhausted = false;
        let mut stop_reply = None;
        self.refresh_status("running");
        // Ends when the reader hangs up: exhausted, stopped, or failed.
        while let Some(group) = next_group() {
            for gathered in group? {
                exhausted = gathered.state == SourceState::Exhausted;
                self.process_batch(gathered, ends, &mut late, &mut results)?;
                if let Some(control) = control {
                    while let Ok(request) = control.try_recv() {
                        self.answer(request, &mut stop_reply);
                    }
                }
                if stop_reply.is_some() {
                    stopping.store(true, Ordering::Relaxed);
                }
                if self.status_refreshed.elapsed() >= STATUS_INTERVAL {
                    self.refresh_status("running");
                }
                on_batch(&self.metrics);
            }
        }
        Ok((exhausted, stop_reply))
    }

    /// One batch through the chain: plugins, window, sinks; then its buffers go back to
    /// the reader and the checkpoint coordinator gets the batch boundary. `late` and
    /// `results` are scratch buffers kept across batches.
    fn process_batch(
        &mut self,
        gathered: Gathered,
        ends: &PipelineEnds,
        late: &mut DeadLetters,
        results: &mut RecordBuffer,
    ) -> Result<()> {
        let Gathered {
            mut batch,
            mut dead,
            unparseable,
            position,
            watermarks,
            ..
        } = gathered;
        self.cut.source.advance(position);
        self.cut.watermarks = watermarks;
        late.clear();
        results.clear();
        self.metrics
            .records_in
            .inc_by(batch.len() as u64 + unparseable);
        self.metrics.unparseable.inc_by(unparseable);
        for stage in &mut self.stages {
            stage.run(&mut batch, &mut dead)?;
        }
        let (records, origins) = match &mut self.window {
            Some(window) => {
                // A firing of many windows goes to the sink in chunks as it fires.
                let (sink, out_count) = (&mut self.sinks.main, &self.metrics.records_out);
                let mut spill = |chunk: Records<'_>| {
                    out_count.inc_by(chunk.len() as u64);
                    sink.write(chunk, None)
                };
                window.process(
                    &batch,
                    self.cut.watermarks.current(),
                    &mut Results::new(results, Some(&mut spill)),
                    late,
                    &mut dead,
                )?;
                (results.records(), None)
            }
            None => (
                Records {
                    bytes: &batch.columns.values,
                    ends: &batch.columns.value_ends,
                },
                Some(batch.origins.as_slice()),
            ),
        };
        self.metrics.records_out.inc_by(records.len() as u64);
        self.sinks.main.write(records, origins)?;
        self.sinks.main.flush()?;
        if !dead.is_empty() {
            self.sinks.dead.write(dead.records(), None)?;
            self.sinks.dead.flush()?;
        }
        if !late.is_empty() {
            let late_sink = self.sinks.late.as_mut().unwrap_or(&mut self.sinks.dead);
            late_sink.write(late.records(), None)?;
            late_sink.flush()?;
        }
        self.metrics.dead_letters.inc_by(dead.len() as u64);
        self.metrics.batches.inc();
        let _ = ends.recycle.send((batch, dead));
        self.count_operator_outcomes();
        if self.coordinator.has_work() {
            with_components!(self, |coordinator, parts| coordinator
                .at_batch_boundary(parts))?;
            for completed in self.cut.source.take_completed() {
                let _ = ends.completions.send(completed);
            }
        }
        Ok(())
    }

    /// Answers a control request between batches; a `Stop` is kept in `stop_reply`, to
    /// be answered once the run has ended.
    fn answer(&mut self, request: Control, stop_reply: &mut Option<StopReply>) {
        match request {
            Control::Savepoint { dir, reply } => {
                let _ = reply.send(self.savepoint(&dir).map_err(|e| format!("{e:#}")));
            }
            Control::Stop { savepoint, reply } => *stop_reply = Some((savepoint, reply)),
            Control::Swap {
                stage,
                instance,
                why,
                reply,
            } => {
                let _ = reply.send(self.swap(&stage, *instance, why));
            }
            Control::Shadow {
                stage,
                action,
                reply,
            } => {
                let _ = reply.send(self.shadow(&stage, action));
            }
        }
    }

    fn count_operator_outcomes(&mut self) {
        let (rejected, failed) = self
            .stages
            .iter()
            .map(|s| s.counters())
            .fold((0, 0), |(r, f), c| (r + c.rejected, f + c.failed));
        set_total(&self.metrics.rejected, rejected);
        set_total(&self.metrics.failed, failed);
        if let Some(window) = &self.window {
            let WindowCounters {
                firings,
                late_accepted,
                late_rejected,
                unaggregatable: _,
            } = window.counters();
            set_total(&self.metrics.firings, firings);
            set_total(&self.metrics.late_accepted, late_accepted);
            set_total(&self.metrics.late_rejected, late_rejected);
            self.metrics.open_windows.set(window.open_windows() as i64);
        }
        self.metrics.watermark.set(self.cut.watermarks.current());
    }

    /// Restores a snapshot into the freshly built pipeline (sinks are opened afterwards
    /// from their own sections): each component reads back its own section.
    fn restore(
        &mut self,
        snapshot: &Snapshot,
        runtime: &PluginRuntime,
        components: Option<&Path>,
    ) -> Result<()> {
        restore::check_sections(snapshot, self)?;
        let required = |name: &str| {
            snapshot.section(name).with_context(|| {
                format!("the checkpoint has no `{name}` section; it was not written by a whole Eddy job")
            })
        };
        let input = self
            .input
            .as_mut()
            .context("a running pipeline cannot be restored")?;
        source::restore(input.source.as_mut(), required(source::SECTION)?)?;
        input
            .watermarks
            .restore(required(crate::watermark::SECTION)?)?;
        self.cut = input.cut();
        for stage in &mut self.stages {
            if let Some(section) = snapshot.section(&stage.section_name()) {
                stage.restore(section, runtime, components)?;
            }
        }
        if let (Some(window), Some(section)) =
            (&mut self.window, snapshot.section(crate::window::SECTION))
        {
            let recorded = window.restore(section)?;
            if let (Some(aggregate), Some(recorded)) = (self.wasm_aggregate_mut(), recorded) {
                aggregate.resume_version(&recorded, runtime, components)?;
            }
        }
        self.metrics
            .restore_section(required(crate::metrics::SECTION)?)?;
        tracing::info!(
            "resumed from {} {} at {:?}",
            if snapshot.savepoint {
                "savepoint"
            } else {
                "checkpoint"
            },
            snapshot.id,
            self.cut.source.position()
        );
        Ok(())
    }

    /// The `[window]` aggregate plugin, if the window has one.
    fn wasm_aggregate(&self) -> Option<&WasmAggregate> {
        let window = self.window.as_ref()?;
        window.aggregator().as_any().downcast_ref::<WasmAggregate>()
    }

    fn wasm_aggregate_mut(&mut self) -> Option<&mut WasmAggregate> {
        let window = self.window.as_mut()?;
        window
            .aggregator_mut()
            .as_any_mut()
            .downcast_mut::<WasmAggregate>()
    }

    /// Starts, promotes or drops stage `stage`'s shadow at this batch boundary.
    fn shadow(&mut self, stage: &str, action: ShadowAction) -> Result<SwapReport, String> {
        let index = self.stages.iter().position(|s| s.name() == stage);
        let aggregate_named = self.wasm_aggregate().is_some_and(|a| a.name() == stage);
        let index = index.ok_or_else(|| {
            if aggregate_named {
                format!(
                "`{stage}` is the window aggregate; shadow mode compares the events a filter or \
                 transform emits, so it runs only beside a [[plugin]] stage (a new aggregate \
                 version is guarded by its probation instead)"
                )
            } else {
                format!("the pipeline has no plugin stage `{stage}`")
            }
        })?;
        let report = |version: String, records_in| SwapReport {
            stage: stage.to_owned(),
            version,
            pause_us: 0,
            checkpoint: None,
            records_in,
            config: None,
        };
        let records_in = self.metrics.records_in.get();
        let result = match action {
            ShadowAction::Start(candidate) => {
                let version = candidate.plugin().hash.clone();
                self.stages[index].start_shadow(*candidate)?;
                Ok(report(version, records_in))
            }
            ShadowAction::Drop => {
                let candidate = self.stages[index]
                    .take_shadow()
                    .ok_or_else(|| format!("stage `{stage}` has no shadow"))?;
                Ok(report(candidate.plugin().hash.clone(), records_in))
            }
            ShadowAction::Promote => {
                let candidate = self.stages[index]
                    .take_shadow()
                    .ok_or_else(|| format!("stage `{stage}` has no shadow to promote"))?;
                self.swap(stage, candidate, "promoted from shadow".into())
            }
        };
        self.refresh_status("running");
        result
    }

    /// Switches stage `stage` to `instance` at this batch boundary, after taking a
    /// checkpoint (when the job checkpoints) so the operator can go back. On refusal the
    /// old version keeps running.
    fn swap(
        &mut self,
        stage: &str,
        instance: PluginInstance,
        why: String,
    ) -> Result<SwapReport, String> {
        let started = Instant::now();
        let index = self.stages.iter().position(|s| s.name() == stage);
        let aggregate_named = self
            .wasm_aggregate()
            .is_some_and(|a| a.history()[0].config.name == stage);
        if index.is_none() && !aggregate_named {
            return Err(format!("the pipeline has no plugin stage `{stage}`"));
        }
        let checkpoint = with_components!(self, |coordinator, parts| coordinator
            .checkpoint_now(parts))
        .map_err(|e| {
            format!(
                "the checkpoint before the swap failed, so the old version keeps running: {e:#}"
            )
        })?;
        let record = match index {
            Some(index) => {
                let stage_ref = &mut self.stages[index];
                stage_ref.swap_in(instance, &why, started, checkpoint)?;
                stage_ref.history().last().cloned()
            }
            None => {
                let aggregate = self.wasm_aggregate_mut().expect("checked above");
                aggregate.swap_in(instance, &why, started, checkpoint)?;
                aggregate.history().last().cloned()
            }
        }
        .expect("just recorded");
        let (version, pause_us, config) = (record.version, record.pause_us, record.config);
        tracing::info!(
            "stage `{stage}` now runs version {} (paused {pause_us} µs, checkpoint {checkpoint:?})",
            &version[..12.min(version.len())]
        );
        self.refresh_status("running");
        Ok(SwapReport {
            stage: stage.to_owned(),
            version,
            pause_us,
            checkpoint,
            records_in: self.metrics.records_in.get(),
            config: Some(config),
        })
    }

    /// Takes a savepoint into `dir` at this batch boundary (also recorded as a checkpoint
    /// when the job checkpoints) and returns the savepoint's file.
    pub fn savepoint(&mut self, dir: &Path) -> Result<PathBuf> {
        let path = with_components!(self, |coordinator, parts| coordinator.savepoint(dir, parts))?;
        self.keep_components_with(dir)?;
        Ok(path)
    }

    /// Copies the components swapped into running stages next to a savepoint in `dir`,
    /// so a job started from it resumes with them.
    fn keep_components_with(&self, dir: &Path) -> Result<()> {
        let Some(kept) = &self.components else {
            return Ok(());
        };
        let aggregate = self.wasm_aggregate().map(WasmAggregate::hash);
        for hash in self.stages.iter().map(PluginStage::hash).chain(aggregate) {
            let file = format!("{hash}.wasm");
            let source = kept.join(&file);
            if source.exists() {
                let target = checkpoint::components_dir(dir);
                std::fs::create_dir_all(&target)
                    .with_context(|| format!("cannot create {}", target.display()))?;
                let bytes = std::fs::read(&source)
                    .with_context(|| format!("cannot read {}", source.display()))?;
                crate::durable::write_atomic(&target.join(&file), &bytes)?;
            }
        }
        Ok(())
    }

    fn refresh_status(&mut self, state: &str) {
        self.status_refreshed = Instant::now();
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        status.state = state.to_owned();
        status.source = SourceStatus {
            name: self.cut.source.name().to_owned(),
            position: self.cut.source.position().clone(),
        };
        let watermarks = &self.cut.watermarks;
        status.partitions = watermarks
            .partitions()
            .iter()
            .enumerate()
            .map(|(i, p)| PartitionStatus {
                partition: i as u32,
                position: p.position,
                max_event_time: p.max_timestamp,
                watermark: Some(watermarks.partition_watermark(p)).filter(|&w| w != MIN_WATERMARK),
                idle: p.idle,
            })
            .collect();
        status.watermark = Some(watermarks.current()).filter(|&w| w != MIN_WATERMARK);
        status.metrics = self.metrics.values();
        status.open_windows = status.metrics.open_windows;
        status.last_checkpoint = self.coordinator.last_completed().cloned();
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
                    history: s.history().to_vec(),
                    shadow: s.shadow_status(),
                }
            })
            .collect();
        if let Some(aggregate) = self.wasm_aggregate() {
            let history = aggregate.history();
            status.plugins.push(PluginStatus {
                name: history[0].config.name.clone(),
                version: aggregate.hash().to_owned(),
                history: history.to_vec(),
                ..PluginStatus::default()
            });
        }
        status.side_inputs = self.side_inputs.versions();
    }
}

/// Fails a run that would write output over a sink that has some, with nothing to resume.
fn refuse_to_overwrite(config: &PipelineConfig) -> Result<()> {
    for (_, sink) in config.sinks() {
        if let Some(path) = sink.file() {
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
