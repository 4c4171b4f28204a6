//! Sinks: where results and dead letters go. Each kind is one module behind [`Sink`].

mod file;
mod null;
mod stdio;

use anyhow::Result;

use crate::checkpoint::Checkpointed;
use crate::config::SinkConfig;

pub use crate::batch::{RecordBuffer, Records};
pub use file::{FileSink, FileSinkConfig, FileSinkState};
pub use null::{NullSink, NullSinkConfig};
pub use stdio::{StdioSink, StdioSinkConfig};

/// A destination for records, written a batch at a time as JSON lines.
///
/// A sink takes part in checkpoints ([`Checkpointed`]): a transactional sink stages what
/// it received since the last checkpoint as that checkpoint's epoch (in its section) and
/// makes the epoch visible when the checkpoint completes; other sinks have no section.
pub trait Sink: Checkpointed + Send {
    /// Writes a batch of records, one per line. Records become visible to readers of the
    /// sink no later than the next [`Sink::flush`] (a transactional sink: once the
    /// checkpoint covering them completes).
    fn write(&mut self, records: Records<'_>) -> Result<()>;

    /// Makes everything written so far visible to readers (for a transactional sink:
    /// hands it to the operating system, still staged).
    fn flush(&mut self) -> Result<()>;
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
        recover: Option<&'a FileSinkState>,
    },
}

/// Builds the sink a `[sink]`, `[dead_letter]` or `[late]` section describes.
pub fn build(config: &SinkConfig, mode: FileMode<'_>) -> Result<Box<dyn Sink>> {
    Ok(match config {
        SinkConfig::File(FileSinkConfig { path }) => Box::new(match mode {
            FileMode::Direct => FileSink::create(path)?,
            FileMode::Transactional { role, recover } => {
                FileSink::transactional(path, role, recover)?
            }
        }),
        SinkConfig::Stdout(_) => Box::new(StdioSink::stdout()),
        SinkConfig::Stderr(_) => Box::new(StdioSink::stderr()),
        SinkConfig::Null(_) => Box::new(NullSink::default()),
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
