//! Per-event cost of the `filter` example plugin in Wasm, against the same predicate
//! compiled natively, at batch sizes 1, 64, 1024 and 8192.
//!
//! Both sides do the same work per batch: run the filter's `select` over generator
//! payments (~100-byte JSON) and compact the batch to the kept events. The Wasm side goes
//! through the host's real plugin stage (copying the packed batch into the guest, the
//! call, validating the result).

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eddy::batch::EventBatch;
use eddy::config::{GeneratorConfig, PipelineConfig};
use eddy::dead_letter::DeadLetters;
use eddy::plugin::{CompiledCache, PluginRuntime, PluginStage, SideInputs};
use eddy::source::{Generator, Ingest, Source};
use eddy::watermark::Watermarks;
use eddy_example_filter::FieldFilter;
use eddy_plugin_sdk::{Config, PackedBatch, Plugin, Selection};

const SIZES: [usize; 4] = [1, 64, 1024, 8192];

fn payments(n: usize) -> EventBatch {
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
fn refill(batch: &mut EventBatch, input: &EventBatch) {
    batch.clear();
    let (to, from) = (&mut batch.columns, &input.columns);
    to.values.extend_from_slice(&from.values);
    to.value_ends.extend_from_slice(&from.value_ends);
    to.keys.extend_from_slice(&from.keys);
    to.key_ends.extend_from_slice(&from.key_ends);
    to.timestamps.extend_from_slice(&from.timestamps);
    batch.origins.extend_from_slice(&input.origins);
}

fn wasm_stage() -> PluginStage {
    let pipeline = PipelineConfig::parse(&format!(
        "[source]\nkind = \"generator\"\n[sink]\nkind = \"null\"\n[[plugin]]\nname = \"f\"\npath = \"{}\"\n\
         config = {{ field = \"amount\", op = \">=\", value = \"50\" }}\n",
        eddy_example_artifacts::FILTER_COMPONENT
    ))
    .unwrap();
    let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
    let plugin = runtime.load(&pipeline.plugins[0]).unwrap();
    PluginStage::start(&runtime, plugin, SideInputs::default()).unwrap()
}

fn filter(c: &mut Criterion) {
    let mut stage = wasm_stage();
    let native = FieldFilter::init(&Config::new([
        ("field", "amount"),
        ("op", ">="),
        ("value", "50"),
    ]))
    .unwrap();
    let mut group = c.benchmark_group("filter");
    for size in SIZES {
        let input = payments(size);
        group.throughput(Throughput::Elements(size as u64));
        let mut dead = DeadLetters::default();
        let mut batch = input.clone();
        group.bench_with_input(BenchmarkId::new("wasm", size), &input, |b, input| {
            b.iter(|| {
                refill(&mut batch, input);
                stage.run(&mut batch, &mut dead).unwrap();
                black_box(batch.len())
            })
        });
        let packed = PackedBatch {
            values: input.columns.values.clone(),
            value_ends: input.columns.value_ends.clone(),
            keys: input.columns.keys.clone(),
            key_ends: input.columns.key_ends.clone(),
            timestamps: input.columns.timestamps.clone(),
            headers: None,
        };
        group.bench_with_input(BenchmarkId::new("native", size), &input, |b, input| {
            b.iter(|| {
                refill(&mut batch, input);
                let mut selection = Selection::with_capacity(packed.len());
                // The predicate event by event, its fastest native form (the plugin's
                // `select` reads the field as a column, which only pays off in Wasm).
                native.select_per_event(&packed.view(), &mut selection);
                batch.retain(selection.kept());
                black_box(batch.len())
            })
        });
        group.bench_with_input(BenchmarkId::new("copy-only", size), &input, |b, input| {
            b.iter(|| {
                refill(&mut batch, input);
                black_box(batch.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, filter);
criterion_main!(benches);
