//! Pipelines that parse every event, against the same pipelines on the generator (which
//! parses nothing): a file of generator payments (~100-byte JSON lines, event time `ts`,
//! key `user`) → null, → Wasm filter → null, and → 10 s tumbling count at 100, 10k and
//! 100k keys. One run each, printed as events/s and MB/s of input; first, the ingest path
//! alone (best of three; lines of the file, already in memory, validated and their time and key read into
//! batches of 1024);
//! `cargo bench -p eddy --bench ingest` (`EDDY_BENCH_EVENTS` sets the count, default 5M;
//! `EDDY_BENCH_INGEST_ONLY=1` stops after the ingest path, for profiling it alone).
//!
//! The files are written once per count and key count under the system temp directory
//! (`eddy-bench-ingest/`) by Eddy's own generator and file sink, so every engine and every
//! build reads the same bytes; each is read through once before its timed run, so that
//! run reads it from the page cache.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use eddy::batch::EventBatch;
use eddy::config::{EventFields, PipelineConfig};
use eddy::dead_letter::DeadLetters;
use eddy::pipeline::Pipeline;
use eddy::plugin::{CompiledCache, PluginRuntime};
use eddy::source::Ingest;
use eddy::watermark::Watermarks;

/// Runs `config` to the end; returns (seconds, events in).
fn run(runtime: &PluginRuntime, config: &str) -> (f64, u64) {
    let config = PipelineConfig::parse(config).unwrap();
    let mut pipeline = Pipeline::build(&config, runtime, &Default::default()).unwrap();
    let started = Instant::now();
    let summary = pipeline.run(&AtomicBool::new(false), None, |_| {}).unwrap();
    (started.elapsed().as_secs_f64(), summary.metrics.records_in)
}

fn generator(events: u64, keys: u64) -> String {
    format!("[source]\nkind = \"generator\"\ncount = {events}\nkeys = {keys}\nseed = 42\n")
}

/// The file of `events` generator payments over `keys` keys, written if missing.
fn payments_file(runtime: &PluginRuntime, events: u64, keys: u64) -> PathBuf {
    let dir = std::env::temp_dir().join("eddy-bench-ingest");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("payments-{events}-{keys}.jsonl"));
    if !path.exists() {
        let partial = dir.join("partial.jsonl");
        run(
            runtime,
            &format!(
                "{}[sink]\nkind = \"file\"\npath = \"{}\"\n",
                generator(events, keys),
                partial.display()
            ),
        );
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

/// Reads `path` through once, so the timed run reads it from the page cache: a file
/// left unread for a while may have been reclaimed (this machine's kernel reclaims cold
/// pages on its own), and the run would then time the disk.
fn warm(path: &Path) {
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut std::io::sink()).unwrap();
}

fn file_source(path: &Path) -> String {
    format!(
        "[source]\nkind = \"file\"\npath = \"{}\"\ntime_field = \"ts\"\nkey_field = \"user\"\n",
        path.display()
    )
}

/// Seconds to ingest every line of `text` (JSON lines) in batches of 1024, as a source
/// does: line ends found, each line validated and its time and key read.
fn ingest_only(text: &[u8]) -> f64 {
    let fields = EventFields {
        time_field: Some("ts".into()),
        key_field: Some("user".into()),
        ..EventFields::default()
    };
    let mut batch = EventBatch::default();
    let mut dead = DeadLetters::new("bench");
    let mut watermarks = Watermarks::new(1, std::time::Duration::ZERO, None);
    let started = Instant::now();
    let mut start = 0;
    let mut lines = memchr::memchr_iter(b'\n', text)
        .map(|end| {
            let line = &text[start..end];
            start = end + 1;
            line
        })
        .enumerate()
        .peekable();
    while lines.peek().is_some() {
        batch.clear();
        let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
        for (number, line) in lines.by_ref().take(1024) {
            ingest.push_json(0, number as u64, line);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(dead.is_empty());
    elapsed
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument other than ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"ingest".contains(&a))
    {
        return;
    }
    let events: u64 = std::env::var("EDDY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let runtime = PluginRuntime::new(CompiledCache::from_env()).unwrap();
    let filter = format!(
        "[[plugin]]\nname = \"big\"\npath = \"{}\"\nconfig = {{ field = \"amount\", op = \">=\", value = \"100\" }}\n",
        eddy_example_artifacts::FILTER_COMPONENT
    );
    let window = "[watermark]\nmax_delay = \"5s\"\n[window]\nkind = \"tumbling\"\nsize = \"10s\"\naggregate = \"count\"\n";
    let null = "[sink]\nkind = \"null\"\n";
    let cases = [
        ("→ null", 100, String::new()),
        ("→ Wasm filter → null", 100, filter),
        ("→ 10 s tumbling count, 100 keys", 100, window.to_string()),
        (
            "→ 10 s tumbling count, 10k keys",
            10_000,
            window.to_string(),
        ),
        (
            "→ 10 s tumbling count, 100k keys",
            100_000,
            window.to_string(),
        ),
    ];
    println!("{events} events per run");
    let text = std::fs::read(payments_file(&runtime, events, 100)).unwrap();
    let seconds = (0..3).map(|_| ingest_only(&text)).fold(f64::MAX, f64::min);
    println!(
        "ingest path alone: {:.2} M ev/s ({:.0} MB/s)",
        events as f64 / seconds / 1e6,
        text.len() as f64 / seconds / 1e6
    );
    if std::env::var_os("EDDY_BENCH_INGEST_ONLY").is_some() {
        return;
    }
    for (name, keys, stages) in cases {
        let path = payments_file(&runtime, events, keys);
        let bytes = std::fs::metadata(&path).unwrap().len() as f64;
        warm(&path);
        let (file_s, n) = run(&runtime, &format!("{}{stages}{null}", file_source(&path)));
        assert_eq!(n, events);
        let (gen_s, n) = run(
            &runtime,
            &format!("{}{stages}{null}", generator(events, keys)),
        );
        assert_eq!(n, events);
        println!(
            "{name}: file {:.2} M ev/s ({:.0} MB/s); generator {:.2} M ev/s; generator/file {:.2}x",
            events as f64 / file_s / 1e6,
            bytes / file_s / 1e6,
            events as f64 / gen_s / 1e6,
            file_s / gen_s,
        );
    }
}
