//! The plugin runtime: WebAssembly components on wasmtime's component model.
//!
//! [`PluginRuntime`] owns the engine, the compiled-code cache and the linker (WASI,
//! deny-by-default, plus the Eddy host interface). [`PluginStage`] is one `[[plugin]]`
//! entry, instantiated and initialised, called once per batch.

mod aggregate;
mod bindings;
mod cache;
mod contract;
mod host_state;
mod instance;
mod output;
mod probation;
mod runtime;
mod shadow;
mod side_input;
mod stage;

pub use aggregate::WasmAggregate;
pub use cache::{content_hash, CompiledCache};
pub use contract::{World, VERSION as CONTRACT_VERSION};
pub use host_state::StateEntry;
pub use instance::PluginInstance;
pub use runtime::{LoadedPlugin, PluginRuntime};
pub use shadow::{ShadowDiff, ShadowStatus};
pub use side_input::SideInputs;
pub use stage::{PluginStage, StageCounters, VersionRecord};
