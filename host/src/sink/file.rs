//! The file sink: JSON lines in a file.
//!
//! Without checkpoints it writes the file directly (created or truncated when the run
//! starts). With checkpoints it is **transactional** (two-phase): records go to a staging
//! file beside it, `<path>.eddy-pending`; at a checkpoint the staging file becomes the
//! epoch `<path>.eddy-epoch-<id>`, and once the checkpoint is durable the epoch is
//! appended to the file and fsynced. So the file only ever holds output of completed
//! checkpoints, and recovery makes it exactly what the checkpoint covers: longer files are
//! truncated, epochs a crash left unappended are appended again.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{write_lines, Records, Sink};
use crate::checkpoint::SinkSnapshot;

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

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
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
    pub fn transactional(path: &Path, role: &str, recover: Option<&SinkSnapshot>) -> Result<Self> {
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

/// Fsyncs the staged epochs a checkpoint covers (and their directory), so that once the
/// checkpoint is written they survive a crash. Called before writing the checkpoint.
pub fn make_durable(snapshot: &SinkSnapshot) -> Result<()> {
    for &(epoch, _) in &snapshot.epochs {
        let staged = epoch_path(&snapshot.path, epoch);
        File::open(&staged)
            .and_then(|f| f.sync_data())
            .with_context(|| format!("cannot sync staged output {}", staged.display()))?;
    }
    if !snapshot.epochs.is_empty() {
        sync_dir(&snapshot.path)
            .with_context(|| format!("cannot sync the directory of {}", snapshot.path.display()))?;
    }
    Ok(())
}

/// Makes the file at `path` exactly what `snapshot` covers; returns its length.
fn restore(path: &Path, snapshot: &SinkSnapshot) -> Result<u64> {
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
    fn write(&mut self, records: Records<'_>) -> Result<()> {
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

    fn pre_commit(&mut self, epoch: u64) -> Result<Option<SinkSnapshot>> {
        let Some(txn) = &mut self.txn else {
            return Ok(None);
        };
        if txn.pending_len > 0 {
            let what = || format!("cannot stage output of sink file {}", self.path.display());
            // No fsync here, while the stream waits: `make_durable` does it on the
            // checkpoint thread before the checkpoint is written.
            self.out.flush().with_context(what)?;
            let pending = pending_path(&self.path);
            std::fs::rename(&pending, epoch_path(&self.path, epoch)).with_context(what)?;
            let fresh = File::create(&pending).with_context(what)?;
            self.out = BufWriter::with_capacity(1 << 20, fresh);
            txn.epochs.push((epoch, txn.pending_len));
            txn.pending_len = 0;
        }
        Ok(Some(SinkSnapshot {
            role: txn.role.clone(),
            path: self.path.clone(),
            committed_len: txn.committed_len,
            epochs: txn.epochs.clone(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let Some(txn) = &mut self.txn else {
            return Ok(());
        };
        if txn.epochs.is_empty() {
            return Ok(());
        }
        let what = || format!("cannot commit output to sink file {}", self.path.display());
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(what)?;
        for &(epoch, _) in &txn.epochs {
            let mut staged = File::open(epoch_path(&self.path, epoch)).with_context(what)?;
            std::io::copy(&mut staged, &mut file).with_context(what)?;
        }
        file.sync_data().with_context(what)?;
        for (epoch, len) in txn.epochs.drain(..) {
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
        sink.write(Records {
            bytes: &bytes,
            ends: &ends,
        })
        .unwrap();
        sink.flush().unwrap();
    }

    #[test]
    fn output_is_visible_only_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = FileSink::transactional(&path, "sink", None).unwrap();
        write(&mut sink, &["a", "b"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let snapshot = sink.pre_commit(1).unwrap().unwrap();
        assert_eq!(snapshot.epochs, vec![(1, 4)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        sink.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        assert!(stray_epochs(&path).is_empty());
    }

    #[test]
    fn recovery_rolls_back_and_replays_to_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = FileSink::transactional(&path, "sink", None).unwrap();
        write(&mut sink, &["a"]);
        sink.pre_commit(1).unwrap();
        sink.commit().unwrap();
        write(&mut sink, &["b"]);
        let checkpoint_2 = sink.pre_commit(2).unwrap().unwrap();
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
        sink.pre_commit(3).unwrap();
        sink.commit().unwrap();
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
        let snapshot = SinkSnapshot {
            role: "sink".into(),
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
