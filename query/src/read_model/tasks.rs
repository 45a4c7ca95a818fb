//! Tasks from `readmodel.tasks`: one owner's list (keyset or numbered pages)
//! and a single task. Every query filters on the owner.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use tasklog_events::domain::Task;
use utoipa::ToSchema;
use uuid::Uuid;

use super::list_sql::{self, COLUMNS};
use crate::listing::{Keyset, ListQuery, Paging, SortField, SortValue};

/// A task as the API shows it (`Task` in API.md).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
#[schema(as = Task)]
pub struct TaskView {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    #[schema(example = "todo")]
    pub status: String,
    #[schema(example = "medium")]
    pub priority: String,
    /// Read for cursors; the API shows `priority`.
    #[serde(skip)]
    pub priority_rank: i16,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(value_type = u64)]
    pub version: i64,
}

impl TaskView {
    /// A task folded from its events, at the version of the last one.
    pub fn of(task: &Task, version: u64) -> Self {
        Self {
            id: task.id.0,
            title: task.title.as_str().to_owned(),
            description: task.description.as_str().to_owned(),
            status: task.status.as_str().to_owned(),
            priority: task.priority.as_str().to_owned(),
            priority_rank: task.priority.rank(),
            due_at: task.due_at,
            tags: task.tags.to_strings(),
            created_at: task.created_at,
            updated_at: task.updated_at,
            completed_at: task.completed_at,
            version: i64::try_from(version).unwrap_or(i64::MAX),
        }
    }

    /// This row's place in a list sorted by `field`.
    pub fn keyset(&self, field: SortField) -> Keyset {
        let value = match field {
            SortField::CreatedAt => SortValue::Time(Some(self.created_at)),
            SortField::UpdatedAt => SortValue::Time(Some(self.updated_at)),
            SortField::DueAt => SortValue::Time(self.due_at),
            SortField::Priority => SortValue::Rank(self.priority_rank),
            SortField::Title => SortValue::Title(self.title.clone()),
        };
        Keyset { value, id: self.id }
    }
}

/// A page of rows, and where the next one starts if there is one.
#[derive(Debug)]
pub struct Page {
    pub tasks: Vec<TaskView>,
    pub next: Option<Keyset>,
}

/// Up to `limit` of `owner`'s tasks after `after`. One more row is read than
/// shown, to know whether another page follows.
///
/// # Errors
/// When Postgres fails.
#[tracing::instrument(skip_all, fields(limit = q.limit))]
pub async fn list(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    q: &ListQuery,
    after: Option<&Keyset>,
) -> Result<Page, sqlx::Error> {
    let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
    let mut tasks: Vec<TaskView> =
        list_sql::keyset_page("", owner, q, after, i64::from(q.limit) + 1)
            .build_query_as()
            .fetch_all(db)
            .await?;
    let next = if tasks.len() > limit {
        tasks.truncate(limit);
        tasks.last().map(|t| t.keyset(q.sort.field))
    } else {
        None
    };
    Ok(Page { tasks, next })
}

/// Page `page` (1-based) of `owner`'s tasks, and how many match in all. Both
/// queries run on the one connection given.
///
/// # Errors
/// When Postgres fails.
#[tracing::instrument(skip_all, fields(page, limit = q.limit))]
pub async fn numbered(
    conn: &mut PgConnection,
    owner: Uuid,
    q: &ListQuery,
    page: u32,
) -> Result<(Vec<TaskView>, u64), sqlx::Error> {
    let total: i64 = list_sql::count("", owner, q)
        .build_query_scalar()
        .fetch_one(&mut *conn)
        .await?;
    let offset = i64::from(page - 1) * i64::from(q.limit);
    // Past the end: no need to ask.
    let tasks = if offset >= total {
        Vec::new()
    } else {
        list_sql::numbered_page("", owner, q, i64::from(q.limit), offset)
            .build_query_as()
            .fetch_all(&mut *conn)
            .await?
    };
    Ok((tasks, u64::try_from(total).unwrap_or(0)))
}

/// The plans Postgres picks for the statements of a list request (the page,
/// and the count in page mode), to check that they walk indexes.
///
/// # Errors
/// When Postgres fails.
pub async fn explain_list(
    conn: &mut PgConnection,
    owner: Uuid,
    q: &ListQuery,
    after: Option<&Keyset>,
) -> Result<Vec<String>, sqlx::Error> {
    const EXPLAIN: &str = "EXPLAIN ";
    let mut statements = Vec::new();
    match q.paging {
        Paging::Page(page) => {
            let offset = i64::from(page - 1) * i64::from(q.limit);
            statements.push(list_sql::count(EXPLAIN, owner, q));
            statements.push(list_sql::numbered_page(
                EXPLAIN,
                owner,
                q,
                i64::from(q.limit),
                offset,
            ));
        }
        Paging::Cursor(_) => {
            statements.push(list_sql::keyset_page(
                EXPLAIN,
                owner,
                q,
                after,
                i64::from(q.limit) + 1,
            ));
        }
    }
    let mut plans = Vec::new();
    for mut statement in statements {
        let lines: Vec<String> = statement.build_query_scalar().fetch_all(&mut *conn).await?;
        plans.push(lines.join("\n"));
    }
    Ok(plans)
}

/// `owner`'s live task `id`, if there is one.
///
/// # Errors
/// When Postgres fails.
#[tracing::instrument(skip_all, fields(task_id = %id))]
pub async fn get(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<TaskView>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM readmodel.tasks WHERE id = $1 AND owner_id = $2"
    ))
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await
}
