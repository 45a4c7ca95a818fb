//! Projection lag by observation: writers note each acknowledged position and
//! when its 2xx arrived; one observer reads `X-Projection-Position` over and
//! over and, each time it moves, settles every write at or below it. The lag of
//! a write is the observer's answer time minus the write's 2xx time, so it is
//! at most one poll late; nobody waits on the projection, so measuring does
//! not slow the writers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct LagTracker {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The highest projection position observed so far.
    seen: Option<u64>,
    /// Acknowledged writes not yet observed as projected: position -> 2xx times.
    pending: BTreeMap<u64, Vec<Instant>>,
}

impl LagTracker {
    /// A write at `position` got its 2xx at `acked`. When the projection was
    /// already seen past it, its lag is zero and returned at once.
    pub fn expect(&self, position: u64, acked: Instant) -> Option<Duration> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.seen.is_some_and(|seen| seen >= position) {
            return Some(Duration::ZERO);
        }
        inner.pending.entry(position).or_default().push(acked);
        None
    }

    /// The observer saw the projection at `position` in an answer received at
    /// `at`; returns the lag of every write that this settles.
    pub fn observe(&self, position: u64, at: Instant) -> Vec<Duration> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.seen.is_some_and(|seen| seen >= position) {
            return Vec::new();
        }
        inner.seen = Some(position);
        let later = inner.pending.split_off(&(position.saturating_add(1)));
        let settled = std::mem::replace(&mut inner.pending, later);
        settled
            .into_values()
            .flatten()
            .map(|acked| at.saturating_duration_since(acked))
            .collect()
    }

    /// Writes still waiting to be seen projected.
    pub fn pending(&self) -> usize {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.pending.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_settles_every_write_at_or_below_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let tracker = LagTracker::default();
        assert_eq!(tracker.expect(10, t0), None);
        assert_eq!(tracker.expect(20, t0 + ms(1)), None);
        assert_eq!(tracker.expect(30, t0 + ms(2)), None);
        assert_eq!(tracker.pending(), 3);

        let mut lags = tracker.observe(20, t0 + ms(5));
        lags.sort();
        assert_eq!(lags, vec![ms(4), ms(5)]);
        assert_eq!(tracker.pending(), 1);

        // An older or equal position settles nothing new.
        assert!(tracker.observe(15, t0 + ms(6)).is_empty());
        assert!(tracker.observe(20, t0 + ms(6)).is_empty());
        assert_eq!(tracker.observe(31, t0 + ms(9)), vec![ms(7)]);
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn a_write_already_projected_when_acknowledged_has_no_lag() {
        let t0 = Instant::now();
        let tracker = LagTracker::default();
        assert!(tracker.observe(100, t0).is_empty());
        assert_eq!(tracker.expect(100, t0), Some(Duration::ZERO));
        assert_eq!(tracker.expect(99, t0), Some(Duration::ZERO));
        assert_eq!(tracker.expect(101, t0), None);
    }

    #[test]
    fn an_observation_answered_before_the_ack_counts_as_zero_not_negative() {
        let t0 = Instant::now();
        let tracker = LagTracker::default();
        let acked = t0 + Duration::from_millis(3);
        assert_eq!(tracker.expect(5, acked), None);
        assert_eq!(tracker.observe(5, t0), vec![Duration::ZERO]);
    }
}
