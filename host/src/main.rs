//! The `eddy` command line: parses arguments and calls the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use eddy::clock::now_millis;
use eddy::config::{PipelineConfig, DEFAULT_ADMIN};
use eddy::metrics::JobMetrics;
use eddy::pipeline::{self, Pipeline, RunOptions, RunSummary};
use eddy::plugin::{CompiledCache, PluginRuntime, PluginStage, WasmAggregate};
use eddy::{admin, checkpoint};

mod plugin_command;

/// Eddy: a stream processor that runs your logic as WebAssembly components.
#[derive(Parser)]
#[command(name = "eddy", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a pipeline until its source is exhausted (or Ctrl-C, or `eddy stop`). With
    /// [checkpoint], it resumes from the newest good checkpoint.
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Start from this savepoint (a directory or file) instead of the checkpoints.
        #[arg(long, value_name = "DIR")]
        from_savepoint: Option<PathBuf>,
        /// Start from the beginning: remove existing checkpoints, replace sink output.
        #[arg(long)]
        fresh: bool,
        /// No live progress and no summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Checks a pipeline file: parses it, loads side inputs, loads and type-checks every
    /// plugin and calls its `init` with its config. No event is read.
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
    },
    /// Prints the running job's status as JSON.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Takes a savepoint of the running job and prints where it is.
    Savepoint {
        #[command(flatten)]
        admin: AdminArgs,
        /// The savepoint directory (default: ./savepoint-<time>).
        dir: Option<PathBuf>,
    },
    /// Stops the running job cleanly after its current batch.
    Stop {
        #[command(flatten)]
        admin: AdminArgs,
        /// Take a final savepoint into this directory first.
        #[arg(long, value_name = "DIR")]
        savepoint: Option<PathBuf>,
    },
    /// Hot-swaps plugin stage STAGE to a new component and/or config while the job runs.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
        /// The stage (its `[[plugin]] name`).
        stage: String,
        /// The new component (absent: the stage's current file, read again).
        path: Option<PathBuf>,
        /// A config key to set on top of the running config (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        config: Vec<(String, String)>,
        /// Go back to the version before the running one (its component and config).
        #[arg(long, conflicts_with_all = ["path", "config", "shadow", "promote", "unshadow"])]
        rollback: bool,
        /// Run the new version beside the live one, comparing outputs without emitting
        /// them (`eddy status` shows the differences).
        #[arg(long, conflicts_with_all = ["promote", "unshadow"])]
        shadow: bool,
        /// Swap the stage's shadow in.
        #[arg(long, conflicts_with_all = ["path", "config", "unshadow"])]
        promote: bool,
        /// Drop the stage's shadow.
        #[arg(long, conflicts_with_all = ["path", "config"])]
        unshadow: bool,
        /// The admin endpoint of another process of the job's consumer group (repeatable):
        /// each process is reloaded in turn, and if one refuses, those that had switched
        /// go back.
        #[arg(long, value_name = "ADDR")]
        also: Vec<String>,
    },
    /// Prints what a checkpoint or savepoint holds (a file, a savepoint directory, or a
    /// checkpoint directory: its newest good checkpoint).
    Inspect {
        /// The checkpoint or savepoint.
        path: PathBuf,
    },
    /// Tools for plugin authors: test a plugin against fixtures, start a project.
    Plugin {
        #[command(subcommand)]
        command: plugin_command::PluginCommand,
    },
}

