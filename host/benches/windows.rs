//! Windowed aggregates over 10M generator events (100k keys, and 1M for one of the cases
//! with about a million open windows): events/s, and peak memory per open (key, window).
//! One run, printed; `cargo bench -p eddy --bench windows`.
//!
//! Memory is the process's resident set when the most (key, window) pairs are open minus
//! its resident set before the run, divided by that number of pairs, so it includes
//! everything the operator holds per window (accumulator, index entries, timers, interned
//! keys) and the allocator's slack. The peak resident set is printed too. Each case runs
//! in a process of its own (the bench runs itself once per case), so memory an earlier
//! case left with the allocator does not hide part of the next one's.

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
    let cases = [
        ("tumbling 1m count", 100_000, "kind = \"tumbling\"\nsize = \"1m\"\naggregate = \"count\""),
        ("sliding 1m/10s sum", 100_000, "kind = \"sliding\"\nsize = \"1m\"\nslide = \"10s\"\naggregate = \"sum\"\nfield = \"amount\""),
        ("session 30s avg", 100_000, "kind = \"session\"\ngap = \"30s\"\naggregate = \"avg\"\nfield = \"amount\""),
        // About 1M open windows, two ways: 1M keys with one window each, and 100k keys
        // with ten each.
        ("tumbling 1h count, 1M keys", 1_000_000, "kind = \"tumbling\"\nsize = \"1h\"\naggregate = \"count\""),
        ("sliding 10m/1m avg, 100k keys", 100_000, "kind = \"sliding\"\nsize = \"10m\"\nslide = \"1m\"\naggregate = \"avg\"\nfield = \"amount\""),
    ];
    // The parent runs each case in a child of its own (`EDDY_BENCH_CASE`).
    let Some(case) = std::env::var("EDDY_BENCH_CASE")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    else {
        for case in 0..cases.len() {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(std::env::args().skip(1))
                .env("EDDY_BENCH_CASE", case.to_string())
                .status()
                .unwrap();
            assert!(status.success(), "case {case} failed");
        }
        return;
    };
    {
        let (name, keys, window) = cases[case];
        let config = PipelineConfig::parse(&format!(
            "[source]\nkind = \"generator\"\ncount = {events}\nkeys = {keys}\npartitions = 4\nmax_disorder = \"5s\"\n\
             [watermark]\nmax_delay = \"5s\"\n[window]\n{window}\n[sink]\nkind = \"null\"\n"
        ))
        .unwrap();
        eddy::allocator::keep_large_blocks_mapped(); // as the `eddy` binary does
                                                     // Resets the peak resident set, so each case measures its own peak.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
        let mut pipeline = Pipeline::build(&config, &runtime, &Default::default()).unwrap();
        let rss_before = status_kib("VmRSS:");
        let mut peak_windows = 0;
        let mut rss_at_peak = rss_before;
        let started = Instant::now();
        let summary = pipeline
            .run(&AtomicBool::new(false), None, |m| {
                let open = m.open_windows.get().max(0) as u64;
                // The resident set while the most windows are open (read again only when
                // the count grows by 1%, so reading it costs little).
                if open > peak_windows + peak_windows / 100 {
                    peak_windows = open;
                    rss_at_peak = status_kib("VmRSS:");
                }
            })
            .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let peak_rss = status_kib("VmHWM:");
        let per_window =
            (rss_at_peak.saturating_sub(rss_before) * 1024) as f64 / peak_windows.max(1) as f64;
        println!(
            "{name}: {events} events in {elapsed:.2} s = {:.2} M events/s; {} results; peak {} open (key, window) pairs, ~{per_window:.1} bytes each (peak RSS {} MiB)",
            events as f64 / elapsed / 1e6,
            summary.metrics.records_out,
            peak_windows,
            peak_rss / 1024
        );
    }
}
