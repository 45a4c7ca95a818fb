//! When a failed delivery is tried again: exponential backoff with jitter,
//! within a retry window that starts at the change's first failure. Pure, so
//! the schedule is tested without waiting for it.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (`WEBHOOK_BACKOFF_BASE_MS`).
    pub base: Duration,
    /// The longest wait between two attempts (`WEBHOOK_BACKOFF_MAX_MS`).
    pub max: Duration,
    /// How long a change is retried before the subscription is marked
    /// failing and paused (`WEBHOOK_RETRY_HOURS`).
    pub window: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(DateTime<Utc>),
    /// The window is spent: mark the subscription failing.
    GiveUp,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row: `base * 2^(failures-1)`,
    /// capped at `max`, then scaled by `0.5 + jitter / 2` (`jitter` in
    /// [0, 1)) so that receivers coming back are not hit by every retry at once.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let exp = self.base.saturating_mul(1_u32 << doublings).min(self.max);
        exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// After the `failures`-th failure at `now` of a change first failed at
    /// `since`: the next attempt, never later than the window's end (so the
    /// last attempt is made right at it), or give up once it has passed.
    pub fn next(
        &self,
        failures: u32,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Next {
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        let Some(end) = since.checked_add_signed(window) else {
            return Next::RetryAt(now + self.chrono_delay(failures, jitter));
        };
        if now >= end {
            return Next::GiveUp;
        }
        Next::RetryAt((now + self.chrono_delay(failures, jitter)).min(end))
    }

    fn chrono_delay(&self, failures: u32, jitter: f64) -> chrono::Duration {
        chrono::Duration::from_std(self.delay(failures, jitter)).unwrap_or(chrono::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(3600),
        window: Duration::from_secs(24 * 3600),
    };

    #[test]
    fn the_wait_doubles_from_the_base_up_to_the_cap() {
        let full: Vec<u64> = (1..=14).map(|n| B.delay(n, 1.0).as_secs()).collect();
        assert_eq!(
            full,
            [
                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600
            ]
        );
        assert_eq!(B.delay(1_000, 1.0), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_spreads_each_wait_over_its_upper_half() {
        assert_eq!(B.delay(4, 0.0), Duration::from_secs(4));
        assert_eq!(B.delay(4, 0.5), Duration::from_secs(6));
        assert_eq!(B.delay(4, 0.999_999).as_secs(), 7);
        // Out-of-range jitter cannot escape the band.
        assert_eq!(B.delay(4, 7.0), Duration::from_secs(8));
        assert_eq!(B.delay(4, -1.0), Duration::from_secs(4));
    }

    #[test]
    fn retries_stop_at_the_end_of_the_window_and_then_give_up() {
        let since = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hours = |h: i64| since + chrono::Duration::hours(h);
        assert_eq!(
            B.next(1, since, since, 1.0),
            Next::RetryAt(since + chrono::Duration::seconds(1))
        );
        // Near the end, the next attempt is at the end, not past it.
        assert_eq!(B.next(20, since, hours(23), 1.0), Next::RetryAt(hours(24)));
        assert_eq!(B.next(21, since, hours(24), 1.0), Next::GiveUp);
        assert_eq!(B.next(21, since, hours(30), 0.0), Next::GiveUp);
    }
}
