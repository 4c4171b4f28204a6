//! Per-event cost of the `filter` example plugin in Wasm, against the same predicate
//! compiled natively, at batch sizes 1, 64, 1024 and 8192.
//!
//! Both sides do the same work per batch: run the filter's `select` over generator
//! payments (~100-byte JSON) and compact the batch to the kept events. The Wasm side goes
//! through the host's real plugin stage (copying the packed batch into the guest, the
//! call, validating the result).

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

use common::{payments, refill, stage};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eddy::dead_letter::DeadLetters;
use eddy::plugin::{CompiledCache, PluginRuntime};
use eddy_example_filter::FieldFilter;
use eddy_plugin_sdk::{Config, PackedBatch, Plugin, Selection};

const SIZES: [usize; 4] = [1, 64, 1024, 8192];

fn filter(c: &mut Criterion) {
    let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
    let config = r#"{ field = "amount", op = ">=", value = "50" }"#;
    let mut stage = stage(&runtime, eddy_example_artifacts::FILTER_COMPONENT, config);
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
