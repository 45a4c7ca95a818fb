//! The rows of a read-model generation table: reading the touched ones,
//! writing a batch's changes set-based (one UNNEST upsert, one delete), and
//! bulk loading a fresh generation with COPY.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use tasklog_events::domain::{
    Priority, Status, Tags, Task, TaskDescription, TaskId, TaskTitle, UserId,
};
use uuid::Uuid;

use tasklog_readmodel::generation::VIEW;

use crate::error::ProjectorError;
use crate::fold::TaskRow;

pub use tasklog_readmodel::generation::{COLUMNS, table};

#[derive(sqlx::FromRow)]
struct RawRow {
    id: Uuid,
    owner_id: Uuid,
    title: String,
    description: String,
    status: String,
    priority: String,
    due_at: Option<DateTime<Utc>>,
    tags: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    version: i64,
}

impl RawRow {
    fn into_row(self) -> Result<TaskRow, ProjectorError> {
        let id = self.id;
        let bad = |e: tasklog_events::domain::InvalidValue| {
            ProjectorError::Corrupt(format!("row {id}: {e}"))
        };
        Ok(TaskRow {
            task: Task {
                id: TaskId(self.id),
                owner: UserId(self.owner_id),
                title: TaskTitle::parse(&self.title).map_err(bad)?,
                description: TaskDescription::parse(&self.description).map_err(bad)?,
                status: self.status.parse::<Status>().map_err(bad)?,
                priority: self.priority.parse::<Priority>().map_err(bad)?,
                due_at: self.due_at,
                tags: Tags::parse(&self.tags).map_err(bad)?,
                created_at: self.created_at,
                updated_at: self.updated_at,
                completed_at: self.completed_at,
            },
            version: u64::try_from(self.version)
                .map_err(|_| ProjectorError::Corrupt(format!("row {id}: negative version")))?,
        })
    }
}

/// The current rows of `ids` (those that have one), in one SELECT.
///
/// # Errors
/// When Postgres fails or a row cannot be read back as a task.
pub async fn load(
    conn: &mut PgConnection,
    generation: i32,
    ids: &[TaskId],
) -> Result<HashMap<TaskId, TaskRow>, ProjectorError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let uuids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE id = ANY($1)",
        table(generation)
    );
    let raw: Vec<RawRow> = sqlx::query_as(&sql)
        .bind(&uuids)
        .fetch_all(&mut *conn)
        .await?;
    raw.into_iter()
        .map(|r| r.into_row().map(|row| (row.task.id, row)))
        .collect()
}

/// Every row of a generation, for `verify`.
///
/// # Errors
/// When Postgres fails or a row cannot be read back as a task.
pub async fn load_all_from_view(
    conn: &mut PgConnection,
) -> Result<Vec<Result<TaskRow, ProjectorError>>, ProjectorError> {
    let sql = format!("SELECT {COLUMNS} FROM {VIEW}");
    let raw: Vec<RawRow> = sqlx::query_as(&sql).fetch_all(&mut *conn).await?;
    Ok(raw.into_iter().map(RawRow::into_row).collect())
}

/// A Postgres array literal for text elements: `{"a","b \"c\""}`.
pub fn array_literal<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("{");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn tags_literal(tags: &Tags) -> String {
    array_literal(tags.iter().map(|t| t.as_str()))
}

/// A batch's rows as one array per column, bound as consecutive parameters
/// of the statement `upsert_sql` makes.
pub struct RowArrays<'a> {
    ids: Vec<Uuid>,
    owners: Vec<Uuid>,
    titles: Vec<&'a str>,
    descriptions: Vec<&'a str>,
    statuses: Vec<&'static str>,
    priorities: Vec<&'static str>,
    due: Vec<Option<DateTime<Utc>>>,
    tags: Vec<String>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    completed: Vec<Option<DateTime<Utc>>>,
    versions: Vec<i64>,
}

impl<'a> RowArrays<'a> {
    /// The SQL array type of each parameter `bind` adds, in order.
    const TYPES: [&'static str; 12] = [
        "uuid[]",
        "uuid[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "timestamptz[]",
        "text[]",
        "timestamptz[]",
        "timestamptz[]",
        "timestamptz[]",
        "bigint[]",
    ];
    /// How many parameters `bind` adds.
    pub const PARAMS: usize = Self::TYPES.len();

    pub fn new(rows: &[&'a TaskRow]) -> Self {
        let n = rows.len();
        let mut a = Self {
            ids: Vec::with_capacity(n),
            owners: Vec::with_capacity(n),
            titles: Vec::with_capacity(n),
            descriptions: Vec::with_capacity(n),
            statuses: Vec::with_capacity(n),
            priorities: Vec::with_capacity(n),
            due: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            updated: Vec::with_capacity(n),
            completed: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
        };
        for row in rows {
            let t = &row.task;
            a.ids.push(t.id.0);
            a.owners.push(t.owner.0);
            a.titles.push(t.title.as_str());
            a.descriptions.push(t.description.as_str());
            a.statuses.push(t.status.as_str());
            a.priorities.push(t.priority.as_str());
            a.due.push(t.due_at);
            a.tags.push(tags_literal(&t.tags));
            a.created.push(t.created_at);
            a.updated.push(t.updated_at);
            a.completed.push(t.completed_at);
            a.versions
                .push(i64::try_from(row.version).unwrap_or(i64::MAX));
        }
        a
    }

    pub fn bind<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.owners)
            .bind(&self.titles)
            .bind(&self.descriptions)
            .bind(&self.statuses)
            .bind(&self.priorities)
            .bind(&self.due)
            .bind(&self.tags)
            .bind(&self.created)
            .bind(&self.updated)
            .bind(&self.completed)
            .bind(&self.versions)
    }
}

