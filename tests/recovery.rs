//! Fault-tolerance tests: they run the `eddy` binary with checkpoints, kill it with
//! SIGKILL, corrupt its checkpoints, fill its disk, take savepoints through the admin
//! endpoint, and check that the output ends up exactly as an uninterrupted run's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use eddy_example_artifacts::{FILTER_COMPONENT, FRAUD_COMPONENT, NUMBERING_COMPONENT};

/// A bounded, rate-limited generator (about 2.7 s uninterrupted) with disorder over three
/// partitions, checkpointing every 30 ms.
const SOURCE: &str = r#"
[source]
kind = "generator"
count = 40000
rate = 15000
keys = 100
partitions = 3
max_disorder = "20ms"
seed = 11

[watermark]
max_delay = "20ms"

[checkpoint]
dir = "state"
interval = "30ms"
"#;

/// Windows with allowed lateness, results, late events and dead letters all in files.
const WINDOWED: &str = r#"
[window]
kind = "tumbling"
size = "100ms"
allowed_lateness = "10ms"
aggregate = "sum"
field = "amount"

[sink]
kind = "file"
path = "out.jsonl"

[late]
kind = "file"
path = "late.jsonl"
"#;

fn passthrough() -> String {
    format!(
        "[[plugin]]\nname = \"some\"\npath = \"{FILTER_COMPONENT}\"\nconfig = {{ field = \"amount\", op = \">=\", value = \"20\" }}\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n[dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n"
    )
}

/// The stateful `fraud` plugin: per-key spend in host-owned keyed state, so a restore
/// that lost or doubled state would change which events alert.
fn stateful() -> String {
    format!(
        "[[plugin]]\nname = \"fraud\"\npath = \"{FRAUD_COMPONENT}\"\nconfig = {{ threshold = \"2000\", horizon_ms = \"300\" }}\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n"
    )
}

/// The `numbering` plugin: a running number kept in the plugin's own memory and carried
/// through checkpoints by its `state` interface, so a restore that lost it would number
/// from 0 again.
fn numbered() -> String {
    format!(
        "[[plugin]]\nname = \"numbering\"\npath = \"{NUMBERING_COMPONENT}\"\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n"
    )
}

/// A small seeded generator of pauses, so a failing run can be repeated.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Runs the pipeline uninterrupted and returns the sink file.
fn reference(pipeline: &str) -> String {
    let s = Scratch::new();
    assert_success(&s.eddy("run", pipeline));
    std::fs::read_to_string(s.path("out.jsonl")).unwrap()
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    // Many keys and `incremental_above = 1`: checkpoints that carry only what changed.
    let incremental = |body: String| {
        format!("{SOURCE}{body}")
            .replace("keys = 100\n", "keys = 5000\n")
            .replace(
                "interval = \"30ms\"\n",
                "interval = \"30ms\"\nincremental_above = 1\n",
            )
    };
    for (name, pipeline) in [
        ("windowed", format!("{SOURCE}{WINDOWED}")),
        ("passthrough", format!("{SOURCE}{}", passthrough())),
        ("stateful", format!("{SOURCE}{}", stateful())),
        ("own state", format!("{SOURCE}{}", numbered())),
        (
            "incremental windowed",
            incremental(WINDOWED.replace("size = \"100ms\"", "size = \"1s\"")),
        ),
        ("incremental stateful", incremental(stateful())),
    ] {
        let expected = reference(&pipeline);
        assert!(
            expected.lines().count() > 100,
            "{name}: the pipeline must produce output"
        );
        let s = Scratch::new();
        let file = s.write("pipeline.toml", &pipeline);
        let mut pauses = Lcg(42);
        let mut kills = 0;
        let mut saw_incremental = false;
        while kills < 20 {
            let mut child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
            std::thread::sleep(Duration::from_millis(40 + pauses.below(200)));
            if child.try_wait().unwrap().is_some() {
                break;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            saw_incremental |= std::fs::read_dir(s.path("state"))
                .into_iter()
                .flatten()
                .any(|e| e.unwrap().file_name().to_string_lossy().contains("-on-"));
            // Whatever the moment, the sink holds only whole committed output.
            let partial = std::fs::read_to_string(s.path("out.jsonl")).unwrap_or_default();
            assert!(
                expected.starts_with(&partial),
                "{name}: after kill {kills} the sink is not a prefix of the full output"
            );
        }
        eprintln!("{name}: killed {kills} times");
        assert_eq!(
            saw_incremental,
            name.starts_with("incremental"),
            "{name}: incremental checkpoints"
        );
        assert!(
            kills >= 15,
            "{name}: the job ended before it could be killed often ({kills} kills)"
        );
        let output = s.eddy("run", &pipeline);
        assert_success(&output);
        let got = std::fs::read_to_string(s.path("out.jsonl")).unwrap();
        assert!(
            got == expected,
            "{name}: after {kills} kills the output differs from an uninterrupted run"
        );
        if name == "own state" {
            let numbers: Vec<u64> = s
                .lines("out.jsonl")
                .iter()
                .map(|v| v["n"].as_u64().unwrap())
                .collect();
            assert!(
                numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
                "{name}: numbered 0, 1, 2, … without a gap or a restart"
            );
        }
        if name == "passthrough" {
            let seqs: Vec<u64> = s
                .lines("out.jsonl")
                .iter()
                .map(|v| v["seq"].as_u64().unwrap())
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "every seq at most once, in order"
            );
            assert!(seqs.len() > 25000, "{} events passed", seqs.len());
        }
        let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".eddy-epoch-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{name}: staged epochs left behind: {leftovers:?}"
        );
    }
}

