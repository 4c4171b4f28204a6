//! Kafka figures, on the development broker (librdkafka's mock cluster) in this process:
//!
//! 1. Kafka → Wasm filter → Kafka (one worker, 100-byte JSON records) next to a plain
//!    rdkafka consume-produce loop over the same records, in the same run.
//! 2. `parallelism` unset, 1 and 2: generator → filter → null; 1 and 2: Kafka partition
//!    tasks; and 1–3 `eddy run` processes in one consumer group on Kafka.
//! 3. End-to-end latency (produce time to arrival at a consumer of the output) at a steady
//!    50k records/s (`EDDY_BENCH_RATE` to change it) for `max_records` 1, 64 and 1024
//!    (`EDDY_BENCH_MAX_RECORDS=1,64` to choose) with
//!    `max_wait` 1 ms; the load's producer lingers 1 ms.
//!
//! `cargo bench -p eddy --bench kafka [throughput|scaling|latency]`. The broker, the load's
//! producer and consumer share the machine's cores with Eddy, so these figures are lower
//! bounds. The mock cluster keeps at most 5 MiB per partition, so inputs are spread over
//! [`PARTITIONS`] partitions.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::config::PipelineConfig;
use eddy::pipeline::Pipeline;
use eddy::plugin::{CompiledCache, PluginRuntime};
use eddy_dev_broker::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const RECORDS: usize = 400_000;
/// Partitions of the input topics: 25k records of 100 bytes each, within what the mock
/// cluster retains per partition.
const PARTITIONS: i32 = 16;
const FILTER: &str = eddy_example_artifacts::FILTER_COMPONENT;

fn producer(bootstrap: &str, linger_ms: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms)
        .create()
        .unwrap()
}

/// A ~100-byte JSON payment.
fn payment(i: usize, sent_us: u128) -> String {
    let mut value = format!(
        r#"{{"seq":{i},"ts":{},"user":"user-{}","amount":{}.{:02},"sent_us":{sent_us}}}"#,
        1_700_000_000_000u64 + i as u64,
        i % 1000,
        (i * 37) % 500,
        i % 100
    );
    while value.len() < 100 {
        value.insert(value.len() - 1, ' ');
    }
    value
}

fn send(producer: &BaseProducer, topic: &str, partition: Option<i32>, value: &str) {
    let mut record = BaseRecord::<(), str>::to(topic).payload(value);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    while let Err((_, back)) = producer.send(record) {
        record = back;
        producer.poll(Duration::from_millis(1));
    }
}

fn fill(broker: &Broker, topic: &str, partitions: i32) {
    broker.create_topic(topic, Some(partitions)).unwrap();
    let p = producer(&broker.bootstrap(), "5");
    for i in 0..RECORDS {
        send(&p, topic, Some(i as i32 % partitions), &payment(i, 0));
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Records in `topic` (the sum of its partitions' end offsets).
fn count(consumer: &BaseConsumer, topic: &str, partitions: i32) -> usize {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |(_, high)| high as usize)
        })
        .sum()
}

/// A producer with the settings of Eddy's Kafka sink.
fn sink_like_producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Sends `payload` to `out`, waiting while the producer's queue is full.
fn pass_on(p: &BaseProducer, out: &str, payload: &[u8]) {
    let mut record = BaseRecord::<[u8], [u8]>::to(out).payload(payload);
    while let Err((_, back)) = p.send(record) {
        record = back;
        p.poll(Duration::from_millis(1));
    }
}

