//! The Postgres read model (`readmodel.tasks`) as a projection: each batch,
//! its checkpoint and the NOTIFY in one transaction, set-based.

use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tasklog_events::{EventStore, Position, RecordedEvent};
use uuid::Uuid;

use crate::error::ProjectorError;
use crate::fold::{TaskRow, decode_batch, fold_rows, touched_ids};
use crate::notice::{self, Notice, Touched};
use crate::projection::{Applied, Projection, after, report_skipped};
use crate::rows;

/// The projection's name in `readmodel.checkpoints`.
pub const TASKS: &str = "tasks";

/// Where the read model stands: which generation table is current and the
/// position it has applied (`None` before the first event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TasksCheckpoint {
    pub generation: i32,
    pub position: Option<Position>,
}

/// Positions are stored as the u64 bit pattern in a bigint (READMODEL.md).
#[allow(clippy::cast_possible_wrap)]
pub fn to_db(position: Option<Position>) -> (i64, i64) {
    let p = position.unwrap_or(Position::START);
    (p.commit as i64, p.prepare as i64)
}

#[allow(clippy::cast_sign_loss)]
pub fn from_db(commit: i64, prepare: i64) -> Option<Position> {
    let p = Position::new(commit as u64, prepare as u64);
    (p != Position::START).then_some(p)
}

/// Reads the checkpoint row; `lock` also locks it until the transaction ends,
/// which serialises batch applies and a rebuild's swap.
///
/// # Errors
/// When Postgres fails or the row is missing (the schema is not migrated).
pub async fn read_checkpoint(
    conn: &mut PgConnection,
    lock: bool,
) -> Result<TasksCheckpoint, ProjectorError> {
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
        ProjectorError::Corrupt("readmodel.checkpoints has no 'tasks' row".into())
    })?;
    Ok(TasksCheckpoint {
        generation,
        position: from_db(commit, prepare),
    })
}

/// Stores the checkpoint and notifies listeners of it and of whose rows
/// changed (delivered on commit).
///
/// # Errors
/// When Postgres fails.
pub async fn write_checkpoint(
    conn: &mut PgConnection,
    checkpoint: TasksCheckpoint,
    touched: Touched,
) -> Result<(), ProjectorError> {
    let (commit, prepare) = to_db(checkpoint.position);
    let payload = Notice {
        commit: checkpoint.position.unwrap_or(Position::START).commit,
        touched,
    }
    .payload();
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

/// Folds `events` into generation `generation` inside the caller's
/// transaction: one SELECT of the touched rows, then one upsert and one
/// delete. Returns the owners whose rows changed.
///
/// # Errors
/// When Postgres fails or a stored row cannot be read.
pub async fn apply_events(
    conn: &mut PgConnection,
    generation: i32,
    events: &[RecordedEvent],
) -> Result<BTreeSet<Uuid>, ProjectorError> {
    let (decoded, skipped) = decode_batch(events);
    report_skipped(TASKS, &skipped);
    let ids = touched_ids(&decoded);
    let mut current = rows::load(conn, generation, &ids).await?;
    // Owners never change, but a deleted row leaves `current` in the fold.
    let mut owners: BTreeSet<Uuid> = current.values().map(|row| row.task.owner.0).collect();
    let changes = fold_rows(&mut current, &decoded);
    let upserts: Vec<&TaskRow> = changes
        .upserts
        .iter()
        .filter_map(|id| current.get(id))
        .collect();
    owners.extend(upserts.iter().map(|row| row.task.owner.0));
    rows::upsert(conn, generation, &upserts).await?;
    rows::delete(conn, generation, &changes.deletes).await?;
    Ok(owners)
}

#[derive(Clone)]
pub struct TasksProjection {
    db: PgPool,
}

impl TasksProjection {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Projection for TasksProjection {
    type Checkpoint = TasksCheckpoint;

    fn name(&self) -> &'static str {
        TASKS
    }

    fn position(checkpoint: &TasksCheckpoint) -> Option<Position> {
        checkpoint.position
    }

    async fn checkpoint(&self) -> Result<TasksCheckpoint, ProjectorError> {
        let mut conn = self.db.acquire().await?;
        read_checkpoint(&mut conn, false).await
    }

    async fn apply(
        &self,
        _store: &dyn EventStore,
        expected: &TasksCheckpoint,
        events: &[RecordedEvent],
    ) -> Result<Applied<TasksCheckpoint>, ProjectorError> {
        let events = after(events, expected.position);
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(Applied::Done(*expected));
        };
        let mut tx = self.db.begin().await?;
        let stored = read_checkpoint(&mut tx, true).await?;
        if stored != *expected {
            tx.rollback().await?;
            return Ok(Applied::Moved(stored));
        }
        let owners = apply_events(&mut tx, stored.generation, events).await?;
        let next = TasksCheckpoint {
            generation: stored.generation,
            position: Some(last),
        };
        write_checkpoint(&mut tx, next, Touched::Owners(owners)).await?;
        tx.commit().await?;
        Ok(Applied::Done(next))
    }
}
