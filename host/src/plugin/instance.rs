//! One plugin instance's lifecycle, the same for every kind of plugin (filter, transform,
//! window aggregate): instantiate and `init`, call with the stage's timeout and memory
//! limit, describe a failure, and restart on a fresh instance after one.
//!
//! Invariants: a [`PluginInstance`] has always passed `init`; a failed call leaves the
//! keyed state as it was before that call (the call's writes are rolled back on
//! [`PluginInstance::restart`]). An instance is built without touching the pipeline, so a
//! new one can be prepared off the batch thread and switched in at a batch boundary.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::bindings::{aggregate, filter, state, transform};
use super::host_state::{KeyedState, StoreData};
use super::output::{LastWords, PluginOutput, Stream};
use super::runtime::{LoadedPlugin, RoleIndices, EPOCH_TICK};
use super::side_input::SideInputs;
use crate::batch::Columns;
use crate::config::PluginConfig;

/// The exports of an instance: the interface of its kind, and `state` if it has one.
pub(super) struct Exports {
    pub(super) role: Role,
    /// The optional `state` interface (used by checkpoints and hot swaps).
    pub(super) state: Option<state::Guest>,
}

/// The interface that makes an instance its kind of plugin.
pub(super) enum Role {
    Filter(filter::Guest),
    Transform(transform::Guest),
    Aggregate(aggregate::Guest),
}

/// A plugin instance that has passed `init`, with its store.
pub struct PluginInstance {
    plugin: LoadedPlugin,
    name: Arc<str>,
    config_pairs: Vec<(String, String)>,
    side_inputs: SideInputs,
    engine: wasmtime::Engine,
    store: Store<StoreData>,
    exports: Exports,
    /// The plugin's own state as last snapshotted or restored (`state` interface): what
    /// a restarted instance starts from.
    own_state: Option<OwnState>,
}

/// A plugin's own in-memory state (the `state` interface) and its format version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnState {
    /// The plugin's `state-version` when it wrote the bytes.
    pub version: u32,
    /// What its `snapshot` returned.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("name", &self.name)
            .field("version", &self.plugin.hash)
            .finish_non_exhaustive()
    }
}

impl PluginInstance {
    /// Instantiates `plugin` with `state` as its keyed state and calls its `init` with
    /// the stage's config.
    pub fn start(
        engine: &wasmtime::Engine,
        plugin: LoadedPlugin,
        side_inputs: SideInputs,
        state: KeyedState,
    ) -> Result<Self> {
        let name: Arc<str> = Arc::from(plugin.config.name.as_str());
        let config_pairs = plugin.config.config_pairs()?;
        let (store, exports) =
            instantiate(engine, &plugin, &name, &config_pairs, &side_inputs, state)?;
        Ok(Self {
            plugin,
            name,
            config_pairs,
            side_inputs,
            engine: engine.clone(),
            store,
            exports,
            own_state: None,
        })
    }

