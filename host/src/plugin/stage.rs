//! One running plugin stage: its instance, its store, and the call it makes per batch.
//!
//! A batch call that traps, runs past the stage's timeout, exceeds its memory limit or
//! returns a malformed result (indices out of range, columns that disagree) fails: its
//! keyed-state writes are rolled back and the plugin is re-instantiated. Then the stage's
//! `failure` policy decides: `dead-letter` (the default) bisects the batch on fresh
//! instances until it has the events the plugin fails on, sends exactly those to the
//! dead-letter sink and the rest on, in order; `fail` stops the job; `retry` calls the
//! batch again a few times with a growing pause, then stops the job.
//!
//! Invariant: every event of a batch is either in the plugin's successful output (once),
//! rejected by it, or dead-lettered as one the plugin fails on; keyed-state writes of
//! successful calls are kept, in event order.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::contract::World;
use super::host_state::{KeyedState, StateEntry, StateUpdate};
use super::instance::{recorded_version, OwnState, PluginInstance, Role};
use super::probation::Probation;
use super::runtime::{LoadedPlugin, PluginRuntime};
use super::shadow::{Shadow, ShadowStatus};
use super::side_input::SideInputs;
use crate::batch::{check_columns, Columns, EventBatch, Origin, Rejection};
use crate::checkpoint::{parse_state_key, state_key, Checkpointed, Section};
use crate::config::FailurePolicy;
use crate::dead_letter::{DeadLetters, DeadValue};
use crate::metrics::StageMetrics;

/// One stage's counters since the run started, as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounters {
    /// Events passed to the plugin.
    pub events_in: u64,
    /// Events the plugin emitted (kept, for a filter).
    pub events_out: u64,
    /// Events the plugin rejected.
    pub rejected: u64,
    /// Events dead-lettered because a batch call failed.
    pub failed: u64,
    /// Batch calls that failed.
    pub failed_batches: u64,
}

/// One version a stage has run: when it started running, and why.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    /// The component's SHA-256.
    pub version: String,
    /// When it took over, ms since the Unix epoch.
    pub since_ms: i64,
    /// `start`, `reload`, …
    pub why: String,
    /// How long the stream paused for the swap, in microseconds (0 at start).
    pub pause_us: u64,
    /// The checkpoint taken at the swap, when the job checkpoints.
    pub checkpoint: Option<u64>,
    /// The stage's configuration with this version (what `eddy reload --rollback`
    /// goes back to).
    #[serde(skip)]
    pub config: crate::config::PluginConfig,
}

impl VersionRecord {
    /// The record of `instance` taking over now, for `why`, after the stream paused at
    /// `paused` (`None`: it did not pause, at start) with `checkpoint` taken.
    pub fn new(
        instance: &PluginInstance,
        why: &str,
        paused: Option<std::time::Instant>,
        checkpoint: Option<u64>,
    ) -> Self {
        Self {
            version: instance.plugin().hash.clone(),
            since_ms: crate::clock::now_millis(),
            why: why.to_owned(),
            pause_us: paused.map_or(0, |p| p.elapsed().as_micros() as u64),
            checkpoint,
            config: instance.plugin().config.clone(),
        }
    }
}

/// A plugin stage, instantiated and initialised.
pub struct PluginStage {
    instance: PluginInstance,
    /// The version swapped out, while the running one is on probation.
    previous: Probation<PluginInstance>,
    /// A candidate version running beside the live one (shadow mode).
    shadow: Option<Shadow>,
    history: Vec<VersionRecord>,
    counters: StageMetrics,
    origins_scratch: Vec<Origin>,
}

impl PluginStage {
    /// Instantiates a loaded plugin and calls its `init` with the stage's config.
    pub fn start(
        runtime: &PluginRuntime,
        plugin: LoadedPlugin,
        side_inputs: SideInputs,
    ) -> Result<Self> {
        if plugin.world == World::Aggregate {
            bail!(
                "plugin `{}` ({}) is a window aggregate (it exports `aggregate`): name it in [window] plugin, not as a [[plugin]] stage",
                plugin.config.name,
                plugin.config.path.display()
            );
        }
        let instance =
            PluginInstance::start(runtime.engine(), plugin, side_inputs, KeyedState::default())?;
        let history = vec![VersionRecord::new(&instance, "start", None, None)];
        Ok(Self {
            instance,
            previous: Probation::default(),
            shadow: None,
            history,
            counters: StageMetrics::default(),
            origins_scratch: Vec::new(),
        })
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        self.instance.name()
    }

