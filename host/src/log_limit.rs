//! Repeated log lines, limited. A condition that lasts (a Kafka cluster that is down,
//! which librdkafka reports every few tens of milliseconds) is logged when it begins and
//! then once per [`QUIET_PERIOD`] while it lasts, saying how many lines were left out,
//! instead of tens of lines a second.
//!
//! Invariants (per [`Repeats`], one per place that logs):
//! - A line not logged there within [`QUIET_PERIOD`] is logged at once.
//! - The same line again within [`QUIET_PERIOD`] of its last logging is counted, not
//!   logged; when it is next logged, it says how many times it was left out.
//! - Up to [`LINES_KEPT`] different lines are followed at once (librdkafka's threads
//!   report the same outage per broker connection, interleaved); a line beyond them
//!   replaces the one logged longest ago.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the same line is left out after it was logged.
pub const QUIET_PERIOD: Duration = Duration::from_secs(10);

/// How many different lines one place follows.
pub const LINES_KEPT: usize = 8;

/// The lines logged at one place: each, when it was last logged, and how many repeats of
/// it were left out since.
#[derive(Debug, Default)]
pub struct Repeats(Mutex<Vec<Logged>>);

#[derive(Debug)]
struct Logged {
    line: String,
    at: Instant,
    left_out: u64,
}

impl Repeats {
    /// Logs `line` through `emit` unless it was logged here within [`QUIET_PERIOD`] before
    /// `now`; what `emit` is given then ends with how many repeats were left out, if any.
    pub fn log(&self, line: String, now: Instant, emit: impl FnOnce(&str)) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(logged) = lines.iter_mut().find(|l| l.line == line) else {
            emit(&line);
            if lines.len() == LINES_KEPT {
                let oldest = (0..lines.len()).min_by_key(|&i| lines[i].at);
                lines.swap_remove(oldest.expect("LINES_KEPT is not 0"));
            }
            lines.push(Logged {
                line,
                at: now,
                left_out: 0,
            });
            return;
        };
        if now.saturating_duration_since(logged.at) < QUIET_PERIOD {
            logged.left_out += 1;
            return;
        }
        match std::mem::take(&mut logged.left_out) {
            0 => emit(&line),
            1 => emit(&format!("{line} (once more since it was last logged)")),
            n => emit(&format!("{line} ({n} times more since it was last logged)")),
        }
        logged.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(repeats: &Repeats, line: &str, at: Instant) -> Option<String> {
        let mut out = None;
        repeats.log(line.to_owned(), at, |text| out = Some(text.to_owned()));
        out
    }

    #[test]
    fn a_repeated_line_is_logged_once_per_period_with_a_count() {
        let repeats = Repeats::default();
        let start = Instant::now();
        let down = "AllBrokersDown";
        assert_eq!(logged(&repeats, down, start).as_deref(), Some(down));
        for ms in (50..10_000).step_by(50) {
            assert_eq!(
                logged(&repeats, down, start + Duration::from_millis(ms)),
                None
            );
        }
        let again = logged(&repeats, down, start + QUIET_PERIOD).unwrap();
        assert_eq!(
            again,
            format!("{down} (199 times more since it was last logged)")
        );
        assert_eq!(logged(&repeats, down, start + QUIET_PERIOD), None);
        let later = start + QUIET_PERIOD * 2;
        assert_eq!(
            logged(&repeats, down, later).unwrap(),
            format!("{down} (once more since it was last logged)")
        );
        assert_eq!(
            logged(&repeats, down, later + QUIET_PERIOD).as_deref(),
            Some(down)
        );
    }

    #[test]
    fn interleaved_lines_are_each_logged_once_per_period() {
        let repeats = Repeats::default();
        let start = Instant::now();
        let lines: Vec<String> = (0..LINES_KEPT)
            .map(|i| format!("broker {i} down"))
            .collect();
        for round in 0..100 {
            for line in &lines {
                let at = start + Duration::from_millis(round);
                assert_eq!(logged(&repeats, line, at).is_some(), round == 0, "{line}");
            }
        }
        // One line more than are followed: the one logged longest ago is forgotten, and
        // logged at once when it comes back.
        assert!(logged(&repeats, "leader moved", start).is_some());
        assert!(logged(&repeats, &lines[0], start).is_some());
        assert!(logged(&repeats, &lines[1], start).is_none());
    }
}
