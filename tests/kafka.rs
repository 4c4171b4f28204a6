//! Kafka end to end: `eddy` reads a topic of the in-process development broker
//! (`eddy-dev-broker`, librdkafka's mock cluster on loopback), runs a Wasm filter and a
//! tumbling window, and writes the results to another topic; a plain Kafka consumer reads
//! them back. SIGKILLs and broker outages must leave that consumer seeing exactly the
//! results of an uninterrupted run.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use eddy_dev_broker::Broker;
use eddy_example_artifacts::FILTER_COMPONENT;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Events on the input topic.
const EVENTS: usize = 200_000;
/// Partitions of the input topic.
const INPUT_PARTITIONS: i32 = 3;

/// Produces the input: per partition, event times increase (2 ms apart overall), 40
/// users, amounts 0–99.
fn produce_input(broker: &Broker, topic: &str) {
    broker.create_topic(topic, Some(INPUT_PARTITIONS)).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let base = chrono_free_now_ms() - 3_600_000;
    for i in 0..EVENTS {
        let value = format!(
            r#"{{"user":"u{}","ts":{},"amount":{}}}"#,
            i % 40,
            base + 2 * i as i64,
            (i * 37) % 100
        );
        let partition = (i % INPUT_PARTITIONS as usize) as i32;
        loop {
            match producer.send(
                BaseRecord::<(), _>::to(topic)
                    .payload(&value)
                    .partition(partition),
            ) {
                Ok(()) => break,
                Err(_) => producer.poll(Duration::from_millis(10)),
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn chrono_free_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every record of `topic` (all partitions, from the start): value and `eddy-id` header.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut at_end = HashSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let id = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "eddy-id")
                        .map(|h| String::from_utf8_lossy(h.value.unwrap()).into_owned())
                });
                let value = String::from_utf8_lossy(m.payload().unwrap()).into_owned();
                records.push((value, id));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    records
}

/// The filter stage (amount >= 20), then the result sink: `output` with `delivery`.
fn filter_into(bootstrap: &str, output: &str, delivery: &str) -> String {
    format!(
        r#"
[[plugin]]
name = "big"
path = "{FILTER_COMPONENT}"
config = {{ field = "amount", op = ">=", value = "20" }}

[sink]
kind = "kafka"
brokers = "{bootstrap}"
topic = "{output}"
key_field = "key"
delivery = "{delivery}"
"#
    )
}

/// The pipeline: the input topic, read to its end, through the filter and a 1 s tumbling
/// sum per user into `output`, checkpointing every 50 ms.
fn pipeline(bootstrap: &str, output: &str, delivery: &str) -> String {
    format!(
        r#"
[source]
kind = "kafka"
brokers = "{bootstrap}"
topics = ["payments"]
group = "eddy-test"
time_field = "ts"
key_field = "user"
bounded = true

[batch]
max_records = 300
max_wait = "5ms"

[checkpoint]
dir = "state"
interval = "50ms"

[window]
kind = "tumbling"
size = "1s"
aggregate = "sum"
field = "amount"
{}"#,
        filter_into(bootstrap, output, delivery)
    )
}

/// The values as a multiset.
fn counted(records: &[(String, Option<String>)]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for (value, _) in records {
        *counts.entry(value.as_str()).or_default() += 1;
    }
    counts
}

/// Runs the pipeline once, uninterrupted, into `output`, and returns what that topic holds.
fn reference(broker: &Broker, output: &str) -> Vec<(String, Option<String>)> {
    broker.create_topic(output, Some(2)).unwrap();
    let s = Scratch::new();
    assert_success(&s.eddy(
        "run",
        &pipeline(&broker.bootstrap(), output, "deduplicated"),
    ));
    let records = read_topic(&broker.bootstrap(), output);
    // 400 s of events in 1 s windows, 40 users.
    assert!(records.len() >= 399 * 40, "{} results", records.len());
    records
}

/// A broker with the input produced, an uninterrupted run's results on topic `reference`,
/// and a pipeline file writing topic `alerts` with `delivery`.
struct Setup {
    broker: Broker,
    expected: Vec<(String, Option<String>)>,
    _scratch: Scratch,
    file: std::path::PathBuf,
}

