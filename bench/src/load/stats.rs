//! What a run measured: per operation a latency histogram, successes,
//! expected refusals (deliberate 412s) and errors by status; plus the
//! projection lag. Each worker keeps its own and they merge at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 5 minutes, 3 digits.
const HIGHEST_MICROS: u64 = 300_000_000;

fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, HIGHEST_MICROS)
}

/// What one request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The status the scenario wanted.
    Ok,
    /// A refusal the scenario provoked on purpose (a stale If-Match's 412).
    Expected,
    /// Any other status.
    Status(u16),
    /// No response: connection refused or reset, timeout.
    Transport,
}

#[derive(Debug, Clone)]
pub struct OpStats {
    latency: Histogram<u64>,
    pub ok: u64,
    pub expected: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            latency: histogram(),
            ok: 0,
            expected: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Expected => self.expected += 1,
            Outcome::Status(code) => *self.errors.entry(code.to_string()).or_default() += 1,
            Outcome::Transport => *self.errors.entry("transport".into()).or_default() += 1,
        }
        // A request that got no answer has no meaningful latency.
        if outcome != Outcome::Transport {
            // Clamped into the histogram's range above.
            let _ = self.latency.record(micros(latency));
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        self.expected += other.expected;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    pub fn summary(&self, elapsed: Duration) -> OpSummary {
        let requests = self.ok + self.expected + self.error_count();
        let secs = elapsed.as_secs_f64().max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        let per_s = |n: u64| n as f64 / secs;
        OpSummary {
            requests,
            ok: self.ok,
            expected_conflicts: self.expected,
            errors: self.errors.clone(),
            throughput_per_s: per_s(self.ok + self.expected),
            latency_ms: Percentiles::of(&self.latency),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub ops: BTreeMap<&'static str, OpStats>,
    lag: Option<Histogram<u64>>,
}

impl Stats {
    pub fn record(&mut self, op: &'static str, outcome: Outcome, latency: Duration) {
        self.ops.entry(op).or_default().record(outcome, latency);
    }

    pub fn record_lag(&mut self, lag: Duration) {
        // Lag can be zero (already projected); store it as the 1 µs floor.
        let _ = self.lag.get_or_insert_with(histogram).record(micros(lag));
    }

    pub fn merge(&mut self, other: &Stats) {
        for (op, s) in &other.ops {
            self.ops.entry(op).or_default().merge(s);
        }
        if let Some(theirs) = &other.lag {
            let _ = self.lag.get_or_insert_with(histogram).add(theirs);
        }
    }

    pub fn total(&self) -> OpStats {
        let mut all = OpStats::default();
        for s in self.ops.values() {
            all.merge(s);
        }
        all
    }

    pub fn lag(&self) -> Option<Percentiles> {
        self.lag.as_ref().map(Percentiles::of)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpSummary {
    pub requests: u64,
    pub ok: u64,
    pub expected_conflicts: u64,
    /// By HTTP status, or `transport` when no response came.
    pub errors: BTreeMap<String, u64>,
    /// Answered as wanted (ok + expected conflicts) per second.
    pub throughput_per_s: f64,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn outcomes_are_counted_apart() {
        let mut s = OpStats::default();
        s.record(Outcome::Ok, ms(2));
        s.record(Outcome::Ok, ms(4));
        s.record(Outcome::Expected, ms(3));
        s.record(Outcome::Status(503), ms(1));
        s.record(Outcome::Status(503), ms(1));
        s.record(Outcome::Status(429), ms(1));
        s.record(Outcome::Transport, ms(10_000));
        let sum = s.summary(Duration::from_secs(2));
        assert_eq!(sum.requests, 7);
        assert_eq!(sum.ok, 2);
        assert_eq!(sum.expected_conflicts, 1);
        assert_eq!(sum.errors.get("503"), Some(&2));
        assert_eq!(sum.errors.get("429"), Some(&1));
        assert_eq!(sum.errors.get("transport"), Some(&1));
        // Three wanted answers in two seconds.
        assert!((sum.throughput_per_s - 1.5).abs() < 1e-9);
        // The transport failure has no latency; the slowest answer is 4 ms.
        assert_eq!(sum.latency_ms.count, 6);
        assert!((sum.latency_ms.max - 4.0).abs() < 0.01);
    }

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut s = OpStats::default();
        for i in 1..=100 {
            s.record(Outcome::Ok, ms(i));
        }
        let p = s.summary(Duration::from_secs(1)).latency_ms;
        // Three significant digits: within 0.1%.
        let near = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(near(p.p50, 50.0), "{p:?}");
        assert!(near(p.p90, 90.0), "{p:?}");
        assert!(near(p.p99, 99.0), "{p:?}");
        assert!(near(p.max, 100.0), "{p:?}");
        assert!(near(p.mean, 50.5), "{p:?}");
    }

    #[test]
    fn merging_workers_adds_everything_up() {
        let mut a = Stats::default();
        a.record("create", Outcome::Ok, ms(1));
        a.record("create", Outcome::Status(422), ms(1));
        a.record_lag(ms(5));
        let mut b = Stats::default();
        b.record("create", Outcome::Ok, ms(9));
        b.record("patch", Outcome::Expected, ms(2));
        b.record("patch", Outcome::Status(422), ms(2));
        b.record_lag(ms(7));
        b.record_lag(Duration::ZERO);
        a.merge(&b);

        let create = a.ops["create"].summary(Duration::from_secs(1));
        assert_eq!((create.ok, create.requests), (2, 3));
        let total = a.total().summary(Duration::from_secs(1));
        assert_eq!(total.requests, 5);
        assert_eq!(total.expected_conflicts, 1);
        assert_eq!(total.errors.get("422"), Some(&2));
        assert!((total.latency_ms.max - 9.0).abs() < 0.01);
        let lag = a.lag().unwrap_or_else(|| panic!("lag was recorded"));
        assert_eq!(lag.count, 3);
        assert!((lag.max - 7.0).abs() < 0.01);
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let s = Stats::default();
        let total = s.total().summary(Duration::from_secs(1));
        assert_eq!(total.requests, 0);
        assert!(total.latency_ms.max.abs() < f64::EPSILON);
        assert!(s.lag().is_none());
    }
}
