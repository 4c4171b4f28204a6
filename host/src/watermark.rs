//! Event-time watermarks, per source partition and for the job, as Flink computes them.
//!
//! A partition's watermark is the highest event time it has seen minus `max_delay` minus
//! 1 ms (bounded out-of-orderness). The job's watermark is the minimum over partitions
//! that are not idle, and never goes back. It advances after every event — not per batch
//! or per timer tick — so whether an event is late depends only on the input and its
//! order, never on batching or timing. A partition with no data for `idle_timeout`
//! (wall-clock time) stops holding the watermark back until it has data again; a bounded
//! source that ends advances its partitions to the end of time.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpointed, Section};

/// The watermark before any event: nothing is known yet.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark once a bounded source has ended: every window can fire.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// One source partition's progress in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionClock {
    /// Highest event time seen, or `None` before the first event.
    pub max_timestamp: Option<i64>,
    /// Whether the partition is idle (no data for the idle timeout).
    pub idle: bool,
    /// Position of the partition's last event (for status).
    pub position: Option<u64>,
    /// Whether the source holds the partition now; a revoked partition (moved to another
    /// worker or process) no longer holds the watermark back.
    pub assigned: bool,
    last_seen: Instant,
}

impl PartitionClock {
    fn new(now: Instant) -> Self {
        Self {
            max_timestamp: None,
            idle: false,
            position: None,
            assigned: true,
            last_seen: now,
        }
    }
}

/// The watermarks of every partition of a source and of the job.
#[derive(Debug, Clone)]
pub struct Watermarks {
    max_delay: i64,
    idle_timeout: Option<Duration>,
    partitions: Vec<PartitionClock>,
    finished: bool,
    current: i64,
}

impl Watermarks {
    /// Watermarks for a source of `partitions` partitions.
    pub fn new(partitions: u32, max_delay: Duration, idle_timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        Self {
            max_delay: i64::try_from(max_delay.as_millis()).unwrap_or(i64::MAX),
            idle_timeout,
            partitions: vec![PartitionClock::new(now); partitions.max(1) as usize],
            finished: false,
            current: MIN_WATERMARK,
        }
    }

    /// The job's watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Each partition's clock.
    pub fn partitions(&self) -> &[PartitionClock] {
        &self.partitions
    }

    /// The watermark of one partition (the end of time once the source has ended).
    pub fn partition_watermark(&self, p: &PartitionClock) -> i64 {
        if self.finished {
            return MAX_WATERMARK;
        }
        p.max_timestamp.map_or(MIN_WATERMARK, |ts| {
            ts.saturating_sub(self.max_delay).saturating_sub(1)
        })
    }

    /// Records an event of `partition` at event time `timestamp`, seen at `now`; returns
    /// the job's watermark as it was before the event (the one the event is judged by).
    pub fn observe(&mut self, partition: u32, timestamp: i64, now: Instant) -> i64 {
        let before = self.current;
        let index = partition as usize;
        if index >= self.partitions.len() {
            self.partitions.resize(index + 1, PartitionClock::new(now));
        }
        let clock = &mut self.partitions[index];
        clock.last_seen = now;
        let was_idle = std::mem::replace(&mut clock.idle, false);
        if clock.max_timestamp.is_none_or(|max| timestamp > max) {
            clock.max_timestamp = Some(timestamp);
            self.recompute();
        } else if was_idle {
            self.recompute();
        }
        before
    }

    /// The source gained `partition` (a partition assignment): it holds the watermark
    /// back from its first event on, never moving it back.
    pub fn assign(&mut self, partition: u32, now: Instant) {
        let index = partition as usize;
        if index >= self.partitions.len() {
            let mut unassigned = PartitionClock::new(now);
            unassigned.assigned = false;
            self.partitions.resize(index + 1, unassigned);
        }
        let clock = &mut self.partitions[index];
        if !clock.assigned {
            *clock = PartitionClock::new(now);
        }
    }

    /// The source lost `partition`: it no longer holds the watermark back.
    pub fn revoke(&mut self, partition: u32) {
        if let Some(clock) = self.partitions.get_mut(partition as usize) {
            clock.assigned = false;
            self.recompute();
        }
    }

    /// Records the position of a partition's latest event (after [`Watermarks::observe`]).
    pub fn record_position(&mut self, partition: u32, position: u64) {
        if let Some(clock) = self.partitions.get_mut(partition as usize) {
            clock.position = Some(position);
        }
    }

    /// Marks partitions idle that have had no data for the idle timeout; returns whether
    /// the job's watermark advanced.
    pub fn tick(&mut self, now: Instant) -> bool {
        let Some(timeout) = self.idle_timeout else {
            return false;
        };
        let mut changed = false;
        for clock in &mut self.partitions {
            if !clock.idle && now.duration_since(clock.last_seen) >= timeout {
                clock.idle = true;
                changed = true;
            }
        }
        let before = self.current;
        if changed {
            self.recompute();
        }
        self.current > before
    }

    /// The source has ended: the watermark goes to the end of time.
    pub fn finish(&mut self) {
        self.finished = true;
        self.current = MAX_WATERMARK;
    }

