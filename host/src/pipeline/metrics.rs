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
    /// The summary of a run that processed nothing in `elapsed`.
    pub fn empty(elapsed: Duration) -> Self {
        Self {
            metrics: Metrics::default(),
            records_this_run: 0,
            elapsed,
            stages: Vec::new(),
            stopped: false,
        }
    }

    /// Adds another worker's or task's run: counters summed, the lowest watermark, the
    /// longest time, each stage's counters summed by name.
    pub fn absorb(&mut self, other: RunSummary) {
        self.metrics.absorb(&other.metrics);
        self.records_this_run += other.records_this_run;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.stopped |= other.stopped;
        for (name, hash, counters) in other.stages {
            match self.stages.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, _, c)) => {
                    c.events_in += counters.events_in;
                    c.events_out += counters.events_out;
                    c.rejected += counters.rejected;
                    c.failed += counters.failed;
                    c.failed_batches += counters.failed_batches;
                }
                None => self.stages.push((name, hash, counters)),
            }
        }
    }

    /// Records read per second.
    pub fn rate(&self) -> f64 {
        self.records_this_run as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.metrics;
        let timing = format!(
            "in {:.2} s ({:.0} records/s)",
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        write!(f, "{}: ", if self.stopped { "stopped" } else { "done" })?;
        let resumed = self.records_this_run != m.records_in;
        if resumed {
            // This run's part first, then the job's totals, each said for what it is.
            write!(
                f,
                "{} in this run {timing}; since the job started: ",
                self.records_this_run
            )?;
        }
        write!(
            f,
            "{} in, {} out, {} rejected, {} unparseable, {} failed, {} dead letters",
            m.records_in, m.records_out, m.rejected, m.unparseable, m.failed, m.dead_letters,
        )?;
        if m.firings > 0 || m.late_accepted > 0 || m.late_rejected > 0 {
            write!(
                f,
                ", {} window firings, {} late accepted, {} late rejected",
                m.firings, m.late_accepted, m.late_rejected
            )?;
        }
        if !resumed {
            write!(f, " {timing}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(records_this_run: u64) -> RunSummary {
        RunSummary {
            metrics: Metrics {
                records_in: 1000,
                records_out: 40,
                ..Metrics::default()
            },
            records_this_run,
            elapsed: Duration::from_millis(500),
            stages: Vec::new(),
            stopped: false,
        }
    }

    #[test]
    fn a_resumed_run_says_which_counts_are_its_own_and_which_the_jobs() {
        assert_eq!(
            summary(1000).to_string(),
            "done: 1000 in, 40 out, 0 rejected, 0 unparseable, 0 failed, 0 dead letters in 0.50 s (2000 records/s)"
        );
        assert_eq!(
            summary(300).to_string(),
            "done: 300 in this run in 0.50 s (600 records/s); since the job started: \
             1000 in, 40 out, 0 rejected, 0 unparseable, 0 failed, 0 dead letters"
        );
    }
}
