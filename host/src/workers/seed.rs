//! Starting a job run as workers from a savepoint: each task's savepoint
//! (`<savepoint>/tasks/<task>/savepoint.eddy`, as `eddy savepoint` or `eddy stop
//! --savepoint` of such a job writes them) becomes the newest checkpoint in the task's
//! directory of the checkpoint store, with the plugin components it records, so the task
//! of that partition resumes from it in whichever process of the group starts it.
//!
//! Invariants: a store is seeded from a savepoint once: the marker `tasks/FROM-SAVEPOINT`
//! names the savepoint, and a process started later with the same savepoint (another
//! member of the group, or this one restarted) leaves the store as it is, since its tasks
//! may have checkpointed since; a store holding task state from anywhere else is never
//! overwritten (refused, saying what to do); processes started together seed under one
//! lock, so the second finds the marker; the marker is written last, so a seeding cut
//! short is done again.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::checkpoint::{self, CheckpointDir, SAVEPOINT_FILE};
use crate::config::PipelineConfig;
use crate::durable::write_atomic;

/// The marker naming the savepoint a store of tasks was seeded from.
const MARKER: &str = "FROM-SAVEPOINT";

/// Where task `name`'s part of a savepoint (or of a checkpoint store) `dir` lives.
pub fn task_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join("tasks").join(name)
}

/// Seeds the checkpoint store of `config` from the task savepoints in `savepoint` (the
/// directory `eddy savepoint` was given, or its `tasks` directory), unless it was seeded
/// from this savepoint already.
pub fn seed_from_savepoint(config: &PipelineConfig, savepoint: &Path) -> Result<()> {
    let checkpoint = config.checkpoint.as_ref().context(
        "--from-savepoint needs [checkpoint] dir for a job run as workers: its tasks resume \
         from the checkpoint store, which the savepoint seeds",
    )?;
    let parts = task_savepoints(savepoint)?;
    let store = checkpoint.dir.join("tasks");
    std::fs::create_dir_all(&store)
        .with_context(|| format!("cannot create the checkpoint store {}", store.display()))?;
    let lock_path = store.join("SEEDING.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let identity = std::fs::canonicalize(savepoint)
        .unwrap_or_else(|_| savepoint.to_owned())
        .display()
        .to_string();
    let marker = store.join(MARKER);
    if let Ok(seeded) = std::fs::read_to_string(&marker) {
        if seeded.trim() == identity {
            tracing::info!("the checkpoint store was started from {identity} already; resuming from its checkpoints");
            return Ok(());
        }
        bail!(
            "the checkpoint store {} was started from another savepoint ({}); to start from \
             {identity}, move {} away first; to resume from the store, run without \
             --from-savepoint",
            store.display(),
            seeded.trim(),
            store.display()
        );
    }
    if let Some(holder) = task_with_state(&store, checkpoint.retain)? {
        bail!(
            "the checkpoint store {} holds the state of task {holder}; to start from the \
             savepoint {identity}, move {} away first; to resume from the store, run \
             without --from-savepoint",
            store.display(),
            store.display()
        );
    }
    for (name, file) in &parts {
        let (snapshot, _) = checkpoint::read_snapshot(file)?;
        let dir = store.join(name);
        let checkpoints = CheckpointDir::open(&dir, checkpoint.retain)?;
        let _held = checkpoints.lock()?;
        copy_components(
            &checkpoint::components_dir(task_dir(savepoint, name).as_path()),
            &dir,
        )?;
        checkpoints.write(&snapshot)?;
    }
    write_atomic(&marker, identity.as_bytes())?;
    tracing::info!(
        "the checkpoint store now starts {} tasks from the savepoint {identity}",
        parts.len()
    );
    Ok(())
}

/// The tasks' savepoint files in `savepoint`, by task name.
fn task_savepoints(savepoint: &Path) -> Result<Vec<(String, PathBuf)>> {
    let tasks = if savepoint.join("tasks").is_dir() {
        savepoint.join("tasks")
    } else {
        savepoint.to_owned()
    };
    let entries = std::fs::read_dir(&tasks).with_context(|| {
        format!(
            "cannot read the savepoint {}; give the directory `eddy savepoint` wrote",
            savepoint.display()
        )
    })?;
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", tasks.display()))?;
        let file = entry.path().join(SAVEPOINT_FILE);
        if file.is_file() {
            parts.push((entry.file_name().to_string_lossy().into_owned(), file));
        }
    }
    if parts.is_empty() {
        bail!(
            "{} holds no task savepoints (<dir>/tasks/<task>/{SAVEPOINT_FILE}); a job run as \
             workers starts from a savepoint its own `eddy savepoint` wrote",
            savepoint.display()
        );
    }
    parts.sort();
    Ok(parts)
}

