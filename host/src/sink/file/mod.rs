//! The file sink: JSON lines in a file.
//!
//! Without checkpoints it writes the file directly (created or truncated when the run
//! starts). With checkpoints it is **transactional** (two-phase): records go to a staging
//! file beside it, `<path>.eddy-pending`; at a checkpoint the staging file becomes the
//! epoch `<path>.eddy-epoch-<id>`, and once the checkpoint is durable the epoch is
//! appended to the file and fsynced. So the file only ever holds output of completed
//! checkpoints, and recovery makes it exactly what the checkpoint covers: longer files are
//! truncated, epochs a crash left unappended are appended again.

mod config;

pub use config::FileSinkConfig;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{write_lines, Records, Sink};
use crate::checkpoint::{Checkpointed, Section};

/// The format version of a file sink's checkpoint section (`sink/<role>`).
const SECTION_VERSION: u32 = 1;

/// How far a transactional file sink has committed, and the staged epochs a checkpoint
/// covers: recovery makes the sink's file exactly `committed_len` bytes plus those
/// epochs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSinkState {
    /// The sink's file.
    pub path: PathBuf,
    /// Length of the file before the staged epochs.
    pub committed_len: u64,
    /// Staged epochs (checkpoint id, length) covered by the checkpoint, in order.
    pub epochs: Vec<(u64, u64)>,
}

impl FileSinkState {
    /// Reads a file sink's checkpoint section.
    pub fn from_section(section: &Section) -> Result<Self> {
        section.meta(SECTION_VERSION)
    }
}

/// Writes records as JSON lines to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    txn: Option<Transaction>,
}

/// The staging state of a transactional file sink.
#[derive(Debug)]
struct Transaction {
    role: String,
    pending_len: u64,
    committed_len: u64,
    /// Staged epochs (checkpoint id, length) not yet appended to the file.
    epochs: Vec<(u64, u64)>,
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn epoch_path(path: &Path, epoch: u64) -> PathBuf {
    suffixed(path, &format!(".eddy-epoch-{epoch}"))
}

fn pending_path(path: &Path) -> PathBuf {
    suffixed(path, ".eddy-pending")
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {} for the sink", dir.display()))?;
    }
    Ok(())
}

/// Epoch files left beside `path`.
fn stray_epochs(path: &Path) -> Vec<PathBuf> {
    let prefix = format!(
        "{}.eddy-epoch-",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    );
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect()
}

impl FileSink {
    /// Creates (or truncates) the file at `path`, and its parent directories.
    pub fn create(path: &Path) -> Result<Self> {
        create_parent(path)?;
        let file = File::create(path)
            .with_context(|| format!("cannot create sink file {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
            txn: None,
        })
    }

    /// Opens a transactional file sink in `role`. With `recover`, the file is made exactly
    /// what that checkpoint covers; without, the file starts empty.
    pub fn transactional(path: &Path, role: &str, recover: Option<&FileSinkState>) -> Result<Self> {
        create_parent(path)?;
        let what = || format!("sink file {}", path.display());
        let committed_len = match recover {
            Some(snapshot) => {
                restore(path, snapshot).with_context(|| format!("cannot recover {}", what()))?
            }
            None => {
                File::create(path).with_context(|| format!("cannot create {}", what()))?;
                0
            }
        };
        for stray in stray_epochs(path) {
            std::fs::remove_file(&stray)
                .with_context(|| format!("cannot remove {}", stray.display()))?;
        }
        let pending = File::create(pending_path(path))
            .with_context(|| format!("cannot create the staging file of {}", what()))?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, pending),
            txn: Some(Transaction {
                role: role.to_owned(),
                pending_len: 0,
                committed_len,
                epochs: Vec::new(),
            }),
        })
    }
}

/// Makes the file at `path` exactly what `snapshot` covers; returns its length.
fn restore(path: &Path, snapshot: &FileSinkState) -> Result<u64> {
    let staged: u64 = snapshot.epochs.iter().map(|e| e.1).sum();
    let target = snapshot.committed_len + staged;
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let current = file.metadata()?.len();
    if current >= target {
        file.set_len(target)?;
    } else {
        if current < snapshot.committed_len {
            bail!(
                "it has {current} bytes but the checkpoint says {} were committed; was it changed by hand?",
                snapshot.committed_len
            );
        }
        file.set_len(snapshot.committed_len)?;
        let mut out = &file;
        for &(epoch, len) in &snapshot.epochs {
            let staged = epoch_path(path, epoch);
            let bytes = std::fs::read(&staged).with_context(|| {
                format!(
                    "the checkpoint's staged output {} is missing",
                    staged.display()
                )
            })?;
            if bytes.len() as u64 != len {
                bail!(
                    "staged output {} has {} bytes, the checkpoint says {len}",
                    staged.display(),
                    bytes.len()
                );
            }
            out.write_all(&bytes)?;
        }
    }
    file.sync_all()?;
    Ok(target)
}

impl Sink for FileSink {
    fn write(
        &mut self,
        records: Records<'_>,
        _origins: Option<&[crate::batch::Origin]>,
    ) -> Result<()> {
        if let Some(txn) = &mut self.txn {
            txn.pending_len += records.bytes.len() as u64 + records.len() as u64;
        }
        write_lines(&mut self.out, records)
            .with_context(|| format!("cannot write to sink file {}", self.path.display()))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot flush sink file {}", self.path.display()))
    }
}

