//! Sinks: where results and dead letters go. Each kind is one module behind [`Sink`].

mod file;
mod kafka;
mod null;
mod postgres;
mod stdio;

use anyhow::Result;

use crate::batch::Origin;
use crate::checkpoint::{Checkpointed, Section};
use crate::config::{PipelineConfig, SinkConfig};

pub use crate::batch::{RecordBuffer, Records};
pub use file::{FileSink, FileSinkConfig, FileSinkState};
pub use kafka::{CommitLog, Delivery, KafkaSink, KafkaSinkConfig, IDENTITY_HEADER};
pub use null::{NullSink, NullSinkConfig};
pub use postgres::{PostgresSink, PostgresSinkConfig};
pub use stdio::{StdioSink, StdioSinkConfig};

/// A destination for records, written a batch at a time as JSON lines.
///
/// A sink takes part in checkpoints ([`Checkpointed`]): a transactional sink stages what
/// it received since the last checkpoint as that checkpoint's epoch (in its section) and
/// makes the epoch visible when the checkpoint completes; other sinks have no section.
pub trait Sink: Checkpointed + Send {
    /// Writes a batch of records, one per line. Records become visible to readers of the
    /// sink no later than the next [`Sink::flush`] (a transactional sink: once the
    /// checkpoint covering them completes). `origins`, when the records are events, says
    /// where each came from (a sink that deduplicates identifies records by it).
    fn write(&mut self, records: Records<'_>, origins: Option<&[Origin]>) -> Result<()>;

    /// Makes everything written so far visible to readers (for a transactional sink:
    /// hands it to the operating system, still staged).
    fn flush(&mut self) -> Result<()>;
}

/// Whether a sink takes part in checkpoints.
#[derive(Debug, Clone, Copy)]
pub enum SinkMode<'a> {
    /// The job has no checkpoints: a file is written directly (truncated when the run
    /// starts).
    Direct,
    /// The job checkpoints: the sink keeps a section, starting fresh or recovered to a
    /// checkpoint.
    Checkpointed {
        /// `sink`, `dead_letter` or `late`.
        role: &'a str,
        /// The checkpoint's section of this sink (`sink/<role>`), when resuming.
        recover: Option<&'a Section>,
    },
}

/// Builds the sink a `[sink]`, `[dead_letter]` or `[late]` section describes.
pub fn build(config: &SinkConfig, mode: SinkMode<'_>) -> Result<Box<dyn Sink>> {
    Ok(match config {
        SinkConfig::File(FileSinkConfig { path }) => Box::new(match mode {
            SinkMode::Direct => FileSink::create(path)?,
            SinkMode::Checkpointed { role, recover } => {
                let state = recover.map(FileSinkState::from_section).transpose()?;
                // A section of another file (the sink was moved) recovers nothing here.
                let state = state.filter(|s| s.path == *path);
                FileSink::transactional(path, role, state.as_ref())?
            }
        }),
        SinkConfig::Stdout(_) => Box::new(StdioSink::stdout()),
        SinkConfig::Stderr(_) => Box::new(StdioSink::stderr()),
        SinkConfig::Null(_) => Box::new(NullSink::default()),
        SinkConfig::Postgres(p) => Box::new(match mode {
            SinkMode::Direct => PostgresSink::open(p, "sink", false, None)?,
            SinkMode::Checkpointed { role, recover } => PostgresSink::open(p, role, true, recover)?,
        }),
        SinkConfig::Kafka(k) => Box::new(match mode {
            SinkMode::Direct => KafkaSink::open(k, "sink", None)?,
            SinkMode::Checkpointed { role, recover } => KafkaSink::open(k, role, recover)?,
        }),
    })
}

/// The commit logs of the job's transactional Kafka sinks: which checkpoints' output
/// committed. Opening them fences the sinks' earlier producers.
pub fn commit_logs(config: &PipelineConfig) -> Result<Vec<CommitLog>> {
    config
        .sinks()
        .filter_map(|(role, sink)| match sink {
            SinkConfig::Kafka(k) if k.delivery == Delivery::Transactional => Some((role, k)),
            _ => None,
        })
        .map(|(role, k)| CommitLog::open(k, role))
        .collect()
}

/// Writes records as JSON lines to any writer (shared by the file and stdio sinks).
fn write_lines(out: &mut impl std::io::Write, records: Records<'_>) -> std::io::Result<()> {
    for record in records.iter() {
        out.write_all(record)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
