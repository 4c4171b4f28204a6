//! Windowed count over 10M generator events with 100k keys: events/s, and peak memory per
//! open (key, window). One run, printed; `cargo bench -p eddy --bench windows`.
//!
//! Memory is the process's peak resident set minus its resident set before the run,
//! divided by the peak number of open (key, window) pairs, so it includes everything the
//! operator holds per window (accumulator, index entry, timers, interned keys) and the
//! allocator's slack.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use eddy::config::PipelineConfig;
use eddy::pipeline::Pipeline;
use eddy::plugin::{CompiledCache, PluginRuntime};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument other than ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"windows".contains(&a))
    {
        return;
    }
    let events: u64 = std::env::var("EDDY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    for (name, window) in [
        ("tumbling 1m count", "kind = \"tumbling\"\nsize = \"1m\"\naggregate = \"count\""),
        ("sliding 1m/10s sum", "kind = \"sliding\"\nsize = \"1m\"\nslide = \"10s\"\naggregate = \"sum\"\nfield = \"amount\""),
        ("session 30s avg", "kind = \"session\"\ngap = \"30s\"\naggregate = \"avg\"\nfield = \"amount\""),
    ] {
        let config = PipelineConfig::parse(&format!(
            "[source]\nkind = \"generator\"\ncount = {events}\nkeys = 100000\npartitions = 4\nmax_disorder = \"5s\"\n\
             [watermark]\nmax_delay = \"5s\"\n[window]\n{window}\n[sink]\nkind = \"null\"\n"
        ))
        .unwrap();
        let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
        let mut pipeline = Pipeline::build(&config, &runtime, &Default::default()).unwrap();
        let rss_before = status_kib("VmRSS:");
        let mut peak_windows = 0;
        let started = Instant::now();
        let summary = pipeline
            .run(&AtomicBool::new(false), None, |m| peak_windows = peak_windows.max(m.open_windows.get().max(0) as u64))
            .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let peak_rss = status_kib("VmHWM:");
        let per_window = (peak_rss.saturating_sub(rss_before) * 1024) as f64 / peak_windows.max(1) as f64;
        println!(
            "{name}: {events} events in {elapsed:.2} s = {:.2} M events/s; {} results; peak {} open (key, window) pairs, ~{per_window:.0} bytes each (peak RSS {} MiB)",
            events as f64 / elapsed / 1e6,
            summary.metrics.records_out,
            peak_windows,
            peak_rss / 1024
        );
    }
}