    /// Loads, compiles (through the cache), type-checks and starts a plugin for `config`
    /// with empty keyed state: a new version prepared off the stream, to be switched in
    /// at a batch boundary ([`crate::plugin::PluginStage::swap_in`]).
    pub fn prepare(
        runtime: &super::PluginRuntime,
        config: &PluginConfig,
        side_inputs: SideInputs,
    ) -> Result<Self> {
        let plugin = runtime.load(config)?;
        Self::start(runtime.engine(), plugin, side_inputs, KeyedState::default())
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stage's name, shared.
    pub(super) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The loaded plugin (config, version, kind).
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// The side-input tables the plugin reads.
    pub(super) fn side_inputs(&self) -> &SideInputs {
        &self.side_inputs
    }

    /// The stage's config as the plugin received it.
    pub fn config_pairs(&self) -> &[(String, String)] {
        &self.config_pairs
    }

    /// The host-owned keyed state.
    pub(super) fn state(&self) -> &KeyedState {
        &self.store.data().state
    }

    /// The host-owned keyed state, to change.
    pub(super) fn state_mut(&mut self) -> &mut KeyedState {
        &mut self.store.data_mut().state
    }

    /// Calls the plugin once, under its timeout and memory limit; `batch` is the batch
    /// the call is about (the keys keyed state may touch, the fields `field-numbers`
    /// answers). A trap, a timeout or an exceeded memory limit becomes one line saying
    /// why; the instance must then be [`PluginInstance::restart`]ed before its next call.
    pub(super) fn call<R>(
        &mut self,
        batch: Option<&Columns>,
        f: impl FnOnce(&Exports, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        self.store
            .set_epoch_deadline(timeout_ticks(&self.plugin.config));
        self.store.data().last_words.clear();
        match batch {
            Some(c) => {
                self.store
                    .data_mut()
                    .begin_batch(&c.keys, &c.key_ends, &c.values, &c.value_ends)
            }
            None => self.store.data_mut().begin_batch(&[], &[], &[], &[]),
        }
        let result = f(&self.exports, &mut self.store);
        self.store.data_mut().end_batch();
        result.map_err(|e| self.describe_failure(e))
    }

    /// Replaces a failed instance with a fresh one, keeping the committed keyed state
    /// (the failed call's writes are rolled back).
    pub fn restart(&mut self) -> Result<()> {
        let mut state = std::mem::take(&mut self.store.data_mut().state);
        state.roll_back();
        let (store, exports) = instantiate(
            &self.engine,
            &self.plugin,
            &self.name,
            &self.config_pairs,
            &self.side_inputs,
            state,
        )
        .with_context(|| {
            format!(
                "plugin `{}` could not be restarted after a failed call",
                self.name
            )
        })?;
        self.store = store;
        self.exports = exports;
        if let Some(own) = self.own_state.clone() {
            self.restore_own_state(own).map_err(|e| {
                anyhow!(
                    "plugin `{}` could not be restarted after a failed call: it refused its own state: {e}",
                    self.name
                )
            })?;
        }
        Ok(())
    }

    /// Whether the plugin exports the `state` interface.
    pub fn is_stateful(&self) -> bool {
        self.exports.state.is_some()
    }

    /// The plugin's own in-memory state now (`state-version` and `snapshot`), for a
    /// checkpoint; `None` for a plugin without the `state` interface.
    pub fn snapshot_own_state(&mut self) -> Result<Option<OwnState>, String> {
        if !self.is_stateful() {
            return Ok(None);
        }
        let own = self.call(None, |exports, store| {
            let state = exports.state.as_ref().expect("checked above");
            let version = state.call_state_version(&mut *store)?;
            Ok(state
                .call_snapshot(store)?
                .map(|bytes| OwnState { version, bytes }))
        })??;
        self.own_state = Some(own.clone());
        Ok(Some(own))
    }

    /// The format version of the state this build writes (`state-version`); `None` for a
    /// plugin without the `state` interface.
    pub fn state_version(&mut self) -> Result<Option<u32>, String> {
        if !self.is_stateful() {
            return Ok(None);
        }
        self.call(None, |exports, store| {
            let state = exports.state.as_ref().expect("checked above");
            state.call_state_version(store)
        })
        .map(Some)
    }

    /// Asks the plugin to rewrite keyed-state `entries` written by state version
    /// `from_version`: one answer per entry (the new value, or `None` to delete it).
    pub fn migrate(
        &mut self,
        from_version: u32,
        entries: &[(Vec<u8>, String, Vec<u8>)],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        let keys = crate::batch::Packed::from_items(entries.iter().map(|(k, _, _)| k.as_slice()));
        let values = crate::batch::Packed::from_items(entries.iter().map(|(_, _, v)| v.as_slice()));
        let names: Vec<String> = entries.iter().map(|(_, n, _)| n.clone()).collect();
        let answer = self.call(None, |exports, store| {
            let state = exports
                .state
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("it exports no `state` interface"))?;
            state.call_migrate(store, from_version, &keys, &names, &values)
        })??;
        if answer.len() != entries.len() {
            return Err(format!(
                "migrate answered {} entries for {}",
                answer.len(),
                entries.len()
            ));
        }
        Ok(answer)
    }

    /// Hands the plugin its own state as a checkpoint (or an older version) left it.
    pub fn restore_own_state(&mut self, own: OwnState) -> Result<(), String> {
        if !self.is_stateful() {
            return Err("it exports no `state` interface".into());
        }
        self.call(None, |exports, store| {
            let state = exports.state.as_ref().expect("checked above");
            state.call_restore(store, own.version, &own.bytes)
        })??;
        self.own_state = Some(own);
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
        let cause = error.root_cause().to_string();
        match self.store.data().last_words.take() {
            Some(words) => format!("{cause}; the plugin said: {words}"),
            None => cause,
        }
    }
}

/// The epoch ticks of a plugin's per-call timeout.
fn timeout_ticks(config: &PluginConfig) -> u64 {
    (config.timeout.0.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Creates a store and instance for `plugin`, loads its exports and calls `init`.
fn instantiate(
    engine: &wasmtime::Engine,
    plugin: &LoadedPlugin,
    name: &Arc<str>,
    config_pairs: &[(String, String)],
    side_inputs: &SideInputs,
    state: KeyedState,
) -> Result<(Store<StoreData>, Exports)> {
    let config = &plugin.config;
    let max_memory = usize::try_from(config.max_memory_mb << 20).unwrap_or(usize::MAX);
    let last_words = LastWords::default();
    let data = StoreData::new(
        name.clone(),
        state,
        side_inputs.clone(),
        wasi_context(config, name, &last_words)?,
        last_words,
        max_memory,
    );
    let mut store = Store::new(engine, data);
    store.limiter(|data| data);
    store.set_epoch_deadline(timeout_ticks(config));
    let what = || format!("plugin `{name}` ({})", config.path.display());
    let pre = &plugin.pre;
    let loaded = (|| -> wasmtime::Result<_> {
        let instance = pre.instance.instantiate(&mut store)?;
        let lifecycle = pre.lifecycle.load(&mut store, &instance)?;
        let role = match &pre.role {
            RoleIndices::Filter(i) => Role::Filter(i.load(&mut store, &instance)?),
            RoleIndices::Transform(i) => Role::Transform(i.load(&mut store, &instance)?),
            RoleIndices::Aggregate(i) => Role::Aggregate(i.load(&mut store, &instance)?),
        };
        let state = match &pre.state {
            Some(i) => Some(i.load(&mut store, &instance)?),
            None => None,
        };
        Ok((lifecycle, Exports { role, state }))
    })();
    let (lifecycle, exports) = loaded
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot instantiate {}", what()))?;
    match lifecycle.call_init(&mut store, config_pairs) {
        Ok(Ok(())) => Ok((store, exports)),
        Ok(Err(message)) => Err(anyhow!("{} refused its config: {message}", what())),
        Err(trap) => {
            let said = store.data().last_words.take();
            let said = said
                .map(|w| format!("; the plugin said: {w}"))
                .unwrap_or_default();
            Err(anyhow!(
                "{} failed in init: {}{said}",
                what(),
                trap.root_cause()
            ))
        }
    }
}

/// The WASI context of a plugin: nothing but what its `grant` table allows, and its
/// stdout and stderr going to the log, tagged with the stage's name `name`.
fn wasi_context(config: &PluginConfig, name: &Arc<str>, last_words: &LastWords) -> Result<WasiCtx> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(PluginOutput::new(
            name.clone(),
            Stream::Stdout,
            last_words.clone(),
        ))
        .stderr(PluginOutput::new(
            name.clone(),
            Stream::Stderr,
            last_words.clone(),
        ));
    let grant = &config.grant;
    for name in &grant.env {
        if let Ok(value) = std::env::var(name) {
            builder.env(name, value);
        }
    }
    if !grant.wall_clock {
        builder.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
    }
    for dir in &grant.read_dirs {
        let guest = dir.to_string_lossy();
        builder
            .preopened_dir(dir, guest.as_ref(), FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "plugin `{}`: cannot grant read access to {}",
                    config.name,
                    dir.display()
                )
            })?;
    }
    Ok(builder.build())
}

