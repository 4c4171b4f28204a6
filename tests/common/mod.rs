//! Helpers shared by the end-to-end tests: scratch directories and running `eddy`.
#![allow(dead_code)]

use std::io::Write;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub mod kafka;

/// A scratch directory with a pipeline file in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `eddy <args...>` with the pipeline file `pipeline.toml` holding `pipeline`.
    pub fn eddy(&self, command: &str, pipeline: &str) -> Output {
        let file = self.write("pipeline.toml", pipeline);
        eddy(&[command, file.to_str().unwrap()], None)
    }

    pub fn lines(&self, name: &str) -> Vec<Value> {
        read_lines(&self.path(name))
    }
}

pub fn eddy(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = eddy_command()
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start eddy");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
pub fn assert_stderr_contains(output: &Output, needle: &str) {
    let err = stderr(output);
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(output.status.success(), "eddy failed: {}", stderr(output));
}

#[track_caller]
pub fn assert_failure_says(output: &Output, needles: &[&str]) {
    assert!(
        !output.status.success(),
        "eddy should have failed: {}",
        stderr(output)
    );
    let err = stderr(output);
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

/// The `eddy` binary, with the test's compiled-plugin cache.
pub fn eddy_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.env(
        "EDDY_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("eddy-cache"),
    );
    command
}

/// Starts `eddy <args>` in the background, its output discarded.
pub fn spawn(args: &[&str]) -> Job {
    Job::start(
        eddy_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// `eddy savepoint --admin ADMIN DIR`.
pub fn savepoint_into(admin: &str, dir: &Path) -> Output {
    eddy(
        &["savepoint", "--admin", admin, dir.to_str().unwrap()],
        None,
    )
}

/// `eddy stop --admin ADMIN --savepoint DIR`.
pub fn stop_with_savepoint(admin: &str, dir: &Path) -> Output {
    eddy(
        &[
            "stop",
            "--admin",
            admin,
            "--savepoint",
            dir.to_str().unwrap(),
        ],
        None,
    )
}

/// `eddy <args...>` in the background, its log (stdout and stderr) written to `log`.
pub fn spawn_logged(args: &[&str], log: &Path) -> Job {
    let file = std::fs::File::create(log).unwrap();
    Job::start(
        eddy_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file),
    )
}

/// An `eddy` process a test started, killed when dropped: a test that fails midway
/// leaves no process behind to load the machine.
pub struct Job(Option<Child>);

impl Job {
    /// Starts `command`; the process is killed if the test ends before it does.
    pub fn start(command: &mut Command) -> Self {
        Self(Some(command.spawn().expect("cannot start eddy")))
    }

    /// Waits for the process to end, with what it wrote to piped outputs.
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        self.0
            .take()
            .expect("held until dropped")
            .wait_with_output()
    }
}

impl Deref for Job {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.0.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Job {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `check`; if it fails, prints the logs in `dir` named `*.log` before failing.
pub fn with_logs_on_failure(dir: &Path, check: impl FnOnce() + std::panic::UnwindSafe) {
    if let Err(panic) = std::panic::catch_unwind(check) {
        let mut logs: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!("==== {} ====\n{text}", log.display());
        }
        std::panic::resume_unwind(panic);
    }
}

/// A loopback port that is free now, for a server a test starts (a job's admin endpoint,
/// a broker, PostgreSQL). It lies below the kernel's ephemeral range (32768 and up on
/// Linux), which port 0 binds and outgoing connections draw from: the Kafka clients of
/// tests running alongside cannot take it between this check and the server's bind, and
/// no two calls of one test process give the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const PORTS: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test processes of one run start from far-apart places.
    let start = std::process::id().wrapping_mul(7919);
    loop {
        let port =
            (FIRST + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % PORTS) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A free loopback address for a job's admin endpoint (see [`free_port`]).
pub fn free_admin_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A plain HTTP/1.1 GET of `path` on `addr`: the whole answer, status line included.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Waits until a job's admin endpoint answers, or panics.
pub fn wait_for_admin(admin: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job's admin endpoint never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
