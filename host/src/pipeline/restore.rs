//! Where a run starts from: a savepoint, the newest good checkpoint, or the beginning —
//! and whether the state found fits the pipeline as it is now.

use anyhow::{bail, Result};

use super::{refuse_to_overwrite, Pipeline, RunOptions};
use crate::checkpoint::{self, CheckpointDir, Snapshot};
use crate::config::PipelineConfig;
use crate::sink;

/// Finds the snapshot a run resumes from, if any.
///
/// - `--from-savepoint DIR`: that savepoint (the checkpoint directory is cleared: the job
///   starts a new history from the savepoint).
/// - `--fresh`: none; existing checkpoints are removed.
/// - otherwise the newest checkpoint that reads back whole; unusable newer ones are
///   reported and skipped. When checkpoints exist but none is usable, or none exists but
///   a sink already has output, the run refuses to start rather than silently
///   reprocessing from the beginning.
pub(super) fn find_snapshot(
    config: &PipelineConfig,
    dir: Option<&CheckpointDir>,
    options: &RunOptions,
) -> Result<Option<Snapshot>> {
    if let Some(savepoint) = &options.from_savepoint {
        if options.fresh {
            bail!("--fresh and --from-savepoint cannot be used together");
        }
        let (snapshot, path) = checkpoint::read_snapshot(savepoint)?;
        tracing::info!("starting from {}", path.display());
        if let Some(dir) = dir {
            dir.clear()?;
        }
        return Ok(Some(snapshot));
    }
    let Some(dir) = dir else {
        return Ok(None);
    };
    if options.fresh {
        dir.clear()?;
        return Ok(None);
    }
    // A transactional Kafka sink's output for a checkpoint may not have committed (a crash
    // between the checkpoint and its commit): such checkpoints are not resumed from.
    let mut logs: Option<Vec<sink::CommitLog>> = None;
    let recovery = dir.recover_where(|snapshot| {
        let logs = match &mut logs {
            Some(logs) => logs,
            None => logs.insert(sink::commit_logs(config)?),
        };
        for log in logs.iter_mut() {
            if !log.committed(snapshot)? {
                return Ok(Some(format!(
                    "its output to Kafka topic {} never committed",
                    log.topic()
                )));
            }
        }
        Ok(None)
    })?;
    // Newer checkpoints that were unusable or refused are set aside (renamed), so the ids
    // this run writes next cannot be confused with them.
    let refused = recovery
        .refused
        .iter()
        .map(|(file, why)| (file, why, "uncommitted"));
    for (bad, why, suffix) in recovery
        .skipped
        .iter()
        .map(|(file, why)| (file, why, "unusable"))
        .chain(refused)
    {
        match dir.set_aside(bad, suffix) {
            Ok(aside) => tracing::warn!(
                "skipped checkpoint {} ({why}); kept as {}",
                bad.path.display(),
                aside.display()
            ),
            Err(e) => tracing::warn!("skipped checkpoint {} ({why}); {e:#}", bad.path.display()),
        }
    }
    match recovery.newest {
        Some((snapshot, path)) => {
            tracing::info!("resuming from checkpoint {}", path.display());
            Ok(Some(snapshot))
        }
        // The first checkpoint's output never committed: the job starts over.
        None if recovery.refused.iter().any(|(file, _)| file.id == 1) => {
            tracing::warn!("no checkpoint's output committed; starting from the beginning");
            Ok(None)
        }
        None if !recovery.refused.is_empty() => {
            let ids: Vec<String> = recovery
                .refused
                .iter()
                .map(|(file, _)| file.id.to_string())
                .collect();
            bail!(
                "the output of checkpoints {} in {} never committed, and no older checkpoint is \
                 kept; start over with --fresh, or from a savepoint with --from-savepoint",
                ids.join(", "),
                dir.location()
            )
        }
        None if !recovery.skipped.is_empty() => {
            let list: Vec<String> = recovery
                .skipped
                .iter()
                .map(|(file, why)| format!("{} ({why})", file.path.display()))
                .collect();
            bail!(
                "no usable checkpoint in {}: {}; pass --fresh to start over (sink output will be replaced)",
                dir.location(),
                list.join(", ")
            )
        }
        None => {
            refuse_to_overwrite(config)?;
            Ok(None)
        }
    }
}

/// Checks that no state in a snapshot is left without a component to take it: keyed
/// state of a plugin stage the pipeline no longer has, or window state when it has no
/// `[window]`. (Each component checks its own section when it restores it.)
pub(super) fn check_sections(snapshot: &Snapshot, pipeline: &Pipeline) -> Result<()> {
    for section in snapshot.sections.iter().filter(|s| !s.entries.is_empty()) {
        if let Some(stage) = section.name.strip_prefix("plugin/") {
            if !pipeline.stages.iter().any(|s| s.name() == stage) {
                bail!(
                    "incompatible state: it holds keyed state of plugin `{stage}`, which the pipeline no longer has"
                );
            }
        }
        if section.name == crate::window::SECTION && pipeline.window.is_none() {
            let spec = crate::window::WindowSnapshot::from_section(section)?.spec;
            bail!(
                "incompatible state: it holds window state for [window] {spec}, and the pipeline has no [window]"
            );
        }
    }
    Ok(())
}
