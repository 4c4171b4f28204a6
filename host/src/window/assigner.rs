//! Which windows an event belongs to, with Flink's arithmetic.

use crate::config::{WindowConfig, WindowKind};

/// A window `[start, end)` of event time, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The last millisecond in the window: it fires when the watermark reaches this.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// Whether two (session) windows overlap or touch, and so merge.
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Assigns events to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// `[start, start + size)` with `start ≡ offset (mod size)`.
    Tumbling {
        /// Window length, ms.
        size: i64,
        /// Start offset, ms.
        offset: i64,
    },
    /// Every window of length `size` whose start is `≡ offset (mod slide)`.
    Sliding {
        /// Window length, ms.
        size: i64,
        /// Distance between starts, ms.
        slide: i64,
        /// Start offset, ms.
        offset: i64,
    },
    /// `[ts, ts + gap)`, merged with the key's other sessions it touches.
    Session {
        /// Inactivity gap, ms.
        gap: i64,
    },
}

/// Flink's `TimeWindow.getWindowStartWithOffset`: the start of the window of length
/// `size` (aligned to `offset`) that holds `timestamp`, for negative times too.
pub fn window_start(timestamp: i64, offset: i64, size: i64) -> i64 {
    // Times near the ends of i64 neither overflow nor wrap: a start before i64::MIN is
    // clamped to it (the i128 path is taken only there, off the common path).
    let Some(shifted) = timestamp.checked_sub(offset) else {
        let remainder = (i128::from(timestamp) - i128::from(offset)).rem_euclid(i128::from(size));
        return i64::try_from(i128::from(timestamp) - remainder).unwrap_or(i64::MIN);
    };
    timestamp
        .checked_sub(shifted.rem_euclid(size))
        .unwrap_or(i64::MIN)
}

impl Assigner {
    /// The assigner a `[window]` section describes (the config is already checked).
    pub fn from_config(config: &WindowConfig) -> Self {
        let ms = |d: Option<crate::config::ConfigDuration>| d.map_or(0, |d| d.as_millis());
        match config.kind {
            WindowKind::Tumbling => Assigner::Tumbling {
                size: ms(config.size),
                offset: config.offset.as_millis(),
            },
            WindowKind::Sliding => Assigner::Sliding {
                size: ms(config.size),
                slide: ms(config.slide),
                offset: config.offset.as_millis(),
            },
            WindowKind::Session => Assigner::Session {
                gap: ms(config.gap),
            },
        }
    }

    /// Whether windows merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, Assigner::Session { .. })
    }

    /// Appends the windows holding `timestamp` to `out`, latest start first (as Flink).
    pub fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>) {
        match *self {
            Assigner::Tumbling { size, offset } => {
                let start = window_start(timestamp, offset, size);
                out.push(TimeWindow {
                    start,
                    end: start.saturating_add(size),
                });
            }
            Assigner::Sliding {
                size,
                slide,
                offset,
            } => {
                let mut start = window_start(timestamp, offset, slide);
                let earliest = timestamp.saturating_sub(size);
                while start > earliest {
                    out.push(TimeWindow {
                        start,
                        end: start.saturating_add(size),
                    });
                    match start.checked_sub(slide) {
                        Some(next) => start = next,
                        None => break,
                    }
                }
            }
            Assigner::Session { gap } => out.push(TimeWindow {
                start: timestamp,
                end: timestamp.saturating_add(gap),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(a: Assigner, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        a.assign(ts, &mut out);
        out.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn times_at_the_ends_of_i64_neither_overflow_nor_wrap() {
        let assigners = [
            Assigner::Tumbling {
                size: 60_000,
                offset: 7,
            },
            Assigner::Sliding {
                size: 60_000,
                slide: 10_000,
                offset: 0,
            },
            Assigner::Session { gap: 30_000 },
        ];
        for a in assigners {
            for ts in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
                for (start, end) in assign(a, ts) {
                    assert!(
                        start <= ts && ts < end || end == i64::MAX,
                        "{a:?} at {ts}: [{start}, {end})"
                    );
                }
            }
        }
    }

    #[test]
    fn tumbling_windows_align_to_size_and_offset() {
        let t = Assigner::Tumbling {
            size: 10,
            offset: 0,
        };
        assert_eq!(assign(t, 0), vec![(0, 10)]);
        assert_eq!(assign(t, 9), vec![(0, 10)]);
        assert_eq!(assign(t, 10), vec![(10, 20)]);
        assert_eq!(assign(t, -1), vec![(-10, 0)]);
        let shifted = Assigner::Tumbling {
            size: 10,
            offset: 3,
        };
        assert_eq!(assign(shifted, 2), vec![(-7, 3)]);
        assert_eq!(assign(shifted, 3), vec![(3, 13)]);
    }

    #[test]
    fn sliding_windows_cover_every_start_within_size() {
        let s = Assigner::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        assert_eq!(assign(s, 7), vec![(5, 15), (0, 10)]);
        assert_eq!(assign(s, 5), vec![(5, 15), (0, 10)]);
        assert_eq!(assign(s, 4), vec![(0, 10), (-5, 5)]);
        let gappy = Assigner::Sliding {
            size: 5,
            slide: 10,
            offset: 0,
        };
        assert_eq!(assign(gappy, 3), vec![(0, 5)]);
        assert!(
            assign(gappy, 7).is_empty(),
            "between windows when slide > size"
        );
    }

    #[test]
    fn sessions_start_at_the_event_and_merge_when_touching() {
        let s = Assigner::Session { gap: 10 };
        assert_eq!(assign(s, 5), vec![(5, 15)]);
        let a = TimeWindow { start: 0, end: 10 };
        assert!(a.intersects(&TimeWindow { start: 10, end: 20 }));
        assert!(!a.intersects(&TimeWindow { start: 11, end: 21 }));
        assert_eq!(
            a.cover(&TimeWindow { start: 5, end: 30 }),
            TimeWindow { start: 0, end: 30 }
        );
    }
}
