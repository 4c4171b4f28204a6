//! Sinks: where results and dead letters go. Each kind is one module behind [`Sink`].

mod file;
mod null;
mod stdio;

use anyhow::Result;

use crate::batch::packed_item;
use crate::checkpoint::SinkSnapshot;
use crate::config::SinkConfig;

pub use file::{make_durable, FileSink};
pub use null::NullSink;
pub use stdio::StdioSink;

/// Records for a sink: JSON documents packed back to back, `ends[i]` closing record `i`.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    /// The records' bytes, back to back.
    pub bytes: &'a [u8],
    /// End offset of each record.
    pub ends: &'a [u32],
}

impl<'a> Records<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i`.
    pub fn get(&self, i: usize) -> &'a [u8] {
        packed_item(self.bytes, self.ends, i)
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// A growable buffer of records, packed as [`Records`] reads them.
#[derive(Debug, Default)]
pub struct RecordBuffer {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl RecordBuffer {
    /// Appends one record, written in place by `write`.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        let end = u32::try_from(self.bytes.len()).expect("records of one batch exceed 4 GiB");
        self.ends.push(end);
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records, for a sink.
    pub fn records(&self) -> Records<'_> {
        Records {
            bytes: &self.bytes,
            ends: &self.ends,
        }
    }

    /// Forgets every record, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// A destination for records, written a batch at a time as JSON lines.
pub trait Sink: Send {
    /// Writes a batch of records, one per line. Records become visible to readers of the
    /// sink no later than the next [`Sink::flush`].
    fn write(&mut self, records: Records<'_>) -> Result<()>;

    /// Makes everything written so far visible to readers (for a transactional sink:
    /// hands it to the operating system, still staged).
    fn flush(&mut self) -> Result<()>;

    /// Stages everything written since the last call as checkpoint `epoch`'s output and
    /// says what the checkpoint must record; `None` for sinks that are not transactional.
    fn pre_commit(&mut self, _epoch: u64) -> Result<Option<SinkSnapshot>> {
        Ok(None)
    }

    /// Makes staged output visible, once the checkpoint covering it is durable.
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
}

/// How a file sink treats its file.
#[derive(Debug, Clone, Copy)]
pub enum FileMode<'a> {
    /// Written directly; truncated when the run starts (no checkpoints).
    Direct,
    /// Transactional, starting empty or recovered to a checkpoint.
    Transactional {
        /// `sink`, `dead_letter` or `late`.
        role: &'a str,
        /// The checkpoint's record of this sink, when resuming.
        recover: Option<&'a SinkSnapshot>,
    },
}

/// Builds the sink a `[sink]`, `[dead_letter]` or `[late]` section describes.
pub fn build(config: &SinkConfig, mode: FileMode<'_>) -> Result<Box<dyn Sink>> {
    Ok(match config {
        SinkConfig::File { path } => Box::new(match mode {
            FileMode::Direct => FileSink::create(path)?,
            FileMode::Transactional { role, recover } => {
                FileSink::transactional(path, role, recover)?
            }
        }),
        SinkConfig::Stdout {} => Box::new(StdioSink::stdout()),
        SinkConfig::Stderr {} => Box::new(StdioSink::stderr()),
        SinkConfig::Null {} => Box::new(NullSink::default()),
    })
}

/// Writes records as JSON lines to any writer (shared by the file and stdio sinks).
fn write_lines(out: &mut impl std::io::Write, records: Records<'_>) -> std::io::Result<()> {
    for record in records.iter() {
        out.write_all(record)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
