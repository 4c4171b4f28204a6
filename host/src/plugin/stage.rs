//! One running plugin stage: its instance, its store, and the call it makes per batch.
//!
//! A batch call that traps, runs past the stage's timeout, or exceeds its memory limit
//! fails only that batch: its events go to the dead-letter sink with the reason, the
//! stage's keyed-state writes from that batch are rolled back, and the stage is
//! re-instantiated for the next batch. Malformed results (indices out of range, columns
//! that disagree) are treated the same way.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::contract::World;
use super::host_state::KeyedState;
use super::instance::{OwnState, PluginInstance, Role};
use super::runtime::{LoadedPlugin, PluginRuntime};
use super::side_input::SideInputs;
use crate::batch::{check_columns, Columns, EventBatch, Origin, Rejection};
use crate::checkpoint::{parse_state_key, state_key, Checkpointed, Section};
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

/// A plugin stage, instantiated and initialised.
pub struct PluginStage {
    instance: PluginInstance,
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
        Ok(Self {
            instance,
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
    pub fn restore(&mut self, section: &Section) -> Result<()> {
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
        let name = self.instance.shared_name().clone();
        let scratch = &mut self.origins_scratch;
        let outcome = self
            .instance
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
        match outcome {
            Ok(rejected) => {
                self.instance.state_mut().commit();
                self.counters.rejected.inc_by(rejected);
                self.counters.events_out.inc_by(batch.len() as u64);
                Ok(())
            }
            Err(reason) => {
                let reason = format!("plugin `{name}` failed on this batch: {reason}");
                tracing::warn!(
                    "{reason}; its {} events go to the dead-letter sink",
                    batch.len()
                );
                for i in 0..batch.len() {
                    dead.push(
                        &reason,
                        batch.origins[i],
                        Some(&name),
                        DeadValue::Json(batch.value(i)),
                    );
                }
                self.counters.failed.inc_by(batch.len() as u64);
                self.counters.failed_batches.inc();
                batch.clear();
                self.instance.restart()
            }
        }
    }
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
