//! The drill's verdicts, pure: a restored log against the acknowledged
//! writes, after a crash (what survived, whether anything was lost that WAL
//! order says must have survived, the RPO) and at a moment (exactly the
//! writes before it).

use std::fmt;

use chrono::{DateTime, Utc};

use super::ledger::{Ledger, Write};
use super::restored::Restored;

/// How an acknowledged write fares in the restored log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Its version is there, at the position the reply named.
    Intact,
    /// Its version is there at another position: not the write that was acknowledged.
    Moved,
    Missing,
}

fn find(restored: &Restored, w: &Write) -> Found {
    match restored.position_of(w.id, w.version) {
        Some(p) if p == w.position => Found::Intact,
        Some(_) => Found::Moved,
        None => Found::Missing,
    }
}

#[derive(Debug)]
pub struct CrashReport {
    pub acknowledged: usize,
    pub restored: usize,
    pub lost: usize,
    /// Lost although a write sent after it was acknowledged survived: WAL is
    /// replayed in order, so it was inside what was archived.
    pub lost_inside_window: Vec<Write>,
    pub moved: Vec<Write>,
    /// From the newest event restored to the kill.
    pub rpo_s: Option<f64>,
}

impl CrashReport {
    pub fn passed(&self) -> bool {
        self.lost_inside_window.is_empty() && self.moved.is_empty()
    }
}

/// A restore after the server was lost: every acknowledged write that WAL
/// order puts before one that survived must be there with its version and
/// position; the others are the RPO.
pub fn after_crash(ledger: &Ledger, restored: &Restored) -> CrashReport {
    let found: Vec<Found> = ledger.writes.iter().map(|w| find(restored, w)).collect();
    // The latest moment a surviving write was sent: any write acknowledged
    // before it committed earlier in the WAL, so it must have survived too.
    let newest_survivor_sent = ledger
        .writes
        .iter()
        .zip(&found)
        .filter(|(_, f)| **f == Found::Intact)
        .map(|(w, _)| w.sent_at)
        .max();
    let mut report = CrashReport {
        acknowledged: ledger.writes.len(),
        restored: 0,
        lost: 0,
        lost_inside_window: Vec::new(),
        moved: Vec::new(),
        rpo_s: ledger
            .killed_at
            .zip(restored.newest_recorded)
            .map(|(killed, newest)| seconds(killed - newest).max(0.0)),
    };
    for (w, f) in ledger.writes.iter().zip(found) {
        match f {
            Found::Intact => report.restored += 1,
            Found::Moved => report.moved.push(w.clone()),
            Found::Missing => {
                report.lost += 1;
                if newest_survivor_sent.is_some_and(|s| w.acked_at < s) {
                    report.lost_inside_window.push(w.clone());
                }
            }
        }
    }
    report
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in self.lost_inside_window.iter().take(10) {
            writeln!(f, "LOST inside the archived window: {w:?}")?;
        }
        for w in self.moved.iter().take(10) {
            writeln!(f, "WRONG position for an acknowledged version: {w:?}")?;
        }
        write!(
            f,
            "check: acknowledged={} restored={} lost={} lost_inside_window={} wrong_position={} rpo_s={}",
            self.acknowledged,
            self.restored,
            self.lost,
            self.lost_inside_window.len(),
            self.moved.len(),
            self.rpo_s
                .map_or_else(|| "unknown".to_owned(), |s| format!("{s:.1}")),
        )
    }
}

#[derive(Debug)]
pub struct MomentReport {
    pub target: DateTime<Utc>,
    /// Writes acknowledged before the moment.
    pub expected: usize,
    pub present: usize,
    pub missing: Vec<Write>,
    /// Writes sent after the moment that are there all the same.
    pub unexpected: Vec<Write>,
    /// Writes in flight across the moment: the target was not a quiet one.
    pub straddling: usize,
    /// Events recorded after the moment (their transactions began after it).
    pub later_events: bool,
}

impl MomentReport {
    pub fn passed(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.straddling == 0
            && !self.later_events
            && self.expected > 0
    }
}

/// A restore to `target`: exactly the writes acknowledged before it.
pub fn at_moment(ledger: &Ledger, restored: &Restored, target: DateTime<Utc>) -> MomentReport {
    let mut report = MomentReport {
        target,
        expected: 0,
        present: 0,
        missing: Vec::new(),
        unexpected: Vec::new(),
        straddling: 0,
        later_events: restored.newest_recorded.is_some_and(|n| n > target),
    };
    for w in &ledger.writes {
        let there = find(restored, w) == Found::Intact;
        if w.acked_at < target {
            report.expected += 1;
            if there {
                report.present += 1;
            } else {
                report.missing.push(w.clone());
            }
        } else if w.sent_at > target {
            if restored.position_of(w.id, w.version).is_some() {
                report.unexpected.push(w.clone());
            }
        } else {
            report.straddling += 1;
        }
    }
    report
}

