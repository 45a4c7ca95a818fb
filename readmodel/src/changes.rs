//! The change feed's contract: `readmodel.changes` (migration 0004: one row
//! per task event, keyed by owner and log position, written by the
//! projector's `changes` projection, read by the query service's feed and
//! SSE streams and by the projector's webhook deliveries), its row in
//! `readmodel.checkpoints`, the channel its batches are announced on, and
//! its reads: one owner's changes after a place in the log, in log order,
//! always through the `(owner_id, commit, prepare)` key, so no other owner's
//! row is ever read. `Change` is the one serialisation of a change, in the
//! feed, the SSE stream and webhook deliveries alike.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

/// The projection's name and its row in `readmodel.checkpoints`.
pub const CHANGES: &str = "changes";

/// Each committed batch is announced here in the [`crate::notice`] format:
/// `<commit>;<owner>,...`, naming the owners whose changes it added.
pub const CHANNEL: &str = "tasklog_changes";

/// A place in the log between two changes: after every change of commit
/// `commit` when `prepare` is `None`, else after the change `(commit, prepare)`.
/// Both fit an i64 (callers refuse larger values), as the table stores them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct After {
    pub commit: i64,
    pub prepare: Option<i64>,
}

/// One change (`Change` in the API): a task event of the caller's.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Change {
    pub task_id: Uuid,
    pub version: i64,
    /// The log position (commit) of the event, as in `Ack.position`.
    pub position: i64,
    /// Orders the changes of one commit; not part of the API.
    #[serde(skip)]
    pub prepare: i64,
    #[serde(rename = "type")]
    #[schema(example = "TaskCreated")]
    pub kind: String,
    /// The payload upcast to the current schema of its type.
    pub data: Value,
    pub actor_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
}

/// What to leave out.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    pub types: Vec<String>,
    pub task_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

fn select(prefix: &str, owner: Uuid, filter: &ChangeFilter) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new(prefix);
    q.push(
        "SELECT task_id, version, commit_position, prepare_position, event_type, data, \
         actor_id, recorded_at FROM readmodel.changes WHERE owner_id = ",
    );
    q.push_bind(owner);
    if !filter.types.is_empty() {
        q.push(" AND event_type = ANY(")
            .push_bind(filter.types.clone())
            .push(")");
    }
    if let Some(task) = filter.task_id {
        q.push(" AND task_id = ").push_bind(task);
    }
    if let Some(since) = filter.since {
        q.push(" AND recorded_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND recorded_at < ").push_bind(until);
    }
    q
}

type Row = (
    Uuid,
    i64,
    i64,
    i64,
    String,
    Value,
    Option<Uuid>,
    DateTime<Utc>,
);

fn change(row: Row) -> Change {
    let (task_id, version, position, prepare, kind, data, actor_id, recorded_at) = row;
    Change {
        task_id,
        version,
        position,
        prepare,
        kind,
        data,
        actor_id,
        recorded_at,
    }
}

fn page(
    prefix: &str,
    owner: Uuid,
    after: After,
    filter: &ChangeFilter,
    limit: u32,
) -> QueryBuilder<'static, Postgres> {
    let mut q = select(prefix, owner, filter);
    q.push(" AND (commit_position, prepare_position) > (")
        .push_bind(after.commit)
        .push(", ")
        .push_bind(after.prepare.unwrap_or(i64::MAX))
        .push(") ORDER BY commit_position, prepare_position LIMIT ")
        .push_bind(i64::from(limit));
    q
}

/// At most `limit` of `owner`'s changes after `after`, in log order.
///
/// # Errors
/// When Postgres fails.
pub async fn changes_after(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    after: After,
    filter: &ChangeFilter,
    limit: u32,
) -> Result<Vec<Change>, sqlx::Error> {
    let rows: Vec<Row> = page("", owner, after, filter, limit)
        .build_query_as()
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(change).collect())
}

/// The rest of commit `commit` after the change `(commit, prepare)`: what a
/// page that stopped inside a commit must still take, so that pages end
/// between commits and `next_after` (a commit) loses nothing.
///
/// # Errors
/// When Postgres fails.
pub async fn rest_of_commit(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    commit: i64,
    prepare: i64,
    filter: &ChangeFilter,
) -> Result<Vec<Change>, sqlx::Error> {
    let mut q = select("", owner, filter);
    q.push(" AND commit_position = ")
        .push_bind(commit)
        .push(" AND prepare_position > ")
        .push_bind(prepare)
        .push(" ORDER BY prepare_position");
    let rows: Vec<Row> = q.build_query_as().fetch_all(db).await?;
    Ok(rows.into_iter().map(change).collect())
}

/// The commit position the change feed has reached (0 before its first batch).
///
/// # Errors
/// When Postgres fails, or the read model does not exist yet.
pub async fn changes_position(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    let commit: Option<i64> = sqlx::query_scalar(
        "SELECT commit_position FROM readmodel.checkpoints WHERE projection = $1",
    )
    .bind(CHANGES)
    .fetch_optional(db)
    .await?;
    Ok(commit.unwrap_or(0))
}

/// The plan of a feed page as Postgres ran it, for the test and the
/// benchmark that prove it reads one owner's rows only.
///
/// # Errors
/// When Postgres fails.
pub async fn explain_changes(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    after: After,
    filter: &ChangeFilter,
    limit: u32,
) -> Result<String, sqlx::Error> {
    let plan: Vec<String> = page("EXPLAIN (ANALYZE, BUFFERS) ", owner, after, filter, limit)
        .build_query_scalar()
        .fetch_all(db)
        .await?;
    Ok(plan.join("\n"))
}
