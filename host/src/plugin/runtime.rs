//! The engine, the linker and component loading: from a `.wasm` file to a type-checked,
//! pre-instantiated plugin.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use wasmtime::component::InstancePre;

use super::bindings::{self, aggregate, filter, lifecycle, state, transform};
use super::cache::{content_hash, CompiledCache};
use super::contract::{self, World};
use super::host_state::StoreData;
use crate::config::PluginConfig;

/// How often the engine's epoch advances; plugin timeouts are counted in these ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The per-interface export indices of a type-checked component, found once at load
/// time so that instantiating (at start, after a failed batch, or for a hot swap) only
/// looks them up by index.
#[derive(Clone)]
pub(super) struct PluginPre {
    pub(super) instance: InstancePre<StoreData>,
    pub(super) lifecycle: lifecycle::GuestIndices,
    pub(super) role: RoleIndices,
    pub(super) state: Option<state::GuestIndices>,
}

/// The indices of the interface that makes a component its kind of plugin.
#[derive(Clone)]
pub(super) enum RoleIndices {
    Filter(filter::GuestIndices),
    Transform(transform::GuestIndices),
    Aggregate(aggregate::GuestIndices),
}

/// A plugin loaded from its file: compiled, type-checked, not yet running.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The stage's configuration.
    pub config: PluginConfig,
    /// SHA-256 of the component's bytes: the plugin's version.
    pub hash: String,
    /// The kind of plugin it is (by the interface it exports).
    pub world: World,
    /// Whether it exports the optional `state` interface.
    pub stateful: bool,
    pub(super) pre: PluginPre,
}

/// The wasmtime engine and linker shared by every plugin of a process.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<StoreData>,
    cache: CompiledCache,
}

impl PluginRuntime {
    /// A runtime whose compiled code is cached in `cache`.
    pub fn new(cache: CompiledCache) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot create the WebAssembly engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |data| data)?;
        start_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker,
            cache,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled-code cache.
    pub fn cache(&self) -> &CompiledCache {
        &self.cache
    }

    /// Reads, compiles (or loads from the cache) and type-checks a plugin.
    pub fn load(&self, config: &PluginConfig) -> Result<LoadedPlugin> {
        let path = &config.path;
        let what = || format!("plugin `{}` ({})", config.name, path.display());
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read {}; check the [[plugin]] path", what()))?;
        check_is_component(&bytes).with_context(what)?;
        let hash = content_hash(&bytes);
        let component = self
            .cache
            .load(&self.engine, &bytes, &hash)
            .with_context(|| format!("cannot compile {}", what()))?;
        let recognised = recognise(&self.engine, &component).with_context(what)?;
        let world = recognised.world;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(|instance| {
                let role = match world {
                    World::Filter => RoleIndices::Filter(filter::GuestIndices::new(&instance)?),
                    World::Transform => {
                        RoleIndices::Transform(transform::GuestIndices::new(&instance)?)
                    }
                    World::Aggregate => {
                        RoleIndices::Aggregate(aggregate::GuestIndices::new(&instance)?)
                    }
                };
                Ok(PluginPre {
                    lifecycle: lifecycle::GuestIndices::new(&instance)?,
                    state: recognised
                        .stateful
                        .then(|| state::GuestIndices::new(&instance))
                        .transpose()?,
                    role,
                    instance,
                })
            })
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "{} does not match the `{}` plugin of eddy:plugin@{}",
                    what(),
                    world.name(),
                    contract::VERSION
                )
            })?;
        Ok(LoadedPlugin {
            config: config.clone(),
            hash,
            world,
            stateful: recognised.stateful,
            pre,
        })
    }
}

/// Refuses files that are not Wasm components, with a message that says what they are.
fn check_is_component(bytes: &[u8]) -> Result<()> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => bail!(
            "is a core WebAssembly module, not a component: build it for the wasm32-wasip2 target \
             (or wrap it with `wasm-tools component new`)"
        ),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        _ => bail!("is not a WebAssembly component (it does not start with the Wasm magic bytes)"),
    }
}

/// Recognises a component by the contract interfaces it exports.
fn recognise(engine: &Engine, component: &Component) -> Result<contract::Recognised> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    contract::recognise(exports)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as the engine lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("eddy-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("cannot start the epoch thread");
}
