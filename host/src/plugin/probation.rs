//! A new version's probation after a hot swap: the version it replaced is kept, ready to
//! take over again, until the probation ends. Stages and window aggregates share it.
//!
//! Invariant: once the probation's end has passed, the kept version is gone; a zero
//! probation keeps nothing.

use std::time::{Duration, Instant};

/// The version kept during a probation (`T`: what a rollback needs back).
#[derive(Debug)]
pub(super) struct Probation<T> {
    kept: Option<(T, Instant)>,
}

impl<T> Default for Probation<T> {
    fn default() -> Self {
        Self { kept: None }
    }
}

impl<T> Probation<T> {
    /// Starts a probation of `length` keeping `previous` (none when `length` is zero).
    pub(super) fn begin(&mut self, previous: T, length: Duration) {
        self.kept = (!length.is_zero()).then(|| (previous, Instant::now() + length));
    }

    /// Ends the probation early: the kept version is dropped.
    pub(super) fn end(&mut self) {
        self.kept = None;
    }

    /// Whether a version is kept to roll back to (ending a probation that has run out).
    pub(super) fn is_on(&mut self) -> bool {
        if self
            .kept
            .as_ref()
            .is_some_and(|(_, until)| Instant::now() >= *until)
        {
            self.kept = None; // probation passed
        }
        self.kept.is_some()
    }

    /// The kept version, for a rollback (ending the probation).
    pub(super) fn take(&mut self) -> Option<T> {
        self.kept.take().map(|(previous, _)| previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_previous_version_until_the_probation_ends() {
        let mut probation = Probation::default();
        probation.begin("v1", Duration::from_secs(60));
        assert!(probation.is_on());
        assert_eq!(probation.take(), Some("v1"));
        assert!(!probation.is_on());

        probation.begin("v1", Duration::ZERO);
        assert!(!probation.is_on(), "a zero probation keeps nothing");
        probation.begin("v1", Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(1));
        assert!(!probation.is_on(), "run out");
        assert_eq!(probation.take(), None);
    }
}