fn main() -> ExitCode {
    eddy::allocator::keep_large_blocks_mapped();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            pipeline,
            from_savepoint,
            fresh,
            quiet,
        } => run(
            &pipeline,
            RunOptions {
                fresh,
                from_savepoint,
                ..RunOptions::default()
            },
            quiet,
        )
        .map(RunEnd::exit_code),
        Command::Validate { pipeline } => validate(&pipeline).map(|()| ExitCode::SUCCESS),
        Command::Status { admin } => {
            print_json(admin.request("GET", "/status", None)).map(|()| ExitCode::SUCCESS)
        }
        Command::Savepoint { admin, dir } => savepoint(&admin, dir).map(|()| ExitCode::SUCCESS),
        Command::Stop { admin, savepoint } => stop(&admin, savepoint).map(|()| ExitCode::SUCCESS),
        Command::Inspect { path } => inspect(&path).map(|()| ExitCode::SUCCESS),
        Command::Plugin { command } => plugin_command::run(command),
        Command::Reload {
            admin,
            stage,
            path,
            config,
            rollback,
            shadow,
            promote,
            unshadow,
            also,
        } => {
            let mode = serde_json::json!({
                "rollback": rollback, "shadow": shadow, "promote": promote, "unshadow": unshadow,
            });
            let processes: Vec<AdminArgs> = std::iter::once(admin.clone())
                .chain(also.into_iter().map(|addr| AdminArgs {
                    admin: addr,
                    token_file: admin.token_file.clone(),
                }))
                .collect();
            reload(&processes, &stage, path, config, mode).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(value: Result<serde_json::Value>) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&value?)?);
    Ok(())
}

/// A path as the job (another process, maybe elsewhere) must see it: absolute.
fn absolute(path: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// How the operator commands reach a job's admin endpoint.
#[derive(clap::Args, Clone)]
struct AdminArgs {
    /// The job's admin endpoint.
    #[arg(long, default_value = DEFAULT_ADMIN)]
    admin: String,
    /// The file holding the job's admin token, for a job with `[admin] token_file`.
    #[arg(long, env = "EDDY_ADMIN_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl AdminArgs {
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let token = self
            .token_file
            .as_deref()
            .map(admin::read_token)
            .transpose()?;
        admin::request(&self.admin, token.as_deref(), method, path, body)
    }
}

fn savepoint(admin: &AdminArgs, dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(format!("savepoint-{}", now_millis())));
    let answer = admin.request(
        "POST",
        "/savepoint",
        Some(&serde_json::json!({ "dir": absolute(dir)? })),
    )?;
    println!("{}", answer["savepoint"].as_str().unwrap_or_default());
    print_task_savepoints(&answer);
    Ok(())
}

/// A job run as tasks answers with each task's savepoint: one line each.
fn print_task_savepoints(answer: &serde_json::Value) {
    for (task, file) in answer["tasks"].as_object().into_iter().flatten() {
        println!("  task {task}: {}", file.as_str().unwrap_or_default());
    }
}

fn stop(admin: &AdminArgs, savepoint: Option<PathBuf>) -> Result<()> {
    let savepoint = savepoint.map(absolute).transpose()?;
    let answer = admin.request(
        "POST",
        "/stop",
        Some(&serde_json::json!({ "savepoint": savepoint })),
    )?;
    match answer["savepoint"].as_str() {
        Some(path) => println!("stopped; savepoint {path}"),
        None => println!("stopped"),
    }
    print_task_savepoints(&answer);
    Ok(())
}

