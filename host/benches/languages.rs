//! What a plugin costs per language: the `filter` example in Rust, Python and JavaScript at
//! batch 1024 over generator payments, through the host's real plugin stage.
//!
//! - `column`: `amount >= 50`, a numeric comparison that reads the field as one column
//!   the host parses (`field-numbers`);
//! - `per-event`: `country == "DE"`, a text comparison that reads a string field of
//!   every event in the plugin's own code.
//!
//! Before the timed runs it prints each language's start-up: compiling the component
//! (no cache), and loading it from the compiled-code cache, instantiating, `init` and the
//! first batch of 1024 (what a job start, restart or hot swap pays once compiled).

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{payments, refill, stage};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eddy::dead_letter::DeadLetters;
use eddy::plugin::{CompiledCache, PluginRuntime};
use eddy_example_artifacts::{FILTER_COMPONENT, JS_FILTER_COMPONENT, PYTHON_FILTER_COMPONENT};

const LANGUAGES: [(&str, &str); 3] = [
    ("rust", FILTER_COMPONENT),
    ("python", PYTHON_FILTER_COMPONENT),
    ("js", JS_FILTER_COMPONENT),
];

const VARIANTS: [(&str, &str); 2] = [
    ("column", r#"{ field = "amount", op = ">=", value = "50" }"#),
    (
        "per-event",
        r#"{ field = "country", op = "==", value = "DE" }"#,
    ),
];

const BATCH: usize = 1024;

/// Compile time without a cache, then start-up from the cache to the first batch's end.
fn start_up() {
    let input = payments(BATCH);
    for (language, component) in LANGUAGES {
        let size = std::fs::metadata(component).unwrap().len() as f64 / 1e6;
        let uncached = PluginRuntime::new(CompiledCache::new(None)).unwrap();
        let started = Instant::now();
        drop(stage(&uncached, component, VARIANTS[0].1));
        let compile = started.elapsed();

        let cache = tempfile::tempdir().unwrap();
        let warm = || PluginRuntime::new(CompiledCache::new(Some(cache.path().into()))).unwrap();
        drop(stage(&warm(), component, VARIANTS[0].1)); // fills the cache
        let runtime = warm();
        let started = Instant::now();
        let mut first = stage(&runtime, component, VARIANTS[0].1);
        let mut batch = input.clone();
        first.run(&mut batch, &mut DeadLetters::default()).unwrap();
        let first_batch = started.elapsed();
        println!(
            "start-up {language}: {size:.1} MB, compile {:.2} s ({:.2} s/MB), from cache to the end of the first batch {:.1} ms",
            compile.as_secs_f64(),
            compile.as_secs_f64() / size,
            first_batch.as_secs_f64() * 1e3
        );
    }
}

fn languages(c: &mut Criterion) {
    start_up();
    let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
    let input = payments(BATCH);
    let mut group = c.benchmark_group("languages");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for (language, component) in LANGUAGES {
        for (variant, config) in VARIANTS {
            let mut stage = stage(&runtime, component, config);
            let mut dead = DeadLetters::default();
            let mut batch = input.clone();
            let id = BenchmarkId::new(format!("{language}/{variant}"), BATCH);
            group.bench_with_input(id, &input, |b, input| {
                b.iter(|| {
                    refill(&mut batch, input);
                    stage.run(&mut batch, &mut dead).unwrap();
                    black_box(batch.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, languages);
criterion_main!(benches);
