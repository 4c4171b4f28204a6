//! Eddy: a stream processor that runs user logic as WebAssembly components.
//!
//! The flow is `source → batch → plugin chain (Wasm) → sink`, with rejected and
//! unparseable events going to a dead-letter sink. Every part is a module here; the
//! `eddy` binary only parses its command line and calls [`pipeline`].
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use eddy::{config::PipelineConfig, plugin::{CompiledCache, PluginRuntime}, pipeline::Pipeline};
//!
//! let config = PipelineConfig::load("examples/quickstart.toml".as_ref())?;
//! let runtime = PluginRuntime::new(CompiledCache::from_env())?;
//! let summary = Pipeline::build(&config, &runtime, &Default::default())?.run(&AtomicBool::new(false), None, |_| {})?;
//! println!("{summary}");
//! # anyhow::Ok(())
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod allocator;
pub mod authoring;
pub mod batch;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod dead_letter;
pub mod durable;
pub mod file_watch;
mod json_text;
pub mod kafka;
pub mod log_limit;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod sink;
pub mod source;
pub mod watermark;
pub mod window;
pub mod workers;
