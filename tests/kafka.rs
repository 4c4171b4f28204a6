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
use eddy::checkpoint::{Checkpointed, Snapshot};
use eddy::sink::{CommitLog, KafkaSink, KafkaSinkConfig, RecordBuffer, Sink};
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

    /// Starts the job and SIGKILLs it after 150–550 ms (pseudo-random from `seed`), up to
    /// `kills` times or until a run ends by itself; returns how many times it was killed.
    fn kill_at_random_moments(&self, mut seed: u64, kills: usize) -> usize {
        for killed in 0..kills {
            let mut child = spawn(&["run", self.file(), "--quiet"]);
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            std::thread::sleep(Duration::from_millis(150 + (seed >> 33) % 400));
            if child.try_wait().unwrap().is_some() {
                return killed;
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
        kills
    }

    /// Asserts that the output holds every result of the uninterrupted run, at least
    /// once, and nothing else.
    fn assert_nothing_lost(&self) {
        let output = self.output();
        let got = counted(&output);
        let expected = counted(&self.expected);
        for (value, n) in &expected {
            assert!(got.get(value).copied().unwrap_or(0) >= *n, "lost {value}");
        }
        assert!(
            got.keys().all(|v| expected.contains_key(v)),
            "nothing that an uninterrupted run would not write"
        );
    }
}

#[test]
fn deduplicated_output_survives_sigkill_at_random_moments() {
    let setup = Setup::new("deduplicated");
    let kills = setup.kill_at_random_moments(7, 8);
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
    setup.assert_nothing_lost();
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
        &["\"eddy-transactions\"", "create it", "transaction_log"],
    );
    let keep_one = transactional.replace("interval = \"50ms\"", "interval = \"50ms\"\nretain = 1");
    assert_failure_says(
        &s.eddy("validate", &keep_one),
        &["retain must be at least 2", "transactional"],
    );
}

/// A transactional sink writing topic `out` of `broker`.
fn transactional_sink(broker: &Broker) -> KafkaSinkConfig {
    toml::from_str(&format!(
        "brokers = \"{}\"\ntopic = \"out\"\ndelivery = \"transactional\"",
        broker.bootstrap()
    ))
    .unwrap()
}

/// Writes `values` through `sink` as one batch.
fn write_values(sink: &mut KafkaSink, values: &[&str]) {
    let mut buffer = RecordBuffer::default();
    for v in values {
        buffer.push_with(|b| b.extend_from_slice(v.as_bytes()));
    }
    sink.write(buffer.records(), None).unwrap();
}

/// The commit markers in the transaction log: (key, checkpoint id).
fn markers(broker: &Broker) -> Vec<String> {
    read_topic(&broker.bootstrap(), "eddy-transactions")
        .into_iter()
        .map(|(value, _)| value)
        .collect()
}

/// A snapshot holding one section, as the coordinator would write it.
fn snapshot(id: u64, section: eddy::checkpoint::Section) -> Snapshot {
    Snapshot {
        id,
        created_ms: 0,
        savepoint: false,
        base: None,
        sections: vec![section],
    }
}

#[test]
fn a_transactional_sink_commits_each_epoch_when_its_checkpoint_completes() {
    let broker = Broker::start(1).unwrap();
    broker.create_topic("out", Some(2)).unwrap();
    broker.create_topic("eddy-transactions", Some(1)).unwrap();
    let config = transactional_sink(&broker);
    let mut sink = KafkaSink::open(&config, "sink", None).unwrap();
    write_values(&mut sink, &["{\"n\":1}", "{\"n\":2}"]);
    let first = sink.snapshot(1, false).unwrap().expect("a section");
    assert!(
        markers(&broker).is_empty(),
        "nothing commits before the checkpoint is durable"
    );
    // Records after the cut belong to the next epoch, on the other producer.
    write_values(&mut sink, &["{\"n\":3}"]);
    sink.checkpoint_completed(1).unwrap();
    assert_eq!(markers(&broker), ["1"], "the epoch commits with its marker");
    let second = sink.snapshot(2, false).unwrap().expect("a section");
    write_values(&mut sink, &["{\"n\":4}"]);
    // A crash now: checkpoint 2 may be durable, its transaction never commits.
    std::mem::forget(sink);

    // Recovery fences the crashed producers and reads the log: checkpoint 2's output
    // did not commit, checkpoint 1's did.
    let mut log = CommitLog::open(&config, "sink").unwrap();
    assert!(!log.committed(&snapshot(2, second)).unwrap());
    assert!(log.committed(&snapshot(1, first)).unwrap());

    // The job resumes from checkpoint 1; its next checkpoint (2 again) commits.
    let mut sink = KafkaSink::open(&config, "sink", None).unwrap();
    write_values(&mut sink, &["{\"n\":3}", "{\"n\":4}"]);
    let again = sink.snapshot(2, false).unwrap().expect("a section");
    sink.checkpoint_completed(2).unwrap();
    assert_eq!(markers(&broker), ["1", "2"]);
    let mut log = CommitLog::open(&config, "sink").unwrap();
    assert!(log.committed(&snapshot(2, again)).unwrap());
}

