//! The engine, the linker and component loading: from a `.wasm` file to a type-checked,
//! pre-instantiated plugin.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{aggregate, filter, transform};
use super::cache::{content_hash, CompiledCache};
use super::host_state::StoreData;
use crate::config::PluginConfig;

/// How often the engine's epoch advances; plugin timeouts are counted in these ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which world of the contract a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `filter`: `init` + `select`.
    Filter,
    /// `transform`: `init` + `process`.
    Transform,
    /// `aggregate`: `init`, `create`, `fold`, `merge`, `finish`.
    Aggregate,
}

impl World {
    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Filter => "filter",
            World::Transform => "transform",
            World::Aggregate => "aggregate",
        }
    }
}

/// A component ready to instantiate, type-checked against its world.
#[derive(Clone)]
pub(super) enum PluginPre {
    Filter(filter::FilterPre<StoreData>),
    Transform(transform::TransformPre<StoreData>),
    Aggregate(aggregate::AggregatePre<StoreData>),
}

/// A plugin loaded from its file: compiled, type-checked, not yet running.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The stage's configuration.
    pub config: PluginConfig,
    /// SHA-256 of the component's bytes: the plugin's version.
    pub hash: String,
    /// The world it exports.
    pub world: World,
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
        filter::eddy::plugin::host::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |data| {
            data
        })?;
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
        let world = detect_world(&self.engine, &component).with_context(what)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| {
                Ok(match world {
                    World::Filter => PluginPre::Filter(filter::FilterPre::new(pre)?),
                    World::Transform => PluginPre::Transform(transform::TransformPre::new(pre)?),
                    World::Aggregate => PluginPre::Aggregate(aggregate::AggregatePre::new(pre)?),
                })
            })
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "{} does not match the `{}` world of eddy:plugin@0.1.0",
                    what(),
                    world.name()
                )
            })?;
        Ok(LoadedPlugin {
            config: config.clone(),
            hash,
            world,
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

/// Finds which world a component exports, by its exported function names.
fn detect_world(engine: &Engine, component: &Component) -> Result<World> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let has = |name: &str| exports.iter().any(|e| e == name);
    match (has("init"), has("select"), has("process"), has("fold")) {
        (true, true, _, _) => Ok(World::Filter),
        (true, false, true, _) => Ok(World::Transform),
        (true, false, false, true) => Ok(World::Aggregate),
        _ => bail!(
            "exports no world of eddy:plugin@0.1.0 (a filter exports `init` and `select`, \
             a transform `init` and `process`, an aggregate `init` and `fold`); it exports: {}",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        ),
    }
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
