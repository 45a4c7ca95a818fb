//! The Postgres read model (`readmodel.tasks`) as a projection: each batch,
//! its checkpoint and the NOTIFY in one transaction, set-based.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tasklog_events::domain::TaskId;
use tasklog_events::{EventStore, Position, RecordedEvent};
use uuid::Uuid;

use crate::error::ProjectorError;
use crate::fold::{TaskEventAt, TaskRow, decode_batch, fold_rows, ids_with_history};
use crate::notice::{self, Notice, Touched};
use crate::projection::{Applied, Projection, after, report_skipped};
use crate::rows::{self, RowArrays};

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

/// What listeners are told when `checkpoint` commits.
fn notice_payload(checkpoint: TasksCheckpoint, touched: Touched) -> String {
    Notice {
        commit: checkpoint.position.unwrap_or(Position::START).commit,
        touched,
    }
    .payload()
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

/// A batch ready to commit: what it writes, folded against the stored rows.
struct Folded<'a> {
    upserts: Vec<&'a TaskRow>,
    deletes: Vec<TaskId>,
    /// Owners whose rows the batch changes, for the notice.
    owners: BTreeSet<Uuid>,
}

/// Reads the stored rows the fold needs (none when every touched task is
/// created in the batch), then folds `decoded` into them.
async fn fold_batch<'a>(
    conn: &mut PgConnection,
    generation: i32,
    decoded: &[TaskEventAt],
    current: &'a mut HashMap<TaskId, TaskRow>,
) -> Result<Folded<'a>, ProjectorError> {
    *current = rows::load(conn, generation, &ids_with_history(decoded)).await?;
    // Owners never change, but a deleted row leaves `current` in the fold.
    let mut owners: BTreeSet<Uuid> = current.values().map(|row| row.task.owner.0).collect();
    let changes = fold_rows(current, decoded);
    let current: &'a HashMap<TaskId, TaskRow> = current;
    let upserts: Vec<&TaskRow> = changes
        .upserts
        .iter()
        .filter_map(|id| current.get(id))
        .collect();
    owners.extend(upserts.iter().map(|row| row.task.owner.0));
    Ok(Folded {
        upserts,
        deletes: changes.deletes,
        owners,
    })
}

/// Writes a folded batch and moves the checkpoint from `expected` to `next`
/// in ONE statement (so one round trip and one implicit transaction), which
/// writes nothing unless the stored checkpoint is still `expected`: another
/// writer that moved it (a second instance, a replay, a rebuild's swap)
/// holds the row lock first, and this UPDATE then finds no row. The rows are
/// written only `WHERE EXISTS (SELECT FROM moved)`, so never without the
/// checkpoint. Returns false when the checkpoint had moved.
async fn commit_batch(
    conn: &mut PgConnection,
    expected: TasksCheckpoint,
    next: TasksCheckpoint,
    batch: Folded<'_>,
) -> Result<bool, ProjectorError> {
    const MOVED: &str = "WHERE EXISTS (SELECT FROM moved)";
    let (old_commit, old_prepare) = to_db(expected.position);
    let (commit, prepare) = to_db(next.position);
    let table = rows::table(expected.generation);
    let first_row_param = 7;
    let deletes_param = first_row_param + RowArrays::PARAMS;
    let sql = format!(
        "WITH moved AS ( \
             UPDATE readmodel.checkpoints \
             SET commit_position = $2, prepare_position = $3, updated_at = now() \
             WHERE projection = $1 AND generation = $4 \
               AND commit_position = $5 AND prepare_position = $6 \
             RETURNING 1), \
         upserted AS ({}), \
         deleted AS (DELETE FROM {table} WHERE id = ANY(${deletes_param}) \
                     AND EXISTS (SELECT FROM moved)) \
         SELECT pg_notify(${}, ${}) FROM moved",
        rows::upsert_sql(expected.generation, first_row_param, MOVED),
        deletes_param + 1,
        deletes_param + 2,
    );
    let arrays = RowArrays::new(&batch.upserts);
    let deletes: Vec<Uuid> = batch.deletes.iter().map(|id| id.0).collect();
    let payload = notice_payload(next, Touched::Owners(batch.owners));
    let query = sqlx::query(&sql)
        .bind(TASKS)
        .bind(commit)
        .bind(prepare)
        .bind(expected.generation)
        .bind(old_commit)
        .bind(old_prepare);
    let done = arrays
        .bind(query)
        .bind(&deletes)
        .bind(notice::CHANNEL)
        .bind(payload)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(done.is_some())
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
        let (decoded, skipped) = decode_batch(events);
        report_skipped(TASKS, &skipped);
        let next = TasksCheckpoint {
            generation: expected.generation,
            position: Some(last),
        };
        let mut conn = self.db.acquire().await?;
        let mut current = HashMap::new();
        let written = match fold_batch(&mut conn, expected.generation, &decoded, &mut current).await
        {
            Ok(batch) => commit_batch(&mut conn, *expected, next, batch).await,
            Err(e) => Err(e),
        };
        if matches!(written, Ok(true)) {
            return Ok(Applied::Done(next));
        }
        // Nothing was written. The checkpoint moved, or a rebuild even dropped
        // the generation table the batch was for (the statement fails then).
        let stored = read_checkpoint(&mut conn, false).await?;
        if stored != *expected {
            return Ok(Applied::Moved(stored));
        }
        Err(written.err().unwrap_or_else(|| {
            ProjectorError::Corrupt("the checkpoint did not move, yet no batch was written".into())
        }))
    }
}
