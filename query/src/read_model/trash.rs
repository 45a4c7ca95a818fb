//! The trash: one owner's deleted tasks, newest deletion first, read from the
//! change feed (`readmodel.changes`), which keeps every event of every task
//! by owner while the tasks read model keeps live tasks only. A task is in
//! the trash when its last change is its deletion; its last state is the
//! fold of its changes with the domain's `evolve`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use tasklog_events::domain::{TaskEvent, TaskState, evolve};
use utoipa::ToSchema;
use uuid::Uuid;

use super::TaskView;

/// A deleted task as it was when deleted (`TrashedTask` in the API).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrashedTask {
    #[serde(flatten)]
    pub task: TaskView,
    /// When the deletion was recorded in the log.
    pub deleted_at: DateTime<Utc>,
}

/// A page of the trash and, when another follows, where it starts.
#[derive(Debug)]
pub struct TrashPage {
    pub tasks: Vec<TrashedTask>,
    pub next: Option<(DateTime<Utc>, Uuid)>,
}

/// The task ids and deletion times of one page, newest first, after the
/// deletion `(at, id)`. The partial index `changes_deleted` serves the
/// order; a deletion followed by any later change (its restore) is left out.
fn deletions(
    owner: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new(
        "SELECT d.task_id, d.recorded_at FROM readmodel.changes d \
         WHERE d.owner_id = ",
    );
    q.push_bind(owner).push(" AND d.event_type = 'TaskDeleted'");
    if let Some((at, id)) = after {
        q.push(" AND (d.recorded_at, d.task_id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(
        " AND NOT EXISTS (SELECT FROM readmodel.changes l WHERE l.task_id = d.task_id \
           AND (l.commit_position, l.prepare_position) > (d.commit_position, d.prepare_position)) \
         ORDER BY d.recorded_at DESC, d.task_id DESC LIMIT ",
    )
    .push_bind(limit);
    q
}

/// Up to `limit` of `owner`'s deleted tasks after `after`, newest deletion first.
///
/// # Errors
/// When Postgres fails.
#[tracing::instrument(skip_all, fields(limit = limit))]
pub async fn trash(
    conn: &mut PgConnection,
    owner: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: u32,
) -> Result<TrashPage, sqlx::Error> {
    let shown = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut found: Vec<(Uuid, DateTime<Utc>)> = deletions(owner, after, i64::from(limit) + 1)
        .build_query_as()
        .fetch_all(&mut *conn)
        .await?;
    let next = if found.len() > shown {
        found.truncate(shown);
        found.last().map(|(id, at)| (*at, *id))
    } else {
        None
    };
    let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
    let rows: Vec<(Uuid, i64, String, Value)> = sqlx::query_as(
        "SELECT task_id, version, event_type, data FROM readmodel.changes \
         WHERE task_id = ANY($1) AND owner_id = $2 \
         ORDER BY task_id, commit_position, prepare_position",
    )
    .bind(&ids)
    .bind(owner)
    .fetch_all(&mut *conn)
    .await?;
    let mut folded = fold_each(rows);
    let tasks = found
        .into_iter()
        .filter_map(|(id, deleted_at)| {
            folded
                .remove(&id)
                .map(|task| TrashedTask { task, deleted_at })
        })
        .collect();
    Ok(TrashPage { tasks, next })
}

/// Each task's changes folded, kept when they leave it deleted. A change this
/// code cannot read stops its task's fold there (logged): the trash shows
/// what it can rather than failing the page.
fn fold_each(rows: Vec<(Uuid, i64, String, Value)>) -> HashMap<Uuid, TaskView> {
    let mut states: HashMap<Uuid, (TaskState, i64, bool)> = HashMap::new();
    for (id, version, kind, data) in rows {
        let entry = states
            .entry(id)
            .or_insert((TaskState::Absent, version, true));
        if !entry.2 {
            continue;
        }
        let event = TaskEvent::current_schema(&kind)
            .ok_or_else(|| format!("unknown event type {kind}"))
            .and_then(|schema| TaskEvent::decode(&kind, schema, data).map_err(|e| e.to_string()));
        match event {
            Ok(event) => {
                entry.0 = evolve(std::mem::take(&mut entry.0), &event);
                entry.1 = version;
            }
            Err(error) => {
                tracing::warn!(task = %id, version, %error, "a change in the feed cannot be read");
                entry.2 = false;
            }
        }
    }
    states
        .into_iter()
        .filter_map(|(id, (state, version, _))| match state {
            TaskState::Deleted(task) => {
                Some((id, TaskView::of(&task, u64::try_from(version).unwrap_or(0))))
            }
            _ => None,
        })
        .collect()
}