    /// Restores the state of a checkpoint's `watermarks` section; the number of
    /// partitions must match.
    pub fn restore(&mut self, section: &Section) -> anyhow::Result<()> {
        let snapshot: WatermarkSnapshot = section.meta(SECTION_VERSION)?;
        if snapshot.partitions.len() != self.partitions.len() {
            anyhow::bail!(
                "the checkpoint has {} source partitions, the source now has {}",
                snapshot.partitions.len(),
                self.partitions.len()
            );
        }
        for (clock, max) in self.partitions.iter_mut().zip(&snapshot.partitions) {
            clock.max_timestamp = *max;
        }
        self.current = snapshot.current;
        self.finished = false;
        Ok(())
    }

    fn recompute(&mut self) {
        let active = self
            .partitions
            .iter()
            .filter(|p| p.assigned && !p.idle)
            .map(|p| self.partition_watermark(p))
            .min();
        // All partitions idle: nothing to go by, the watermark stays where it is.
        if let Some(min) = active {
            self.current = self.current.max(min);
        }
    }
}

/// The name of the watermarks' checkpoint section.
pub const SECTION: &str = "watermarks";
/// The format version of that section.
const SECTION_VERSION: u32 = 1;

/// Watermark state in a checkpoint: each partition's highest event time and the job's
/// watermark.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct WatermarkSnapshot {
    /// Highest event time per partition (`None` before its first event).
    partitions: Vec<Option<i64>>,
    /// The job's watermark.
    current: i64,
}

impl Checkpointed for Watermarks {
    fn snapshot(&mut self, _id: u64, _incremental: bool) -> anyhow::Result<Option<Section>> {
        let state = WatermarkSnapshot {
            partitions: self.partitions.iter().map(|p| p.max_timestamp).collect(),
            current: self.current,
        };
        Ok(Some(
            Section::new(SECTION, SECTION_VERSION).with_meta(&state)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_partition_watermark_is_max_minus_delay_minus_one() {
        let now = Instant::now();
        let mut w = Watermarks::new(1, ms(5), None);
        assert_eq!(w.observe(0, 100, now), MIN_WATERMARK);
        assert_eq!(w.current(), 94);
        assert_eq!(
            w.observe(0, 90, now),
            94,
            "an older event does not move it back"
        );
        assert_eq!(w.current(), 94);
        w.observe(0, 110, now);
        assert_eq!(w.current(), 104);
    }

    #[test]
    fn assigned_partitions_hold_it_back_and_revoked_ones_release_it_never_moving_it_back() {
        let now = Instant::now();
        let mut w = Watermarks::new(1, ms(0), None);
        w.observe(0, 100, now);
        assert_eq!(w.current(), 99);
        // Partition 3 arrives (a rebalance): it holds the watermark from now on, but
        // does not move it back.
        w.assign(3, now);
        assert_eq!(w.partitions().len(), 4);
        w.observe(0, 200, now);
        assert_eq!(w.current(), 99, "partition 3 has seen nothing yet");
        w.observe(3, 150, now);
        assert_eq!(w.current(), 149);
        // Partitions 1 and 2 were never assigned: they do not hold it back.
        w.revoke(3);
        assert_eq!(w.current(), 199, "only partition 0 is left");
        // Assigned again, it starts afresh.
        w.assign(3, now);
        assert_eq!(w.partitions()[3].max_timestamp, None);
        assert_eq!(w.current(), 199);
    }

    #[test]
    fn the_job_watermark_is_the_minimum_over_partitions() {
        let now = Instant::now();
        let mut w = Watermarks::new(2, ms(0), None);
        w.observe(0, 100, now);
        assert_eq!(
            w.current(),
            MIN_WATERMARK,
            "partition 1 has seen nothing yet"
        );
        w.observe(1, 50, now);
        assert_eq!(w.current(), 49);
        w.observe(1, 200, now);
        assert_eq!(w.current(), 99);
    }

    #[test]
    fn an_idle_partition_stops_holding_it_back_and_a_woken_one_never_moves_it_back() {
        let start = Instant::now();
        let mut w = Watermarks::new(2, ms(0), Some(ms(1000)));
        w.observe(0, 100, start);
        w.observe(1, 10, start);
        assert_eq!(w.current(), 9);
        w.observe(0, 500, start + ms(900));
        assert!(!w.tick(start + ms(999)));
        assert!(w.tick(start + ms(1000)), "partition 1 went idle");
        assert_eq!(w.current(), 499);
        assert!(w.partitions()[1].idle);
        assert_eq!(w.observe(1, 20, start + ms(1100)), 499);
        assert!(!w.partitions()[1].idle);
        assert_eq!(w.current(), 499, "the job watermark never goes back");
        w.observe(1, 700, start + ms(1200));
        assert_eq!(w.current(), 499, "partition 0 holds it now");
        w.observe(0, 800, start + ms(1200));
        assert_eq!(w.current(), 699);
    }

    #[test]
    fn all_idle_keeps_the_watermark_and_finish_goes_to_the_end_of_time() {
        let start = Instant::now();
        let mut w = Watermarks::new(1, ms(0), Some(ms(10)));
        w.observe(0, 100, start);
        w.tick(start + ms(20));
        assert_eq!(w.current(), 99);
        w.finish();
        assert_eq!(w.current(), MAX_WATERMARK);
    }
}
