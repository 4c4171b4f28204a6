//! One running plugin stage: its instance, its store, and the call it makes per batch.
//!
//! A batch call that traps, runs past the stage's timeout, or exceeds its memory limit
//! fails only that batch: its events go to the dead-letter sink with the reason, the
//! stage's keyed-state writes from that batch are rolled back, and the stage is
//! re-instantiated for the next batch. Malformed results (indices out of range, columns
//! that disagree) are treated the same way.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use wasmtime::Store;

use super::bindings::Rejection;
use super::host_state::{KeyedState, StoreData};
use super::instance::{instantiate, timeout_ticks, Instance};
use super::runtime::{LoadedPlugin, PluginRuntime, World};
use super::side_input::SideInputs;
use crate::batch::{check_columns, EventBatch, Origin};
use crate::checkpoint::PluginSnapshot;
use crate::dead_letter::{DeadLetters, DeadValue};

/// Counters of one stage since the run started.
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

/// A plugin stage, instantiated and initialised.
pub struct PluginStage {
    plugin: LoadedPlugin,
    name: Arc<str>,
    config_pairs: Vec<(String, String)>,
    side_inputs: SideInputs,
    engine: wasmtime::Engine,
    store: Store<StoreData>,
    instance: Instance,
    counters: StageCounters,
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
                "plugin `{}` ({}) is a window aggregate (the `aggregate` world): name it in [window] plugin, not as a [[plugin]] stage",
                plugin.config.name,
                plugin.config.path.display()
            );
        }
        let name: Arc<str> = Arc::from(plugin.config.name.as_str());
        let config_pairs = plugin.config.config_pairs()?;
        let (store, instance) = instantiate(
            runtime.engine(),
            &plugin,
            &name,
            &config_pairs,
            &side_inputs,
            KeyedState::default(),
        )?;
        Ok(Self {
            plugin,
            name,
            config_pairs,
            side_inputs,
            engine: runtime.engine().clone(),
            store,
            instance,
            counters: StageCounters::default(),
            origins_scratch: Vec::new(),
        })
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's content hash (its version).
    pub fn hash(&self) -> &str {
        &self.plugin.hash
    }

    /// The stage's counters.
    pub fn counters(&self) -> StageCounters {
        self.counters
    }

    /// The stage's identity and keyed state (all of it, or with `incremental` what
    /// changed since the last snapshot), for a checkpoint.
    pub fn snapshot(&mut self, incremental: bool) -> PluginSnapshot {
        let (state, deleted) = self.store.data_mut().state.snapshot(incremental);
        PluginSnapshot {
            name: self.name.to_string(),
            hash: self.plugin.hash.clone(),
            config: self.config_pairs.clone(),
            state,
            deleted,
        }
    }

    /// Tracks keyed-state changes from now on, for incremental checkpoints.
    pub fn track_changes(&mut self) {
        self.store.data_mut().state.track_changes = true;
    }

    /// Keyed-state entries written or deleted since the last snapshot.
    pub fn state_changes(&self) -> usize {
        self.store.data().state.changes()
    }

    /// Restores the stage's keyed state from a checkpoint (possibly taken with another
    /// version of the plugin: state belongs to the stage, not the version).
    pub fn restore(&mut self, snapshot: &PluginSnapshot) {
        if snapshot.hash != self.plugin.hash {
            tracing::info!(
                "plugin `{}`: resuming state of version {} with version {}",
                self.name,
                &snapshot.hash[..12.min(snapshot.hash.len())],
                &self.plugin.hash[..12]
            );
        }
        self.store.data_mut().state.restore(&snapshot.state);
    }

    /// Number of keyed-state entries the plugin holds.
    pub fn state_entries(&self) -> usize {
        self.store.data().state.len()
    }

    /// Runs the plugin over `batch`, leaving in it what the plugin kept or emitted;
    /// rejected events, and all events of a failed call, go to `dead`.
    ///
    /// Errors only when a failed plugin cannot be re-instantiated.
    pub fn run(&mut self, batch: &mut EventBatch, dead: &mut DeadLetters) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.counters.events_in += batch.len() as u64;
        self.store
            .set_epoch_deadline(timeout_ticks(&self.plugin.config));
        self.store.data_mut().begin_batch(
            &batch.columns.keys,
            &batch.columns.key_ends,
            &batch.columns.values,
            &batch.columns.value_ends,
        );
        let outcome = match &self.instance {
            Instance::Filter(f) => f
                .call_select(&mut self.store, &batch.columns)
                .map_err(|e| self.describe_failure(e))
                .and_then(|(kept, rejected)| {
                    apply_selection(batch, kept, &rejected, &self.name, dead)
                }),
            Instance::Aggregate(_) => Err("an aggregate plugin cannot run as a stage".to_owned()),
            Instance::Transform(t) => t
                .call_process(&mut self.store, &batch.columns)
                .map_err(|e| self.describe_failure(e))
                .and_then(|(out, origins, rejected)| {
                    apply_output(
                        batch,
                        out,
                        &origins,
                        &rejected,
                        &self.name,
                        dead,
                        &mut self.origins_scratch,
                    )
                }),
        };
        self.store.data_mut().end_batch();
        match outcome {
            Ok(rejected) => {
                self.store.data_mut().state.commit();
                self.counters.rejected += rejected;
                self.counters.events_out += batch.len() as u64;
                Ok(())
            }
            Err(reason) => {
                let reason = format!("plugin `{}` failed on this batch: {reason}", self.name);
                tracing::warn!(
                    "{reason}; its {} events go to the dead-letter sink",
                    batch.len()
                );
                for i in 0..batch.len() {
                    dead.push(
                        &reason,
                        batch.origins[i],
                        Some(&self.name),
                        DeadValue::Json(batch.value(i)),
                    );
                }
                self.counters.failed += batch.len() as u64;
                self.counters.failed_batches += 1;
                batch.clear();
                self.restart()
            }
        }
    }

    /// Replaces a failed instance with a fresh one, keeping the committed keyed state.
    fn restart(&mut self) -> Result<()> {
        let mut state = std::mem::take(&mut self.store.data_mut().state);
        state.roll_back();
        let (store, instance) = instantiate(
            &self.engine,
            &self.plugin,
            &self.name,
            &self.config_pairs,
            &self.side_inputs,
            state,
        )
        .with_context(|| {
            format!(
                "plugin `{}` could not be restarted after a failed batch",
                self.name
            )
        })?;
        self.store = store;
        self.instance = instance;
        Ok(())
    }

    /// One line saying why a call failed.
    fn describe_failure(&self, error: wasmtime::Error) -> String {
        if self.store.data().memory_exceeded {
            return format!(
                "it exceeded its memory limit of {} MiB",
                self.plugin.config.max_memory_mb
            );
        }
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return format!("it ran past its timeout of {}", self.plugin.config.timeout);
        }
        error.root_cause().to_string()
    }
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
    out: super::bindings::Batch,
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
