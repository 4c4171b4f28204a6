//! A user-defined window aggregate running as a Wasm component (the `aggregate` world).
//!
//! The host keeps each key's and window's accumulator as bytes (so it can checkpoint
//! them); the plugin folds events into them, merges them and turns them into results.
//! Folds are deferred and sent in one call per batch (or per watermark step that fires
//! windows), so the cost per event stays close to the cost of the plugin's own logic.
//!
//! A failing aggregate call (trap, timeout, an error it returns) stops the run with an
//! error naming the plugin: unlike a filter's batch, a fold cannot be dead-lettered
//! without leaving window state half-updated. Except in a new version's probation after
//! a hot swap: then the aggregate rolls back to the version before, which makes the same
//! call again. A call's accumulators are written back only when it succeeds, so the
//! failed call leaves nothing behind, and every fold, merge and finish is done by exactly
//! one version.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use wasmtime::Store;

use super::bindings::aggregate;
use super::contract::World;
use super::host_state::{KeyedState, StoreData};
use super::instance::{recorded_version, PluginInstance, Role};
use super::probation::Probation;
use super::runtime::{LoadedPlugin, PluginRuntime};
use super::side_input::SideInputs;
use super::stage::VersionRecord;
use crate::batch::{Columns, EventBatch, Packed};
use crate::metrics::StageMetrics;
use crate::window::{Acc, Accs, Aggregator, AggregatorVersion};

/// A Wasm aggregate plugin, instantiated and initialised.
pub struct WasmAggregate {
    instance: PluginInstance,
    /// The plugin's empty accumulator (`create` is called once).
    empty: Vec<u8>,
    /// The version swapped out (with its empty accumulator), while the running one is on
    /// probation.
    previous: Probation<(PluginInstance, Vec<u8>)>,
    history: Vec<VersionRecord>,
    counters: StageMetrics,
    /// Deferred folds: event `events[p]` into the accumulator of `slots[targets[p]]`.
    events: Vec<u32>,
    targets: Vec<u32>,
    slots: Vec<u32>,
    target_of_slot: HashMap<u32, u32>,
}

impl WasmAggregate {
    /// Instantiates an aggregate plugin and calls its `init` and `create`.
    pub fn start(
        runtime: &PluginRuntime,
        plugin: LoadedPlugin,
        side_inputs: SideInputs,
    ) -> Result<Self> {
        let config = &plugin.config;
        if plugin.world != World::Aggregate {
            bail!(
                "[window] plugin `{}` ({}) is a {}, not a window aggregate (the `aggregate` world)",
                config.name,
                config.path.display(),
                plugin.world.name()
            );
        }
        let instance =
            PluginInstance::start(runtime.engine(), plugin, side_inputs, KeyedState::default())?;
        let history = vec![VersionRecord::new(&instance, "start", None, None)];
        let mut aggregate = Self {
            instance,
            empty: Vec::new(),
            previous: Probation::default(),
            history,
            counters: StageMetrics::default(),
            events: Vec::new(),
            targets: Vec::new(),
            slots: Vec::new(),
            target_of_slot: HashMap::new(),
        };
        aggregate.empty = aggregate.call("create", |a, s| a.call_create(s).map(Ok))?;
        Ok(aggregate)
    }