    /// The plugin's content hash (its version).
    pub fn hash(&self) -> &str {
        &self.instance.plugin().hash
    }

    /// The stage's counters now.
    pub fn counters(&self) -> StageCounters {
        let c = &self.counters;
        StageCounters {
            events_in: c.events_in.get(),
            events_out: c.events_out.get(),
            rejected: c.rejected.get(),
            failed: c.failed.get(),
            failed_batches: c.failed_batches.get(),
        }
    }

    /// The versions the stage has run, oldest first; the last is running.
    pub fn history(&self) -> &[VersionRecord] {
        &self.history
    }

    /// Switches the stage to `next`, a new version (or config) started off the stream,
    /// at a batch boundary: the host-owned keyed state moves over as it is, and a plugin
    /// with state of its own hands it over (`snapshot` on the old, `restore` on the new).
    /// Refused, with the old version still running, when `next` is not a filter or
    /// transform or refuses the old version's state. `paused` is when the stream stopped
    /// for the swap; the history records `why`, the pause and the `checkpoint` taken.
    /// The old version is kept for the new one's probation (its config's `probation`):
    /// a batch the new version fails in that time rolls the stage back.
    pub fn swap_in(
        &mut self,
        mut next: PluginInstance,
        why: &str,
        paused: std::time::Instant,
        checkpoint: Option<u64>,
    ) -> Result<(), String> {
        if next.plugin().world == World::Aggregate {
            return Err(format!(
                "{} is a window aggregate, and stage `{}` is a {}",
                next.plugin().config.path.display(),
                self.name(),
                self.instance.plugin().world.name()
            ));
        }
        if let Some(own) = self.instance.snapshot_own_state()? {
            if next.is_stateful() {
                let from = own.version;
                next.restore_own_state(own).map_err(|e| {
                    format!("the new version refused the running version's own state: {e}")
                })?;
                let updates = migrations(&mut next, from, &self.instance.state().entries())?;
                self.instance.state_mut().apply(updates);
            } else {
                tracing::warn!(
                    "stage `{}`: the new version exports no `state` interface; the old version's own state is dropped",
                    self.name()
                );
            }
        }
        std::mem::swap(self.instance.state_mut(), next.state_mut());
        let probation = next.plugin().config.probation.0;
        let old = std::mem::replace(&mut self.instance, next);
        self.previous.begin(old, probation);
        self.record(why, paused, checkpoint);
        Ok(())
    }

    fn record(&mut self, why: &str, paused: std::time::Instant, checkpoint: Option<u64>) {
        let record = VersionRecord::new(&self.instance, why, Some(paused), checkpoint);
        self.history.push(record);
    }

    /// Goes back to the version swapped out, because the running one failed a batch in
    /// its probation: the failed batch's keyed-state writes are undone (the instance
    /// restarts) and the keyed state moves back.
    fn roll_back(&mut self, reason: &str) -> Result<()> {
        let Some(mut previous) = self.previous.take() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        self.instance.restart()?;
        std::mem::swap(self.instance.state_mut(), previous.state_mut());
        let failed = std::mem::replace(&mut self.instance, previous);
        tracing::error!(
            "stage `{}`: version {} failed a batch in its probation ({reason}); rolled back to version {}, which runs the batch again",
            self.name(),
            &failed.plugin().hash[..12],
            &self.hash()[..12]
        );
        self.counters.rollbacks.inc();
        self.record(&format!("rollback: {reason}"), started, None);
        Ok(())
    }

    /// Handles to the stage's counters, for the metrics registry.
    pub fn metrics(&self) -> &StageMetrics {
        &self.counters
    }

    /// Tracks keyed-state changes from now on, for incremental checkpoints.
    pub fn track_changes(&mut self) {
        self.instance.state_mut().track_changes = true;
    }

    /// Keyed-state entries written or deleted since the last snapshot.
    pub fn state_changes(&self) -> usize {
        self.instance.state().changes()
    }

    /// The name of this stage's checkpoint section.
    pub fn section_name(&self) -> String {
        format!("plugin/{}", self.name())
    }

