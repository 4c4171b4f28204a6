//! The file source: one JSON object per line, read once from start to end.
//!
//! The file is read in large blocks into one buffer, lines are found with `memchr` and
//! handed to the ingest in place (no copy per line). Invariant: `offset` and
//! `line_number` count exactly the lines handed over, so a checkpoint's position is the
//! start of the first line not yet read, whatever is buffered.

mod config;

pub use config::FileSourceConfig;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{Ingest, Source, SourcePosition, SourceState};

/// Bytes asked of the file per read; the buffer grows past it only for a longer line.
const READ_SIZE: usize = 4 << 20;

/// Reads JSON lines from a file; one partition, positions are 1-based line numbers.
pub struct FileSource {
    path: PathBuf,
    file: File,
    /// Bytes read from the file; `buffer[start..end]` are not handed over yet.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Whether the file has no more bytes.
    at_end: bool,
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
            file,
            buffer: vec![0; READ_SIZE],
            start: 0,
            end: 0,
            at_end: false,
            line_number: 0,
            offset: 0,
        })
    }

    /// Reads the next block after the unread bytes (moved to the buffer's front first,
    /// and the buffer doubled when one line fills it).
    fn fill(&mut self) -> Result<()> {
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buffer.len() {
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let read = loop {
            match self.file.read(&mut self.buffer[self.end..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => break read,
            }
        }
        .with_context(|| format!("cannot read source file {}", self.path.display()))?;
        self.end += read;
        self.at_end = read == 0;
        Ok(())
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
        let len = self.file.metadata()?.len();
        if offset > len {
            bail!(
                "{} has {len} bytes but the checkpoint read up to byte {offset}; was the file replaced?",
                self.describe()
            );
        }
        self.file.seek(SeekFrom::Start(offset))?;
        (self.start, self.end, self.at_end) = (0, 0, false);
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
            let unread = &self.buffer[self.start..self.end];
            let line_len = match memchr::memchr(b'\n', unread) {
                Some(newline) => newline + 1,
                None if self.at_end && unread.is_empty() => return Ok(SourceState::Exhausted),
                None if self.at_end => unread.len(), // a last line without a newline
                None => {
                    self.fill()?;
                    continue;
                }
            };
            let line = &unread[..line_len];
            self.start += line_len;
            self.offset += line_len as u64;
            self.line_number += 1;
            if ingest.push_json(0, self.line_number, line) {
                added += 1;
            }
        }
        Ok(SourceState::Open)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::batch::EventBatch;
    use crate::dead_letter::DeadLetters;
    use crate::watermark::Watermarks;

    /// Reads `source` to its end in polls of `max`; the events' values and positions.
    fn read_all(source: &mut FileSource, max: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut batch = EventBatch::default();
            let mut dead = DeadLetters::new("test");
            let fields = Default::default();
            let mut watermarks = Watermarks::new(1, std::time::Duration::ZERO, None);
            let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
            let state = source.poll(&mut ingest, max, Instant::now()).unwrap();
            assert!(dead.is_empty());
            out.extend(
                (0..batch.len()).map(|i| (batch.origins[i].position, batch.value(i).to_vec())),
            );
            if state == SourceState::Exhausted {
                return out;
            }
        }
    }

    #[test]
    fn lines_across_blocks_long_lines_and_a_last_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut expected = Vec::new();
        let mut text = Vec::new();
        for i in 0..60_000u64 {
            let line = format!(
                "{{\"i\":{i},\"pad\":\"{}\"}}",
                "x".repeat((i % 97) as usize)
            );
            text.extend_from_slice(line.as_bytes());
            text.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
            expected.push(line.into_bytes());
            if i == 30_000 {
                text.extend_from_slice(b"\n  \n"); // blank lines: skipped, but counted
            }
        }
        let long = format!("{{\"long\":\"{}\"}}", "y".repeat(3 * READ_SIZE));
        text.extend_from_slice(long.as_bytes());
        text.push(b'\n');
        expected.push(long.into_bytes());
        text.extend_from_slice(b"{\"last\":true}");
        expected.push(b"{\"last\":true}".to_vec());
        File::create(&path).unwrap().write_all(&text).unwrap();

        let mut source = FileSource::open(&path).unwrap();
        let read = read_all(&mut source, 1000);
        let values: Vec<_> = read.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(values, expected);
        assert_eq!(read[30_001].0, 30_004); // line numbers count the blank lines
        let SourcePosition::File { offset, line } = source.position() else {
            panic!()
        };
        assert_eq!((offset, line), (text.len() as u64, 60_004));

        // A position taken mid-file resumes at the next line, whatever was buffered.
        let mut first = FileSource::open(&path).unwrap();
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::new("test");
        let fields = Default::default();
        let mut watermarks = Watermarks::new(1, std::time::Duration::ZERO, None);
        let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
        first.poll(&mut ingest, 12_345, Instant::now()).unwrap();
        let mut resumed = FileSource::open(&path).unwrap();
        resumed.seek(&first.position()).unwrap();
        assert_eq!(read_all(&mut resumed, 777), read[12_345..]);
    }
}
