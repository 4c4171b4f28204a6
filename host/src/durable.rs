//! Writing files so that a crash leaves the old file or the new one, whole: the one
//! atomic-write helper every part of Eddy uses (checkpoints, savepoints, the
//! compiled-code cache), and directory syncs.
//!
//! Invariant: a file written by [`write_atomic`] is never seen half-written under its
//! final name, by this process or another, and has reached the disk when it returns.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Fsyncs the directory holding `path`, so a rename or a new file in it is durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

/// The temporary file [`write_atomic`] writes `path` through: `<path>.tmp`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` atomically: `<path>.tmp`, fsynced, renamed into place, and
/// the directory fsynced. For paths one writer owns (a job's checkpoint directory, a
/// savepoint): a leftover temporary file of a crashed writer is simply overwritten.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_through(path, &temporary_path(path), bytes)
}

/// Like [`write_atomic`], for paths several writers may write at once (the shared
/// compiled-code cache, which threads of one process and other processes fill): the
/// temporary file is named for this process and this call, so no two writers share one.
pub fn write_atomic_shared(path: &Path, bytes: &[u8]) -> Result<()> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("eddy");
    let tmp = parent_dir(path).join(format!(".{name}.{}.{call}.tmp", std::process::id()));
    write_through(path, &tmp, bytes)
}

fn write_through(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<()> {
    let result = (|| -> std::io::Result<()> {
        let mut file = File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(tmp, path)?;
        sync_dir(path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        write_atomic_shared(&path, b"three").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn threads_writing_one_shared_path_at_once_each_write_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let contents = [vec![b'a'; 256 << 10], vec![b'b'; 256 << 10]];
        std::thread::scope(|scope| {
            for bytes in &contents {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..20 {
                        write_atomic_shared(path, bytes).unwrap();
                    }
                });
            }
        });
        assert!(contents.contains(&std::fs::read(&path).unwrap()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        let err = format!(
            "{:#}",
            write_atomic(&dir.path().join("no/such/dir/f"), b"x").unwrap_err()
        );
        assert!(err.contains("cannot write"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
    }
}
