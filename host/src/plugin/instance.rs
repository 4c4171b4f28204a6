//! Creating a plugin instance: its store (with limits and a deny-by-default WASI
//! context), its bindings, and the `init` call.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::bindings::{aggregate::Aggregate, filter::Filter, transform::Transform};
use super::host_state::{KeyedState, StoreData};
use super::runtime::{LoadedPlugin, PluginPre, EPOCH_TICK};
use super::side_input::SideInputs;
use crate::config::PluginConfig;

/// A plugin's instantiated bindings.
pub(super) enum Instance {
    /// The `aggregate` world.
    Aggregate(Aggregate),
    /// The `filter` world.
    Filter(Filter),
    /// The `transform` world.
    Transform(Transform),
}

/// The epoch ticks of a plugin's per-call timeout.
pub(super) fn timeout_ticks(config: &PluginConfig) -> u64 {
    (config.timeout.0.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Creates a store and instance for `plugin` and calls `init`.
pub(super) fn instantiate(
    engine: &wasmtime::Engine,
    plugin: &LoadedPlugin,
    name: &Arc<str>,
    config_pairs: &[(String, String)],
    side_inputs: &SideInputs,
    state: KeyedState,
) -> Result<(Store<StoreData>, Instance)> {
    let config = &plugin.config;
    let max_memory = usize::try_from(config.max_memory_mb << 20).unwrap_or(usize::MAX);
    let data = StoreData::new(
        name.clone(),
        state,
        side_inputs.clone(),
        wasi_context(config)?,
        max_memory,
    );
    let mut store = Store::new(engine, data);
    store.limiter(|data| data);
    store.set_epoch_deadline(timeout_ticks(config));
    let what = || format!("plugin `{name}` ({})", config.path.display());
    // The three worlds' bindings have the same shape: instantiate, then call `init`.
    macro_rules! start {
        ($pre:expr, $world:ident) => {{
            let bindings = $pre
                .instantiate(&mut store)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot instantiate {}", what()))?;
            let init = bindings.call_init(&mut store, config_pairs);
            (Instance::$world(bindings), init)
        }};
    }
    let (instance, init) = match &plugin.pre {
        PluginPre::Filter(pre) => start!(pre, Filter),
        PluginPre::Transform(pre) => start!(pre, Transform),
        PluginPre::Aggregate(pre) => start!(pre, Aggregate),
    };
    match init {
        Ok(Ok(())) => Ok((store, instance)),
        Ok(Err(message)) => Err(anyhow!("{} refused its config: {message}", what())),
        Err(trap) => Err(anyhow!("{} failed in init: {}", what(), trap.root_cause())),
    }
}

/// The WASI context of a plugin: nothing but what its `grant` table allows (stderr is
/// passed through so a plugin's panic message reaches the operator).
fn wasi_context(config: &PluginConfig) -> Result<WasiCtx> {
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stderr();
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