impl Setup {
    fn new(delivery: &str) -> Self {
        let broker = Broker::start(1).unwrap();
        produce_input(&broker, "payments");
        let expected = reference(&broker, "reference");
        broker.create_topic("alerts", Some(2)).unwrap();
        let scratch = Scratch::new();
        let file = scratch.write(
            "pipeline.toml",
            &pipeline(&broker.bootstrap(), "alerts", delivery),
        );
        Self {
            broker,
            expected,
            _scratch: scratch,
            file,
        }
    }

    fn file(&self) -> &str {
        self.file.to_str().unwrap()
    }

    fn output(&self) -> Vec<(String, Option<String>)> {
        read_topic(&self.broker.bootstrap(), "alerts")
    }
}

#[test]
fn deduplicated_output_survives_sigkill_at_random_moments() {
    let setup = Setup::new("deduplicated");
    let mut pauses = 7u64;
    let mut kills = 0;
    while kills < 8 {
        let mut child = spawn(&["run", setup.file(), "--quiet"]);
        pauses = pauses.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis(150 + (pauses >> 33) % 400));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(
        kills >= 3,
        "the job ended before it could be killed often ({kills} kills)"
    );
    assert_success(&eddy(&["run", setup.file()], None));

    let got = setup.output();
    assert_eq!(
        counted(&got),
        counted(&setup.expected),
        "after {kills} kills the topic differs from an uninterrupted run's"
    );
    let ids: HashSet<_> = got.iter().map(|(_, id)| id.clone().unwrap()).collect();
    assert_eq!(
        ids.len(),
        got.len(),
        "every record carries its own identity"
    );
}

#[test]
fn at_least_once_output_loses_nothing_under_sigkill() {
    let setup = Setup::new("at-least-once");
    let mut child = spawn(&["run", setup.file(), "--quiet"]);
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_success(&eddy(&["run", setup.file()], None));

    let output = setup.output();
    let got = counted(&output);
    let expected = counted(&setup.expected);
    for (value, n) in &expected {
        assert!(got.get(value).copied().unwrap_or(0) >= *n, "lost {value}");
    }
    assert!(
        got.keys().all(|v| expected.contains_key(v)),
        "nothing that an uninterrupted run would not write"
    );
}