/// Parses `KEY=VALUE`.
fn key_value(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

/// Reloads stage `stage` in each of `processes` in turn (one process unless `--also`
/// names others of its group). If one refuses, the processes that had switched are
/// asked to undo it (a swap or promotion is rolled back, a shadow dropped), and the
/// error names the process that refused.
fn reload(
    processes: &[AdminArgs],
    stage: &str,
    path: Option<PathBuf>,
    config: Vec<(String, String)>,
    mode: serde_json::Value,
) -> Result<()> {
    let path = path.map(absolute).transpose()?;
    let config: serde_json::Map<String, serde_json::Value> =
        config.into_iter().map(|(k, v)| (k, v.into())).collect();
    let undo = if mode["shadow"] == true {
        Some(serde_json::json!({ "stage": stage, "unshadow": true }))
    } else if mode["rollback"] == true || mode["unshadow"] == true {
        None
    } else {
        Some(serde_json::json!({ "stage": stage, "rollback": true }))
    };
    let body = {
        let mut body = mode;
        body["stage"] = stage.into();
        body["path"] = serde_json::json!(path);
        body["config"] = config.into();
        body
    };
    for (done, process) in processes.iter().enumerate() {
        let refused = match process.request("POST", "/reload", Some(&body)) {
            Ok(answer) => {
                if processes.len() > 1 {
                    println!("process {}:", process.admin);
                }
                print_reload(stage, &body, &answer);
                continue;
            }
            Err(e) => e,
        };
        let switched = &processes[..done];
        if switched.is_empty() {
            return Err(refused);
        }
        let Some(undo) = &undo else {
            bail!(
                "{} refused: {refused:#}; the processes before it ({}) did it already",
                process.admin,
                addresses(switched)
            );
        };
        let undone: Vec<String> = switched
            .iter()
            .rev()
            .map(|p| match p.request("POST", "/reload", Some(undo)) {
                Ok(_) => format!("{} went back", p.admin),
                Err(e) => format!("{} did not go back: {e:#}", p.admin),
            })
            .collect();
        bail!(
            "{} refused: {refused:#}; {}",
            process.admin,
            undone.join("; ")
        );
    }
    Ok(())
}

/// The endpoints' addresses, for messages.
fn addresses(processes: &[AdminArgs]) -> String {
    processes
        .iter()
        .map(|p| p.admin.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints what one process answered to a reload.
fn print_reload(stage: &str, request: &serde_json::Value, answer: &serde_json::Value) {
    let shadowing = request["shadow"] == true || request["unshadow"] == true;
    let version = answer["version"].as_str().unwrap_or_default();
    let version = &version[..12.min(version.len())];
    if shadowing {
        println!("stage `{stage}`: shadow version {version} (see `eddy status`)");
    } else if let Some(tasks) = answer["tasks"].as_array() {
        // A job run as tasks: every task switched.
        println!(
            "stage `{stage}` now runs version {version} in {} tasks (the longest pause {} µs)",
            tasks.len(),
            answer["pause_us"]
        );
        for task in tasks {
            println!(
                "  task {}: from record {} on (paused {} µs; checkpoint {})",
                task["task"].as_str().unwrap_or_default(),
                task["records_in"],
                task["pause_us"],
                task["checkpoint"]
            );
        }
    } else {
        println!(
            "stage `{stage}` now runs version {version} from record {} on (the stream paused {} µs; checkpoint {})",
            answer["records_in"], answer["pause_us"], answer["checkpoint"]
        );
    }
}

fn inspect(path: &Path) -> Result<()> {
    let (snapshot, file) = checkpoint::read_snapshot(path)?;
    let summary = serde_json::json!({
        "file": file,
        "id": snapshot.id,
        "kind": if snapshot.savepoint { "savepoint" } else { "checkpoint" },
        "format_version": checkpoint::FORMAT_VERSION,
        "base": snapshot.base,
        "created_ms": snapshot.created_ms,
        "sections": snapshot.sections.iter().map(|s| serde_json::json!({
            "name": s.name,
            "version": s.version,
            "bytes": s.size(),
            "entries": s.entries.len(),
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn validate(path: &Path) -> Result<()> {
    let config = PipelineConfig::load(path)?;
    let runtime = PluginRuntime::new(CompiledCache::from_env())?;
    let loaded = pipeline::load_plugins(&config, &runtime, false)?;
    // Each plugin is started as a run would start it, so a config its `init` refuses or
    // a side-input table it does not find is reported here, not at the run.
    for plugin in &loaded.stages {
        PluginStage::start(&runtime, plugin.clone(), loaded.side_inputs.clone())?;
    }
    if let Some(plugin) = &loaded.window_plugin {
        WasmAggregate::start(&runtime, plugin.clone(), loaded.side_inputs.clone())?;
    }
    println!("{}: ok", path.display());
    for plugin in loaded.stages.iter().chain(&loaded.window_plugin) {
        println!(
            "  plugin `{}`: {} world, {} (sha256 {})",
            plugin.config.name,
            plugin.world.name(),
            plugin.config.path.display(),
            plugin.hash
        );
    }
    for (name, _) in loaded.side_inputs.versions() {
        println!("  side input `{name}`: loaded");
    }
    Ok(())
}

/// How a run ended, as its exit code says (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// The source was exhausted and everything is committed: 0.
    Finished,
    /// Stopped by `eddy stop` (after a final checkpoint or savepoint): 3.
    Stopped,
    /// Stopped by SIGINT (Ctrl-C), after a final checkpoint: 130.
    Interrupted,
    /// Stopped by SIGTERM (a service manager), after a final checkpoint: 143.
    Terminated,
}

impl RunEnd {
    fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            RunEnd::Finished => 0,
            RunEnd::Stopped => 3,
            RunEnd::Interrupted => 130,
            RunEnd::Terminated => 143,
        })
    }
}

fn run(path: &Path, options: RunOptions, quiet: bool) -> Result<RunEnd> {
    let config = PipelineConfig::load(path)?;
    let runtime = Arc::new(PluginRuntime::new(CompiledCache::from_env())?);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Everything that can refuse to start comes before the pipeline is built, since
    // building it opens (and may truncate) the sinks.
    let token = config
        .admin
        .as_ref()
        .and_then(|a| a.token_file.as_deref())
        .map(admin::read_token)
        .transpose()?;
    // Signals are listened for from here on: one that comes while the pipeline is being
    // built stops it as soon as it is built, cleanly, rather than killing the process
    // half-way through opening its sinks and checkpoints.
    let (listener, mut signals) = tokio.block_on(async {
        let signals = StopSignals::listen()?;
        anyhow::Ok((bind_admin(&config).await?, signals))
    })?;
    let admin = |served| {
        let reloader = admin::Reloader::new(runtime.clone());
        listener.map(|l| serve_admin(l, served, token, reloader))
    };
    let stop = Arc::new(AtomicBool::new(false));
    if eddy::workers::runs_as_workers(&config) {
        let board = eddy::workers::TaskBoard::new(&config, stop.clone());
        let (summary, signal) = tokio.block_on(async {
            let admin = admin(admin::Served::Tasks(board.clone()));
            let (runtime, worker_stop) = (runtime.clone(), stop.clone());
            let workers = tokio::task::spawn_blocking(move || {
                eddy::workers::run_on_board(&config, &runtime, &options, &worker_stop, &board)
            });
            let ended = until_done_or_signal(workers, &mut signals, &stop).await;
            shut_down(admin).await;
            ended
        });
        return Ok(report(&summary??, signal, quiet));
    }
    let (pipeline, early) = build_minding_signals(&tokio, &mut signals, || {
        Pipeline::build(&config, &runtime, &options)
    });
    let mut pipeline = pipeline?;
    if early.is_some() {
        stop.store(true, Ordering::Relaxed);
    }
    let (summary, signal) = tokio.block_on(async {
        let (attached, requests) = admin::Attached::to(&pipeline, &config);
        let admin = admin(admin::Served::Pipeline(attached));
        let worker_stop = stop.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let mut progress = Progress::new(quiet);
            let summary = pipeline.run(&worker_stop, Some(&requests), |m| progress.update(m));
            progress.finish();
            summary
        });
        let ended = match early {
            Some(signal) => (worker.await, Some(signal)),
            None => until_done_or_signal(worker, &mut signals, &stop).await,
        };
        shut_down(admin).await;
        ended
    });
    Ok(report(&summary??, signal, quiet))
}

/// Stops an admin endpoint (giving it a moment to answer what it is answering).
async fn shut_down(
    admin: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
) {
    if let Some((shutdown, server)) = admin {
        let _ = shutdown.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
}

/// SIGINT and SIGTERM, each of which stops a run cleanly.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening (inside the async runtime); from then on neither signal kills
    /// the process, and one received is kept until it is waited for.
    fn listen() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    /// The next signal: its name and how it ends the run.
    async fn next(&mut self) -> (&'static str, RunEnd) {
        tokio::select! {
            _ = self.interrupt.recv() => ("SIGINT", RunEnd::Interrupted),
            _ = self.terminate.recv() => ("SIGTERM", RunEnd::Terminated),
        }
    }
}

/// Runs `build` (the pipeline's, which may compile plugins for seconds) on a thread of
/// its own while listening for signals: one that comes meanwhile is acknowledged at once
/// and returned, so the job stops as soon as it is built.
fn build_minding_signals<T: Send>(
    tokio: &tokio::runtime::Runtime,
    signals: &mut StopSignals,
    build: impl FnOnce() -> T + Send,
) -> (T, Option<RunEnd>) {
    std::thread::scope(|scope| {
        let (done, mut built) = tokio::sync::oneshot::channel();
        scope.spawn(move || {
            let _ = done.send(build());
        });
        tokio.block_on(async {
            let finished = "the build thread answers unless it panicked";
            let (name, end) = tokio::select! {
                result = &mut built => return (result.expect(finished), None),
                signal = signals.next() => signal,
            };
            eprintln!("eddy: {name} while starting: stopping as soon as the pipeline is built");
            (built.await.expect(finished), Some(end))
        })
    })
}

/// Waits for a run to end, or for SIGINT/SIGTERM, which set `stop` (the run then ends
/// after its current batches); returns the run's outcome and the signal that stopped it.
async fn until_done_or_signal(
    mut run: tokio::task::JoinHandle<Result<RunSummary>>,
    signals: &mut StopSignals,
    stop: &AtomicBool,
) -> (
    Result<Result<RunSummary>, tokio::task::JoinError>,
    Option<RunEnd>,
) {
    let signal = tokio::select! {
        done = &mut run => return (done, None),
        signal = signals.next() => signal,
    };
    eprintln!("eddy: stopping after the current batch ({})", signal.0);
    stop.store(true, Ordering::Relaxed);
    (run.await, Some(signal.1))
}

/// Prints a run's summary (unless `quiet`) and says how it ended.
fn report(summary: &RunSummary, signal: Option<RunEnd>, quiet: bool) -> RunEnd {
    if !quiet {
        eprintln!("eddy: {summary}");
        print_stages(summary);
    }
    match (summary.stopped, signal) {
        (false, _) => RunEnd::Finished,
        (true, Some(signal)) => signal,
        (true, None) => RunEnd::Stopped,
    }
}

/// Binds the admin endpoint's address. Without an [admin] section the default address
/// is tried and a busy port only warns; an address given in the pipeline file must be
/// free.
async fn bind_admin(config: &PipelineConfig) -> Result<Option<tokio::net::TcpListener>> {
    let (addr, required) = match &config.admin {
        Some(admin) => (admin.listen.as_str(), true),
        None => (DEFAULT_ADMIN, false),
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if !required => {
            tracing::warn!("admin endpoint not started: cannot listen on {addr} ({e}); set [admin] listen to another address");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| {
            format!("cannot listen on [admin] listen = {addr:?}; is another job using it?")
        }),
    }
}

/// Serves the admin endpoint on a bound listener; returns its shutdown switch and task.
fn serve_admin(
    listener: tokio::net::TcpListener,
    served: admin::Served,
    token: Option<String>,
    reloader: admin::Reloader,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("admin endpoint on http://{addr}");
    }
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let app = admin::router(served, token, reloader);
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = signal.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("admin endpoint failed: {e}");
        }
    });
    (shutdown, server)
}

fn print_stages(summary: &RunSummary) {
    for (name, hash, c) in &summary.stages {
        eprintln!(
            "  plugin `{name}` ({}): {} in, {} out, {} rejected, {} failed in {} failed batches",
            &hash[..12],
            c.events_in,
            c.events_out,
            c.rejected,
            c.failed,
            c.failed_batches
        );
    }
}

/// Live progress on a terminal: a one-line spinner updated a few times a second.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    fn update(&mut self, metrics: &JobMetrics) {
        let Some(bar) = &self.bar else { return };
        if self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let m = metrics.values();
        let rate = m.records_in as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} in · {} out · {} rejected · {} dead letters · {:.0} records/s",
            m.records_in, m.records_out, m.rejected, m.dead_letters, rate
        ));
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
