//! The `eddy` command line: parses arguments and calls the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use eddy::config::PipelineConfig;
use eddy::pipeline::{self, Metrics, Pipeline, RunSummary};
use eddy::plugin::{CompiledCache, PluginRuntime};

/// Eddy: a stream processor that runs your logic as WebAssembly components.
#[derive(Parser)]
#[command(name = "eddy", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a pipeline until its source is exhausted (or Ctrl-C), then prints a summary.
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// No live progress and no summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Checks a pipeline file: parses it, loads side inputs, and loads and type-checks
    /// every plugin. Nothing runs.
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { pipeline, quiet } => run(&pipeline, quiet),
        Command::Validate { pipeline } => validate(&pipeline),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(path: &Path) -> Result<()> {
    let config = PipelineConfig::load(path)?;
    let runtime = PluginRuntime::new(CompiledCache::from_env())?;
    let loaded = pipeline::load_plugins(&config, &runtime, false)?;
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

fn run(path: &Path, quiet: bool) -> Result<()> {
    let config = PipelineConfig::load(path)?;
    let runtime = PluginRuntime::new(CompiledCache::from_env())?;
    let mut pipeline = Pipeline::build(&config, &runtime)?;
    let stop = Arc::new(AtomicBool::new(false));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = tokio.block_on(async {
        let worker_stop = stop.clone();
        let mut worker = tokio::task::spawn_blocking(move || {
            let mut progress = Progress::new(quiet);
            let summary = pipeline.run(&worker_stop, |m| progress.update(m));
            progress.finish();
            summary
        });
        tokio::select! {
            done = &mut worker => done,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("eddy: stopping after the current batch (Ctrl-C)");
                stop.store(true, Ordering::Relaxed);
                worker.await
            }
        }
    })??;
    if !quiet {
        eprintln!("eddy: {summary}");
        print_stages(&summary);
    }
    Ok(())
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

    fn update(&mut self, m: &Metrics) {
        let Some(bar) = &self.bar else { return };
        if self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
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