#[test]
fn the_broker_away_at_start_and_in_the_middle_delays_the_run_and_loses_nothing() {
    let setup = Setup::new("deduplicated");
    setup.broker.set_up(false).unwrap();
    let child = eddy_command()
        .args(["run", setup.file()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    setup.broker.set_up(true).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    setup.broker.set_up(false).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    setup.broker.set_up(true).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_success(&output);
    assert!(
        stderr(&output).contains("retrying"),
        "the outage is reported: {}",
        stderr(&output)
    );
    assert_eq!(counted(&setup.output()), counted(&setup.expected));
}

#[test]
fn a_missing_topic_a_misspelt_or_unbuilt_delivery_are_clear_errors() {
    let broker = Broker::start(1).unwrap();
    let s = Scratch::new();
    let missing = pipeline(&broker.bootstrap(), "alerts", "deduplicated");
    assert_failure_says(
        &s.eddy("run", &missing),
        &["has no topic \"payments\"", "check [source] topics"],
    );
    let typo = missing.replace("delivery = \"deduplicated\"", "delivery = \"exactly-once\"");
    assert_failure_says(&s.eddy("validate", &typo), &["exactly-once"]);
    broker.create_topic("payments", Some(1)).unwrap();
    broker.create_topic("alerts", Some(1)).unwrap();
    let transactional = missing.replace(
        "delivery = \"deduplicated\"",
        "delivery = \"transactional\"",
    );
    assert_failure_says(
        &s.eddy("run", &transactional),
        &["\"transactional\" is not available yet", "deduplicated"],
    );
}

/// Streaming input for the partition-task tests: `count` events with ids, over 6
/// partitions, produced over about three seconds by a background thread.
fn produce_stream(
    bootstrap: String,
    topic: &'static str,
    count: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let base = chrono_free_now_ms() - 3_600_000;
        for i in 0..count {
            let value = format!(
                r#"{{"id":{i},"user":"u{}","ts":{},"amount":{}}}"#,
                i % 40,
                base + i as i64,
                (i * 37) % 100
            );
            while producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .payload(&value)
                        .partition((i % 6) as i32),
                )
                .is_err()
            {
                producer.poll(Duration::from_millis(10));
            }
            if i % 1000 == 999 {
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    })
}

/// A streaming pipeline of partition tasks: the filter, into `output`, deduplicated,
/// checkpointing every second (so a SIGKILL leaves output past the last checkpoint).
fn tasks_pipeline(bootstrap: &str, group: &str, output: &str, parallelism: u32) -> String {
    format!(
        r#"
parallelism = {parallelism}

[source]
kind = "kafka"
brokers = "{bootstrap}"
topics = ["events"]
group = "{group}"
time_field = "ts"
key_field = "user"

[source.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[checkpoint]
dir = "state"
interval = "1s"
{}"#,
        filter_into(bootstrap, output, "deduplicated")
    )
}

/// Waits until `topic` holds `count` records (or a minute passes), then returns the ids
/// it holds.
fn wait_for_ids(bootstrap: &str, topic: &str, count: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = read_topic(bootstrap, topic);
        if records.len() >= count || Instant::now() > deadline {
            // A moment more: anything past `count` would be a duplicate to report.
            std::thread::sleep(Duration::from_millis(500));
            return read_topic(bootstrap, topic)
                .iter()
                .map(|(v, _)| {
                    serde_json::from_str::<serde_json::Value>(v).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every id of the input that passes the filter, once.
fn assert_each_kept_once(mut ids: Vec<u64>, count: usize) {
    let expected: Vec<u64> = (0..count as u64).filter(|i| (i * 37) % 100 >= 20).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(
        before,
        ids.len(),
        "{} records were written twice",
        before - ids.len()
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|i| ids.binary_search(i).is_err())
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} missing, e.g. {missing:?}",
        expected.len() - ids.len(),
        expected.len()
    );
    assert_eq!(ids, expected);
}

/// Stops a job with SIGTERM (its tasks end with checkpoints) and waits for it.
fn terminate(mut child: std::process::Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "eddy did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `processes` jobs of `parallelism` workers each on a 6-partition topic being
/// produced, SIGKILLs one 1.5 s in and starts it again, and checks that every input
/// record that passes the filter reached the output once.
fn kill_one_of(processes: usize, parallelism: u32) {
    const COUNT: usize = 30_000;
    let broker = Broker::start(1).unwrap();
    broker.create_topic("events", Some(6)).unwrap();
    broker.create_topic("kept", Some(3)).unwrap();
    let producing = produce_stream(broker.bootstrap(), "events", COUNT);
    let s = Scratch::new();
    let file = s.write(
        "pipeline.toml",
        &tasks_pipeline(&broker.bootstrap(), "group", "kept", parallelism),
    );
    let file = file.to_str().unwrap();
    let mut jobs: Vec<_> = (0..processes)
        .map(|_| spawn(&["run", file, "--quiet"]))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut victim = jobs.remove(processes / 2);
    victim.kill().unwrap();
    victim.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    jobs.push(spawn(&["run", file, "--quiet"]));
    producing.join().unwrap();
    let expected = (0..COUNT).filter(|i| (i * 37) % 100 >= 20).count();
    let ids = wait_for_ids(&broker.bootstrap(), "kept", expected);
    for job in jobs {
        terminate(job);
    }
    assert_each_kept_once(ids, COUNT);
    // Each partition's task checkpointed in the shared store.
    let tasks = std::fs::read_dir(s.path("state/tasks")).unwrap().count();
    assert_eq!(tasks, 6);
}

#[test]
fn one_process_of_three_workers_survives_a_sigkill_and_reads_each_record_once() {
    kill_one_of(1, 3);
}

#[test]
fn three_processes_in_one_group_survive_a_sigkill_and_read_each_record_once() {
    kill_one_of(3, 1);
}
