//! The checkpoint coordinator: the one place that takes checkpoints and savepoints.
//!
//! Between batches the run loop hands it the job's components ([`Checkpointed`]); it
//! decides when a checkpoint is due and whether it is incremental, collects one section
//! from each component, hands the snapshot to the writer thread, and once the snapshot is
//! durable calls every component back with `checkpoint_completed(id)` (where sinks make
//! staged output visible and sources commit offsets). The run loop itself only moves
//! batches.
//!
//! Invariants: at most one checkpoint is being written at a time; ids increase through
//! the job's life; a component hears `checkpoint_completed(id)` only after the checkpoint
//! file of `id` (and every file it staged) is on disk; a failed periodic checkpoint is
//! logged and the job goes on (its output stays staged for the next one).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{store, CheckpointDir, CheckpointWriter, Checkpointed, Snapshot, SAVEPOINT_FILE};
use crate::clock::now_millis;
use crate::durable::write_atomic;

/// A completed checkpoint, as status reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckpointStatus {
    /// Its number.
    pub id: u64,
    /// Its file.
    pub path: PathBuf,
    /// When it was taken, ms since the Unix epoch.
    pub created_ms: i64,
}

/// Periodic checkpoints of a job (when it has a checkpoint directory).
struct Periodic {
    dir: CheckpointDir,
    interval: Duration,
    incremental_above: usize,
    writer: CheckpointWriter,
    last_started: Instant,
    /// The newest checkpoint written (or resumed from): what an incremental one builds on.
    last_written: Option<u64>,
}

/// Takes the job's checkpoints and savepoints.
pub struct Coordinator {
    periodic: Option<Periodic>,
    next_id: u64,
    last_completed: Option<CheckpointStatus>,
}

impl Coordinator {
    /// A coordinator for a job without a checkpoint directory: it takes savepoints only.
    pub fn savepoints_only() -> Self {
        Self {
            periodic: None,
            next_id: 1,
            last_completed: None,
        }
    }

    /// A coordinator checkpointing into `dir` every `interval`; checkpoints are
    /// incremental once the job holds `incremental_above` state entries. `resumed` is the
    /// id of the snapshot the job resumed from and whether it is in `dir` (a checkpoint,
    /// which the next incremental one may build on, rather than a savepoint).
    pub fn periodic(
        dir: CheckpointDir,
        interval: Duration,
        incremental_above: usize,
        resumed: Option<(u64, bool)>,
    ) -> Self {
        Self {
            periodic: Some(Periodic {
                writer: CheckpointWriter::start(dir.clone()),
                dir,
                interval,
                incremental_above,
                last_started: Instant::now(),
                last_written: resumed.filter(|&(_, in_dir)| in_dir).map(|(id, _)| id),
            }),
            next_id: resumed.map_or(1, |(id, _)| id + 1),
            last_completed: None,
        }
    }

    /// Whether the job checkpoints periodically.
    pub fn checkpoints(&self) -> bool {
        self.periodic.is_some()
    }

    /// The newest completed checkpoint.
    pub fn last_completed(&self) -> Option<&CheckpointStatus> {
        self.last_completed.as_ref()
    }

    /// Whether [`Coordinator::at_batch_boundary`] has anything to do now (a checkpoint
    /// being written, or one due), so the run loop lends it the components only then.
    pub fn has_work(&self) -> bool {
        self.periodic
            .as_ref()
            .is_some_and(|p| p.writer.busy() || p.last_started.elapsed() >= p.interval)
    }

    /// At a batch boundary: completes a finished checkpoint (calling the components
    /// back) and starts a new one when it is due.
    pub fn at_batch_boundary(&mut self, parts: &mut [&mut dyn Checkpointed]) -> Result<()> {
        self.collect(false, parts)?;
        let Some(p) = &self.periodic else {
            return Ok(());
        };
        if p.writer.busy() || p.last_started.elapsed() < p.interval {
            return Ok(());
        }
        self.start(parts).map(drop)
    }

    /// Takes a checkpoint at this batch boundary now, whatever the interval (before a hot
    /// swap, so the operator can go back): the cut is taken here and written on the
    /// writer thread like a periodic one. Returns its id; `None` for a job that does not
    /// checkpoint.
    pub fn checkpoint_now(&mut self, parts: &mut [&mut dyn Checkpointed]) -> Result<Option<u64>> {
        if self.periodic.is_none() {
            return Ok(None);
        }
        self.collect(true, parts)?;
        self.start(parts).map(Some)
    }

