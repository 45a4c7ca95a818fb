//! `readmodel.checkpoints`: how far into the log each projection stored in
//! Postgres is, and which generation table its rows are in; and how a log
//! position is stored there.

use sqlx::{PgConnection, PgExecutor};
use tasklog_events::Position;

use crate::error::ReadModelError;
use crate::notice::{self, Notice, Touched};

/// The Postgres read model's row in `readmodel.checkpoints` (and the name of
/// the projection everywhere: metrics, leases, logs).
pub const TASKS: &str = "tasks";
/// The Redis counts' projection name (its checkpoint lives in Redis, see
/// [`crate::counts`]).
pub const COUNTS: &str = "counts";

/// Where the read model stands: which generation table is current and the
/// position it has applied (`None` before the first event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TasksCheckpoint {
    pub generation: i32,
    pub position: Option<Position>,
}

/// A position as stored: each u64 half as its bit pattern in a bigint (an
/// EventStoreDB position may exceed `i64::MAX`); no position is `(0, 0)`.
#[allow(clippy::cast_possible_wrap)]
pub fn to_db(position: Option<Position>) -> (i64, i64) {
    let p = position.unwrap_or(Position::START);
    (p.commit as i64, p.prepare as i64)
}

/// The inverse of [`to_db`].
#[allow(clippy::cast_sign_loss)]
pub fn from_db(commit: i64, prepare: i64) -> Option<Position> {
    let p = Position::new(commit as u64, prepare as u64);
    (p != Position::START).then_some(p)
}

/// Reads the `tasks` checkpoint; `lock` also locks the row until the
/// transaction ends (a rebuild's swap does, so that no batch commits between
/// its read and its write).
///
/// # Errors
/// When Postgres fails or the row is missing (the schema is not migrated).
pub async fn read_checkpoint(
    conn: &mut PgConnection,
    lock: bool,
) -> Result<TasksCheckpoint, ReadModelError> {
    let sql = if lock {
        "SELECT generation, commit_position, prepare_position FROM readmodel.checkpoints \
         WHERE projection = $1 FOR UPDATE"
    } else {
        "SELECT generation, commit_position, prepare_position FROM readmodel.checkpoints \
         WHERE projection = $1"
    };
    let row: Option<(i32, i64, i64)> = sqlx::query_as(sql)
        .bind(TASKS)
        .fetch_optional(&mut *conn)
        .await?;
    let (generation, commit, prepare) = row.ok_or_else(|| {
        ReadModelError::Corrupt("readmodel.checkpoints has no 'tasks' row".into())
    })?;
    Ok(TasksCheckpoint {
        generation,
        position: from_db(commit, prepare),
    })
}

/// The commit position the `tasks` read model has reached (0 before its
/// first batch): what the query service reports and waits on.
///
/// # Errors
/// When Postgres fails, or the read model does not exist yet.
pub async fn projection_position(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let commit: Option<i64> = sqlx::query_scalar(
        "SELECT commit_position FROM readmodel.checkpoints WHERE projection = $1",
    )
    .bind(TASKS)
    .fetch_optional(db)
    .await?;
    Ok(commit.map_or(0, |c| from_db(c, 0).map_or(0, |p| p.commit)))
}

/// What listeners are told when `checkpoint` commits.
pub fn notice_payload(checkpoint: TasksCheckpoint, touched: Touched) -> String {
    Notice {
        commit: checkpoint.position.unwrap_or(Position::START).commit,
        touched,
    }
    .payload()
}

/// The compare-and-set that fences every batch, as a CTE named `moved`:
/// moves the `tasks` checkpoint from ($5, $6) in generation $4 to ($2, $3)
/// and yields one row, or yields none (and writes nothing) when another
/// writer moved it first (a second instance, a rebuild's swap). $1 is
/// [`TASKS`]. Statements that write rows add `WHERE EXISTS (SELECT FROM
/// moved)`, so rows never land without their checkpoint.
pub const COMPARE_AND_SET: &str = "moved AS ( \
     UPDATE readmodel.checkpoints \
     SET commit_position = $2, prepare_position = $3, updated_at = now() \
     WHERE projection = $1 AND generation = $4 \
       AND commit_position = $5 AND prepare_position = $6 \
     RETURNING 1)";

/// Stores the checkpoint unconditionally (a rebuild's swap, under the row
/// lock) and notifies listeners of it and of whose rows changed (delivered
/// on commit).
///
/// # Errors
/// When Postgres fails.
pub async fn write_checkpoint(
    conn: &mut PgConnection,
    checkpoint: TasksCheckpoint,
    touched: Touched,
) -> Result<(), ReadModelError> {
    let (commit, prepare) = to_db(checkpoint.position);
    let payload = notice_payload(checkpoint, touched);
    sqlx::query(
        "WITH moved AS ( \
             UPDATE readmodel.checkpoints \
             SET commit_position = $2, prepare_position = $3, generation = $4, updated_at = now() \
             WHERE projection = $1 RETURNING 1) \
         SELECT pg_notify($5, $6) FROM moved",
    )
    .bind(TASKS)
    .bind(commit)
    .bind(prepare)
    .bind(checkpoint.generation)
    .bind(notice::CHANNEL)
    .bind(payload)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_beyond_i64_survive_the_bigint_round_trip() {
        for p in [
            Position::new(1, 2),
            Position::new(u64::MAX, u64::MAX - 1),
            Position::new(1 << 63, 0),
        ] {
            let (c, pr) = to_db(Some(p));
            assert_eq!(from_db(c, pr), Some(p));
        }
        assert_eq!(to_db(None), (0, 0));
        assert_eq!(from_db(0, 0), None);
    }
}
