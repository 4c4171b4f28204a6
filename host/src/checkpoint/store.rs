//! A job's checkpoints in a [`CheckpointStore`]: their names, incremental chains,
//! retention, and finding the newest good checkpoint after a crash.
//!
//! Invariants: a checkpoint is written whole before older ones are pruned; the newest
//! `retain` checkpoints are kept with every checkpoint their chains need; recovery never
//! resumes from a checkpoint it cannot read whole.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::storage::{CheckpointStore, HeldByAnother, LocalDir, StoreLock};
use super::{decode, encode, Snapshot};
use crate::durable::sync_dir;

/// Longest chain of incremental checkpoints before the checkpoint thread folds it into a
/// full checkpoint.
pub const MAX_CHAIN: usize = 8;

/// The file name of the snapshot in a savepoint directory.
pub const SAVEPOINT_FILE: &str = "savepoint.eddy";

/// A job's checkpoints: `ckpt-<id>.eddy` (full) and `ckpt-<id>-on-<base>.eddy`
/// (incremental, on checkpoint `base`) in a store. It keeps the newest `retain`
/// checkpoints and every checkpoint their chains need.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    store: Arc<dyn CheckpointStore>,
    retain: usize,
}

/// A checkpoint file in a checkpoint directory.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    /// The checkpoint's id.
    pub id: u64,
    /// The checkpoint it builds on, if incremental.
    pub base: Option<u64>,
    /// Its name in the store.
    pub name: String,
    /// Where it is (for messages).
    pub path: PathBuf,
}

/// Where the components hot-swapped into a job checkpointing into `dir` are kept
/// (`<sha256>.wasm`), so that a job restarted after a swap resumes with the version that
/// was running.
pub fn components_dir(dir: &Path) -> PathBuf {
    dir.join("components")
}

/// What recovery found in a checkpoint directory.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The newest valid checkpoint and its file.
    pub newest: Option<(Snapshot, PathBuf)>,
    /// Newer checkpoints that were unusable, and why.
    pub skipped: Vec<(CheckpointFile, String)>,
    /// Newer checkpoints that read back whole but were refused (a sink's output for them
    /// never committed), and why.
    pub refused: Vec<(CheckpointFile, String)>,
}

impl CheckpointDir {
    /// Opens (creating) a checkpoint directory on the local file system.
    pub fn open(dir: &Path, retain: usize) -> Result<Self> {
        Ok(Self::in_store(Arc::new(LocalDir::open(dir)?), retain))
    }

    /// The checkpoints kept in `store`.
    pub fn in_store(store: Arc<dyn CheckpointStore>, retain: usize) -> Self {
        Self {
            store,
            retain: retain.max(1),
        }
    }

    /// Where the checkpoints are, for messages.
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Where components hot-swapped in are kept (see [`components_dir`]), when the
    /// checkpoints are on the local file system.
    pub fn components(&self) -> Option<PathBuf> {
        self.store.local_dir().map(components_dir)
    }

    /// Claims the checkpoints for this job; refuses, naming the holder, when another
    /// running job holds them (two jobs on one directory would corrupt each other's
    /// output and checkpoints).
    pub fn lock(&self) -> Result<StoreLock> {
        self.store.lock()
    }