/// A task of the store that has a checkpoint, if any.
fn task_with_state(store: &Path, retain: usize) -> Result<Option<String>> {
    for entry in
        std::fs::read_dir(store).with_context(|| format!("cannot read {}", store.display()))?
    {
        let entry = entry?;
        if entry.path().is_dir()
            && !CheckpointDir::open(&entry.path(), retain)?
                .checkpoints()?
                .is_empty()
        {
            return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// Copies the plugin components kept with a task's savepoint (`from`) into the task's
/// directory `dir`, where its checkpoints keep theirs.
fn copy_components(from: &Path, dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(()); // the task runs the components of the pipeline file
    };
    let target = checkpoint::components_dir(dir);
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    for entry in entries {
        let source = entry?.path();
        let bytes =
            std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?;
        let name = source.file_name().context("a component file has a name")?;
        write_atomic(&target.join(name), &bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Snapshot;

    /// A job of tasks checkpointing into `dir`/state.
    fn config(dir: &Path) -> PipelineConfig {
        PipelineConfig::parse(&format!(
            "parallelism = 2\n[source]\nkind = \"generator\"\n[sink]\nkind = \"null\"\n\
             [checkpoint]\ndir = \"{}\"\n",
            dir.join("state").display()
        ))
        .unwrap()
    }

    /// A savepoint in `dir` of tasks `names`, each its own id.
    fn savepoint(dir: &Path, names: &[&str], id: u64) -> PathBuf {
        for name in names {
            let task = task_dir(dir, name);
            std::fs::create_dir_all(&task).unwrap();
            let snapshot = Snapshot {
                id,
                savepoint: true,
                ..Snapshot::default()
            };
            std::fs::write(
                task.join(SAVEPOINT_FILE),
                checkpoint::encode(&snapshot).unwrap(),
            )
            .unwrap();
        }
        dir.to_owned()
    }

    /// The ids of task `name`'s checkpoints in the store.
    fn ids(dir: &Path, name: &str) -> Vec<u64> {
        let store = CheckpointDir::open(&task_dir(&dir.join("state"), name), 3).unwrap();
        store.checkpoints().unwrap().iter().map(|c| c.id).collect()
    }

    #[test]
    fn a_savepoint_seeds_each_task_once_and_never_over_other_state() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let sp = savepoint(&dir.path().join("sp"), &["events-0", "events-1"], 7);
        seed_from_savepoint(&config, &sp).unwrap();
        assert_eq!(ids(dir.path(), "events-0"), vec![7]);
        assert_eq!(ids(dir.path(), "events-1"), vec![7]);

        // A task checkpoints after the start; the same savepoint again (another process of
        // the group, or a restart) leaves the store as it is.
        let store = CheckpointDir::open(&task_dir(&dir.path().join("state"), "events-0"), 3);
        store
            .unwrap()
            .write(&Snapshot {
                id: 8,
                ..Snapshot::default()
            })
            .unwrap();
        seed_from_savepoint(&config, &sp).unwrap();
        assert_eq!(ids(dir.path(), "events-0"), vec![8, 7]);

        // Another savepoint is refused: the store holds what this one started.
        let other = savepoint(&dir.path().join("other"), &["events-0"], 3);
        let refused = seed_from_savepoint(&config, &other)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("was started from another savepoint"),
            "{refused}"
        );
        assert_eq!(ids(dir.path(), "events-0"), vec![8, 7]);
    }

    #[test]
    fn a_store_with_task_state_or_a_savepoint_without_tasks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let not_tasks = dir.path().join("plain");
        std::fs::create_dir_all(&not_tasks).unwrap();
        let refused = seed_from_savepoint(&config, &not_tasks)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("holds no task savepoints"), "{refused}");

        // Task state from a run that did not start from this savepoint.
        CheckpointDir::open(&task_dir(&dir.path().join("state"), "events-3"), 3)
            .unwrap()
            .write(&Snapshot {
                id: 40,
                ..Snapshot::default()
            })
            .unwrap();
        let sp = savepoint(&dir.path().join("sp"), &["events-3"], 7);
        let refused = seed_from_savepoint(&config, &sp).unwrap_err().to_string();
        assert!(
            refused.contains("holds the state of task events-3"),
            "{refused}"
        );
        assert_eq!(ids(dir.path(), "events-3"), vec![40]);
    }
}
