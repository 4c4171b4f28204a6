//! The job's metrics, in one registry.
//!
//! Components update counters they hold handles to (a handle is a shared atomic: an
//! update is one atomic add, made once per batch, never per event); the status board,
//! the run summary, checkpoints and the admin endpoint's Prometheus page all read the
//! same counters. [`Metrics`] is the plain snapshot of the job's counters that status,
//! summary and the checkpoint's `metrics` section carry.
//!
//! Invariant: a counter only grows during a run; after a restore it starts from the
//! checkpointed value (the job's totals survive restarts), stage counters from zero.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpointed, Section};

/// The job's counters at one moment (carried across restarts by checkpoints).
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

impl Metrics {
    /// Adds another worker's or task's counters: summed, with the lower watermark.
    pub fn absorb(&mut self, o: &Metrics) {
        self.records_in += o.records_in;
        self.records_out += o.records_out;
        self.unparseable += o.unparseable;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.dead_letters += o.dead_letters;
        self.batches += o.batches;
        self.firings += o.firings;
        self.late_accepted += o.late_accepted;
        self.late_rejected += o.late_rejected;
        self.watermark = self.watermark.min(o.watermark);
        self.open_windows += o.open_windows;
    }
}

/// The name of the job counters' checkpoint section.
pub const SECTION: &str = "metrics";
/// The format version of that section.
const SECTION_VERSION: u32 = 1;

/// Handles to the job's counters. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    /// Records read from the source.
    pub records_in: Counter,
    /// Records written to the sink.
    pub records_out: Counter,
    /// Records that were not valid events.
    pub unparseable: Counter,
    /// Events rejected by plugins (the sum over stages).
    pub rejected: Counter,
    /// Events dead-lettered by failed plugin batches (the sum over stages).
    pub failed: Counter,
    /// Records written to the dead-letter sink.
    pub dead_letters: Counter,
    /// Batches processed.
    pub batches: Counter,
    /// Window results emitted.
    pub firings: Counter,
    /// Late events within the allowed lateness.
    pub late_accepted: Counter,
    /// Late events past the allowed lateness.
    pub late_rejected: Counter,
    /// The job's event-time watermark.
    pub watermark: Gauge<i64, AtomicI64>,
    /// Open (key, window) pairs.
    pub open_windows: Gauge<i64, AtomicI64>,
}

/// Handles to one plugin stage's counters (since the run started).
#[derive(Debug, Clone, Default)]
pub struct StageMetrics {
    /// Events passed to the plugin.
    pub events_in: Counter,
    /// Events the plugin emitted (kept, for a filter).
    pub events_out: Counter,
    /// Events the plugin rejected.
    pub rejected: Counter,
    /// Events dead-lettered because a batch call failed.
    pub failed: Counter,
    /// Batch calls that failed.
    pub failed_batches: Counter,
    /// Versions rolled back automatically (a failure during their probation).
    pub rollbacks: Counter,
}

/// Sets a counter that mirrors a total kept elsewhere (a component's own count).
pub fn set_total(counter: &Counter, total: u64) {
    counter.inner().store(total, Ordering::Relaxed);
}

impl JobMetrics {
    /// The counters' values now.
    pub fn values(&self) -> Metrics {
        Metrics {
            records_in: self.records_in.get(),
            records_out: self.records_out.get(),
            unparseable: self.unparseable.get(),
            rejected: self.rejected.get(),
            failed: self.failed.get(),
            dead_letters: self.dead_letters.get(),
            batches: self.batches.get(),
            firings: self.firings.get(),
            late_accepted: self.late_accepted.get(),
            late_rejected: self.late_rejected.get(),
            watermark: self.watermark.get(),
            open_windows: self.open_windows.get().max(0) as u64,
        }
    }

    /// Sets every counter to a checkpointed value (before the run starts).
    pub fn restore(&self, m: &Metrics) {
        for (counter, value) in [
            (&self.records_in, m.records_in),
            (&self.records_out, m.records_out),
            (&self.unparseable, m.unparseable),
            (&self.rejected, m.rejected),
            (&self.failed, m.failed),
            (&self.dead_letters, m.dead_letters),
            (&self.batches, m.batches),
            (&self.firings, m.firings),
            (&self.late_accepted, m.late_accepted),
            (&self.late_rejected, m.late_rejected),
        ] {
            set_total(counter, value);
        }
        self.watermark.set(m.watermark);
        self.open_windows.set(m.open_windows as i64);
    }

