//! The counters of a run and its closing summary.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpointed, Section};
use crate::plugin::StageCounters;

/// The name of the job counters' checkpoint section.
pub const SECTION: &str = "metrics";
/// The format version of that section.
pub const SECTION_VERSION: u32 = 1;

impl Checkpointed for Metrics {
    fn snapshot(&mut self, _id: u64, _incremental: bool) -> anyhow::Result<Option<Section>> {
        Ok(Some(
            Section::new(SECTION, SECTION_VERSION).with_meta(self)?,
        ))
    }
}

/// Counters of a run (carried across restarts by checkpoints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Records read from the source (including unparseable ones).
    pub records_in: u64,
    /// Records written to the sink.
    pub records_out: u64,
    /// Records that were not valid events (malformed JSON, missing time or key).
    pub unparseable: u64,
    /// Events rejected by plugins.
    pub rejected: u64,
    /// Events dead-lettered because a plugin failed on their batch.
    pub failed: u64,
    /// Records written to the dead-letter sink.
    pub dead_letters: u64,
    /// Batches processed.
    pub batches: u64,
    /// Window results emitted.
    pub firings: u64,
    /// Events that arrived after their window fired, within the allowed lateness.
    pub late_accepted: u64,
    /// Events past the allowed lateness, sent to the late sink.
    pub late_rejected: u64,
    /// The job's event-time watermark.
    pub watermark: i64,
    /// Open (key, window) pairs held by the window operator.
    pub open_windows: u64,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The job's counters (since it first started, across restarts).
    pub metrics: Metrics,
    /// Records read by this run.
    pub records_this_run: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Each plugin stage: name, content hash and counters.
    pub stages: Vec<(String, String, StageCounters)>,
    /// Whether the run was stopped before its source was exhausted.
    pub stopped: bool,
}

impl RunSummary {
    /// Records read per second.
    pub fn rate(&self) -> f64 {
        self.records_this_run as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.metrics;
        write!(
            f,
            "{}: {} in, {} out, {} rejected, {} unparseable, {} failed, {} dead letters",
            if self.stopped { "stopped" } else { "done" },
            m.records_in,
            m.records_out,
            m.rejected,
            m.unparseable,
            m.failed,
            m.dead_letters,
        )?;
        if m.firings > 0 || m.late_accepted > 0 || m.late_rejected > 0 {
            write!(
                f,
                ", {} window firings, {} late accepted, {} late rejected",
                m.firings, m.late_accepted, m.late_rejected
            )?;
        }
        write!(
            f,
            " in {:.2} s ({:.0} records/s)",
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}