impl fmt::Display for MomentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in self.missing.iter().take(10) {
            writeln!(f, "MISSING (acknowledged before the moment): {w:?}")?;
        }
        for w in self.unexpected.iter().take(10) {
            writeln!(f, "UNEXPECTED (sent after the moment): {w:?}")?;
        }
        write!(
            f,
            "check: moment={} expected={} present={} missing={} unexpected={} straddling={} later_events={}",
            self.target
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            self.expected,
            self.present,
            self.missing.len(),
            self.unexpected.len(),
            self.straddling,
            self.later_events,
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use uuid::Uuid;

    use super::*;
    use crate::drill::ledger::Kind;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(1_000_000 + ms)
    }

    /// A write sent at `sent` ms, acknowledged 5 ms later, at version 0 of a
    /// new task, position `sent`.
    fn write(sent: i64) -> Write {
        Write {
            kind: Kind::Create,
            id: Uuid::new_v4(),
            version: 0,
            position: sent as u64,
            sent_at: at(sent),
            acked_at: at(sent + 5),
        }
    }

    fn ledger(writes: &[Write], killed: i64) -> Ledger {
        Ledger {
            writes: writes.to_vec(),
            killed_at: Some(at(killed)),
            ..Ledger::default()
        }
    }

    fn restored_with(writes: &[&Write]) -> Restored {
        let mut r = Restored::default();
        for w in writes {
            r.record(&format!("task-{}", w.id), w.version, w.position, w.sent_at);
        }
        r
    }

    #[test]
    fn a_crash_losing_only_the_newest_writes_passes_and_measures_the_rpo() {
        // given three writes one after another, the last not archived
        let (a, b, c) = (write(0), write(10), write(20));
        let restored = restored_with(&[&a, &b]);
        // when
        let report = after_crash(&ledger(&[a, b, c], 1030), &restored);
        // then
        assert!(report.passed(), "{report}");
        assert_eq!(
            (report.acknowledged, report.restored, report.lost),
            (3, 2, 1)
        );
        assert_eq!(report.rpo_s, Some(1.02));
    }

    #[test]
    fn a_write_missing_before_a_survivor_is_lost_inside_the_window() {
        // given the first write missing while a later one survived
        let (a, b) = (write(0), write(10));
        let restored = restored_with(&[&b]);
        // when
        let report = after_crash(&ledger(&[a.clone(), b], 20), &restored);
        // then
        assert!(!report.passed());
        assert_eq!(report.lost_inside_window.len(), 1);
        assert_eq!(report.lost_inside_window[0].id, a.id);
    }

    #[test]
    fn writes_in_flight_together_may_be_lost_in_either_order() {
        // given b sent before a was acknowledged: either may commit first
        let a = write(0);
        let mut b = write(2);
        b.acked_at = at(4);
        let restored = restored_with(&[&b]);
        // when
        let report = after_crash(&ledger(&[a, b], 20), &restored);
        // then
        assert!(report.passed(), "{report}");
        assert_eq!(report.lost, 1);
    }

    #[test]
    fn a_version_at_another_position_fails_the_crash_check() {
        // given the log holds the version at a position the reply did not name
        let a = write(0);
        let mut moved = a.clone();
        moved.position += 1;
        let restored = restored_with(&[&moved]);
        // when
        let report = after_crash(&ledger(&[a], 20), &restored);
        // then
        assert!(!report.passed());
        assert_eq!(report.moved.len(), 1);
    }

    #[test]
    fn a_restore_to_a_quiet_moment_holds_exactly_the_writes_before_it() {
        // given writes before and after a moment at 50 ms
        let (a, b, c) = (write(0), write(10), write(100));
        let restored = restored_with(&[&a, &b]);
        // when
        let report = at_moment(&ledger(&[a, b, c], 200), &restored, at(50));
        // then
        assert!(report.passed(), "{report}");
        assert_eq!((report.expected, report.present), (2, 2));
    }

    #[test]
    fn a_restore_to_a_moment_fails_on_a_later_write_or_a_missing_earlier_one() {
        let (a, b, c) = (write(0), write(10), write(100));
        let all = ledger(&[a.clone(), b.clone(), c.clone()], 200);
        // when a write sent after the moment is there
        let too_much = at_moment(&all, &restored_with(&[&a, &b, &c]), at(50));
        // and when one acknowledged before it is not
        let too_little = at_moment(&all, &restored_with(&[&a]), at(50));
        // then both fail
        assert!(!too_much.passed());
        assert_eq!(too_much.unexpected.len(), 1);
        assert!(too_much.later_events);
        assert!(!too_little.passed());
        assert_eq!(too_little.missing.len(), 1);
    }

    #[test]
    fn a_moment_with_a_write_in_flight_is_refused() {
        // given the moment falls between a write's send and its acknowledgement
        let a = write(0);
        let restored = restored_with(&[&a]);
        // when
        let report = at_moment(&ledger(&[a], 200), &restored, at(3));
        // then
        assert!(!report.passed());
        assert_eq!(report.straddling, 1);
    }
}
