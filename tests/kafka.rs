//! Kafka end to end: `eddy` reads a topic of the in-process development broker
//! (`eddy-dev-broker`, librdkafka's mock cluster on loopback), runs a Wasm filter and a
//! tumbling window, and writes the results to another topic; a plain Kafka consumer reads
//! them back. SIGKILLs and broker outages must leave that consumer seeing exactly the
//! results of an uninterrupted run.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka::*;
use common::*;
use eddy::checkpoint::{Checkpointed, Snapshot};
use eddy::sink::{CommitLog, KafkaSink, KafkaSinkConfig, RecordBuffer, Sink};
use eddy_dev_broker::Broker;
use serde_json::Value;

/// The input, the reference run and the job writing `alerts` with `delivery`, on a
/// development broker of its own.
fn setup(delivery: &str) -> Setup<Broker> {
    Setup::on(Broker::start(1).unwrap(), delivery)
}

#[test]
fn deduplicated_output_survives_sigkill_at_random_moments() {
    let setup = setup("deduplicated");
    let kills = setup.kill_at_random_moments(7, 8);
    assert!(
        kills >= 3,
        "the job ended before it could be killed often ({kills} kills)"
    );
    assert_success(&eddy(&["run", setup.file()], None));
    setup.assert_exactly_the_reference(kills);
}

#[test]
fn at_least_once_output_loses_nothing_under_sigkill() {
    let setup = setup("at-least-once");
    let mut child = spawn(&["run", setup.file(), "--quiet"]);
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_success(&eddy(&["run", setup.file()], None));
    setup.assert_nothing_lost();
}