    /// Claims the checkpoints as [`CheckpointDir::lock`] does, retrying for up to `wait`
    /// while another job holds them ([`HeldByAnother`]; a partition's previous owner
    /// still finishing: the task that takes the partition over reads its state, and a
    /// deduplicating sink what it wrote, only once it has let go). Other failures are
    /// returned at once.
    pub fn lock_within(&self, wait: std::time::Duration) -> Result<StoreLock> {
        let deadline = std::time::Instant::now() + wait;
        let mut said = false;
        loop {
            match self.lock() {
                Ok(lock) => return Ok(lock),
                Err(e) if e.is::<HeldByAnother>() && std::time::Instant::now() < deadline => {
                    if !std::mem::replace(&mut said, true) {
                        tracing::info!("{e:#}; waiting up to {wait:?} for it to let go");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a checkpoint atomically and removes the checkpoints no longer needed. The
    /// files its sections stage (sinks' output) are fsynced first.
    pub fn write(&self, snapshot: &Snapshot) -> Result<PathBuf> {
        sync_staged(snapshot)?;
        let name = match snapshot.base {
            None => full_name(snapshot.id),
            Some(base) => format!("ckpt-{:020}-on-{base:020}.eddy", snapshot.id),
        };
        self.store.put(&name, &encode(snapshot)?)?;
        let name = self.compact_if_long(snapshot.id, name)?;
        self.prune()?;
        Ok(self.store.locate(&name))
    }

    /// Bounds recovery work: once checkpoint `id` ends a chain of [`MAX_CHAIN`]
    /// incremental checkpoints, folds the chain into a full checkpoint `id` (here, on the
    /// checkpoint thread, never on the stream) and removes the incremental file.
    fn compact_if_long(&self, id: u64, name: String) -> Result<String> {
        let all = self.checkpoints()?;
        let mut length = 0;
        let mut next = all.iter().find(|c| c.id == id);
        while let Some(base) = next.and_then(|c| c.base) {
            length += 1;
            next = all.iter().find(|c| c.id == base);
        }
        if length < MAX_CHAIN {
            return Ok(name);
        }
        let file = all
            .iter()
            .find(|c| c.id == id)
            .context("the checkpoint just written is gone")?;
        let full = self.load_chain(file, &all)?;
        let compacted = full_name(id);
        self.store.put(&compacted, &encode(&full)?)?;
        self.store.delete(&name)?;
        Ok(compacted)
    }

    /// Removes checkpoints that are neither among the newest `retain` nor in their chains.
    fn prune(&self) -> Result<()> {
        let all = self.checkpoints()?;
        let base_of: std::collections::HashMap<u64, Option<u64>> =
            all.iter().map(|c| (c.id, c.base)).collect();
        let mut needed = std::collections::HashSet::new();
        for c in all.iter().take(self.retain) {
            let mut next = Some(c.id);
            while let Some(id) = next.filter(|id| needed.insert(*id)) {
                next = base_of.get(&id).copied().flatten();
            }
        }
        for old in all.iter().filter(|c| !needed.contains(&c.id)) {
            if let Err(e) = self.store.delete(&old.name) {
                tracing::warn!("cannot remove old checkpoint: {e:#}");
            }
        }
        Ok(())
    }

    /// Checkpoint files, newest first.
    pub fn checkpoints(&self) -> Result<Vec<CheckpointFile>> {
        let mut found = Vec::new();
        for name in self.store.list()? {
            let Some(stem) = name
                .strip_prefix("ckpt-")
                .and_then(|n| n.strip_suffix(".eddy"))
            else {
                continue;
            };
            let (id, base) = match stem.split_once("-on-") {
                Some((id, base)) => (id.parse().ok(), base.parse().ok().map(Some)),
                None => (stem.parse().ok(), Some(None)),
            };
            if let (Some(id), Some(base)) = (id, base) {
                let path = self.store.locate(&name);
                found.push(CheckpointFile {
                    id,
                    base,
                    name,
                    path,
                });
            }
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.id));
        Ok(found)
    }

    /// Reads checkpoint `file` and the chain it builds on, and folds them into one full
    /// snapshot.
    fn load_chain(&self, file: &CheckpointFile, all: &[CheckpointFile]) -> Result<Snapshot> {
        let mut chain = Vec::new();
        let mut next = Some(file);
        while let Some(f) = next {
            let snapshot = self
                .store
                .get(&f.name)
                .and_then(|b| decode(&b))
                .with_context(|| format!("{}", f.path.display()))?;
            chain.push(snapshot);
            next = match f.base {
                None => None,
                Some(base) => Some(all.iter().find(|c| c.id == base).with_context(|| {
                    format!(
                        "checkpoint {base}, which checkpoint {} builds on, is missing",
                        f.id
                    )
                })?),
            };
        }
        chain.reverse();
        super::flatten(chain)
    }

    /// Finds the newest checkpoint that reads back whole, skipping (and reporting)
    /// truncated or corrupt newer ones.
    pub fn recover(&self) -> Result<Recovery> {
        self.recover_where(|_| Ok(None))
    }

    /// As [`CheckpointDir::recover`], but a checkpoint is resumed from only if `refuse`
    /// gives no reason against it; refused ones are reported and older ones tried.
    pub fn recover_where(
        &self,
        mut refuse: impl FnMut(&Snapshot) -> Result<Option<String>>,
    ) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        let all = self.checkpoints()?;
        for file in &all {
            match self.load_chain(file, &all) {
                Ok(snapshot) => {
                    if let Some(why) = refuse(&snapshot)? {
                        recovery.refused.push((file.clone(), why));
                        continue;
                    }
                    recovery.newest = Some((snapshot, file.path.clone()));
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        "skipping unusable checkpoint {}: {e:#}",
                        file.path.display()
                    );
                    recovery.skipped.push((file.clone(), format!("{e:#}")));
                }
            }
        }
        Ok(recovery)
    }

    /// Sets checkpoint `file` aside, renamed `<name>.<suffix>`, so it is no longer
    /// recovered from and the ids written next cannot be confused with it; returns where
    /// it now is.
    pub fn set_aside(&self, file: &CheckpointFile, suffix: &str) -> Result<PathBuf> {
        let aside = format!("{}.{suffix}", file.name);
        self.store.rename(&file.name, &aside)?;
        Ok(self.store.locate(&aside))
    }

    /// Removes every checkpoint (for a run started with `--fresh`).
    pub fn clear(&self) -> Result<()> {
        for file in self.checkpoints()? {
            self.store.delete(&file.name)?;
        }
        Ok(())
    }
}

/// The name of full checkpoint `id`.
fn full_name(id: u64) -> String {
    format!("ckpt-{id:020}.eddy")
}

/// Fsyncs the files a snapshot's sections staged, and their directories, so that once
/// the snapshot is written they survive a crash.
pub(super) fn sync_staged(snapshot: &Snapshot) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in snapshot.sync_first() {
        File::open(path)
            .and_then(|f| f.sync_data())
            .with_context(|| format!("cannot sync staged output {}", path.display()))?;
        dirs.insert(path);
    }
    for path in dirs {
        sync_dir(path)
            .with_context(|| format!("cannot sync the directory of {}", path.display()))?;
    }
    Ok(())
}

/// Reads the snapshot at `path`: a checkpoint or savepoint file, a savepoint directory,
/// or a checkpoint directory (its newest good checkpoint).
pub fn read_snapshot(path: &Path) -> Result<(Snapshot, PathBuf)> {
    if path.is_dir() {
        let savepoint = path.join(SAVEPOINT_FILE);
        if savepoint.exists() {
            return read_snapshot(&savepoint);
        }
        let recovery = CheckpointDir::open(path, usize::MAX)?.recover()?;
        return match recovery.newest {
            Some(found) => Ok(found),
            None if recovery.skipped.is_empty() => {
                bail!("{} holds no checkpoint or savepoint", path.display())
            }
            None => bail!(
                "{} holds no usable checkpoint ({} unusable)",
                path.display(),
                recovery.skipped.len()
            ),
        };
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let snapshot = decode(&bytes).with_context(|| format!("{} is unusable", path.display()))?;
    if let Some(base) = snapshot.base {
        bail!(
            "{} is an incremental checkpoint (on checkpoint {base}); name its directory to use the whole chain",
            path.display()
        );
    }
    Ok((snapshot, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: u64) -> Snapshot {
        Snapshot {
            id,
            sections: vec![crate::checkpoint::Section::new("source", 1)
                .with_meta(&"a source's state, long enough to cut in half")
                .unwrap()],
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_lock_held_by_another_job_is_waited_for_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 3).unwrap();
        let held = store.lock().unwrap();
        let refused = store.lock_within(std::time::Duration::ZERO).unwrap_err();
        assert!(refused.is::<HeldByAnother>(), "{refused:#}");
        assert!(refused
            .to_string()
            .contains("in use by another running job"));
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let letting_go = std::thread::spawn({
            let released = released.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                released.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(held);
            }
        });
        let _claimed = store
            .lock_within(std::time::Duration::from_secs(30))
            .unwrap();
        assert!(
            released.load(std::sync::atomic::Ordering::SeqCst),
            "claimed only once the other holder let go"
        );
        letting_go.join().unwrap();
    }

    #[test]
    fn refused_checkpoints_are_reported_and_an_older_one_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 3).unwrap();
        for id in 1..=3 {
            store.write(&snapshot(id)).unwrap();
        }
        let recovery = store
            .recover_where(|s| Ok((s.id > 1).then(|| format!("{} not committed", s.id))))
            .unwrap();
        assert_eq!(recovery.newest.unwrap().0.id, 1);
        let refused: Vec<(u64, &str)> = recovery
            .refused
            .iter()
            .map(|(file, why)| (file.id, why.as_str()))
            .collect();
        assert_eq!(refused, [(3, "3 not committed"), (2, "2 not committed")]);
        assert!(recovery.skipped.is_empty());
    }

