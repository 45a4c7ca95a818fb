//! What the projector tells listeners on `tasklog_projection` when a batch
//! commits: the new commit position, and whose tasks the batch changed, so a
//! query service can keep answers in memory and drop exactly the stale ones.
//!
//! Payload (the contract, `readmodel/README.md`): `<commit>;<owner>,<owner>,...`; `<commit>;` when
//! the batch changed no row; `<commit>;*` when anyone's rows may have changed
//! (a rebuild's swap, or more owners than a payload holds). A bare `<commit>`,
//! as projectors before this format sent, reads as `*`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use uuid::Uuid;

/// The channel the projector notifies after each committed batch.
pub const CHANNEL: &str = "tasklog_projection";

/// Postgres refuses payloads of 8000 bytes or more; 200 owners of 37 bytes
/// stay far below. A batch touching more owners says `*` instead.
const MAX_OWNERS: usize = 200;

/// Whose rows a commit may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    Owners(BTreeSet<Uuid>),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub commit: u64,
    pub touched: Touched,
}

impl Notice {
    pub fn payload(&self) -> String {
        let mut out = format!("{};", self.commit);
        match &self.touched {
            Touched::Owners(owners) if owners.len() <= MAX_OWNERS => {
                for (i, owner) in owners.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{owner}");
                }
            }
            Touched::Owners(_) | Touched::All => out.push('*'),
        }
        out
    }

    /// `None` when the payload is not one of ours.
    pub fn parse(payload: &str) -> Option<Self> {
        let (commit, owners) = match payload.trim().split_once(';') {
            Some((commit, owners)) => (commit, Some(owners)),
            None => (payload.trim(), None),
        };
        let commit = commit.parse().ok()?;
        let touched = match owners {
            None | Some("*") => Touched::All,
            Some("") => Touched::Owners(BTreeSet::new()),
            Some(list) => Touched::Owners(
                list.split(',')
                    .map(|owner| owner.parse().ok())
                    .collect::<Option<_>>()?,
            ),
        };
        Some(Self { commit, touched })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(n: usize) -> BTreeSet<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn a_notice_reads_back_as_it_was_written() {
        for touched in [
            Touched::Owners(owners(0)),
            Touched::Owners(owners(1)),
            Touched::Owners(owners(MAX_OWNERS)),
            Touched::All,
        ] {
            let notice = Notice {
                commit: 42,
                touched,
            };
            assert_eq!(Notice::parse(&notice.payload()), Some(notice));
        }
    }

    #[test]
    fn too_many_owners_are_sent_as_everyone_within_postgres_limit() {
        let notice = Notice {
            commit: u64::MAX,
            touched: Touched::Owners(owners(MAX_OWNERS + 1)),
        };
        let payload = notice.payload();
        assert_eq!(payload, format!("{};*", u64::MAX));
        let largest = Notice {
            commit: u64::MAX,
            touched: Touched::Owners(owners(MAX_OWNERS)),
        }
        .payload();
        assert!(largest.len() < 8000, "{} bytes", largest.len());
    }

    #[test]
    fn a_bare_position_from_an_older_projector_means_everyone() {
        assert_eq!(
            Notice::parse(" 17 "),
            Some(Notice {
                commit: 17,
                touched: Touched::All
            })
        );
    }

    #[test]
    fn anything_else_is_not_a_notice() {
        for payload in ["", "x", "-1;", "1;nope", "1;*,", "1.5", "1;,"] {
            assert_eq!(Notice::parse(payload), None, "{payload:?}");
        }
    }
}