#[test]
fn the_broker_away_at_start_and_in_the_middle_delays_the_run_and_loses_nothing() {
    let setup = setup("deduplicated");
    setup.cluster.set_up(false).unwrap();
    let child = eddy_command()
        .args(["run", setup.file()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    setup.cluster.set_up(true).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    setup.cluster.set_up(false).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    setup.cluster.set_up(true).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_success(&output);
    let log = stderr(&output);
    assert!(log.contains("retrying"), "the outage is reported: {log}");
    // librdkafka reports a cluster that is down every few tens of milliseconds: its
    // ~4.7 s here would be hundreds of lines if each were logged.
    let lines = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    assert!(
        lines < 60,
        "the outage is logged as it begins, not every poll ({lines} lines): {log}"
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
    let setup = setup("transactional");
    setup
        .cluster
        .create_topic("eddy-transactions", Some(1))
        .unwrap();
    setup.kill_at_random_moments(11, 4);
    assert_success(&eddy(&["run", setup.file()], None));
    // The mock broker shows aborted transactions' records to every reader (see
    // TOOLCHAINS: it writes no abort markers), so only loss can be checked here.
    setup.assert_nothing_lost();
    let ids: Vec<u64> = markers(&setup.cluster)
        .iter()
        .map(|m| m.parse().unwrap())
        .collect();
    assert!(!ids.is_empty(), "checkpoints committed");
}

#[test]
fn an_uninterrupted_transactional_run_writes_each_result_once() {
    let setup = setup("transactional");
    setup
        .cluster
        .create_topic("eddy-transactions", Some(1))
        .unwrap();
    assert_success(&eddy(&["run", setup.file()], None));
    assert_eq!(counted(&setup.output()), counted(&setup.expected));
}

#[test]
fn one_process_of_three_workers_survives_a_sigkill_and_reads_each_record_once() {
    replace_one_of(&Broker::start(1).unwrap(), 1, 3, Stop::Kill);
}

#[test]
fn three_processes_in_one_group_survive_a_sigkill_and_read_each_record_once() {
    replace_one_of(&Broker::start(1).unwrap(), 3, 1, Stop::Kill);
}

/// A development broker with topics `events` (6 partitions) and `kept` (3), and the
/// pipeline file of partition tasks between them ([`tasks_pipeline`], as `edit` changes
/// it) in a scratch directory.
fn tasks_job(parallelism: u32, edit: impl FnOnce(String) -> String) -> (Broker, Scratch, String) {
    let broker = Broker::start(1).unwrap();
    broker.topic("events", 6);
    broker.topic("kept", 3);
    let s = Scratch::new();
    let pipeline = edit(tasks_pipeline(
        &broker.address(),
        "group",
        "kept",
        parallelism,
    ));
    let file = s.write("pipeline.toml", &pipeline);
    let file = file.to_str().unwrap().to_owned();
    (broker, s, file)
}

/// Waits for every one of `count` records that passes the filter, stops `job`, and
/// checks that each reached `kept` once (printing the jobs' logs if not).
fn each_kept_once_then_stop(broker: &Broker, s: &Scratch, job: Job, count: usize) {
    let expected = (0..count).filter(|i| (i * 37) % 100 >= 20).count();
    let ids = wait_for_ids(&broker.address(), "kept", expected);
    terminate(job);
    with_logs_on_failure(s.dir.path(), || assert_each_kept_once(ids, count));
}

#[test]
fn a_job_killed_before_its_first_checkpoint_writes_nothing_twice_when_restarted() {
    const COUNT: usize = 12_000;
    // No periodic checkpoint comes before the kill: only the one a job takes as it starts.
    let (broker, s, file) = tasks_job(2, |p| p.replace("interval = \"1s\"", "interval = \"1h\""));
    let producing = produce_stream(broker.input_producer(), "events", COUNT);
    let mut job = spawn_logged(&["run", &file, "--quiet"], &s.path("eddy-0.log"));
    wait_for_output(&broker.address(), "kept", 1000);
    job.kill().unwrap();
    job.wait().unwrap();
    let job = spawn_logged(&["run", &file, "--quiet"], &s.path("eddy-1.log"));
    producing.join().unwrap();
    each_kept_once_then_stop(&broker, &s, job, COUNT);
}

#[test]
fn partition_tasks_are_hot_swapped_together_through_the_admin_endpoint() {
    const COUNT: usize = 30_000;
    let admin = free_admin_address();
    let (broker, s, file) = tasks_job(2, |p| format!("{p}\n[admin]\nlisten = \"{admin}\"\n"));
    let job = spawn(&["run", &file, "--quiet"]);
    // The group assigns the six partitions to the process's two workers.
    wait_for_tasks(&admin, 6);
    let producing = produce_stream(broker.input_producer(), "events", COUNT);
    std::thread::sleep(Duration::from_millis(1200));

    // A file that is not a component is refused; every task goes on with its version.
    let refused = eddy(&["reload", "--admin", &admin, "big", &file], None);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("refused"), "{}", stderr(&refused));

    // Every task switches to the stricter filter; each says from which record on.
    let swapped = eddy(
        &["reload", "--admin", &admin, "big", "--config", "value=50"],
        None,
    );
    assert_success(&swapped);
    let said = String::from_utf8_lossy(&swapped.stdout).to_string();
    assert!(said.contains("in 6 tasks"), "{said}");
    let mut from: BTreeMap<u64, u64> = BTreeMap::new();
    for line in said.lines().filter(|l| l.contains("task events-")) {
        let partition = line
            .split("events-")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        let record = line
            .split("from record ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        from.insert(partition.parse().unwrap(), record.parse().unwrap());
    }
    assert_eq!(from.len(), 6, "{said}");

    let now = status_of(&admin);
    for task in now["tasks"].as_array().unwrap() {
        let history = task["status"]["plugins"][0]["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{task}");
        assert_eq!(history[1]["why"], "reload");
    }
    assert!(now["metrics"]["records_in"].as_u64().unwrap() > 0);
    let metrics = http_get(&admin, "/metrics");
    assert!(
        metrics.contains("eddy_records_in_total{task=\"events-0\"}"),
        "{metrics}"
    );

    producing.join().unwrap();
    // Each record is filtered by exactly one version: the old one (amount >= 20) before
    // its task's switch, the new one (amount >= 50) after.
    let expected: Vec<u64> = (0..COUNT as u64)
        .filter(|i| {
            let (amount, partition, nth) = ((i * 37) % 100, i % 6, i / 6);
            amount >= 50 || (amount >= 20 && nth < from[&partition])
        })
        .collect();
    let mut ids = wait_for_ids(&broker.address(), "kept", expected.len());
    // A savepoint is each task's, in <dir>/tasks/<task>.
    let savepoint = savepoint_into(&admin, &s.path("sp"));
    assert_success(&savepoint);
    let listed = String::from_utf8_lossy(&savepoint.stdout).to_string();
    assert_eq!(listed.matches("  task events-").count(), 6, "{listed}");
    for partition in 0..6 {
        assert!(s
            .path(&format!("sp/tasks/events-{partition}/savepoint.eddy"))
            .is_file());
    }
    let stopped = eddy(&["stop", "--admin", &admin], None);
    assert_success(&stopped);
    let ended = job.wait_with_output().unwrap();
    assert_eq!(
        ended.status.code(),
        Some(3),
        "`eddy stop` ends the job with 3"
    );
    ids.sort_unstable();
    assert_eq!(ids.len(), expected.len(), "records lost or written twice");
    assert_eq!(ids, expected);
}

#[test]
fn a_task_waits_for_the_previous_owner_of_its_partition_to_let_go() {
    const COUNT: usize = 6_000;
    let (broker, s, file) = tasks_job(1, |p| p);
    // A previous owner still holds partition 4's directory (a member the group gave up
    // on that has not noticed yet, still writing).
    let dir = s.path("state/tasks/events-4");
    std::fs::create_dir_all(&dir).unwrap();
    let held = std::fs::File::create(dir.join("LOCK")).unwrap();
    held.try_lock().unwrap();
    let producing = produce_stream(broker.input_producer(), "events", COUNT);
    let log = s.path("eddy-0.log");
    let mut job = spawn_logged(&["run", &file], &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("waiting up to")
    {
        assert!(job.try_wait().unwrap().is_none(), "the job ended");
        assert!(
            std::time::Instant::now() < deadline,
            "the task did not wait"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(job.try_wait().unwrap().is_none(), "the job gave up");
    drop(held);
    producing.join().unwrap();
    each_kept_once_then_stop(&broker, &s, job, COUNT);
}

/// `eddy status` of the job at `admin`, as JSON (null while the endpoint is not up).
fn status_of(admin: &str) -> Value {
    let output = eddy(&["status", "--admin", admin], None);
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

/// Waits until the job at `admin` runs `count` tasks (its group has assigned every
/// partition and no partition is between two of its workers).
fn wait_for_tasks(admin: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status_of(admin)["tasks"].as_array().map_or(0, Vec::len) != count {
        assert!(
            std::time::Instant::now() < deadline,
            "the job at {admin} did not come to {count} tasks"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Why each task of the job at `admin` runs the version of stage `big` it runs.
fn last_swaps(admin: &str) -> Vec<String> {
    status_of(admin)["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|task| {
            let history = task["status"]["plugins"][0]["history"].as_array().unwrap();
            history.last().unwrap()["why"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_reload_with_also_switches_every_process_of_the_group_or_none() {
    let broker = Broker::start(1).unwrap();
    broker.topic("events", 6);
    broker.topic("kept", 3);
    let s = Scratch::new();
    let pipeline = tasks_pipeline(&broker.address(), "group", "kept", 1);
    let (a, b) = (free_admin_address(), free_admin_address());
    let jobs: Vec<_> = [&a, &b]
        .iter()
        .enumerate()
        .map(|(n, admin)| {
            let file = s.write(
                &format!("pipeline-{n}.toml"),
                &format!("{pipeline}\n[admin]\nlisten = \"{admin}\"\n"),
            );
            spawn_logged(
                &["run", file.to_str().unwrap()],
                &s.path(&format!("eddy-{n}.log")),
            )
        })
        .collect();
    // The group splits the six partitions between the two processes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while last_swaps(&a).len() + last_swaps(&b).len() != 6
        || last_swaps(&a).is_empty()
        || last_swaps(&b).is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the group did not settle"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let reload = |also: &str| {
        eddy(
            &[
                "reload", "--admin", &a, "big", "--config", "value=50", "--also", also,
            ],
            None,
        )
    };
    // A process that cannot take it (here: one not there) sends back those that had.
    let refused = reload("127.0.0.1:1");
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(
        said.contains("127.0.0.1:1 refused") && said.contains(&format!("{a} went back")),
        "{said}"
    );
    assert!(last_swaps(&a)
        .iter()
        .all(|why| why == "rollback (requested)"));
    assert!(last_swaps(&b).iter().all(|why| why == "start"));
    // Every process of the group switches.
    let swapped = reload(&b);
    assert_success(&swapped);
    let said = String::from_utf8_lossy(&swapped.stdout).to_string();
    assert!(said.contains(&format!("process {b}:")), "{said}");
    for admin in [&a, &b] {
        assert!(
            last_swaps(admin).iter().all(|why| why == "reload"),
            "{admin}"
        );
    }
    for job in jobs {
        terminate(job);
    }
}

#[test]
fn partition_tasks_stop_with_a_savepoint_that_another_store_starts_from() {
    const COUNT: usize = 12_000;
    let admin = free_admin_address();
    let (broker, s, file) = tasks_job(2, |p| format!("{p}\n[admin]\nlisten = \"{admin}\"\n"));
    let producing = produce_stream(broker.input_producer(), "events", COUNT);
    let job = spawn_logged(&["run", &file], &s.path("eddy-0.log"));
    wait_for_output(&broker.address(), "kept", 2000);
    // A savepoint holds the tasks running when it is taken: the test stops a settled
    // group (a partition between two workers at that moment would not be in it).
    wait_for_tasks(&admin, 6);
    let sp = s.path("sp");
    let stopped = stop_with_savepoint(&admin, &sp);
    assert_success(&stopped);
    let said = String::from_utf8_lossy(&stopped.stdout).to_string();
    with_logs_on_failure(s.dir.path(), || {
        assert_eq!(said.matches("  task events-").count(), 6, "{said}");
    });
    assert_eq!(wait_for_exit(job), Some(3));

    // The job moves to another checkpoint store: the savepoint seeds it, and every task
    // goes on from its savepoint (nothing read twice, nothing skipped).
    let pipeline = std::fs::read_to_string(&file).unwrap();
    let moved = s.write(
        "moved.toml",
        &pipeline.replace("dir = \"state\"", "dir = \"moved\""),
    );
    let moved = moved.to_str().unwrap();
    let from_savepoint = ["run", moved, "--from-savepoint", sp.to_str().unwrap()];
    let job = spawn_logged(&from_savepoint, &s.path("eddy-1.log"));
    producing.join().unwrap();
    let expected = (0..COUNT).filter(|i| (i * 37) % 100 >= 20).count();
    let ids = wait_for_ids(&broker.address(), "kept", expected);
    terminate(job);
    // Started again with the same command, the job resumes from the store: the tasks
    // may have checkpointed since the savepoint, which is not installed twice.
    let again = spawn_logged(&from_savepoint, &s.path("eddy-2.log"));
    std::thread::sleep(Duration::from_millis(1500));
    terminate(again);
    // A store holding other task state is not overwritten.
    let refused = eddy(
        &["run", &file, "--from-savepoint", sp.to_str().unwrap()],
        None,
    );
    with_logs_on_failure(s.dir.path(), || {
        assert_each_kept_once(ids, COUNT);
        let log = std::fs::read_to_string(s.path("eddy-2.log")).unwrap();
        assert!(
            log.contains("started from") && log.contains("already"),
            "{log}"
        );
        assert!(!refused.status.success());
        assert!(
            stderr(&refused).contains("holds the state of task"),
            "{}",
            stderr(&refused)
        );
    });
}

/// A self-signed certificate for 127.0.0.1 and its key: the server's certificate and the
/// authority a client trusts.
fn self_signed() -> (
    openssl::pkey::PKey<openssl::pkey::Private>,
    openssl::x509::X509,
) {
    use openssl::x509::extension::SubjectAlternativeName;
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut cert = openssl::x509::X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    (key, cert.build())
}

/// A TLS listener on loopback with `cert`: for its first connection, whether the
/// handshake succeeded and, if so, the API key of the first Kafka request read over it.
fn tls_listener(
    key: openssl::pkey::PKey<openssl::pkey::Private>,
    cert: openssl::x509::X509,
) -> (String, std::sync::mpsc::Receiver<Result<i16, String>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (seen, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut acceptor =
            openssl::ssl::SslAcceptor::mozilla_intermediate_v5(openssl::ssl::SslMethod::tls())
                .unwrap();
        acceptor.set_private_key(&key).unwrap();
        acceptor.set_certificate(&cert).unwrap();
        let acceptor = acceptor.build();
        let (tcp, _) = listener.accept().unwrap();
        let answer = match acceptor.accept(tcp) {
            Ok(mut tls) => {
                // A request: its length (4 bytes), then its API key (2 bytes).
                let mut head = [0u8; 6];
                tls.read_exact(&mut head)
                    .map(|()| i16::from_be_bytes([head[4], head[5]]))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = seen.send(answer);
    });
    (address, heard)
}

/// The Kafka source's consumer, as `[source]` with `properties` configures it, asks
/// `address` for metadata (which the TLS listener never answers).
fn consumer_asks(address: &str, properties: &str) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let config = eddy::config::PipelineConfig::parse(&format!(
        "[source]\nkind = \"kafka\"\nbrokers = \"{address}\"\ntopics = [\"t\"]\ngroup = \"g\"\n\
         [source.properties]\n{properties}\n[sink]\nkind = \"null\"\n"
    ))
    .unwrap();
    let eddy::config::SourceConfig::Kafka(kafka) = &config.source else {
        unreachable!()
    };
    let consumer: BaseConsumer = kafka
        .client_config("earliest")
        .create()
        .expect("this build of librdkafka takes TLS and SASL settings");
    let _ = consumer.fetch_metadata(None, Duration::from_secs(2));
}

#[test]
fn tls_and_sasl_settings_reach_the_broker_over_a_verified_connection() {
    let s = Scratch::new();
    let (key, cert) = self_signed();
    let ca = s.write(
        "ca.pem",
        &String::from_utf8(cert.to_pem().unwrap()).unwrap(),
    );
    let (_, stranger) = self_signed();
    let other_ca = s.write(
        "other-ca.pem",
        &String::from_utf8(stranger.to_pem().unwrap()).unwrap(),
    );
    let sasl_ssl = |ca: &std::path::Path| {
        format!(
            "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
             \"sasl.username\" = \"eddy\"\n\"sasl.password\" = \"secret\"\n\
             \"ssl.ca.location\" = \"{}\"\n",
            ca.display()
        )
    };

    // Trusting the broker's authority: the handshake completes and the client's first
    // request (ApiVersions, key 18) arrives encrypted.
    let (address, heard) = tls_listener(key.clone(), cert.clone());
    consumer_asks(&address, &sasl_ssl(&ca));
    let seen = heard.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen, Ok(18), "the client's first request over TLS");

    // Trusting another authority: the client refuses the broker's certificate.
    let (address, heard) = tls_listener(key, cert);
    consumer_asks(&address, &sasl_ssl(&other_ca));
    let seen = heard.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        seen.is_err(),
        "a broker the client cannot verify got {seen:?}"
    );
}

#[test]
fn a_watched_plugin_file_swaps_every_partition_task() {
    let broker = Broker::start(1).unwrap();
    broker.topic("events", 6);
    broker.topic("kept", 3);
    let admin = free_admin_address();
    let s = Scratch::new();
    let component = std::fs::read(eddy_example_artifacts::FILTER_COMPONENT).unwrap();
    std::fs::write(s.path("big.wasm"), &component).unwrap();
    let text = tasks_pipeline(&broker.address(), "group", "kept", 2)
        .replace(eddy_example_artifacts::FILTER_COMPONENT, "big.wasm");
    let file = s.write(
        "pipeline.toml",
        &format!("{text}\n[admin]\nlisten = \"{admin}\"\n"),
    );
    let mut job = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    // Each task's stage history: (why) per version.
    let histories = |admin: &str| -> Vec<Vec<String>> {
        let output = eddy(&["status", "--admin", admin], None);
        let status: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        status["tasks"]
            .as_array()
            .map(|tasks| {
                tasks
                    .iter()
                    .map(|t| {
                        t["status"]["plugins"][0]["history"]
                            .as_array()
                            .map(|h| h.iter().map(|v| v["why"].to_string()).collect())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let wait_for = |done: &dyn Fn(&[Vec<String>]) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = histories(&admin);
            if done(&now) {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "{now:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&|tasks| tasks.len() == 6 && tasks.iter().all(|h| h.len() == 1));
    // A new build of the same code (a custom section added: another version).
    let mut build = component;
    build.extend_from_slice(&[0, 6, 5, b'e', b'd', b'd', b'y', b'2']);
    std::fs::write(s.path("big.wasm"), &build).unwrap();
    let swapped = wait_for(&|tasks| tasks.len() == 6 && tasks.iter().all(|h| h.len() == 2));
    for history in swapped {
        assert_eq!(history[1], "\"file change\"");
    }
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    job.wait().unwrap();
}