    /// Reads the job's counters back from their checkpoint section.
    pub fn restore_section(&self, section: &Section) -> anyhow::Result<()> {
        self.restore(&section.meta(SECTION_VERSION)?);
        Ok(())
    }
}

impl Checkpointed for JobMetrics {
    fn snapshot(&mut self, _id: u64, _incremental: bool) -> anyhow::Result<Option<Section>> {
        Ok(Some(
            Section::new(SECTION, SECTION_VERSION).with_meta(&self.values())?,
        ))
    }
}

/// The job's metrics in the Prometheus text format, read by the admin endpoint.
#[derive(Debug, Clone)]
pub struct MetricsRegistry(Arc<Registry>);

impl MetricsRegistry {
    /// Registers the job's counters and each stage's (labelled `stage="<name>"`).
    pub fn new<'a>(
        job: &JobMetrics,
        stages: impl IntoIterator<Item = (&'a str, &'a StageMetrics)>,
    ) -> Self {
        let mut registry = Registry::with_prefix("eddy");
        for (name, help, counter) in [
            (
                "records_in",
                "Records read from the source",
                &job.records_in,
            ),
            (
                "records_out",
                "Records written to the sink",
                &job.records_out,
            ),
            (
                "unparseable",
                "Records that were not valid events",
                &job.unparseable,
            ),
            ("rejected", "Events rejected by plugins", &job.rejected),
            (
                "failed",
                "Events dead-lettered by failed plugin batches",
                &job.failed,
            ),
            (
                "dead_letters",
                "Records written to the dead-letter sink",
                &job.dead_letters,
            ),
            ("batches", "Batches processed", &job.batches),
            ("window_firings", "Window results emitted", &job.firings),
            (
                "late_accepted",
                "Late events within the allowed lateness",
                &job.late_accepted,
            ),
            (
                "late_rejected",
                "Late events past the allowed lateness",
                &job.late_rejected,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "watermark_ms",
            "The job's event-time watermark, ms since the Unix epoch",
            job.watermark.clone(),
        );
        registry.register(
            "open_windows",
            "Open (key, window) pairs",
            job.open_windows.clone(),
        );
        for (stage, m) in stages {
            let sub = registry.sub_registry_with_label(("stage".into(), stage.to_owned().into()));
            for (name, help, counter) in [
                (
                    "stage_events_in",
                    "Events passed to the plugin",
                    &m.events_in,
                ),
                (
                    "stage_events_out",
                    "Events the plugin emitted",
                    &m.events_out,
                ),
                ("stage_rejected", "Events the plugin rejected", &m.rejected),
                (
                    "stage_failed",
                    "Events dead-lettered by failed batches",
                    &m.failed,
                ),
                (
                    "stage_failed_batches",
                    "Batch calls that failed",
                    &m.failed_batches,
                ),
                (
                    "stage_rollbacks",
                    "Versions rolled back after failing in their probation",
                    &m.rollbacks,
                ),
            ] {
                sub.register(name, help, counter.clone());
            }
        }
        Self(Arc::new(registry))
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_counters_that_status_checkpoints_and_prometheus_read() {
        let job = JobMetrics::default();
        let stage = StageMetrics::default();
        let registry = MetricsRegistry::new(&job, [("big-spenders", &stage)]);
        let mut writer = job.clone();
        writer.records_in.inc_by(7);
        stage.rejected.inc_by(2);
        job.watermark.set(1_700_000_000_000);
        assert_eq!(job.values().records_in, 7);
        let text = registry.encode();
        assert!(text.contains("eddy_records_in_total 7"), "{text}");
        assert!(
            text.contains(r#"eddy_stage_rejected_total{stage="big-spenders"} 2"#),
            "{text}"
        );
        assert!(text.contains("eddy_watermark_ms 1700000000000"), "{text}");

        let section = writer.snapshot(1, false).unwrap().unwrap();
        let restored = JobMetrics::default();
        restored.restore_section(&section).unwrap();
        assert_eq!(restored.values(), job.values());
    }
}
