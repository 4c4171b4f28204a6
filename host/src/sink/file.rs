//! The file sink: JSON lines in a file, created (or truncated) when the run starts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{write_lines, Records, Sink};

/// Writes records as JSON lines to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl FileSink {
    /// Creates (or truncates) the file at `path`, and its parent directories.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("cannot create directory {} for the sink", dir.display())
            })?;
        }
        let file = File::create(path)
            .with_context(|| format!("cannot create sink file {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }
}

impl Sink for FileSink {
    fn write(&mut self, records: Records<'_>) -> Result<()> {
        write_lines(&mut self.out, records)
            .with_context(|| format!("cannot write to sink file {}", self.path.display()))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot flush sink file {}", self.path.display()))
    }
}
