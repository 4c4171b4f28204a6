//! The file source: one JSON object per line, read once from start to end.

mod config;

pub use config::FileSourceConfig;

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{Ingest, Source, SourcePosition, SourceState};

/// Reads JSON lines from a file; one partition, positions are 1-based line numbers.
pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    line: Vec<u8>,
    line_number: u64,
    offset: u64,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| {
            format!(
                "cannot open source file {}; check [source] path in the pipeline file",
                path.display()
            )
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            bail!(
                "source file {} is a directory; [source] path must name a file of JSON lines",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::with_capacity(1 << 20, file),
            line: Vec::with_capacity(1024),
            line_number: 0,
            offset: 0,
        })
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::File {
            offset: self.offset,
            line: self.line_number,
        }
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let &SourcePosition::File { offset, line } = position else {
            bail!("{} cannot resume from {position:?}", self.describe());
        };
        let len = self.reader.get_ref().metadata()?.len();
        if offset > len {
            bail!(
                "{} has {len} bytes but the checkpoint read up to byte {offset}; was the file replaced?",
                self.describe()
            );
        }
        self.reader.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        self.line_number = line;
        Ok(())
    }

    fn poll(
        &mut self,
        ingest: &mut Ingest<'_>,
        max: usize,
        _deadline: Instant,
    ) -> Result<SourceState> {
        let mut added = 0;
        while added < max {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .with_context(|| format!("cannot read source file {}", self.path.display()))?;
            if read == 0 {
                return Ok(SourceState::Exhausted);
            }
            self.offset += read as u64;
            self.line_number += 1;
            if ingest.push_json(0, self.line_number, &self.line) {
                added += 1;
            }
        }
        Ok(SourceState::Open)
    }
}
