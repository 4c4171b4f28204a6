//! Checks that no two roles of a pipeline share a file: a sink, dead-letter, late or
//! checkpoint path that is the source (or another of them) would destroy data before the
//! run could notice. Files are compared by identity (device and inode) when they exist,
//! and by canonical path otherwise, never by the strings written in the pipeline file.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{PipelineConfig, SourceConfig};

/// What a path resolves to on this machine.
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    /// An existing file or directory.
    Inode { dev: u64, ino: u64 },
    /// A path that does not exist yet, made canonical through its nearest existing
    /// ancestor.
    Path(PathBuf),
}

fn identity(path: &Path) -> Identity {
    if let Ok(meta) = std::fs::metadata(path) {
        return Identity::Inode {
            dev: meta.dev(),
            ino: meta.ino(),
        };
    }
    let mut missing = Vec::new();
    let mut existing = path;
    while !existing.as_os_str().is_empty() && std::fs::metadata(existing).is_err() {
        if let Some(name) = existing.file_name() {
            missing.push(name.to_owned());
        }
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    let base = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let mut canonical = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_owned());
    canonical.extend(missing.iter().rev());
    Identity::Path(canonical)
}

impl PipelineConfig {
    /// Every path the job reads or writes, with the pipeline-file key that names it.
    fn paths(&self) -> Vec<(&'static str, &Path)> {
        let mut paths = Vec::new();
        if let SourceConfig::File(f) = &self.source {
            paths.push(("[source] path", f.path.as_path()));
        }
        paths.extend(self.sink.file().map(|p| ("[sink] path", p)));
        let dead = self.dead_letter.as_ref().and_then(|d| d.file());
        paths.extend(dead.map(|p| ("[dead_letter] path", p)));
        let late = self.late.as_ref().and_then(|l| l.file());
        paths.extend(late.map(|p| ("[late] path", p)));
        if let Some(c) = &self.checkpoint {
            paths.push(("[checkpoint] dir", c.dir.as_path()));
        }
        paths
    }

    /// Refuses a pipeline in which two roles name the same file.
    pub(super) fn check_paths(&self) -> Result<()> {
        let paths = self.paths();
        let identities: Vec<Identity> = paths.iter().map(|(_, p)| identity(p)).collect();
        for (i, (role, path)) in paths.iter().enumerate() {
            for (j, (other, other_path)) in paths.iter().enumerate().skip(i + 1) {
                if identities[i] == identities[j] {
                    bail!(
                        "{other} {} is the same file as {role} {}: each must be a file of its own \
                         (a job never writes where it reads, and two writers would overwrite each other); \
                         change one of them",
                        other_path.display(),
                        path.display()
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_by_another_name_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, "{}\n").unwrap();
        std::os::unix::fs::symlink(&input, dir.path().join("link.jsonl")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            identity(&input),
            identity(&dir.path().join("sub/../in.jsonl"))
        );
        assert_eq!(identity(&input), identity(&dir.path().join("link.jsonl")));
        // Not yet existing files compare by canonical path.
        assert_eq!(
            identity(&dir.path().join("new/out.jsonl")),
            identity(&dir.path().join("sub/../new/./out.jsonl"))
        );
        assert_ne!(identity(&input), identity(&dir.path().join("out.jsonl")));
    }
}