    /// Starts a checkpoint (incremental when the state is large) on the writer thread.
    fn start(&mut self, parts: &mut [&mut dyn Checkpointed]) -> Result<u64> {
        let p = self
            .periodic
            .as_ref()
            .expect("only called for a checkpointing job");
        let entries: usize = parts.iter().map(|c| c.state_entries()).sum();
        let base = p.last_written.filter(|_| entries >= p.incremental_above);
        let snapshot = self.take(false, base, parts)?;
        let id = snapshot.id;
        let p = self.periodic.as_mut().expect("checked above");
        p.last_started = Instant::now();
        p.writer.submit(snapshot)?;
        Ok(id)
    }

    /// The checkpoint of where a job starts, written before it returns, when the job has
    /// no checkpoint of its own in its directory yet (a fresh start, or a start from a
    /// savepoint). Until its first periodic checkpoint, a job that crashes resumes from
    /// this one instead of starting over, and its sinks recover what they wrote since.
    pub fn initial_checkpoint(&mut self, parts: &mut [&mut dyn Checkpointed]) -> Result<()> {
        if self
            .periodic
            .as_ref()
            .is_some_and(|p| p.last_written.is_none())
        {
            self.write_now(parts)
                .context("the checkpoint of where the job starts failed; nothing was read yet")?;
        }
        Ok(())
    }

    /// The checkpoint that ends a run, written before it returns, so everything the run
    /// produced is committed.
    pub fn final_checkpoint(&mut self, parts: &mut [&mut dyn Checkpointed]) -> Result<()> {
        if self.periodic.is_none() {
            return Ok(());
        }
        self.write_now(parts).context(
            "the final checkpoint failed; output since the last checkpoint is not committed",
        )
    }

    /// Waits for the checkpoint being written, then takes a full one and writes it on
    /// this thread.
    fn write_now(&mut self, parts: &mut [&mut dyn Checkpointed]) -> Result<()> {
        self.collect(true, parts)?;
        let snapshot = self.take(false, None, parts)?;
        let p = self
            .periodic
            .as_mut()
            .expect("only called for a checkpointing job");
        let path = p.dir.write(&snapshot)?;
        self.completed(snapshot.id, path, snapshot.created_ms, parts)
    }

    /// Takes a savepoint into `dir` at this batch boundary (also recorded as a checkpoint
    /// when the job checkpoints) and returns the savepoint's file.
    pub fn savepoint(
        &mut self,
        dir: &Path,
        parts: &mut [&mut dyn Checkpointed],
    ) -> Result<PathBuf> {
        self.collect(true, parts)?;
        let snapshot = self.take(true, None, parts)?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the savepoint directory {}", dir.display()))?;
        let path = dir.join(SAVEPOINT_FILE);
        store::sync_staged(&snapshot)?;
        write_atomic(&path, &super::encode(&snapshot)?)?;
        let recorded = match &self.periodic {
            Some(p) => p.dir.write(&snapshot)?,
            None => path.clone(),
        };
        self.completed(snapshot.id, recorded, snapshot.created_ms, parts)?;
        tracing::info!("savepoint {} written to {}", snapshot.id, path.display());
        Ok(path)
    }

    /// Asks every component for its section of the next checkpoint.
    fn take(
        &mut self,
        savepoint: bool,
        base: Option<u64>,
        parts: &mut [&mut dyn Checkpointed],
    ) -> Result<Snapshot> {
        let id = self.next_id;
        self.next_id += 1;
        let mut sections = Vec::with_capacity(parts.len());
        for part in parts.iter_mut() {
            sections.extend(part.snapshot(id, base.is_some())?);
        }
        Ok(Snapshot {
            id,
            created_ms: now_millis(),
            savepoint,
            base,
            sections,
        })
    }

    /// Collects the outcome of the checkpoint being written (`wait`: blocks for it).
    fn collect(&mut self, wait: bool, parts: &mut [&mut dyn Checkpointed]) -> Result<()> {
        let Some(p) = &mut self.periodic else {
            return Ok(());
        };
        match p.writer.poll(wait) {
            None => Ok(()),
            Some((id, Ok(path))) => self.completed(id, path, now_millis(), parts),
            Some((id, Err(e))) => {
                // Its changes are lost to the next incremental checkpoint: make that full.
                p.last_written = None;
                tracing::error!(
                    "checkpoint {id} failed, the job keeps its last good checkpoint and goes on: {e:#}"
                );
                Ok(())
            }
        }
    }

