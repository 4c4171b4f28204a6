//! Workers: a pipeline run as several copies, each owning a part of the source's
//! partitions with its own plugin instances, windows, keyed state and checkpoints (the
//! Kafka Streams model: the partition is the unit of parallelism and of state).
//!
//! - A streaming Kafka source runs one **task per partition**: each worker is a member of
//!   the consumer group, and the group protocol decides which partitions it holds, whether
//!   the members are threads of one process (`parallelism = N`) or separate processes.
//!   Each task keeps its state in `<checkpoint dir>/tasks/<topic>-<partition>`, which every
//!   member reaches (the shared checkpoint store), so a partition moves between members
//!   with its state ([`group`]).
//! - The generator with `parallelism = N` runs N workers, worker `i` emitting its share of
//!   the sequence and checkpointing in `<checkpoint dir>/tasks/worker-<i>-of-<N>`.
//!
//! - Every task is on the process's [`TaskBoard`], through which the admin endpoint
//!   reaches them all: status, metrics, hot swap (every task switches, or none),
//!   savepoints (each task's in `<savepoint>/tasks/<task>`), stop.
//! - `--from-savepoint` seeds the checkpoint store from such a savepoint, once ([`seed`]).
//!
//! Invariants: a partition's state is held by one task at a time (its directory is locked
//! while a task holds it); a task gives its partition up only after a final checkpoint.

mod board;
mod group;
mod seed;

pub use board::TaskBoard;
pub use seed::task_dir;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::config::{PipelineConfig, SinkConfig, SourceConfig};
use crate::pipeline::{Pipeline, RunOptions, RunSummary};
use crate::plugin::PluginRuntime;

/// Whether `config` runs as workers rather than one pipeline: a streaming Kafka source
/// (partition tasks in the consumer group), or `parallelism` above 1.
pub fn runs_as_workers(config: &PipelineConfig) -> bool {
    config.workers() > 1 || matches!(&config.source, SourceConfig::Kafka(k) if !k.bounded)
}

/// Checks what workers need of a pipeline: a source with partitions, and sinks they can
/// share.
pub fn check(config: &PipelineConfig) -> Result<()> {
    if !runs_as_workers(config) {
        return Ok(());
    }
    match &config.source {
        SourceConfig::Kafka(_) | SourceConfig::Generator(_) => {}
        _ => bail!(
            "parallelism = {} needs a source with partitions to split (kafka or generator); \
             a file or stdin is read by one worker",
            config.workers()
        ),
    }
    if let Some(path) = config.sinks().find_map(|(_, sink)| sink.file()) {
        bail!(
            "sink file {} cannot be shared by partition tasks or workers; write to Kafka, \
             stdout or null, or read a bounded source with parallelism = 1",
            path.display()
        );
    }
    Ok(())
}

/// Runs the workers until their sources end or `stop` is set; returns their summed
/// summary.
pub fn run(
    config: &PipelineConfig,
    runtime: &Arc<PluginRuntime>,
    options: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunSummary> {
    let unserved = TaskBoard::new(config, Arc::new(AtomicBool::new(false)));
    run_on_board(config, runtime, options, stop, &unserved)
}

/// Runs the workers as [`run`] does, each task on `board` (which an admin endpoint
/// serves).
pub fn run_on_board(
    config: &PipelineConfig,
    runtime: &Arc<PluginRuntime>,
    options: &RunOptions,
    stop: &AtomicBool,
    board: &Arc<TaskBoard>,
) -> Result<RunSummary> {
    check(config)?;
    // Tasks resume from the checkpoint store, which a savepoint seeds (once).
    let mut options = options.clone();
    if let Some(savepoint) = options.from_savepoint.take() {
        seed::seed_from_savepoint(config, &savepoint)?;
    }
    let options = &options;
    match &config.source {
        SourceConfig::Kafka(kafka) => group::run(config, kafka, runtime, options, stop, board),
        _ => run_shares(config, runtime, options, stop, board),
    }
}

/// The generator split N ways, each share a pipeline on its own thread.
fn run_shares(
    config: &PipelineConfig,
    runtime: &Arc<PluginRuntime>,
    options: &RunOptions,
    stop: &AtomicBool,
    board: &TaskBoard,
) -> Result<RunSummary> {
    let n = config.workers();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n)
            .map(|i| {
                let name = format!("worker-{i}-of-{n}");
                let mut share = task_config(config, &name);
                if let SourceConfig::Generator(g) = &mut share.source {
                    g.share = (u64::from(i), u64::from(n));
                }
                std::thread::Builder::new()
                    .name(format!("eddy-worker-{i}"))
                    .spawn_scoped(scope, move || {
                        let mut pipeline = Pipeline::build(&share, runtime, options)?;
                        let requests = board.join(&name, &share, &pipeline);
                        let summary = pipeline.run(stop, Some(&requests), |_| {});
                        board.leave(&name);
                        summary
                    })
                    .context("cannot start a worker thread")
            })
            .collect::<Result<_>>()?;
        let mut total: Option<RunSummary> = None;
        for worker in workers {
            let summary = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            match &mut total {
                Some(total) => total.absorb(summary),
                None => total = Some(summary),
            }
        }
        total.context("parallelism must be at least 1")
    })
}

/// The configuration of one task or worker named `name`: its own checkpoint directory
/// under the job's, and its name in the identities a deduplicating Kafka sink writes.
fn task_config(config: &PipelineConfig, name: &str) -> PipelineConfig {
    let mut task = config.clone();
    if let Some(checkpoint) = &mut task.checkpoint {
        checkpoint.dir = task_dir(&checkpoint.dir, name);
    }
    for sink in [
        Some(&mut task.sink),
        task.dead_letter.as_mut(),
        task.late.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        match sink {
            SinkConfig::Kafka(k) => k.identity_scope = Some(name.to_owned()),
            SinkConfig::Postgres(p) => p.identity_scope = Some(name.to_owned()),
            _ => {}
        }
    }
    task
}
