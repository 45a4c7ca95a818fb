//! A place in the whole log, shaped to hold an EventStoreDB `$all` position.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `commit` orders commits; `prepare` orders events within one.
///
/// Postgres: `commit` is the appending transaction's id (`xid8`), `prepare` the
/// event's identity column. EventStoreDB: the commit and prepare positions of
/// `$all`. Either way the log is ordered by `(commit, prepare)` and the
/// position a client sees (`Ack.position`) is `commit`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

impl Position {
    pub const START: Position = Position {
        commit: 0,
        prepare: 0,
    };

    pub fn new(commit: u64, prepare: u64) -> Self {
        Self { commit, prepare }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.commit, self.prepare)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a position is written commit/prepare, two unsigned integers")]
pub struct ParsePositionError;

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (c, p) = s.split_once('/').ok_or(ParsePositionError)?;
        Ok(Self {
            commit: c.parse().map_err(|_| ParsePositionError)?,
            prepare: p.parse().map_err(|_| ParsePositionError)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_commit_then_prepare() {
        let a = Position::new(5, 100);
        let b = Position::new(6, 1);
        let c = Position::new(6, 2);
        assert!(a < b && b < c);
        assert!(Position::START < a);
    }

    #[test]
    fn positions_hold_full_u64_and_round_trip_as_text() {
        let p = Position::new(u64::MAX, u64::MAX - 1);
        assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        assert!("12".parse::<Position>().is_err());
        assert!("-1/2".parse::<Position>().is_err());
    }
}
