//! Where checkpoint files are kept: [`CheckpointStore`], blobs by name, and [`LocalDir`],
//! a directory on a local or shared file system.
//!
//! The checkpoint logic ([`super::CheckpointDir`]: naming, incremental chains, retention,
//! recovery) only lists, reads, writes, renames and removes whole blobs, so an object
//! store (S3, GCS, Azure Blob: atomic whole-object writes, listing by prefix) can hold
//! the checkpoints of jobs whose processes run on several machines by implementing this
//! trait. The files sinks stage and the components swapped in stay on the local disk.
//!
//! Invariants: `put` is atomic and durable (after it returns the blob survives a crash;
//! a crash during it leaves the old blob or none, never part of one); `lock` gives one
//! running job at a time the store, and is released however the job ends.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::durable::{sync_dir, write_atomic};

/// A place that keeps checkpoint files: named blobs, each written whole or not at all.
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Where the store is, for messages (a directory, a URL).
    fn location(&self) -> String;

    /// Where blob `name` is, for messages and the status page.
    fn locate(&self, name: &str) -> PathBuf;

    /// The names of the blobs held (in no particular order).
    fn list(&self) -> Result<Vec<String>>;

    /// Reads blob `name`.
    fn get(&self, name: &str) -> Result<Vec<u8>>;

    /// Writes blob `name` atomically and durably.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<()>;

    /// Removes blob `name`.
    fn delete(&self, name: &str) -> Result<()>;

    /// Renames blob `from` to `to` (an object store copies, then deletes).
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Claims the store for this job until the claim is dropped; refuses while another
    /// running job holds it.
    fn lock(&self) -> Result<StoreLock>;

    /// The directory, when the store is one on the local file system (components swapped
    /// into a running job are kept next to its checkpoints there).
    fn local_dir(&self) -> Option<&Path> {
        None
    }
}

/// A claim on a checkpoint store, held while a job runs.
pub struct StoreLock {
    _held: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLock")
    }
}

/// Why [`CheckpointStore::lock`] failed when another running job holds the store (its
/// error then downcasts to this; any other failure is an error of the store itself).
#[derive(Debug)]
pub struct HeldByAnother {
    /// The store, for messages.
    pub store: String,
    /// Who holds it, as the holder wrote it (a process id).
    pub holder: String,
}

impl std::fmt::Display for HeldByAnother {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checkpoint directory {} is in use by another running job (pid {}); stop that \
             job first, or give this pipeline its own [checkpoint] dir",
            self.store, self.holder
        )
    }
}

impl std::error::Error for HeldByAnother {}

impl StoreLock {
    /// A claim that lasts as long as `held` does.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

/// Checkpoint files in a directory: each written to a temporary file, fsynced, renamed
/// into place and the directory fsynced. The lock is an OS file lock on `<dir>/LOCK`, so
/// the operating system releases it when the process ends, however it ends (a SIGKILL
/// leaves no stale lock); the file names the holder's pid.
#[derive(Debug, Clone)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the checkpoint directory {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }
}

impl CheckpointStore for LocalDir {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn locate(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir).with_context(|| {
            format!(
                "cannot read the checkpoint directory {}",
                self.dir.display()
            )
        })?;
        let mut names = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join(name), bytes)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.dir.join(from), self.dir.join(to));
        std::fs::rename(&from, &to)
            .and_then(|()| sync_dir(&to))
            .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))
    }

    fn lock(&self) -> Result<StoreLock> {
        let path = self.dir.join("LOCK");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                let claim = (|| {
                    file.set_len(0)?;
                    writeln!(file, "{}", std::process::id())
                })();
                claim.with_context(|| format!("cannot write {}", path.display()))?;
                Ok(StoreLock::new(file))
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(HeldByAnother {
                store: self.dir.display().to_string(),
                holder: std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            }
            .into()),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