    /// A store in memory, standing in for an object store: blobs by name, no files.
    #[derive(Debug, Default)]
    struct MemoryStore(std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>);

    impl CheckpointStore for MemoryStore {
        fn location(&self) -> String {
            "memory://".into()
        }
        fn locate(&self, name: &str) -> PathBuf {
            PathBuf::from(format!("memory://{name}"))
        }
        fn list(&self) -> Result<Vec<String>> {
            Ok(self.0.lock().unwrap().keys().cloned().collect())
        }
        fn get(&self, name: &str) -> Result<Vec<u8>> {
            self.0
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .context("no such blob")
        }
        fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
            self.0.lock().unwrap().insert(name.into(), bytes.to_vec());
            Ok(())
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.0.lock().unwrap().remove(name);
            Ok(())
        }
        fn rename(&self, from: &str, to: &str) -> Result<()> {
            let blob = self.get(from)?;
            self.put(to, &blob)?;
            self.delete(from)
        }
        fn lock(&self) -> Result<StoreLock> {
            Ok(StoreLock::new(()))
        }
    }

    #[test]
    fn checkpoints_live_in_any_store_behind_the_trait() {
        let store = Arc::new(MemoryStore::default());
        let checkpoints = CheckpointDir::in_store(store.clone(), 2);
        checkpoints.write(&snapshot(1)).unwrap();
        for id in 2..=3 {
            checkpoints
                .write(&Snapshot {
                    id,
                    base: Some(id - 1),
                    ..snapshot(id)
                })
                .unwrap();
        }
        checkpoints.write(&snapshot(4)).unwrap();
        // The newest two are 4 and 3; 3's chain needs 2 and 1.
        let ids: Vec<u64> = checkpoints
            .checkpoints()
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, vec![4, 3, 2, 1]);
        let newest = checkpoints.checkpoints().unwrap().remove(0);
        store.put(&newest.name, b"torn").unwrap();
        let recovery = checkpoints.recover().unwrap();
        let (recovered, path) = recovery.newest.unwrap();
        assert_eq!(
            (recovered.id, recovered.base),
            (3, None),
            "folded over its chain"
        );
        assert_eq!(
            path,
            PathBuf::from(format!("memory://ckpt-{:020}-on-{:020}.eddy", 3, 2))
        );
        let aside = checkpoints
            .set_aside(&recovery.skipped[0].0, "unusable")
            .unwrap();
        assert_eq!(
            aside,
            PathBuf::from(format!("memory://{}.unusable", full_name(4)))
        );
        assert_eq!(checkpoints.checkpoints().unwrap()[0].id, 3);
        assert!(checkpoints.components().is_none(), "no local directory");
    }

    #[test]
    fn keeps_the_newest_and_recovers_past_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 3).unwrap();
        for id in 1..=5 {
            store.write(&snapshot(id)).unwrap();
        }
        let ids: Vec<u64> = store.checkpoints().unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![5, 4, 3]);
        // Truncate the newest, corrupt the next: recovery falls back to 3.
        let newest = &store.checkpoints().unwrap()[0].path;
        let bytes = std::fs::read(newest).unwrap();
        std::fs::write(newest, &bytes[..bytes.len() / 2]).unwrap();
        let second = &store.checkpoints().unwrap()[1].path;
        let mut bytes = std::fs::read(second).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(second, bytes).unwrap();
        let recovery = store.recover().unwrap();
        assert_eq!(recovery.newest.unwrap().0.id, 3);
        assert_eq!(recovery.skipped.len(), 2);
        assert!(recovery.skipped[0].1.contains("truncated"));
        assert!(recovery.skipped[1].1.contains("checksum"));
    }

    #[test]
    fn incremental_chains_are_kept_whole_and_recovered_through_their_base() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 2).unwrap();
        store.write(&snapshot(1)).unwrap();
        for id in 2..=4 {
            store
                .write(&Snapshot {
                    id,
                    base: Some(id - 1),
                    ..Snapshot::default()
                })
                .unwrap();
        }
        // The newest two (4, 3) need 2 and 1 as well.
        let ids: Vec<u64> = store.checkpoints().unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![4, 3, 2, 1]);
        assert_eq!(store.recover().unwrap().newest.unwrap().0.id, 4);
        store.write(&snapshot(5)).unwrap();
        let ids: Vec<u64> = store.checkpoints().unwrap().iter().map(|c| c.id).collect();
        assert_eq!(
            ids,
            vec![5, 4, 3, 2, 1],
            "4 is among the newest two and needs its chain"
        );
        store.write(&snapshot(6)).unwrap();
        let ids: Vec<u64> = store.checkpoints().unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![6, 5]);
        // A chain whose base is gone is skipped for an older whole one.
        store
            .write(&Snapshot {
                id: 7,
                base: Some(3),
                ..Snapshot::default()
            })
            .unwrap();
        let recovery = store.recover().unwrap();
        assert_eq!(recovery.newest.unwrap().0.id, 6);
        assert!(recovery.skipped[0]
            .1
            .contains("checkpoint 3, which checkpoint 7 builds on, is missing"));
    }

    #[test]
    fn long_chains_are_folded_into_a_full_checkpoint_off_the_stream() {
        use crate::checkpoint::Section;
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 1).unwrap();
        let with_state = |id: u64, base: Option<u64>| {
            let mut section = Section::new("plugin/p", 1);
            section.entries = vec![(format!("k{id}").into_bytes(), vec![id as u8])];
            Snapshot {
                id,
                base,
                sections: vec![section],
                ..Snapshot::default()
            }
        };
        store.write(&with_state(1, None)).unwrap();
        for id in 2..=(MAX_CHAIN as u64) {
            store.write(&with_state(id, Some(id - 1))).unwrap();
            assert!(store.checkpoints().unwrap()[0].base.is_some());
        }
        let id = MAX_CHAIN as u64 + 1;
        let path = store.write(&with_state(id, Some(id - 1))).unwrap();
        let files = store.checkpoints().unwrap();
        assert_eq!(
            (files.len(), files[0].id, files[0].base),
            (1, id, None),
            "{files:?}"
        );
        assert_eq!(path, files[0].path);
        let recovered = store.recover().unwrap().newest.unwrap().0;
        assert_eq!(
            recovered.sections[0].entries.len(),
            id as usize,
            "every key of the chain"
        );
    }

    #[test]
    fn a_failed_write_keeps_the_last_good_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 3).unwrap();
        store.write(&snapshot(1)).unwrap();
        // The disk is full: the temporary file of checkpoint 2 is /dev/full.
        std::os::unix::fs::symlink(
            "/dev/full",
            dir.path().join(format!("ckpt-{:020}.eddy.tmp", 2)),
        )
        .unwrap();
        let err = format!("{:#}", store.write(&snapshot(2)).unwrap_err());
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(store.recover().unwrap().newest.unwrap().0.id, 1);
        assert!(!dir.path().join(format!("ckpt-{:020}.eddy", 2)).exists());
    }

    #[test]
    fn one_job_at_a_time_holds_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path(), 3).unwrap();
        let held = store.lock().unwrap();
        let err = store.lock().unwrap_err().to_string();
        assert!(
            err.contains("in use by another running job")
                && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        store.lock().unwrap();
        store.write(&snapshot(1)).unwrap();
        assert_eq!(
            store.checkpoints().unwrap().len(),
            1,
            "LOCK is not a checkpoint"
        );
    }

    #[test]
    fn a_directory_that_is_a_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        std::fs::write(&file, "").unwrap();
        let err = format!("{:#}", CheckpointDir::open(&file, 3).unwrap_err());
        assert!(
            err.contains("cannot create the checkpoint directory"),
            "{err}"
        );
    }
}