    /// Restores the stage's keyed state from its checkpoint section (possibly written by
    /// another version of the plugin: state belongs to the stage, not the version), and
    /// the plugin's own state when it keeps one (the `state` interface).
    ///
    /// When the checkpoint was taken with another version or config than the pipeline
    /// file names (a hot swap happened), the stage goes back to what was running: the
    /// component kept in `components` (`<sha256>.wasm`) with the checkpoint's config.
    pub fn restore(
        &mut self,
        section: &Section,
        runtime: &PluginRuntime,
        components: Option<&std::path::Path>,
    ) -> Result<()> {
        let meta: PluginSection = if section.version == 1 {
            let (hash, config) = section.meta(1)?;
            PluginSection {
                hash,
                config,
                own_state: None,
            }
        } else {
            section.meta(SECTION_VERSION)?
        };
        self.resume_version(&meta, runtime, components)?;
        if meta.hash != self.hash() {
            tracing::info!(
                "plugin `{}`: resuming state of version {} with version {}",
                self.name(),
                &meta.hash[..12.min(meta.hash.len())],
                &self.hash()[..12]
            );
        }
        let entries = section
            .entries
            .iter()
            .map(|(k, v)| {
                let (key, name) = parse_state_key(k)
                    .with_context(|| format!("checkpoint section `{}` is corrupt", section.name))?;
                Ok((key, name, v.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        self.instance.state_mut().restore(&entries);
        match meta.own_state {
            Some(own) if self.instance.is_stateful() => {
                let version = own.version;
                let updates = migrations(&mut self.instance, version, &entries).map_err(|e| {
                    anyhow::anyhow!("plugin `{}`: {e}", self.name())
                })?;
                self.instance.state_mut().apply(updates);
                self.instance.restore_own_state(own).map_err(|e| {
                    anyhow::anyhow!(
                        "plugin `{}` refused its own state from the checkpoint (state version {version}): {e}",
                        self.name()
                    )
                })?;
            }
            Some(_) => tracing::warn!(
                "plugin `{}`: the checkpoint holds state of the plugin's own, and this version exports no `state` interface to take it; it starts without",
                self.name()
            ),
            None => {}
        }
        Ok(())
    }

    /// Switches to the version and config a checkpoint ran with, when they differ from
    /// the pipeline file's and the component was kept.
    fn resume_version(
        &mut self,
        meta: &PluginSection,
        runtime: &PluginRuntime,
        components: Option<&std::path::Path>,
    ) -> Result<()> {
        let recorded = recorded_version(
            &self.instance,
            &meta.hash,
            &meta.config,
            runtime,
            components,
        )?;
        if let Some(instance) = recorded {
            self.swap_in(
                instance,
                "resumed from a checkpoint",
                std::time::Instant::now(),
                None,
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            self.previous.end();
        }
        Ok(())
    }

    /// Every keyed-state entry the plugin holds: (key, state name, value).
    pub fn keyed_state(&self) -> Vec<StateEntry> {
        self.instance.state().entries()
    }

    /// Replaces the plugin's keyed state with `entries` (a test's starting state).
    pub fn seed_keyed_state(&mut self, entries: &[StateEntry]) {
        self.instance.state_mut().restore(entries);
    }

    /// Number of keyed-state entries the plugin holds.
    pub fn state_entries(&self) -> usize {
        self.instance.state().len()
    }

    /// Runs the plugin over `batch`, leaving in it what the plugin kept or emitted;
    /// rejected events, and all events of a failed call, go to `dead`.
    ///
    /// Errors only when a failed plugin cannot be re-instantiated.
    pub fn run(&mut self, batch: &mut EventBatch, dead: &mut DeadLetters) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.counters.events_in.inc_by(batch.len() as u64);
        let on_probation = self.previous.is_on();
        let shadow_input = self.shadow.as_ref().map(|_| batch.clone());
        let mut result = self.call(batch, dead);
        if let Err(reason) = &result {
            if on_probation {
                self.roll_back(reason)?;
                result = self.call(batch, dead);
            }
        }
        if let (Some(shadow), Some(input), Ok(())) = (&mut self.shadow, shadow_input, &result) {
            shadow.compare(input, batch);
        }
        let Err(reason) = result else {
            return Ok(());
        };
        self.counters.failed_batches.inc();
        self.instance.restart()?;
        let config = &self.instance.plugin().config;
        let name = self.name().to_owned();
        match config.failure {
            FailurePolicy::Fail => bail!(
                "plugin `{name}` failed on a batch and its failure policy is \"fail\": {reason}; \
                 the job stops, its last checkpoint intact"
            ),
            FailurePolicy::Retry => {
                let retries = config.retries;
                let mut reason = reason;
                for attempt in 0..retries {
                    let pause = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(10)));
                    tracing::warn!(
                        "plugin `{name}` failed on a batch ({reason}); retrying in {pause:?}"
                    );
                    std::thread::sleep(pause);
                    match self.call(batch, dead) {
                        Ok(()) => return Ok(()),
                        Err(again) => {
                            reason = again;
                            self.instance.restart()?;
                        }
                    }
                }
                bail!(
                    "plugin `{name}` failed on a batch {} times (failure = \"retry\", retries = {retries}): {reason}; \
                     the job stops, its last checkpoint intact",
                    retries + 1
                )
            }
            FailurePolicy::DeadLetter => {
                tracing::warn!(
                    "plugin `{name}` failed on a batch of {} events ({reason}); finding the events it fails on",
                    batch.len()
                );
                let failed = std::mem::take(batch);
                self.isolate(failed, reason, batch, dead)
            }
        }
    }

    /// Finds the events of `failed` (a batch the plugin failed on with `reason`) that the
    /// plugin fails on, by calling it on each half on a fresh instance, recursively: those
    /// go to `dead`, and what the plugin makes of the rest is appended to `out`, in order.
    /// Keyed-state writes of every successful call are kept, of every failed one undone.
    fn isolate(
        &mut self,
        failed: EventBatch,
        reason: String,
        out: &mut EventBatch,
        dead: &mut DeadLetters,
    ) -> Result<()> {
        if failed.len() == 1 {
            let plugin = self.instance.plugin();
            let why = format!(
                "plugin `{}` (version {}) failed on this event: {reason}",
                plugin.config.name,
                &plugin.hash[..12.min(plugin.hash.len())]
            );
            dead.push(
                &why,
                failed.origins[0],
                Some(self.name()),
                DeadValue::Json(failed.value(0)),
            );
            self.counters.failed.inc();
            return Ok(());
        }
        let middle = failed.len() / 2;
        for range in [0..middle, middle..failed.len()] {
            let mut piece = failed.slice(range);
            match self.call(&mut piece, dead) {
                Ok(()) => out.extend_from(&piece, 0..piece.len()),
                Err(reason) => {
                    self.instance.restart()?;
                    self.isolate(piece, reason, out, dead)?;
                }
            }
        }
        Ok(())
    }

    /// Calls the plugin once on `batch`, leaving in it what the plugin kept or emitted
    /// and committing its keyed-state writes; on failure `batch` and the state are as
    /// they were (the instance must be restarted) and the reason is returned.
    fn call(&mut self, batch: &mut EventBatch, dead: &mut DeadLetters) -> Result<(), String> {
        let rejected = invoke(&mut self.instance, batch, dead, &mut self.origins_scratch)?;
        self.counters.rejected.inc_by(rejected);
        self.counters.events_out.inc_by(batch.len() as u64);
        Ok(())
    }

    /// Starts running `candidate` beside the live version on the same batches, without
    /// emitting its output (shadow mode); it starts from a copy of the live keyed state.
    pub fn start_shadow(&mut self, mut candidate: PluginInstance) -> Result<(), String> {
        if candidate.plugin().world == World::Aggregate {
            return Err("a window aggregate cannot shadow a stage".into());
        }
        let entries = self.instance.state().entries();
        candidate.state_mut().restore(&entries);
        self.shadow = Some(Shadow::new(candidate));
        Ok(())
    }

    /// Stops shadow mode, returning the candidate.
    pub fn take_shadow(&mut self) -> Option<PluginInstance> {
        self.shadow.take().map(Shadow::into_instance)
    }

    /// What shadow mode has seen so far.
    pub fn shadow_status(&self) -> Option<ShadowStatus> {
        self.shadow.as_ref().map(Shadow::status)
    }
}

/// How many keyed-state entries one `migrate` call carries.
const MIGRATE_BATCH: usize = 1024;

/// The rewrites `instance` asks for of keyed state written by state version `from`, when
/// it writes a newer one (none otherwise); all of them, or the first refusal.
fn migrations(
    instance: &mut PluginInstance,
    from: u32,
    entries: &[StateEntry],
) -> Result<Vec<StateUpdate>, String> {
    let Some(to) = instance.state_version()? else {
        return Ok(Vec::new());
    };
    if from >= to || entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut updates = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(MIGRATE_BATCH) {
        let answers = instance.migrate(from, chunk).map_err(|e| {
            format!("it refused to migrate keyed state from state version {from} to {to}: {e}")
        })?;
        updates.extend(
            chunk
                .iter()
                .zip(answers)
                .map(|((key, name, _), value)| ((key.clone(), name.clone()), value)),
        );
    }
    tracing::info!(
        "migrated {} keyed-state entries from state version {from} to {to}",
        updates.len()
    );
    Ok(updates)
}

/// Calls `instance` once on `batch`, leaving in it what the plugin kept or emitted and
/// committing its keyed-state writes; returns how many events it rejected. On failure
/// `batch` and the state are as they were (the instance must be restarted).
pub(super) fn invoke(
    instance: &mut PluginInstance,
    batch: &mut EventBatch,
    dead: &mut DeadLetters,
    scratch: &mut Vec<Origin>,
) -> Result<u64, String> {
    let name = instance.shared_name().clone();
    let outcome = instance
        .call(Some(&batch.columns), |exports, store| match &exports.role {
            Role::Filter(f) => f.call_select(store, &batch.columns).map(Answer::Selected),
            Role::Transform(t) => t.call_process(store, &batch.columns).map(Answer::Processed),
            Role::Aggregate(_) => Err(wasmtime::format_err!(
                "an aggregate plugin cannot run as a stage"
            )),
        })
        .and_then(|result| match result {
            Answer::Selected((kept, rejected)) => {
                apply_selection(batch, kept, &rejected, &name, dead)
            }
            Answer::Processed((out, origins, rejected)) => {
                apply_output(batch, out, &origins, &rejected, &name, dead, scratch)
            }
        });
    let rejected = outcome?;
    instance.state_mut().commit();
    Ok(rejected)
}

/// The format version of a plugin stage's checkpoint section. Version 1 had no
/// `own_state` (and is still read).
const SECTION_VERSION: u32 = 2;

/// The small state of a plugin stage's checkpoint section; its keyed state is the
/// section's table, keyed by [`state_key`].
#[derive(Debug, Serialize, Deserialize)]
struct PluginSection {
    /// The component's content hash (its version) when the checkpoint was taken.
    hash: String,
    /// The stage's config then.
    config: Vec<(String, String)>,
    /// The plugin's own in-memory state, for a plugin with the `state` interface.
    own_state: Option<OwnState>,
}

impl Checkpointed for PluginStage {
    fn snapshot(&mut self, _id: u64, incremental: bool) -> Result<Option<Section>> {
        let own_state = self.instance.snapshot_own_state().map_err(|e| {
            anyhow::anyhow!(
                "plugin `{}` failed to snapshot its own state for a checkpoint: {e}",
                self.name()
            )
        })?;
        let meta = PluginSection {
            hash: self.hash().to_owned(),
            config: self.instance.config_pairs().to_vec(),
            own_state,
        };
        let mut section = Section::new(self.section_name(), SECTION_VERSION).with_meta(&meta)?;
        let (written, deleted) = self.instance.state_mut().snapshot(incremental);
        section.entries = written
            .into_iter()
            .map(|(key, name, value)| (state_key(&key, &name), value))
            .collect();
        section.removed = deleted
            .iter()
            .map(|(key, name)| state_key(key, name))
            .collect();
        Ok(Some(section))
    }

    fn state_entries(&self) -> usize {
        self.state_entries()
    }
}

/// What a stage's plugin answered for a batch.
// Lives on the stack for one call; boxing the larger variant would allocate per batch.
#[allow(clippy::large_enum_variant)]
enum Answer {
    /// A filter's kept indices and rejections.
    Selected((Vec<u32>, Vec<Rejection>)),
    /// A transform's output batch, origins and rejections.
    Processed((Columns, Vec<u32>, Vec<Rejection>)),
}

/// Dead-letters rejected events, appending them to `dead`; returns how many.
fn dead_letter_rejections(
    batch: &EventBatch,
    rejected: &[Rejection],
    plugin: &str,
    dead: &mut DeadLetters,
) -> Result<u64, String> {
    if let Some(r) = rejected.iter().find(|r| r.index as usize >= batch.len()) {
        return Err(format!(
            "it rejected event {} of a batch of {}",
            r.index,
            batch.len()
        ));
    }
    for r in rejected {
        let i = r.index as usize;
        dead.push(
            &r.reason,
            batch.origins[i],
            Some(plugin),
            DeadValue::Json(batch.value(i)),
        );
    }
    Ok(rejected.len() as u64)
}

/// Applies a filter's result: rejected events to `dead`, kept ones stay. An event both
/// kept and rejected counts as rejected.
fn apply_selection(
    batch: &mut EventBatch,
    mut kept: Vec<u32>,
    rejected: &[Rejection],
    plugin: &str,
    dead: &mut DeadLetters,
) -> Result<u64, String> {
    let n = batch.len();
    if kept.windows(2).any(|w| w[0] >= w[1]) || kept.last().is_some_and(|&k| k as usize >= n) {
        return Err(format!(
            "it returned kept indices that are not ascending within the batch of {n}"
        ));
    }
    let count = dead_letter_rejections(batch, rejected, plugin, dead)?;
    if !rejected.is_empty() {
        let mut is_rejected = vec![false; n];
        rejected
            .iter()
            .for_each(|r| is_rejected[r.index as usize] = true);
        kept.retain(|&k| !is_rejected[k as usize]);
    }
    batch.retain(&kept);
    Ok(count)
}

/// Applies a transform's result: rejected input events to `dead`, and the output batch
/// replaces the input, each output keeping the origin of the input it came from.
fn apply_output(
    batch: &mut EventBatch,
    out: Columns,
    origins: &[u32],
    rejected: &[Rejection],
    plugin: &str,
    dead: &mut DeadLetters,
    scratch: &mut Vec<Origin>,
) -> Result<u64, String> {
    let n = batch.len();
    let emitted = check_columns(&out).map_err(|e| format!("it returned a malformed batch: {e}"))?;
    if origins.len() != emitted {
        return Err(format!(
            "it returned {emitted} events but {} origins",
            origins.len()
        ));
    }
    if origins.windows(2).any(|w| w[0] > w[1]) || origins.last().is_some_and(|&o| o as usize >= n) {
        return Err(format!(
            "it returned origins that are not ascending within the batch of {n}"
        ));
    }
    let count = dead_letter_rejections(batch, rejected, plugin, dead)?;
    scratch.clear();
    scratch.extend(origins.iter().map(|&o| batch.origins[o as usize]));
    std::mem::swap(&mut batch.origins, scratch);
    batch.columns = out;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Origin;
    use crate::config::PipelineConfig;
    use crate::plugin::CompiledCache;

    fn chaos_stage(mode: &str) -> PluginStage {
        let pipeline = PipelineConfig::parse(&format!(
            "[source]\nkind = \"generator\"\n[sink]\nkind = \"null\"\n[[plugin]]\nname = \"chaos\"\n\
             path = \"{}\"\nconfig = {{ mode = \"{mode}\" }}\n",
            eddy_example_artifacts::CHAOS_COMPONENT
        ))
        .unwrap();
        let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
        let plugin = runtime.load(&pipeline.plugins[0]).unwrap();
        PluginStage::start(&runtime, plugin, SideInputs::default()).unwrap()
    }

    /// Events `n` = 1..=count keyed `k<n>`, the ones in `poisoned` marked for the plugin to
    /// fail on.
    fn events(count: u64, poisoned: &[u64]) -> EventBatch {
        let mut batch = EventBatch::default();
        for n in 1..=count {
            let value = format!(r#"{{"n":{n},"poison":{}}}"#, poisoned.contains(&n));
            let origin = Origin {
                partition: 0,
                position: n,
                watermark: 0,
            };
            batch.push(
                origin,
                format!("k{n}").as_bytes(),
                n as i64,
                value.as_bytes(),
            );
        }
        batch
    }

    #[test]
    fn a_failed_batch_is_bisected_to_the_events_the_plugin_fails_on() {
        let mut stage = chaos_stage("trap");
        let mut batch = events(37, &[3, 20, 21, 37]);
        let mut dead = DeadLetters::new("test");
        stage.run(&mut batch, &mut dead).unwrap();
        let kept: Vec<u64> = batch.origins.iter().map(|o| o.position).collect();
        let expected: Vec<u64> = (1..=37).filter(|n| ![3, 20, 21, 37].contains(n)).collect();
        assert_eq!(kept, expected, "the innocent events, once each, in order");
        assert_eq!(dead.len(), 4);
        let c = stage.counters();
        assert_eq!((c.failed, c.failed_batches, c.events_out), (4, 1, 33));
        // Every innocent event's keyed-state write was kept once; the poisoned events'
        // were undone with their failed calls.
        let seen: Vec<(Vec<u8>, usize)> = stage
            .instance
            .state()
            .entries()
            .into_iter()
            .map(|(key, _, value)| (key, value.len()))
            .collect();
        assert_eq!(seen.len(), 33);
        assert!(seen.iter().all(|(_, count)| *count == 1), "{seen:?}");
        assert!(!seen.iter().any(|(key, _)| key == b"k20"));
    }
}
