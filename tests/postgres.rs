//! The PostgreSQL sink against a real PostgreSQL server, started on loopback for each
//! test from Debian's packages (installed with apt-get when missing): window results
//! upserted and events inserted, with SIGKILLs, must leave the table exactly as an
//! uninterrupted run's output.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use eddy_example_artifacts::FILTER_COMPONENT;

/// A PostgreSQL server in a scratch directory, stopped when dropped.
struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Where Debian puts PostgreSQL's programs, installing the package if it is missing.
fn postgres_bin() -> PathBuf {
    let find = || {
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .find(|bin| bin.join("initdb").exists())
    };
    if let Some(bin) = find() {
        return bin;
    }
    // One installer at a time across test processes.
    let lock =
        std::fs::File::create(std::env::temp_dir().join("eddy-postgres-install.lock")).unwrap();
    lock.lock().unwrap();
    if let Some(bin) = find() {
        return bin;
    }
    let root = running_as_root();
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        command.status()
    };
    let installed = apt(&["install", "-y", "--no-install-recommends", "postgresql"])
        .is_ok_and(|s| s.success())
        || (apt(&["update"]).is_ok_and(|s| s.success())
            && apt(&["install", "-y", "--no-install-recommends", "postgresql"])
                .is_ok_and(|s| s.success()));
    assert!(
        installed,
        "PostgreSQL is not installed and apt-get could not install it; run `apt-get install postgresql`"
    );
    find().expect("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")
}

/// Whether the tests run as root (PostgreSQL then runs as the `postgres` user).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl Server {
    fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let root = running_as_root();
        let run = |program: &str, args: &[&str]| {
            let program = bin.join(program);
            let mut command = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&program);
                c
            } else {
                Command::new(&program)
            };
            let output = command.args(args).output().unwrap();
            assert!(
                output.status.success(),
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        if root {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let port = free_port();
        let data_arg = data.to_str().unwrap();
        run(
            "initdb",
            &["-D", data_arg, "-U", "eddy", "--auth=trust", "--no-sync"],
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_prepared_transactions=32 -c fsync=off",
            dir.path().display()
        );
        run(
            "pg_ctl",
            &[
                "-D",
                data_arg,
                "-o",
                &options,
                "-w",
                "-s",
                "-l",
                &format!("{data_arg}/../log"),
                "start",
            ],
        );
        Self {
            bin,
            data,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("postgresql://eddy@127.0.0.1:{}/postgres", self.port)
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        let _ = command
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-s",
                "stop",
            ])
            .status();
    }
}

/// A bounded, rate-limited generator (about 2 s) checkpointing every 30 ms.
const SOURCE: &str = r#"
[source]
kind = "generator"
count = 30000
rate = 15000
keys = 50
partitions = 2
seed = 5

[checkpoint]
dir = "state"
interval = "30ms"
"#;

const WINDOW: &str = r#"
[window]
kind = "tumbling"
size = "100ms"
aggregate = "sum"
field = "amount"
"#;

fn filter() -> String {
    format!(
        "[[plugin]]\nname = \"some\"\npath = \"{FILTER_COMPONENT}\"\nconfig = {{ field = \"amount\", op = \">=\", value = \"20\" }}\n"
    )
}