/// The upsert of `RowArrays` bound from parameter `$first` on, into
/// generation `generation`, for rows that pass `condition` (SQL, may be
/// empty). A stored row at the same or a later version is kept: an event
/// applied twice must never take a row back.
pub fn upsert_sql(generation: i32, first: usize, condition: &str) -> String {
    let table = table(generation);
    let arrays = RowArrays::TYPES
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}", first + i))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({COLUMNS}) \
         SELECT u.id, u.owner_id, u.title, u.description, u.status, u.priority, u.due_at, \
                u.tags::text[], u.created_at, u.updated_at, u.completed_at, u.version \
         FROM UNNEST({arrays}) \
              AS u (id, owner_id, title, description, status, priority, due_at, tags, \
                    created_at, updated_at, completed_at, version) \
         {condition} \
         ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id, title = EXCLUDED.title, \
             description = EXCLUDED.description, status = EXCLUDED.status, \
             priority = EXCLUDED.priority, due_at = EXCLUDED.due_at, tags = EXCLUDED.tags, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             completed_at = EXCLUDED.completed_at, version = EXCLUDED.version \
         WHERE {table}.version < EXCLUDED.version"
    )
}

/// Inserts or overwrites `rows` in one statement.
///
/// # Errors
/// When Postgres fails.
pub async fn upsert(
    conn: &mut PgConnection,
    generation: i32,
    rows: &[&TaskRow],
) -> Result<(), ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    let arrays = RowArrays::new(rows);
    let sql = upsert_sql(generation, 1, "");
    arrays.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
    Ok(())
}

/// Removes the rows of `ids`, in one statement.
///
/// # Errors
/// When Postgres fails.
pub async fn delete(
    conn: &mut PgConnection,
    generation: i32,
    ids: &[TaskId],
) -> Result<(), ProjectorError> {
    if ids.is_empty() {
        return Ok(());
    }
    let uuids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let sql = format!("DELETE FROM {} WHERE id = ANY($1)", table(generation));
    sqlx::query(&sql).bind(&uuids).execute(&mut *conn).await?;
    Ok(())
}

/// Escapes a value for COPY's text format.
fn copy_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn copy_time(out: &mut String, t: Option<DateTime<Utc>>) {
    match t {
        // Microseconds, truncated: what a bound parameter stores too.
        Some(t) => out.push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        None => out.push_str("\\N"),
    }
}

/// One row in COPY text format, newline-terminated.
pub fn copy_line(out: &mut String, row: &TaskRow) {
    let t = &row.task;
    let _ = write!(out, "{}\t{}\t", t.id.0, t.owner.0);
    copy_text(out, t.title.as_str());
    out.push('\t');
    copy_text(out, t.description.as_str());
    let _ = write!(out, "\t{}\t{}\t", t.status.as_str(), t.priority.as_str());
    copy_time(out, t.due_at);
    out.push('\t');
    copy_text(out, &tags_literal(&t.tags));
    out.push('\t');
    copy_time(out, Some(t.created_at));
    out.push('\t');
    copy_time(out, Some(t.updated_at));
    out.push('\t');
    copy_time(out, t.completed_at);
    let _ = writeln!(out, "\t{}", row.version);
}

/// Bulk loads `rows` into an empty generation table with COPY, in chunks of
/// about 1 MiB; `progress` hears how many rows went so far.
///
/// # Errors
/// When Postgres fails.
pub async fn copy_in<'a>(
    conn: &mut PgConnection,
    generation: i32,
    rows: impl IntoIterator<Item = &'a TaskRow>,
    mut progress: impl FnMut(u64),
) -> Result<u64, ProjectorError> {
    let sql = format!("COPY {} ({COLUMNS}) FROM STDIN", table(generation));
    let mut copy = conn.copy_in_raw(&sql).await?;
    let mut buf = String::with_capacity(1 << 20);
    let mut sent = 0_u64;
    for row in rows {
        copy_line(&mut buf, row);
        sent += 1;
        if buf.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
            buf.reserve(1 << 20);
            progress(sent);
        }
    }
    if !buf.is_empty() {
        copy.send(buf.into_bytes()).await?;
    }
    let n = copy.finish().await?;
    progress(sent);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_quote_every_element_and_escape_quotes_and_backslashes() {
        assert_eq!(array_literal([]), "{}");
        assert_eq!(array_literal(["a", "b c"]), r#"{"a","b c"}"#);
        assert_eq!(array_literal([r#"x"y\z"#, "{,}"]), r#"{"x\"y\\z","{,}"}"#);
    }

    #[test]
    fn copy_text_escapes_separators_and_backslashes() {
        let mut out = String::new();
        copy_text(&mut out, "a\tb\nc\rd\\e");
        assert_eq!(out, "a\\tb\\nc\\rd\\\\e");
    }
}