/// A clock stopped at the Unix epoch, for plugins not granted the real one: results then
/// never depend on when a plugin ran.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The instance to resume with when a checkpoint recorded version `hash` with `config`
/// for the plugin `running` is (another version or config than the pipeline file names:
/// a hot swap happened before it): the component kept in `components` as
/// `<hash>.wasm`, with the recorded config. `None` when nothing differs, or when the
/// recorded component was not kept (then the pipeline file's version resumes, and the
/// log says so).
pub(super) fn recorded_version(
    running: &PluginInstance,
    hash: &str,
    config: &[(String, String)],
    runtime: &super::PluginRuntime,
    components: Option<&std::path::Path>,
) -> Result<Option<PluginInstance>> {
    let name = running.name();
    let short = &hash[..12.min(hash.len())];
    if hash == running.plugin().hash && config == running.config_pairs() {
        return Ok(None);
    }
    let mut plugin_config = running.plugin().config.clone();
    if hash != running.plugin().hash {
        match components.map(|dir| dir.join(format!("{hash}.wasm"))) {
            Some(kept) if kept.exists() => plugin_config.path = kept,
            _ => {
                tracing::info!(
                    "plugin `{name}`: the checkpoint ran version {short}, which was not kept; resuming with version {} from the pipeline file",
                    &running.plugin().hash[..12]
                );
                return Ok(None);
            }
        }
    }
    plugin_config.config = config
        .iter()
        .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
        .collect();
    let instance = PluginInstance::prepare(runtime, &plugin_config, running.side_inputs().clone())
        .with_context(|| {
            format!("plugin `{name}`: cannot start version {short} the checkpoint ran with")
        })?;
    tracing::info!(
        "plugin `{name}`: resuming with version {short} and the config the checkpoint ran with"
    );
    Ok(Some(instance))
}