/// A transactional sink whose staging file is empty when it closes (everything
/// committed) removes it, so a finished run leaves no `*.eddy-pending` behind. A staging
/// file with output in it stays: the next run's recovery decides about it.
impl Drop for FileSink {
    fn drop(&mut self) {
        if self.txn.as_ref().is_some_and(|t| t.pending_len == 0) {
            let _ = self.out.flush();
            let _ = std::fs::remove_file(pending_path(&self.path));
        }
    }
}

impl Checkpointed for FileSink {
    /// Stages everything written since the last checkpoint as epoch `id`; the section
    /// records the epochs the checkpoint covers and asks the writer to fsync them.
    fn snapshot(&mut self, id: u64, _incremental: bool) -> Result<Option<Section>> {
        let Some(txn) = &mut self.txn else {
            return Ok(None);
        };
        if txn.pending_len > 0 {
            let what = || format!("cannot stage output of sink file {}", self.path.display());
            // No fsync here, while the stream waits: the checkpoint writer fsyncs the
            // section's staged files before it writes the checkpoint.
            self.out.flush().with_context(what)?;
            let pending = pending_path(&self.path);
            std::fs::rename(&pending, epoch_path(&self.path, id)).with_context(what)?;
            let fresh = File::create(&pending).with_context(what)?;
            self.out = BufWriter::with_capacity(1 << 20, fresh);
            txn.epochs.push((id, txn.pending_len));
            txn.pending_len = 0;
        }
        let state = FileSinkState {
            path: self.path.clone(),
            committed_len: txn.committed_len,
            epochs: txn.epochs.clone(),
        };
        let mut section =
            Section::new(format!("sink/{}", txn.role), SECTION_VERSION).with_meta(&state)?;
        section.sync_first = txn
            .epochs
            .iter()
            .map(|&(epoch, _)| epoch_path(&self.path, epoch))
            .collect();
        Ok(Some(section))
    }

    /// Appends the epochs up to `id` to the file, in order, and fsyncs it.
    fn checkpoint_completed(&mut self, id: u64) -> Result<()> {
        let Some(txn) = &mut self.txn else {
            return Ok(());
        };
        let done = txn
            .epochs
            .iter()
            .take_while(|&&(epoch, _)| epoch <= id)
            .count();
        if done == 0 {
            return Ok(());
        }
        let what = || format!("cannot commit output to sink file {}", self.path.display());
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(what)?;
        for &(epoch, _) in &txn.epochs[..done] {
            let mut staged = File::open(epoch_path(&self.path, epoch)).with_context(what)?;
            std::io::copy(&mut staged, &mut file).with_context(what)?;
        }
        file.sync_data().with_context(what)?;
        for (epoch, len) in txn.epochs.drain(..done) {
            txn.committed_len += len;
            std::fs::remove_file(epoch_path(&self.path, epoch)).with_context(what)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(sink: &mut FileSink, lines: &[&str]) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for l in lines {
            bytes.extend_from_slice(l.as_bytes());
            ends.push(bytes.len() as u32);
        }
        let records = Records {
            bytes: &bytes,
            ends: &ends,
        };
        sink.write(records, None).unwrap();
        sink.flush().unwrap();
    }

    #[test]
    fn output_is_visible_only_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = FileSink::transactional(&path, "sink", None).unwrap();
        write(&mut sink, &["a", "b"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let section = sink.snapshot(1, false).unwrap().unwrap();
        assert_eq!(section.name, "sink/sink");
        assert_eq!(
            FileSinkState::from_section(&section).unwrap().epochs,
            vec![(1, 4)]
        );
        assert_eq!(section.sync_first, vec![epoch_path(&path, 1)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        sink.checkpoint_completed(1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        assert!(stray_epochs(&path).is_empty());
        drop(sink);
        assert!(
            !pending_path(&path).exists(),
            "no empty staging file is left behind"
        );
    }

    #[test]
    fn a_completed_checkpoint_commits_only_the_epochs_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = FileSink::transactional(&path, "sink", None).unwrap();
        write(&mut sink, &["a"]);
        sink.snapshot(1, false).unwrap();
        write(&mut sink, &["b"]);
        sink.snapshot(2, false).unwrap();
        sink.checkpoint_completed(1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
        sink.checkpoint_completed(2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
    }

    #[test]
    fn recovery_rolls_back_and_replays_to_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = FileSink::transactional(&path, "sink", None).unwrap();
        write(&mut sink, &["a"]);
        sink.snapshot(1, false).unwrap();
        sink.checkpoint_completed(1).unwrap();
        write(&mut sink, &["b"]);
        let section = sink.snapshot(2, false).unwrap().unwrap();
        let checkpoint_2 = FileSinkState::from_section(&section).unwrap();
        // Crash before commit: the file has "a" only, epoch 2 is staged.
        write(&mut sink, &["c"]);
        drop(sink);
        let mut sink = FileSink::transactional(&path, "sink", Some(&checkpoint_2)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a\nb\n",
            "epoch 2 appended, c dropped"
        );
        // A file longer than the checkpoint (committed after it) is cut back.
        write(&mut sink, &["d"]);
        sink.snapshot(3, false).unwrap();
        sink.checkpoint_completed(3).unwrap();
        drop(sink);
        FileSink::transactional(&path, "sink", Some(&checkpoint_2)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        assert!(stray_epochs(&path).is_empty());
    }

    #[test]
    fn missing_staged_output_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "").unwrap();
        let snapshot = FileSinkState {
            path: path.clone(),
            committed_len: 0,
            epochs: vec![(9, 3)],
        };
        let err = format!(
            "{:#}",
            FileSink::transactional(&path, "sink", Some(&snapshot)).unwrap_err()
        );
        assert!(
            err.contains("eddy-epoch-9") && err.contains("missing"),
            "{err}"
        );
    }
}