#[test]
fn corrupt_and_truncated_checkpoints_are_skipped_or_refused() {
    let pipeline = format!("{SOURCE}{WINDOWED}").replace("rate = 15000\n", "");
    let s = Scratch::new();
    assert_success(&s.eddy("run", &pipeline));
    let expected = std::fs::read_to_string(s.path("out.jsonl")).unwrap();
    let mut checkpoints: Vec<_> = std::fs::read_dir(s.path("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    checkpoints.sort();
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");

    // Truncate the newest: the run resumes from the one before and ends the same.
    let newest = checkpoints.last().unwrap();
    let bytes = std::fs::read(newest).unwrap();
    std::fs::write(newest, &bytes[..bytes.len() / 2]).unwrap();
    let output = s.eddy("run", &pipeline);
    assert_success(&output);
    assert!(
        stderr(&output).contains("skipping unusable checkpoint")
            && stderr(&output).contains("truncated"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        expected
    );

    // Corrupt every checkpoint: the run refuses to start, and leaves the output alone.
    for (_, path) in std::fs::read_dir(s.path("state"))
        .unwrap()
        .map(|e| ((), e.unwrap().path()))
    {
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let output = s.eddy("run", &pipeline);
    assert_failure_says(&output, &["no usable checkpoint", "checksum", "--fresh"]);
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        expected
    );

    // --fresh starts over and produces the same output.
    let file = s.write("pipeline.toml", &pipeline);
    let output = eddy(&["run", file.to_str().unwrap(), "--fresh"], None);
    assert_success(&output);
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        expected
    );
}

#[test]
fn output_without_a_checkpoint_is_never_overwritten_silently() {
    let pipeline = format!("{SOURCE}{WINDOWED}").replace("rate = 15000\n", "");
    let s = Scratch::new();
    s.write("out.jsonl", "{\"earlier\":\"output\"}\n");
    let output = s.eddy("run", &pipeline);
    assert_failure_says(
        &output,
        &["out.jsonl already has output", "no checkpoint", "--fresh"],
    );
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        "{\"earlier\":\"output\"}\n"
    );
}

#[test]
fn a_full_disk_fails_checkpoints_but_not_the_job() {
    let pipeline = format!("{SOURCE}{WINDOWED}");
    let expected = reference(&pipeline);
    let s = Scratch::new();
    std::fs::create_dir(s.path("state")).unwrap();
    for id in 2..=4 {
        let tmp = s.path(&format!("state/ckpt-{id:020}.eddy.tmp"));
        std::os::unix::fs::symlink("/dev/full", tmp).unwrap();
    }
    let output = s.eddy("run", &pipeline);
    assert_success(&output);
    let err = stderr(&output);
    assert!(
        err.contains("checkpoint 2 failed") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(err.contains("keeps its last good checkpoint"), "{err}");
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        expected
    );
}

#[test]
fn savepoint_stop_and_resume_with_a_changed_pipeline() {
    let pipeline = format!("{SOURCE}{WINDOWED}").replace("count = 40000", "count = 75000");
    let expected = reference(&pipeline);
    let s = Scratch::new();
    let admin = free_admin_address();
    let running = format!("{pipeline}[admin]\nlisten = \"{admin}\"\n");
    let file = s.write("pipeline.toml", &running);
    let mut child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    wait_for_admin(&admin);

    // The status board is refreshed a few times a second: wait until it shows every
    // partition under way (a loaded machine may take a while).
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = eddy(&["status", "--admin", &admin], None);
        assert_success(&status);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        if status["partitions"][2]["position"].is_u64() || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["state"], "running");
    assert_eq!(status["partitions"].as_array().unwrap().len(), 3);
    assert!(
        status["partitions"][2]["position"]
            .as_u64()
            .is_some_and(|p| p % 3 == 2),
        "{status}"
    );
    assert!(
        status["partitions"][0]["watermark"].as_i64().is_some(),
        "{status}"
    );
    assert!(status["metrics"]["records_in"].as_u64().unwrap() > 0);
    assert!(
        status["source"]["position"]["generator"]["next_seq"]
            .as_u64()
            .is_some(),
        "{status}"
    );

    // The same counters, for Prometheus.
    let metrics = http_get(&admin, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let records_in: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eddy_records_in_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no eddy_records_in_total in {metrics}"));
    assert!(records_in > 0);
    assert!(metrics.contains("eddy_watermark_ms "), "{metrics}");

    let taken = savepoint_into(&admin, &s.path("sp1"));
    assert_success(&taken);
    assert!(String::from_utf8_lossy(&taken.stdout).contains("sp1/savepoint.eddy"));

    std::thread::sleep(Duration::from_millis(200));
    let stopped = stop_with_savepoint(&admin, &s.path("sp2"));
    assert_success(&stopped);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(3),
        "stopped by `eddy stop`, not finished"
    );
    let before = std::fs::read_to_string(s.path("out.jsonl")).unwrap();
    assert!(!before.is_empty() && before.len() < expected.len());

    let inspected = eddy(&["inspect", s.path("sp2").to_str().unwrap()], None);
    assert_success(&inspected);
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(inspected["kind"], "savepoint");
    let window = inspected["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "window")
        .expect("a window section");
    assert!(window["entries"].as_u64().unwrap() > 0, "{window}");
    assert_eq!(window["version"], 2);

    // A window of another size cannot take this state; the error says so.
    let resized = s.write(
        "resized.toml",
        &pipeline.replace("size = \"100ms\"", "size = \"200ms\""),
    );
    let refused = eddy(
        &[
            "run",
            resized.to_str().unwrap(),
            "--from-savepoint",
            s.path("sp2").to_str().unwrap(),
        ],
        None,
    );
    assert_failure_says(&refused, &["incompatible state", "window"]);

    // A changed pipeline (a new sink, other batching) resumes where the savepoint was.
    let changed = format!(
        "{}[batch]\nmax_records = 7\n",
        pipeline.replace("path = \"out.jsonl\"", "path = \"after.jsonl\"")
    );
    let changed = s.write("changed.toml", &changed);
    let resumed = eddy(
        &[
            "run",
            changed.to_str().unwrap(),
            "--from-savepoint",
            s.path("sp2").to_str().unwrap(),
        ],
        None,
    );
    assert_success(&resumed);
    let after = std::fs::read_to_string(s.path("after.jsonl")).unwrap();
    assert!(
        format!("{before}{after}") == expected,
        "output before the savepoint + after it != an uninterrupted run"
    );
}

#[test]
fn sigint_and_sigterm_stop_after_a_final_checkpoint_and_the_next_run_continues() {
    let pipeline = format!("{SOURCE}{WINDOWED}");
    let expected = reference(&pipeline);
    // The exit code says which signal stopped the run: 128 + the signal's number.
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let s = Scratch::new();
        let file = s.write("pipeline.toml", &pipeline);
        let mut child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
        std::thread::sleep(Duration::from_millis(800));
        let status = signal_and_wait(&mut child, signal);
        assert_eq!(
            status.code(),
            Some(code),
            "{signal}: a clean stop, not a finished run"
        );
        let partial = std::fs::read_to_string(s.path("out.jsonl")).unwrap();
        assert!(
            !partial.is_empty() && partial.len() < expected.len() && expected.starts_with(&partial),
            "{signal}"
        );
        assert!(
            !s.path("out.jsonl.eddy-pending").exists(),
            "{signal}: everything produced before the stop was committed"
        );
        assert_success(&s.eddy("run", &pipeline));
        assert!(std::fs::read_to_string(s.path("out.jsonl")).unwrap() == expected);
    }
}

