//! Eddy against tansu, a second Kafka-compatible broker: a separate implementation of the
//! protocol (Rust, crates.io), run as its own process, where `tests/kafka.rs` uses
//! librdkafka's mock cluster. The same pipelines, SIGKILLs and checks as there: what the
//! development broker lets pass but a real broker would not (or the reverse) shows here.
//!
//! tansu is built once into `~/.cache/eddy/tools/tansu-<version>` (about 10 minutes on 2
//! cores, outside the clone) and reused by every later run. It is built at `opt-level = 1`:
//! the full release optimisation took 12.5 minutes on the same machine and bought nothing
//! these tests can see (they pass in the same time); at `opt-level = 0` the broker is too
//! slow for the tests' produce timeouts. It has no transactions, so
//! `transactional` is not run here (see docs/kafka.md).

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;

/// The tansu release the suite runs against.
const TANSU_VERSION: &str = "0.6.0";

/// The tansu binary, built first if this machine has none yet.
fn tansu_binary() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let tools = home.join(".cache/eddy/tools");
    let root = tools.join(format!("tansu-{TANSU_VERSION}"));
    let binary = root.join("bin/tansu");
    if binary.exists() {
        return binary;
    }
    std::fs::create_dir_all(&tools).unwrap();
    // One build at a time, whichever test process gets here first.
    let lock = std::fs::File::create(tools.join("tansu.lock")).unwrap();
    lock.lock().unwrap();
    if binary.exists() {
        return binary;
    }
    eprintln!(
        "building tansu {TANSU_VERSION} into {} (once per machine: about 10 minutes on 2 cores)",
        root.display()
    );
    let target = tools.join("tansu-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "tansu", "--locked", "--features", "dynostore"])
        .args(["--version", TANSU_VERSION, "--root"])
        .arg(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .status()
        .expect("cannot run cargo to build tansu");
    assert!(status.success(), "building tansu failed: {status}");
    // The binary is what is kept; its build directory is gigabytes.
    let _ = std::fs::remove_dir_all(&target);
    binary
}

/// A tansu broker on a free loopback port, keeping its data in memory; stopped when
/// dropped.
struct Tansu {
    binary: PathBuf,
    port: u16,
    process: Child,
}

impl Tansu {
    fn start() -> Self {
        let binary = tansu_binary();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let process = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
            ])
            .arg(&url)
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            binary,
            port,
            process,
        }
    }
}

impl Cluster for Tansu {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn topic(&self, name: &str, partitions: i32) {
        let output = Command::new(&self.binary)
            .args(["topic", "create", name, "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string()])
            .output()
            .unwrap();
        assert_success(&output);
    }

    /// One record per produce batch. tansu 0.6 handles offsets per batch: a fetch from
    /// an offset inside a batch starts at the next batch (skipping the rest of it), and
    /// the latest offset it reports is the last batch's first offset + 1. A job resuming
    /// from a checkpoint mid-batch would lose records to the broker, so the input is made
    /// of one-record batches (see docs/kafka.md).
    fn input_producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("batch.num.messages", "1")
            .create()
            .unwrap()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The pinned tansu release is built (once per machine) and runs. `.ci/run` starts this
/// test on its own, in the background, as the suite begins: the build then overlaps the
/// other tests, and the tests below wait for it on the build lock.
#[test]
fn the_pinned_tansu_release_runs() {
    let output = Command::new(tansu_binary())
        .arg("--version")
        .output()
        .expect("cannot run tansu");
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tansu --version failed: {output:?}"
    );
    assert!(
        version.contains(TANSU_VERSION),
        "expected tansu {TANSU_VERSION}, got {version}"
    );
}

#[test]
fn deduplicated_output_survives_sigkill_on_tansu() {
    let setup = Setup::on(Tansu::start(), "deduplicated");
    let kills = setup.kill_at_random_moments(5, 6);
    assert!(
        kills >= 2,
        "the job ended before it could be killed ({kills} kills)"
    );
    assert_success(&eddy(&["run", setup.file()], None));
    setup.assert_exactly_the_reference(kills);
}

#[test]
fn a_rolling_restart_of_three_processes_on_tansu_reads_each_record_once() {
    // tansu 0.6 never expires the session of a member that died (a SIGKILLed member keeps
    // its partitions), so the member here leaves as a rolling restart does: SIGTERM.
    replace_one_of(&Tansu::start(), 3, 1, Stop::Terminate);
}
