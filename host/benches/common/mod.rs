//! What the benchmarks share: generator payments as a batch, refilling a batch without
//! allocating, and a plugin stage built as a pipeline would build it.

use std::time::Instant;

use eddy::batch::EventBatch;
use eddy::config::{GeneratorConfig, PipelineConfig};
use eddy::dead_letter::DeadLetters;
use eddy::plugin::{PluginRuntime, PluginStage, SideInputs};
use eddy::source::{Generator, Ingest, Source};
use eddy::watermark::Watermarks;

/// `n` generator payments (~100-byte JSON) as a batch.
pub fn payments(n: usize) -> EventBatch {
    let mut batch = EventBatch::default();
    let mut dead = DeadLetters::default();
    let fields = Default::default();
    let mut watermarks = Watermarks::new(1, std::time::Duration::ZERO, None);
    let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
    let config = GeneratorConfig {
        count: Some(n as u64),
        ..Default::default()
    };
    Generator::new(config)
        .poll(&mut ingest, n, Instant::now())
        .unwrap();
    batch
}

/// Copies `input` into `batch`, reusing its buffers (no allocation once warm).
pub fn refill(batch: &mut EventBatch, input: &EventBatch) {
    batch.clear();
    let (to, from) = (&mut batch.columns, &input.columns);
    to.values.extend_from_slice(&from.values);
    to.value_ends.extend_from_slice(&from.value_ends);
    to.keys.extend_from_slice(&from.keys);
    to.key_ends.extend_from_slice(&from.key_ends);
    to.timestamps.extend_from_slice(&from.timestamps);
    batch.origins.extend_from_slice(&input.origins);
}

/// The stage running `component` with `config` (an inline TOML table) and a generous
/// timeout (interpreted plugins take milliseconds per batch).
pub fn stage(runtime: &PluginRuntime, component: &str, config: &str) -> PluginStage {
    let pipeline = PipelineConfig::parse(&format!(
        "[source]\nkind = \"generator\"\n[sink]\nkind = \"null\"\n[[plugin]]\nname = \"f\"\npath = \"{component}\"\n\
         config = {config}\ntimeout = \"30s\"\n"
    ))
    .unwrap();
    let plugin = runtime.load(&pipeline.plugins[0]).unwrap();
    PluginStage::start(runtime, plugin, SideInputs::default()).unwrap()
}