    /// Checkpoint `id` is durable: records it and calls every component back.
    fn completed(
        &mut self,
        id: u64,
        path: PathBuf,
        created_ms: i64,
        parts: &mut [&mut dyn Checkpointed],
    ) -> Result<()> {
        if let Some(p) = &mut self.periodic {
            p.last_written = Some(id);
        }
        self.last_completed = Some(CheckpointStatus {
            id,
            path,
            created_ms,
        });
        for part in parts.iter_mut() {
            part.checkpoint_completed(id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Section;

    /// A component that records what the coordinator asked of it.
    #[derive(Default)]
    struct Probe {
        snapshots: Vec<(u64, bool)>,
        completed: Vec<u64>,
        entries: usize,
    }

    impl Checkpointed for Probe {
        fn snapshot(&mut self, id: u64, incremental: bool) -> Result<Option<Section>> {
            self.snapshots.push((id, incremental));
            Ok(Some(Section::new("probe", 1).with_meta(&id)?))
        }
        fn checkpoint_completed(&mut self, id: u64) -> Result<()> {
            self.completed.push(id);
            Ok(())
        }
        fn state_entries(&self) -> usize {
            self.entries
        }
    }

    #[test]
    fn components_hear_of_a_checkpoint_only_once_it_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 10).unwrap();
        let mut c = Coordinator::periodic(store.clone(), Duration::ZERO, 0, None);
        let mut probe = Probe::default();
        c.at_batch_boundary(&mut [&mut probe]).unwrap();
        assert_eq!(probe.snapshots, vec![(1, false)]);
        // The final checkpoint waits for checkpoint 1's write, then writes its own:
        // both are reported complete, in order, and both are on disk.
        c.final_checkpoint(&mut [&mut probe]).unwrap();
        assert_eq!(probe.completed, vec![1, 2]);
        let ids: Vec<u64> = store.checkpoints().unwrap().iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![2, 1]);
        let newest = store.recover().unwrap().newest.unwrap().0;
        assert_eq!(newest.id, 2);
        assert_eq!(newest.section("probe").unwrap().meta::<u64>(1).unwrap(), 2);
        assert_eq!(c.last_completed().unwrap().id, 2);
    }

    #[test]
    fn a_job_with_no_checkpoint_of_its_own_records_its_start_before_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 10).unwrap();
        let mut fresh = Coordinator::periodic(store.clone(), Duration::from_secs(3600), 0, None);
        let mut probe = Probe::default();
        fresh.initial_checkpoint(&mut [&mut probe]).unwrap();
        assert_eq!(probe.completed, vec![1], "on disk before it returns");
        assert_eq!(store.recover().unwrap().newest.unwrap().0.id, 1);
        // Once the job has a checkpoint (or resumed one in its directory), there is none.
        fresh.initial_checkpoint(&mut [&mut probe]).unwrap();
        let mut resumed =
            Coordinator::periodic(store, Duration::from_secs(3600), 0, Some((1, true)));
        resumed.initial_checkpoint(&mut [&mut probe]).unwrap();
        assert_eq!(probe.snapshots.len(), 1);
        // A job started from a savepoint records its start in its own directory too.
        let other = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(other.path(), 10).unwrap();
        let mut from_savepoint =
            Coordinator::periodic(store, Duration::from_secs(3600), 0, Some((4, false)));
        from_savepoint
            .initial_checkpoint(&mut [&mut probe])
            .unwrap();
        assert_eq!(probe.completed, vec![1, 5]);
        // Without a checkpoint directory there is nothing to record.
        Coordinator::savepoints_only()
            .initial_checkpoint(&mut [&mut probe])
            .unwrap();
        assert_eq!(probe.snapshots.len(), 2);
    }

    #[test]
    fn large_state_makes_checkpoints_incremental_on_the_last_one_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 10).unwrap();
        let mut c = Coordinator::periodic(store, Duration::ZERO, 5, Some((7, true)));
        let mut probe = Probe {
            entries: 5,
            ..Probe::default()
        };
        c.at_batch_boundary(&mut [&mut probe]).unwrap();
        assert_eq!(probe.snapshots, vec![(8, true)], "on checkpoint 7");
        probe.entries = 4;
        c.final_checkpoint(&mut [&mut probe]).unwrap();
        assert_eq!(
            probe.snapshots[1],
            (9, false),
            "the final checkpoint is full"
        );
    }

    #[test]
    fn a_job_without_checkpoints_still_takes_savepoints() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Coordinator::savepoints_only();
        let mut probe = Probe::default();
        c.at_batch_boundary(&mut [&mut probe]).unwrap();
        assert!(probe.snapshots.is_empty());
        let path = c
            .savepoint(&dir.path().join("sp"), &mut [&mut probe])
            .unwrap();
        assert_eq!(probe.completed, vec![1]);
        let (snapshot, _) = crate::checkpoint::read_snapshot(&path).unwrap();
        assert!(snapshot.savepoint);
        assert_eq!(
            snapshot.section("probe").unwrap().meta::<u64>(1).unwrap(),
            1
        );
    }
}
