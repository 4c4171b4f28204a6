//! End-to-end events/s of whole pipelines on one core: generator → Wasm filter → null
//! sink, and the quickstart (generator → filter → enrich → file).

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eddy::config::PipelineConfig;
use eddy::pipeline::Pipeline;
use eddy::plugin::{CompiledCache, PluginRuntime};

const EVENTS: u64 = 1_000_000;

fn pipeline(text: &str) -> PipelineConfig {
    let mut config = PipelineConfig::parse(text).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for table in &mut config.side_inputs {
        table.path = root.join(&table.path);
    }
    config
}

fn run(c: &mut Criterion, name: &str, config: &PipelineConfig) {
    let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
    let mut group = c.benchmark_group("pipeline");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(EVENTS));
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let mut pipeline = Pipeline::build(config, &runtime, &Default::default()).unwrap();
                let started = Instant::now();
                let summary = pipeline.run(&AtomicBool::new(false), None, |_| {}).unwrap();
                total += started.elapsed();
                assert_eq!(summary.metrics.records_in, EVENTS);
            }
            total
        })
    });
    group.finish();
}

fn pipelines(c: &mut Criterion) {
    let filter = eddy_example_artifacts::FILTER_COMPONENT;
    let enrich = eddy_example_artifacts::ENRICH_COMPONENT;
    let source =
        format!("[source]\nkind = \"generator\"\ncount = {EVENTS}\nkeys = 200\npartitions = 4\n");
    let filter_stage = format!(
        "[[plugin]]\nname = \"big\"\npath = \"{filter}\"\nconfig = {{ field = \"amount\", op = \">=\", value = \"100\" }}\n"
    );
    run(
        c,
        "generator-filter-null",
        &pipeline(&format!("{source}{filter_stage}[sink]\nkind = \"null\"\n")),
    );
    let out = std::env::temp_dir().join("eddy-bench-quickstart.jsonl");
    run(
        c,
        "quickstart",
        &pipeline(&format!(
            "{source}{filter_stage}[[side_input]]\nname = \"users\"\npath = \"examples/users.csv\"\nkey_field = \"user\"\n\
             [[plugin]]\nname = \"profile\"\npath = \"{enrich}\"\nconfig = {{ table = \"users\", field = \"user\" }}\n\
             [sink]\nkind = \"file\"\npath = \"{}\"\n",
            out.display()
        )),
    );
    run(
        c,
        "generator-null",
        &pipeline(&format!("{source}[sink]\nkind = \"null\"\n")),
    );
}

criterion_group!(benches, pipelines);
criterion_main!(benches);