/// Sends `signal` (`-INT`, `-TERM`) to the job and waits for it to end.
fn signal_and_wait(child: &mut Job, signal: &str) -> std::process::ExitStatus {
    let signalled = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    child.wait().unwrap()
}

#[test]
fn a_signal_while_the_job_starts_stops_it_cleanly() {
    // The admin endpoint is bound after the signals are listened for and before the
    // pipeline is built, and with an empty compiled-plugin cache the build compiles the
    // plugin: a signal sent once the endpoint answers comes during the build, and must
    // stop the job as one sent later does, not kill it.
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let s = Scratch::new();
        let admin = free_admin_address();
        let pipeline = format!("{SOURCE}{}[admin]\nlisten = \"{admin}\"\n", passthrough());
        let file = s.write("pipeline.toml", &pipeline);
        let log = s.path("stderr.log");
        let mut child = Job::start(
            eddy_command()
                .args(["run", file.to_str().unwrap(), "--quiet"])
                .env("EDDY_CACHE_DIR", s.path("empty-cache"))
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        );
        wait_for_admin(&admin);
        let status = signal_and_wait(&mut child, signal);
        let said = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(code), "{signal}: {status:?}: {said}");
        // Acknowledged when it came (during the build, or after it on a fast machine).
        assert!(said.contains(&format!("SIG{}", &signal[1..])), "{said}");
    }
}

