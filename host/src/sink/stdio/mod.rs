//! The stdout and stderr sinks: JSON lines on the process's standard streams.

mod config;

pub use config::StdioSinkConfig;

use std::io::Write;

use anyhow::{Context, Result};

use super::{write_lines, Records, Sink};

/// Writes records as JSON lines to standard output or standard error.
pub struct StdioSink {
    name: &'static str,
    out: Box<dyn Write + Send>,
}

impl StdioSink {
    /// A sink on standard output.
    pub fn stdout() -> Self {
        Self {
            name: "stdout",
            out: Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
        }
    }

    /// A sink on standard error.
    pub fn stderr() -> Self {
        Self {
            name: "stderr",
            out: Box::new(std::io::stderr()),
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
        write_lines(&mut self.out, records)
            .with_context(|| format!("cannot write to {}", self.name))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot flush {}", self.name))
    }
}
