//! The Postgres read model (`readmodel.tasks`) as a projection: each batch,
//! its checkpoint and the NOTIFY in one transaction, set-based.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tasklog_events::domain::{TaskId, UserId};
use tasklog_events::{EventStore, Position, RecordedEvent};
use uuid::Uuid;

use tasklog_readmodel::checkpoint::{
    COMPARE_AND_SET, TASKS, TasksCheckpoint, notice_payload, read_checkpoint, to_db,
};
use tasklog_readmodel::generation;
use tasklog_readmodel::notice::{self, Touched};

use crate::error::ProjectorError;
use crate::fold::{Decoded, TaskEventAt, TaskRow, decode_batch, fold_rows, ids_with_history};
use crate::projection::{Applied, Projection, after, report_skipped};
use crate::rows::{self, RowArrays};

/// A batch ready to commit: what it writes, folded against the stored rows.
struct Folded<'a> {
    upserts: Vec<&'a TaskRow>,
    deletes: Vec<TaskId>,
    /// Owners erased in the batch: all their rows go.
    erased: Vec<Uuid>,
    /// Owners whose rows the batch changes, for the notice.
    owners: BTreeSet<Uuid>,
}

/// Reads the stored rows the fold needs (none when every touched task is
/// created in the batch), then folds `decoded` into them.
#[tracing::instrument(skip_all, fields(events = decoded.len()))]
async fn fold_batch<'a>(
    conn: &mut PgConnection,
    generation: i32,
    decoded: &[TaskEventAt],
    erased: &[UserId],
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
    let erased: Vec<Uuid> = erased.iter().map(|o| o.0).collect();
    owners.extend(erased.iter().copied());
    Ok(Folded {
        upserts,
        deletes: changes.deletes,
        erased,
        owners,
    })
}

/// Writes a folded batch and moves the checkpoint from `expected` to `next`
/// in ONE statement (so one round trip and one implicit transaction), fenced
/// by the compare-and-set of the contract (`COMPARE_AND_SET`): it writes
/// nothing unless the stored checkpoint is still `expected` when it commits.
/// Another writer that moved it first (a second instance, a replay, a
/// rebuild's swap) makes this UPDATE find no row. The rows are written only
/// `WHERE EXISTS (SELECT FROM moved)`, so never without the checkpoint.
/// Returns false when the checkpoint had moved.
#[tracing::instrument(skip_all, fields(upserts = batch.upserts.len(), deletes = batch.deletes.len()))]
async fn commit_batch(
    conn: &mut PgConnection,
    expected: TasksCheckpoint,
    next: TasksCheckpoint,
    batch: Folded<'_>,
) -> Result<bool, ProjectorError> {
    const MOVED: &str = "WHERE EXISTS (SELECT FROM moved)";
    let (old_commit, old_prepare) = to_db(expected.position);
    let (commit, prepare) = to_db(next.position);
    let table = generation::table(expected.generation);
    let first_row_param = 7;
    let deletes_param = first_row_param + RowArrays::PARAMS;
    let deletes: Vec<Uuid> = batch.deletes.iter().map(|id| id.0).collect();
    // Only a batch that deletes carries the DELETEs, and it is planned for
    // its own arrays: a plan kept from a young table would scan the whole
    // table for each of them. The usual batch (creates and changes) keeps its
    // plan; its statement reads nothing but the conflicting ids.
    let mut sql = format!(
        "WITH {COMPARE_AND_SET}, upserted AS ({})",
        rows::upsert_sql(expected.generation, first_row_param, MOVED)
    );
    if !deletes.is_empty() {
        sql += &format!(
            ", deleted AS (DELETE FROM {table} WHERE id = ANY(${deletes_param}) \
             AND EXISTS (SELECT FROM moved))"
        );
    }
    if !batch.erased.is_empty() {
        sql += &format!(
            ", erased AS (DELETE FROM {table} WHERE owner_id = ANY(${}) \
             AND EXISTS (SELECT FROM moved))",
            deletes_param + 1
        );
    }
    sql += &format!(
        " SELECT pg_notify(${}, ${}) FROM moved",
        deletes_param + 2,
        deletes_param + 3
    );
    let keep_plan = deletes.is_empty() && batch.erased.is_empty();
    let arrays = RowArrays::new(&batch.upserts);
    let payload = notice_payload(next, Touched::Owners(batch.owners));
    let query = sqlx::query(&sql)
        .persistent(keep_plan)
        .bind(TASKS)
        .bind(commit)
        .bind(prepare)
        .bind(expected.generation)
        .bind(old_commit)
        .bind(old_prepare);
    let done = arrays
        .bind(query)
        .bind(&deletes)
        .bind(&batch.erased)
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
        Ok(read_checkpoint(&mut conn, false).await?)
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
        let Decoded {
            events: decoded,
            skipped,
            erased,
            ..
        } = decode_batch(events);
        report_skipped(TASKS, &skipped);
        let next = TasksCheckpoint {
            generation: expected.generation,
            position: Some(last),
        };
        let mut conn = self.db.acquire().await?;
        let mut current = HashMap::new();
        let written = match fold_batch(
            &mut conn,
            expected.generation,
            &decoded,
            &erased,
            &mut current,
        )
        .await
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
