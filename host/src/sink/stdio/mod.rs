//! The stdout and stderr sinks: JSON lines on the process's standard streams.
//!
//! Invariant: the stream only ever receives whole lines, each batch in one locked write,
//! so the sinks of several workers writing one stream never split each other's lines.

mod config;

pub use config::StdioSinkConfig;

use std::io::Write;

use anyhow::{Context, Result};

use super::{write_lines, Records, Sink};

/// Lines gathered before they are written even without a flush.
const GATHER_BYTES: usize = 1 << 20;

/// Which standard stream a sink writes.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Writes records as JSON lines to standard output or standard error.
pub struct StdioSink {
    stream: Stream,
    /// Whole lines not yet written.
    lines: Vec<u8>,
}

impl StdioSink {
    /// A sink on standard output.
    pub fn stdout() -> Self {
        Self {
            stream: Stream::Stdout,
            lines: Vec::new(),
        }
    }

    /// A sink on standard error.
    pub fn stderr() -> Self {
        Self {
            stream: Stream::Stderr,
            lines: Vec::new(),
        }
    }

    fn name(&self) -> &'static str {
        match self.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Not transactional: it has no checkpoint section.
impl crate::checkpoint::Checkpointed for StdioSink {}

impl Sink for StdioSink {
    fn write(
        &mut self,
        records: Records<'_>,
        _origins: Option<&[crate::batch::Origin]>,
    ) -> Result<()> {
        write_lines(&mut self.lines, records).context("cannot gather lines")?;
        if self.lines.len() >= GATHER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let written = match self.stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.lines).and_then(|()| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(&self.lines),
        };
        self.lines.clear();
        written.with_context(|| format!("cannot write to {}", self.name()))
    }
}

impl Drop for StdioSink {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