/// Runs `pipeline` (whose sink is appended) SIGKILLing it at moments from a fixed
/// sequence until it finishes; returns how often it was killed.
fn run_with_kills(s: &Scratch, pipeline: &str) -> usize {
    let file = s.write("pipeline.toml", pipeline);
    let file = file.to_str().unwrap();
    let mut kills = 0;
    for pause in [300u64, 450, 250, 600, 350, 500, 400, 700] {
        let mut child = spawn(&["run", file, "--quiet"]);
        std::thread::sleep(Duration::from_millis(pause));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert_success(&eddy(&["run", file], None));
    kills
}

/// The same pipeline into a file, uninterrupted: the rows the table must end with.
fn reference(body: &str) -> Vec<serde_json::Value> {
    let s = Scratch::new();
    assert_success(&s.eddy(
        "run",
        &format!("{SOURCE}{body}[sink]\nkind = \"file\"\npath = \"out.jsonl\"\n"),
    ));
    s.lines("out.jsonl")
}

#[test]
fn window_results_upserted_under_sigkill_equal_an_uninterrupted_run() {
    let server = Server::start();
    server
        .client()
        .batch_execute(
            "CREATE TABLE sums (key text, window_start bigint, window_end bigint, sum double precision, \
             PRIMARY KEY (key, window_start))",
        )
        .unwrap();
    let expected = reference(WINDOW);
    let s = Scratch::new();
    let sink = format!(
        "[sink]\nkind = \"postgres\"\nurl = \"{}\"\ntable = \"sums\"\nupsert = [\"key\", \"window_start\"]\n",
        server.url()
    );
    let kills = run_with_kills(&s, &format!("{SOURCE}{WINDOW}{sink}"));
    assert!(
        kills >= 3,
        "the job ended before it could be killed often ({kills} kills)"
    );
    // Upserts keep the last firing of each window, as the file's last line per window.
    let mut last = std::collections::BTreeMap::new();
    for v in &expected {
        last.insert(
            (
                v["key"].as_str().unwrap().to_owned(),
                v["window_start"].as_i64().unwrap(),
            ),
            v["sum"].as_f64().unwrap(),
        );
    }
    let rows: std::collections::BTreeMap<(String, i64), f64> = server
        .client()
        .query("SELECT key, window_start, sum FROM sums", &[])
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    assert_eq!(rows.len(), last.len());
    for (window, sum) in &last {
        let got = rows[window];
        assert!((got - sum).abs() < 1e-6, "{window:?}: {got} != {sum}");
    }
    let epochs: i64 = server
        .client()
        .query_one("SELECT count(*) FROM eddy_sink_epochs", &[])
        .unwrap()
        .get(0);
    assert_eq!(epochs, 1, "the sink records its last committed epoch");
}

#[test]
fn events_inserted_under_sigkill_are_there_exactly_once() {
    let server = Server::start();
    server
        .client()
        .batch_execute(
            "CREATE TABLE payments (seq bigint, ts bigint, \"user\" text, card text, amount numeric, country text)",
        )
        .unwrap();
    let expected = reference(&filter());
    let s = Scratch::new();
    let sink = format!(
        "[sink]\nkind = \"postgres\"\nurl = \"{}\"\ntable = \"payments\"\n",
        server.url()
    );
    let kills = run_with_kills(&s, &format!("{SOURCE}{}{sink}", filter()));
    assert!(
        kills >= 3,
        "the job ended before it could be killed often ({kills} kills)"
    );
    let mut client = server.client();
    let seqs: Vec<i64> = client
        .query("SELECT seq FROM payments ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut wanted: Vec<i64> = expected
        .iter()
        .map(|v| v["seq"].as_i64().unwrap())
        .collect();
    wanted.sort_unstable();
    assert_eq!(seqs, wanted, "every event once, none twice");
    let left: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no prepared transaction is left behind");
}

#[test]
fn a_missing_table_or_server_is_a_clear_error() {
    let server = Server::start();
    let s = Scratch::new();
    let sink = |url: &str| {
        format!("[source]\nkind = \"generator\"\ncount = 10\n[sink]\nkind = \"postgres\"\nurl = \"{url}\"\ntable = \"nowhere\"\n")
    };
    assert_failure_says(
        &s.eddy("run", &sink(&server.url())),
        &["no table \"nowhere\""],
    );
    assert_failure_says(
        &s.eddy("run", &sink("postgresql://eddy:secret@127.0.0.1:1/db")),
        &[
            "cannot connect to PostgreSQL",
            "postgresql://eddy@127.0.0.1:1/db",
        ],
    );
    let output = s.eddy("run", &sink("postgresql://eddy:secret@127.0.0.1:1/db"));
    assert!(
        !stderr(&output).contains("secret"),
        "the password is not printed"
    );
}