/// The Kafka protocol's key of `EndTxn`.
const END_TXN: i16 = 26;

#[test]
fn a_fenced_sink_stops_without_committing_and_says_why() {
    // On a real cluster a newer instance with the same transactional id fences the older;
    // the mock cluster gives each instance its own producer id, so the refusal is injected.
    let broker = Broker::start(1).unwrap();
    broker.create_topic("out", Some(1)).unwrap();
    broker.create_topic("eddy-transactions", Some(1)).unwrap();
    let config = transactional_sink(&broker);
    let mut zombie = KafkaSink::open(&config, "sink", None).unwrap();
    write_values(&mut zombie, &["{\"n\":1}"]);
    zombie.snapshot(1, false).unwrap();
    broker.fail_next(
        END_TXN,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
    );
    let error = format!("{:#}", zombie.checkpoint_completed(1).unwrap_err());
    assert!(
        error.contains("fenced") && error.contains("eddy-out-sink"),
        "{error}"
    );
}

#[test]
fn a_checkpoint_whose_transaction_never_committed_is_set_aside_for_the_one_before() {
    let broker = Broker::start(1).unwrap();
    broker.create_topic("out", Some(2)).unwrap();
    broker.create_topic("eddy-transactions", Some(1)).unwrap();
    let s = Scratch::new();
    let file = s.write(
        "pipeline.toml",
        &format!(
            r#"
[source]
kind = "generator"
count = 20000

[checkpoint]
dir = "state"
interval = "10ms"

[sink]
kind = "kafka"
brokers = "{}"
topic = "out"
delivery = "transactional"
"#,
            broker.bootstrap()
        ),
    );
    let file = file.to_str().unwrap();
    assert_success(&eddy(&["run", file], None));
    let committed = markers(&broker);
    // A crash right after the next checkpoint became durable, before its commit: the
    // same cut once more under the next id, with no marker in the log.
    let state = s.path("state");
    let (mut last, _) = eddy::checkpoint::read_snapshot(&state).unwrap();
    let last_id = last.id;
    last.id += 1;
    eddy::checkpoint::CheckpointDir::open(&state, 10)
        .unwrap()
        .write(&last)
        .unwrap();

    let output = eddy(&["run", file], None);
    assert_success(&output);
    let log = stderr(&output);
    let file_of = |id: u64| format!("ckpt-{id:020}.eddy");
    assert!(
        log.contains(&format!(
            "{} (its output to Kafka topic out never committed)",
            file_of(last_id + 1)
        )) && log.contains(&format!(
            "resuming from checkpoint {}",
            state.join(file_of(last_id)).display()
        )),
        "{log}"
    );
    assert!(state
        .join(format!("{}.uncommitted", file_of(last_id + 1)))
        .exists());
    assert!(
        !log.contains("PartitionEOF"),
        "no end-of-partition noise: {log}"
    );
    assert_eq!(
        markers(&broker).len(),
        committed.len() + 1,
        "the resumed run's final checkpoint commits"
    );
    assert_eq!(read_topic(&broker.bootstrap(), "out").len(), 20_000);
}

#[test]
fn transactional_output_loses_nothing_under_sigkill_and_commits_every_checkpoint() {
    let setup = Setup::new("transactional");
    setup
        .broker
        .create_topic("eddy-transactions", Some(1))
        .unwrap();
    setup.kill_at_random_moments(11, 4);
    assert_success(&eddy(&["run", setup.file()], None));
    // The mock broker shows aborted transactions' records to every reader (see
    // TOOLCHAINS: it writes no abort markers), so only loss can be checked here.
    setup.assert_nothing_lost();
    let ids: Vec<u64> = markers(&setup.broker)
        .iter()
        .map(|m| m.parse().unwrap())
        .collect();
    assert!(!ids.is_empty(), "checkpoints committed");
}

#[test]
fn an_uninterrupted_transactional_run_writes_each_result_once() {
    let setup = Setup::new("transactional");
    setup
        .broker
        .create_topic("eddy-transactions", Some(1))
        .unwrap();
    assert_success(&eddy(&["run", setup.file()], None));
    assert_eq!(counted(&setup.output()), counted(&setup.expected));
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