    /// Calls `export` with accumulators `accs` (packed), under the running version's
    /// probation: when the call fails in it, the aggregate rolls back to the previous
    /// version and makes the call again there, with the failed version's empty
    /// accumulator (given to windows it created) replaced by the previous version's.
    fn call_with<R>(
        &mut self,
        export: &str,
        accs: &[&[u8]],
        f: impl Fn(
            &aggregate::Guest,
            &mut Store<StoreData>,
            &Packed,
        ) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R> {
        let on_probation = self.previous.is_on();
        let packed = Packed::from_items(accs.iter().copied());
        let failure = match self.call(export, |a, s| f(a, s, &packed)) {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        if !on_probation {
            return Err(failure);
        }
        let Some(failed_empty) = self.roll_back(&failure) else {
            return Err(failure);
        };
        let empty = &self.empty;
        let packed = Packed::from_items(accs.iter().map(|&acc| {
            if acc == failed_empty {
                empty.as_slice()
            } else {
                acc
            }
        }));
        self.call(export, |a, s| f(a, s, &packed))
    }

    /// Goes back to the version swapped out, because the running one failed a call in
    /// its probation; returns the failed version's empty accumulator (`None` when there
    /// is no version to go back to).
    fn roll_back(&mut self, failure: &anyhow::Error) -> Option<Vec<u8>> {
        let (instance, empty) = self.previous.take()?;
        let started = std::time::Instant::now();
        let failed = std::mem::replace(&mut self.instance, instance);
        let failed_empty = std::mem::replace(&mut self.empty, empty);
        tracing::error!(
            "window aggregate `{}`: version {} failed in its probation ({failure:#}); rolled back to version {}, which makes the call again",
            self.name(),
            &failed.plugin().hash[..12],
            &self.hash()[..12]
        );
        self.counters.rollbacks.inc();
        let why = format!("rollback: {failure:#}");
        let record = VersionRecord::new(&self.instance, &why, Some(started), None);
        self.history.push(record);
        Some(failed_empty)
    }

    /// Calls an export with the plugin's timeout; traps and returned errors become one
    /// error naming the plugin and the export. A failed call stops the run (or rolls a
    /// version on probation back), so the instance is not restarted.
    fn call<R>(
        &mut self,
        export: &str,
        f: impl FnOnce(&aggregate::Guest, &mut Store<StoreData>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R> {
        let result = self
            .instance
            .call(None::<&Columns>, |exports, store| match &exports.role {
                Role::Aggregate(a) => f(a, store),
                _ => Err(wasmtime::format_err!(
                    "the plugin is not a window aggregate"
                )),
            });
        let name = self.instance.name();
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) | Err(message) => Err(anyhow!(
                "window aggregate plugin `{name}` failed in `{export}`: {message}"
            )),
        }
    }
}

fn bytes(acc: &Acc) -> &[u8] {
    match acc {
        Acc::Bytes(b) => b,
        _ => &[],
    }
}

impl WasmAggregate {
    /// The versions the aggregate has run, oldest first; the last is running.
    pub fn history(&self) -> &[VersionRecord] {
        &self.history
    }

    /// The plugin's content hash (its version).
    pub fn hash(&self) -> &str {
        &self.instance.plugin().hash
    }

    /// Switches to `next`, another aggregate plugin (or config), at a batch boundary.
    /// The accumulators the host keeps stay as they are: the new version must read what
    /// the old one wrote. Refused, with the old version running, when `next` is not an
    /// aggregate or fails `create`.
    pub fn swap_in(
        &mut self,
        next: PluginInstance,
        why: &str,
        paused: std::time::Instant,
        checkpoint: Option<u64>,
    ) -> Result<(), String> {
        if next.plugin().world != World::Aggregate {
            return Err(format!(
                "{} is a {}, and `{}` is a window aggregate",
                next.plugin().config.path.display(),
                next.plugin().world.name(),
                self.instance.name()
            ));
        }
        let probation = next.plugin().config.probation.0;
        let old = std::mem::replace(&mut self.instance, next);
        let old_empty = match self.call("create", |a, s| a.call_create(s).map(Ok)) {
            Ok(empty) => std::mem::replace(&mut self.empty, empty),
            Err(e) => {
                self.instance = old;
                return Err(format!("{e:#}"));
            }
        };
        self.previous.begin((old, old_empty), probation);
        let record = VersionRecord::new(&self.instance, why, Some(paused), checkpoint);
        self.history.push(record);
        Ok(())
    }

    /// Handles to the aggregate's counters, for the metrics registry.
    pub fn metrics(&self) -> &StageMetrics {
        &self.counters
    }

    /// Switches to the version and config a checkpoint recorded (see
    /// [`Aggregator::version`]), when they differ from the pipeline file's and the
    /// component was kept in `components`.
    pub fn resume_version(
        &mut self,
        recorded: &AggregatorVersion,
        runtime: &PluginRuntime,
        components: Option<&std::path::Path>,
    ) -> Result<()> {
        let instance = recorded_version(
            &self.instance,
            &recorded.hash,
            &recorded.config,
            runtime,
            components,
        )?;
        if let Some(instance) = instance {
            self.swap_in(
                instance,
                "resumed from a checkpoint",
                std::time::Instant::now(),
                None,
            )
            .map_err(|e| anyhow!(e))?;
            self.previous.end();
        }
        Ok(())
    }
}

impl Aggregator for WasmAggregate {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        self.instance.name()
    }

    fn create(&mut self) -> Result<Acc> {
        Ok(Acc::Bytes(self.empty.as_slice().into()))
    }

    fn prepare(&self, _batch: &EventBatch, _i: usize) -> Result<Option<f64>, String> {
        Ok(None)
    }

    fn fold(&mut self, _accs: &mut Accs, slot: u32, i: usize, _value: Option<f64>) {
        let next = self.slots.len() as u32;
        let target = *self.target_of_slot.entry(slot).or_insert(next);
        if target == next {
            self.slots.push(slot);
        }
        self.events.push(i as u32);
        self.targets.push(target);
    }

    fn flush(&mut self, batch: &EventBatch, accs: &mut Accs) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let slots = std::mem::take(&mut self.slots);
        let inputs: Vec<&[u8]> = slots.iter().map(|&s| accs.bytes(s)).collect();
        let (events, targets) = (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.targets),
        );
        let folded = self.call_with("fold", &inputs, |a, s, packed| {
            a.call_fold(s, &batch.columns, packed, &events, &targets)
        });
        drop(inputs);
        self.slots = slots;
        let folded = folded?;
        if folded.ends.len() != self.slots.len() {
            bail!(
                "window aggregate plugin `{}` returned {} accumulators for {}",
                self.instance.name(),
                folded.ends.len(),
                self.slots.len()
            );
        }
        for (i, &slot) in self.slots.iter().enumerate() {
            accs.set(slot, Acc::Bytes(folded.get(i).into()));
        }
        self.slots.clear();
        self.target_of_slot.clear();
        self.events = events;
        self.targets = targets;
        self.events.clear();
        self.targets.clear();
        Ok(())
    }

    fn merge(&mut self, a: Acc, b: Acc) -> Result<Acc> {
        self.call_with("merge", &[bytes(&a), bytes(&b)], |plugin, s, packed| {
            plugin.call_merge(s, packed.get(0), packed.get(1))
        })
        .map(|merged| Acc::Bytes(merged.into()))
    }

    fn version(&self) -> Option<AggregatorVersion> {
        Some(AggregatorVersion {
            hash: self.hash().to_owned(),
            config: self.instance.config_pairs().to_vec(),
        })
    }

    fn finish(&mut self, acc: &Acc, out: &mut Vec<u8>) -> Result<()> {
        let result = self.call_with("finish", &[bytes(acc)], |a, s, packed| {
            a.call_finish(s, packed)
        })?;
        if result.ends.len() != 1 {
            bail!(
                "window aggregate plugin `{}` returned {} results for 1",
                self.instance.name(),
                result.ends.len()
            );
        }
        let json = result.get(0);
        if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
            bail!(
                "window aggregate plugin `{}` returned a result that is not JSON: {:?}",
                self.instance.name(),
                String::from_utf8_lossy(json)
            );
        }
        out.extend_from_slice(json);
        Ok(())
    }
}
