//! A user-defined window aggregate running as a Wasm component (the `aggregate` world).
//!
//! The host keeps each key's and window's accumulator as bytes (so it can checkpoint
//! them); the plugin folds events into them, merges them and turns them into results.
//! Folds are deferred and sent in one call per batch (or per watermark step that fires
//! windows), so the cost per event stays close to the cost of the plugin's own logic.
//!
//! A failing aggregate call (trap, timeout, an error it returns) stops the run with an
//! error naming the plugin: unlike a filter's batch, a fold cannot be dead-lettered
//! without leaving window state half-updated.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use wasmtime::Store;

use super::bindings::aggregate;
use super::contract::World;
use super::host_state::{KeyedState, StoreData};
use super::instance::{PluginInstance, Role};
use super::runtime::{LoadedPlugin, PluginRuntime};
use super::side_input::SideInputs;
use super::stage::VersionRecord;
use crate::batch::{Columns, EventBatch, Packed};
use crate::window::{Acc, Aggregator};

/// A Wasm aggregate plugin, instantiated and initialised.
pub struct WasmAggregate {
    instance: PluginInstance,
    history: Vec<VersionRecord>,
    /// The plugin's empty accumulator (`create` is called once).
    empty: Vec<u8>,
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
            history,
            empty: Vec::new(),
            events: Vec::new(),
            targets: Vec::new(),
            slots: Vec::new(),
            target_of_slot: HashMap::new(),
        };
        aggregate.empty = aggregate.call("create", None, |a, s| a.call_create(s).map(Ok))?;
        Ok(aggregate)
    }

    /// Calls an export with the plugin's timeout; traps and returned errors become one
    /// error naming the plugin and the export. A failed call stops the run, so the
    /// instance is not restarted.
    fn call<R>(
        &mut self,
        export: &str,
        batch: Option<&Columns>,
        f: impl FnOnce(&aggregate::Guest, &mut Store<StoreData>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R> {
        let result = self
            .instance
            .call(batch, |exports, store| match &exports.role {
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
        let previous = std::mem::replace(&mut self.instance, next);
        match self.call("create", None, |a, s| a.call_create(s).map(Ok)) {
            Ok(empty) => self.empty = empty,
            Err(e) => {
                self.instance = previous;
                return Err(format!("{e:#}"));
            }
        }
        let record = VersionRecord::new(&self.instance, why, Some(paused), checkpoint);
        self.history.push(record);
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
        Ok(Acc::Bytes(self.empty.clone()))
    }

    fn prepare(&self, _batch: &EventBatch, _i: usize) -> Result<Option<f64>, String> {
        Ok(None)
    }

    fn fold(&mut self, _accs: &mut [Acc], slot: u32, i: usize, _value: Option<f64>) {
        let next = self.slots.len() as u32;
        let target = *self.target_of_slot.entry(slot).or_insert(next);
        if target == next {
            self.slots.push(slot);
        }
        self.events.push(i as u32);
        self.targets.push(target);
    }

    fn flush(&mut self, batch: &EventBatch, accs: &mut [Acc]) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let packed = Packed::from_items(self.slots.iter().map(|&s| bytes(&accs[s as usize])));
        let (events, targets) = (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.targets),
        );
        let folded = self.call("fold", None, |a, s| {
            a.call_fold(s, &batch.columns, &packed, &events, &targets)
        })?;
        if folded.ends.len() != self.slots.len() {
            bail!(
                "window aggregate plugin `{}` returned {} accumulators for {}",
                self.instance.name(),
                folded.ends.len(),
                self.slots.len()
            );
        }
        for (i, &slot) in self.slots.iter().enumerate() {
            accs[slot as usize] = Acc::Bytes(folded.get(i).to_vec());
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
        let (a, b) = (bytes(&a).to_vec(), bytes(&b).to_vec());
        self.call("merge", None, |plugin, s| plugin.call_merge(s, &a, &b))
            .map(Acc::Bytes)
    }

    fn finish(&mut self, acc: &Acc, out: &mut Vec<u8>) -> Result<()> {
        let packed = Packed::from_items([bytes(acc)]);
        let result = self.call("finish", None, |a, s| a.call_finish(s, &packed))?;
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
