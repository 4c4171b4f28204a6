//! The null sink: counts records and drops them, for benchmarks.

mod config;

pub use config::NullSinkConfig;

use anyhow::Result;

use super::{Records, Sink};

/// Counts records and drops them.
#[derive(Debug, Default)]
pub struct NullSink {
    /// Records received so far.
    pub count: u64,
}

/// Not transactional: it has no checkpoint section.
impl crate::checkpoint::Checkpointed for NullSink {}

impl Sink for NullSink {
    fn write(
        &mut self,
        records: Records<'_>,
        _origins: Option<&[crate::batch::Origin]>,
    ) -> Result<()> {
        self.count += records.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