/// The plain loop: consume every record of `topic`'s partitions, produce it to `out`.
fn plain_loop(bootstrap: &str, topic: &str, out: &str) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "plain")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let p = sink_like_producer(bootstrap);
    let started = Instant::now();
    let mut seen = 0;
    while seen < RECORDS {
        let polled = consumer.poll(Duration::from_millis(100));
        if let Some(Ok(m)) = polled {
            pass_on(&p, out, m.payload().unwrap());
            seen += 1;
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    started.elapsed()
}

/// Kafka `topic` → filter keeping every record → Kafka `out`, as pipeline text; `top`
/// goes before the tables, `source` into `[source]`, `rest` after `[sink]` (more of it,
/// and tables).
fn kafka_pipeline(
    bootstrap: &str,
    topic: &str,
    out: &str,
    top: &str,
    source: &str,
    rest: &str,
) -> String {
    format!(
        r#"{top}
[source]
kind = "kafka"
brokers = "{bootstrap}"
topics = ["{topic}"]
group = "eddy-{out}"
time_field = "ts"
key_field = "user"
{source}

[[plugin]]
name = "all"
path = "{FILTER}"
config = {{ field = "amount", op = ">=", value = "0" }}

[sink]
kind = "kafka"
brokers = "{bootstrap}"
topic = "{out}"
{rest}
"#
    )
}

/// Runs the pipeline `text` (a bounded source) to its end; returns the time.
fn eddy_bounded(runtime: &PluginRuntime, text: &str) -> Duration {
    let config = PipelineConfig::parse(text).unwrap();
    let started = Instant::now();
    let mut pipeline = Pipeline::build(&config, runtime, &Default::default()).unwrap();
    let summary = pipeline.run(&AtomicBool::new(false), None, |_| {}).unwrap();
    assert_eq!(summary.metrics.records_in, RECORDS as u64);
    drop(pipeline); // the sink flushes
    started.elapsed()
}

/// Waits until `out` holds every record; returns the M records/s since `started` (which
/// includes joining the group). `running` says whether the job still runs.
fn rate_until_done(
    bootstrap: &str,
    out: &str,
    started: Instant,
    mut running: impl FnMut() -> bool,
) -> f64 {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    while count(&probe, out, PARTITIONS) < RECORDS {
        assert!(running(), "the job ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    rate(started.elapsed())
}

/// Runs `config` as workers until `out` holds every record; returns the rate.
fn eddy_workers(
    runtime: &Arc<PluginRuntime>,
    config: &PipelineConfig,
    bootstrap: &str,
    out: &str,
) -> f64 {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let run = scope.spawn(|| eddy::workers::run(config, runtime, &Default::default(), &stop));
        let rate = rate_until_done(bootstrap, out, started, || !run.is_finished());
        stop.store(true, Ordering::Relaxed);
        run.join().unwrap().unwrap();
        rate
    })
}

fn rate(d: Duration) -> f64 {
    RECORDS as f64 / d.as_secs_f64() / 1e6
}

fn throughput(broker: &Broker, runtime: &PluginRuntime) {
    let bootstrap = broker.bootstrap();
    fill(broker, "in", PARTITIONS);
    broker.create_topic("eddy-transactions", Some(1)).unwrap();
    println!("## Kafka → Wasm filter → Kafka, {RECORDS} records of 100 bytes, {PARTITIONS} partitions, one consumer");
    for round in 0..2 {
        let plain_topic = format!("plain-{round}");
        broker.create_topic(&plain_topic, Some(1)).unwrap();
        let plain = plain_loop(&bootstrap, "in", &plain_topic);
        let mut line = format!("round {round}: plain loop {:.2} M rec/s", rate(plain));
        for delivery in ["at-least-once", "deduplicated", "transactional"] {
            let out = format!("{delivery}-{round}");
            broker.create_topic(&out, Some(1)).unwrap();
            let state = tempfile::tempdir().unwrap();
            let checkpointed = format!(
                "delivery = \"{delivery}\"\n[checkpoint]\ndir = \"{}\"\ninterval = \"1s\"\n",
                state.path().display()
            );
            // at-least-once runs without checkpoints, as the plain loop does.
            let tail = if delivery == "at-least-once" {
                ""
            } else {
                checkpointed.as_str()
            };
            let took = eddy_bounded(
                runtime,
                &kafka_pipeline(&bootstrap, "in", &out, "", "bounded = true", tail),
            );
            line += &format!(
                " · eddy {delivery} {:.2} M rec/s ({:.0}% of plain)",
                rate(took),
                100.0 * plain.as_secs_f64() / took.as_secs_f64()
            );
        }
        println!("{line}");
    }
}

fn scaling(broker: &Broker, runtime: &Arc<PluginRuntime>) {
    println!("\n## parallelism 1 and 2, and 1-3 processes (2 cores)");
    let events = 20_000_000u64;
    for round in 0..2 {
        let mut line = format!("round {round}: generator → filter → null, {events} events:");
        // Unset: one pipeline reading ahead on a second thread; 1 and 2: a core per worker.
        for parallelism in ["", "parallelism = 1", "parallelism = 2"] {
            let config = PipelineConfig::parse(&format!(
                "{parallelism}\n[source]\nkind = \"generator\"\ncount = {events}\nkeys = 1000\npartitions = 4\n\
                 [[plugin]]\nname = \"big\"\npath = \"{FILTER}\"\nconfig = {{ field = \"amount\", op = \">=\", value = \"100\" }}\n\
                 [sink]\nkind = \"null\"\n"
            ))
            .unwrap();
            let started = Instant::now();
            let summary = eddy::workers::run(
                &config,
                runtime,
                &Default::default(),
                &AtomicBool::new(false),
            )
            .unwrap();
            assert_eq!(summary.metrics.records_in, events);
            line += &format!(
                " {} {:.2} M ev/s",
                if parallelism.is_empty() {
                    "unset"
                } else {
                    parallelism
                },
                events as f64 / started.elapsed().as_secs_f64() / 1e6
            );
        }
        println!("{line}");
    }
    let bootstrap = broker.bootstrap();
    fill(broker, "in16", PARTITIONS);
    for round in 0..2 {
        let mut line = format!(
            "round {round}: Kafka ({PARTITIONS} partitions) → filter → Kafka, partition tasks:"
        );
        for parallelism in [1, 2] {
            let out = format!("par-{round}-{parallelism}");
            broker.create_topic(&out, Some(PARTITIONS)).unwrap();
            let config = PipelineConfig::parse(&kafka_pipeline(
                &bootstrap,
                "in16",
                &out,
                &format!("parallelism = {parallelism}"),
                "",
                "",
            ))
            .unwrap();
            let rate = eddy_workers(runtime, &config, &bootstrap, &out);
            line += &format!(" p{parallelism} {rate:.2} M rec/s");
        }
        println!("{line}");
    }
    for round in 0..2 {
        let mut line = format!(
            "round {round}: Kafka ({PARTITIONS} partitions) → filter → Kafka, `eddy run` processes in one group:"
        );
        for processes in 1..=3 {
            let out = format!("proc-{round}-{processes}");
            broker.create_topic(&out, Some(PARTITIONS)).unwrap();
            let rate = eddy_processes(&bootstrap, &out, processes);
            line += &format!(" {processes}: {rate:.2} M rec/s");
        }
        println!("{line}");
    }
}

/// Runs `processes` `eddy run` processes of a pipeline from `in16` to `out` in one group
/// until `out` holds every record; returns the rate.
fn eddy_processes(bootstrap: &str, out: &str, processes: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, kafka_pipeline(bootstrap, "in16", out, "", "", "")).unwrap();
    let started = Instant::now();
    let mut children: Vec<_> = (0..processes)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
                .arg("run")
                .arg(&config)
                .current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let rate = rate_until_done(bootstrap, out, started, || {
        children.iter_mut().all(|c| c.try_wait().unwrap().is_none())
    });
    for mut child in children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    rate
}

fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// A consumer of `topic`'s partition 0 from the beginning that fetches without waiting
/// (the mock broker holds a fetch for its whole wait, even once data has come).
fn fast_consumer(bootstrap: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "latency")
        .set("fetch.wait.max.ms", "1")
        .set("fetch.error.backoff.ms", "1")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    consumer
}

/// The plain loop of the latency run: `topic`'s partition 0 → `out` until `stop`, with
/// the settings of Eddy's source and sink there.
fn plain_relay(bootstrap: &str, topic: &str, out: &str, stop: &AtomicBool) {
    let consumer = fast_consumer(bootstrap, topic);
    let p = sink_like_producer(bootstrap);
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
            pass_on(&p, out, m.payload().unwrap());
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Sends `rate` records/s to `input` for 5 s while `relay` (stopped by
/// its flag) carries them to `out`, and prints the latencies a consumer of `out` sees.
fn measure_latency(
    broker: &Broker,
    rate: u64,
    name: &str,
    (input, out): (&str, &str),
    relay: impl FnOnce(&AtomicBool) + Send,
) {
    const SECONDS: u64 = 5;
    let bootstrap = broker.bootstrap();
    let stop = AtomicBool::new(false);
    let done_producing = AtomicBool::new(false);
    let mut latencies: Vec<u64> = Vec::new();
    std::thread::scope(|scope| {
        let run = scope.spawn(|| relay(&stop));
        std::thread::sleep(Duration::from_secs(1)); // the group assigns the partition
        scope.spawn(|| {
            let p = producer(&bootstrap, "1");
            let started = Instant::now();
            let total = rate * SECONDS;
            for i in 0..total {
                let due = started + Duration::from_micros(i * 1_000_000 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    p.poll(Duration::ZERO);
                    std::thread::sleep(wait);
                }
                send(&p, input, None, &payment(i as usize, now_us()));
            }
            p.flush(Duration::from_secs(10)).unwrap();
            done_producing.store(true, Ordering::Relaxed);
        });
        let consumer = fast_consumer(&bootstrap, out);
        let mut quiet_since = Instant::now();
        while !done_producing.load(Ordering::Relaxed)
            || quiet_since.elapsed() < Duration::from_secs(1)
        {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
                let value: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap()).unwrap();
                let sent = value["sent_us"].as_u64().unwrap();
                latencies.push((now_us() as u64).saturating_sub(sent));
                quiet_since = Instant::now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        run.join().unwrap();
    });
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64 / 1000.0
    };
    println!(
        "{name:<17}: {} of {} records, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        rate * SECONDS,
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

fn latency(broker: &Broker, runtime: &Arc<PluginRuntime>) {
    let rate: u64 = std::env::var("EDDY_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50_000);
    let bootstrap = broker.bootstrap();
    println!("\n## end-to-end latency at {rate} records/s, max_wait 1 ms");
    broker.create_topic("lat-in-plain", Some(1)).unwrap();
    broker.create_topic("lat-out-plain", Some(1)).unwrap();
    measure_latency(
        broker,
        rate,
        "plain loop",
        ("lat-in-plain", "lat-out-plain"),
        |stop| plain_relay(&bootstrap, "lat-in-plain", "lat-out-plain", stop),
    );
    let settings: Vec<usize> = std::env::var("EDDY_BENCH_MAX_RECORDS")
        .ok()
        .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 64, 1024]);
    for max_records in settings {
        let (input, out) = (
            format!("lat-in-{max_records}"),
            format!("lat-out-{max_records}"),
        );
        broker.create_topic(&input, Some(1)).unwrap();
        broker.create_topic(&out, Some(1)).unwrap();
        let config = PipelineConfig::parse(&kafka_pipeline(
            &bootstrap,
            &input,
            &out,
            "",
            // The mock broker answers a fetch only when its wait is up, even once data
            // has come: wait 1 ms, as a real broker would answer at once.
            "[source.properties]\n\"fetch.wait.max.ms\" = \"1\"\n\"fetch.error.backoff.ms\" = \"1\"",
            &format!("[batch]\nmax_records = {max_records}\nmax_wait = \"1ms\"\n"),
        ))
        .unwrap();
        measure_latency(
            broker,
            rate,
            &format!("max_records {max_records}"),
            (&input, &out),
            |stop| {
                eddy::workers::run(&config, runtime, &Default::default(), stop).unwrap();
            },
        );
    }
}

fn main() {
    let broker = Broker::start(1).unwrap();
    let runtime = Arc::new(PluginRuntime::new(CompiledCache::from_env()).unwrap());
    let only = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    if only.is_empty() || only == "throughput" {
        throughput(&broker, &runtime);
    }
    if only.is_empty() || only == "scaling" {
        scaling(&broker, &runtime);
    }
    if only.is_empty() || only == "latency" {
        latency(&broker, &runtime);
    }
}
