//! A run's closing summary, read from the job's metrics registry.

use std::fmt;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::plugin::StageCounters;

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