#[test]
fn a_second_job_on_the_same_checkpoint_directory_is_refused_and_the_first_goes_on() {
    let pipeline = format!("{SOURCE}{WINDOWED}");
    let expected = reference(&pipeline);
    let s = Scratch::new();
    let file = s.write("pipeline.toml", &pipeline);
    let mut first = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    // Output committed: the first job has claimed the directory and is running.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(s.path("out.jsonl")).map_or(true, |m| m.len() == 0) {
        assert!(
            Instant::now() < deadline,
            "the first job committed nothing in 20 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = s.eddy("run", &pipeline);
    assert_failure_says(
        &second,
        &[
            "is in use by another running job",
            &format!("pid {}", first.id()),
        ],
    );
    assert!(first.wait().unwrap().success());
    assert!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap() == expected,
        "the first job's output is whole"
    );
}

#[test]
fn with_a_token_only_the_operator_takes_savepoints_and_stops_the_job() {
    let pipeline = format!("{SOURCE}{WINDOWED}").replace("count = 40000", "count = 400000");
    let s = Scratch::new();
    s.write("token", "s3cret\n");
    let admin = free_admin_address();
    let running = format!("{pipeline}[admin]\nlisten = \"{admin}\"\ntoken_file = \"token\"\n");
    let file = s.write("pipeline.toml", &running);
    let mut child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    wait_for_admin(&admin);

    // Reading needs no token.
    assert_success(&eddy(&["status", "--admin", &admin], None));
    // Changing the job does.
    let sp = s.path("sp");
    let refused = eddy(
        &["savepoint", "--admin", &admin, sp.to_str().unwrap()],
        None,
    );
    assert_failure_says(&refused, &["401", "needs its token", "--token-file"]);
    s.write("wrong", "guess");
    let wrong = eddy(
        &[
            "savepoint",
            "--admin",
            &admin,
            "--token-file",
            s.path("wrong").to_str().unwrap(),
            sp.to_str().unwrap(),
        ],
        None,
    );
    assert_failure_says(&wrong, &["401"]);
    assert!(!sp.exists());
    let token = s.path("token");
    let taken = eddy(
        &[
            "savepoint",
            "--admin",
            &admin,
            "--token-file",
            token.to_str().unwrap(),
            sp.to_str().unwrap(),
        ],
        None,
    );
    assert_success(&taken);
    assert!(sp.join("savepoint.eddy").exists());
    // The token file may also come from the environment.
    let stopped = eddy_command()
        .args(["stop", "--admin", &admin])
        .env("EDDY_ADMIN_TOKEN_FILE", &token)
        .output()
        .unwrap();
    assert_success(&stopped);
    assert_eq!(child.wait().unwrap().code(), Some(3));
}
