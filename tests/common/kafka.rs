//! Kafka helpers shared by the suites against the development broker (`tests/kafka.rs`)
//! and against tansu (`tests/tansu.rs`): input, a reference run, reading topics back,
//! killing jobs, and checking what reached the output.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use eddy_example_artifacts::FILTER_COMPONENT;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;

/// A Kafka-protocol cluster a test runs against.
pub trait Cluster {
    /// The bootstrap address, `127.0.0.1:PORT`.
    fn address(&self) -> String;
    /// Creates `name` with `partitions` partitions.
    fn topic(&self, name: &str, partitions: i32);

    /// A producer of the tests' input for this cluster.
    fn input_producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .create()
            .unwrap()
    }
}

impl Cluster for eddy_dev_broker::Broker {
    fn address(&self) -> String {
        self.bootstrap()
    }

    fn topic(&self, name: &str, partitions: i32) {
        self.create_topic(name, Some(partitions)).unwrap();
    }
}

/// Events on the input topic.
pub const EVENTS: usize = 200_000;
/// Partitions of the input topic.
pub const INPUT_PARTITIONS: i32 = 3;

/// Produces the input: per partition, event times increase (2 ms apart overall), 40
/// users, amounts 0–99.
pub fn produce_input(cluster: &impl Cluster, topic: &str) {
    cluster.topic(topic, INPUT_PARTITIONS);
    let producer = cluster.input_producer();
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

pub fn chrono_free_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every record of `topic` (all partitions, from the start): value and `eddy-id` header.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<(String, Option<String>)> {
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
pub fn filter_into(bootstrap: &str, output: &str, delivery: &str) -> String {
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
pub fn pipeline(bootstrap: &str, output: &str, delivery: &str) -> String {
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
pub fn counted(records: &[(String, Option<String>)]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for (value, _) in records {
        *counts.entry(value.as_str()).or_default() += 1;
    }
    counts
}

/// Runs the pipeline once, uninterrupted, into `output`; returns what that topic holds
/// and how long the run took.
fn reference(cluster: &impl Cluster, output: &str) -> (Vec<(String, Option<String>)>, Duration) {
    cluster.topic(output, 2);
    let s = Scratch::new();
    let started = Instant::now();
    assert_success(&s.eddy("run", &pipeline(&cluster.address(), output, "deduplicated")));
    let took = started.elapsed();
    let records = read_topic(&cluster.address(), output);
    // 400 s of events in 1 s windows, 40 users (a bounded read against tansu 0.6 ends
    // up to a produce batch per partition early: its offsets answer lags its log).
    assert!(records.len() >= 395 * 40, "{} results", records.len());
    (records, took)
}

/// A cluster with the input produced, an uninterrupted run's results on topic
/// `reference`, and a pipeline file writing topic `alerts` with `delivery`.
pub struct Setup<C: Cluster> {
    pub cluster: C,
    pub expected: Vec<(String, Option<String>)>,
    /// How long the uninterrupted run took: kills are timed as parts of it.
    reference_run: Duration,
    _scratch: Scratch,
    file: PathBuf,
}

impl<C: Cluster> Setup<C> {
    pub fn on(cluster: C, delivery: &str) -> Self {
        produce_input(&cluster, "payments");
        let (expected, reference_run) = reference(&cluster, "reference");
        cluster.topic("alerts", 2);
        let scratch = Scratch::new();
        let file = scratch.write(
            "pipeline.toml",
            &pipeline(&cluster.address(), "alerts", delivery),
        );
        Self {
            cluster,
            expected,
            reference_run,
            _scratch: scratch,
            file,
        }
    }

    pub fn file(&self) -> &str {
        self.file.to_str().unwrap()
    }

    pub fn output(&self) -> Vec<(String, Option<String>)> {
        read_topic(&self.cluster.address(), "alerts")
    }

    /// Starts the job and SIGKILLs it after 10–30% of the time the uninterrupted run took
    /// (pseudo-random from `seed`), up to `kills` times or until a run ends by itself;
    /// returns how many times it was killed. Timed by the reference run, not the clock,
    /// so a faster machine is killed as often: three runs together last at most 90% of
    /// the job, and each starts over after its last checkpoint.
    pub fn kill_at_random_moments(&self, mut seed: u64, kills: usize) -> usize {
        for killed in 0..kills {
            let mut child = spawn(&["run", self.file(), "--quiet"]);
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let part = 0.1 + ((seed >> 33) % 1000) as f64 / 1000.0 * 0.2;
            std::thread::sleep(self.reference_run.mul_f64(part));
            if child.try_wait().unwrap().is_some() {
                return killed;
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
        kills
    }

    /// Asserts that the output is exactly the uninterrupted run's (as a multiset), each
    /// record with its own identity.
    pub fn assert_exactly_the_reference(&self, kills: usize) {
        let got = self.output();
        assert_eq!(
            counted(&got),
            counted(&self.expected),
            "after {kills} kills the topic differs from an uninterrupted run's"
        );
        let ids: HashSet<_> = got.iter().map(|(_, id)| id.clone().unwrap()).collect();
        assert_eq!(
            ids.len(),
            got.len(),
            "every record carries its own identity"
        );
    }

    /// Asserts that the output holds every result of the uninterrupted run, at least
    /// once, and nothing else.
    pub fn assert_nothing_lost(&self) {
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

/// Streaming input for the partition-task tests: `count` events with ids, over 6
/// partitions, produced over about three seconds by a background thread.
pub fn produce_stream(
    producer: BaseProducer,
    topic: &'static str,
    count: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
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
pub fn tasks_pipeline(bootstrap: &str, group: &str, output: &str, parallelism: u32) -> String {
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

/// Waits until `topic` holds at least `count` records (a minute at most).
pub fn wait_for_output(bootstrap: &str, topic: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_topic(bootstrap, topic).len() < count {
        assert!(
            Instant::now() < deadline,
            "{topic} did not reach {count} records"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `topic` holds `count` records (or a minute passes), then returns the ids
/// it holds.
pub fn wait_for_ids(bootstrap: &str, topic: &str, count: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = read_topic(bootstrap, topic);
        if records.len() >= count || Instant::now() > deadline {
            // A moment more: anything past `count` would be a duplicate to report.
            std::thread::sleep(Duration::from_millis(500));
            return read_topic(bootstrap, topic)
                .iter()
                .map(|(v, _)| {
                    serde_json::from_str::<Value>(v).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every id of the input that passes the filter, once.
pub fn assert_each_kept_once(mut ids: Vec<u64>, count: usize) {
    let expected: Vec<u64> = (0..count as u64).filter(|i| (i * 37) % 100 >= 20).collect();
    ids.sort_unstable();
    let twice: Vec<(u64, u64, u64)> = ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| (w[0], w[0] % 6, w[0] / 6))
        .collect();
    ids.dedup();
    assert!(
        twice.is_empty(),
        "{} records were written twice; (id, input partition, its nth record), first and last: {:?} {:?}",
        twice.len(),
        &twice[..twice.len().min(5)],
        &twice[twice.len().saturating_sub(5)..]
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

/// A number below `bound`, different on every call (for random moments).
pub fn random_below(bound: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) % bound
}

/// Stops a job with SIGTERM (its tasks end with checkpoints) and waits for it.
pub fn terminate(child: Job) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    wait_for_exit(child);
}

/// Waits up to 20 s for a job to end; its exit code.
pub fn wait_for_exit(mut child: Job) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "eddy did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a job is taken out of its group.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// SIGKILL: the group notices when the member's session times out.
    Kill,
    /// SIGTERM: the job checkpoints its tasks and leaves the group (a rolling restart).
    Terminate,
}

/// Runs `processes` jobs of `parallelism` workers each on a 6-partition topic being
/// produced, stops one (`stop`) at a random moment of its first 1.5 s of reading (before
/// or after its first periodic checkpoint) and starts it again, and checks that every
/// input record that passes the filter reached the output once.
pub fn replace_one_of(cluster: &impl Cluster, processes: usize, parallelism: u32, stop: Stop) {
    const COUNT: usize = 30_000;
    cluster.topic("events", 6);
    cluster.topic("kept", 3);
    let producing = produce_stream(cluster.input_producer(), "events", COUNT);
    let s = Scratch::new();
    let file = s.write(
        "pipeline.toml",
        &tasks_pipeline(&cluster.address(), "group", "kept", parallelism),
    );
    let file = file.to_str().unwrap();
    let log = |n: usize| s.path(&format!("eddy-{n}.log"));
    let mut jobs: Vec<_> = (0..processes)
        .map(|n| spawn_logged(&["run", file, "--quiet"], &log(n)))
        .collect();
    let victim_log = log(processes / 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&victim_log)
        .unwrap_or_default()
        .contains("starts at offset")
    {
        assert!(
            Instant::now() < deadline,
            "the group gave the job nothing to read"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let reading = random_below(1500);
    eprintln!("stopping the job {reading} ms after it started reading");
    std::thread::sleep(Duration::from_millis(reading));
    let mut victim = jobs.remove(processes / 2);
    match stop {
        Stop::Kill => {
            victim.kill().unwrap();
            victim.wait().unwrap();
        }
        Stop::Terminate => terminate(victim),
    }
    std::thread::sleep(Duration::from_millis(300));
    jobs.push(spawn_logged(&["run", file, "--quiet"], &log(processes)));
    producing.join().unwrap();
    let expected = (0..COUNT).filter(|i| (i * 37) % 100 >= 20).count();
    let ids = wait_for_ids(&cluster.address(), "kept", expected);
    for job in jobs {
        terminate(job);
    }
    with_logs_on_failure(s.dir.path(), || {
        assert_each_kept_once(ids, COUNT);
        // Each partition's task checkpointed in the shared store.
        let tasks = std::fs::read_dir(s.path("state/tasks")).unwrap().count();
        assert_eq!(tasks, 6);
    });
}
