//! The rows of a read-model generation table: reading the touched ones,
//! writing a batch's changes set-based (one UNNEST upsert, one delete), and
//! bulk loading a fresh generation with COPY.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgConnection;
use tasklog_events::domain::{
    Priority, Status, Tags, Task, TaskDescription, TaskId, TaskTitle, UserId,
};
use uuid::Uuid;

use crate::error::ProjectorError;
use crate::fold::TaskRow;

/// The table of generation `generation` (a number we make: safe to splice).
pub fn table(generation: i32) -> String {
    format!("readmodel.tasks_g{generation}")
}

const COLUMNS: &str = "id, owner_id, title, description, status, priority, due_at, tags, \
                       created_at, updated_at, completed_at, version";

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
    let sql = format!("SELECT {COLUMNS} FROM readmodel.tasks");
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
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut owners = Vec::with_capacity(n);
    let mut titles = Vec::with_capacity(n);
    let mut descriptions = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut due = Vec::with_capacity(n);
    let mut tags = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut updated = Vec::with_capacity(n);
    let mut completed = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    for row in rows {
        let t = &row.task;
        ids.push(t.id.0);
        owners.push(t.owner.0);
        titles.push(t.title.as_str());
        descriptions.push(t.description.as_str());
        statuses.push(t.status.as_str());
        priorities.push(t.priority.as_str());
        due.push(t.due_at);
        tags.push(tags_literal(&t.tags));
        created.push(t.created_at);
        updated.push(t.updated_at);
        completed.push(t.completed_at);
        versions.push(i64::try_from(row.version).unwrap_or(i64::MAX));
    }
    let sql = format!(
        "INSERT INTO {} ({COLUMNS}) \
         SELECT u.id, u.owner_id, u.title, u.description, u.status, u.priority, u.due_at, \
                u.tags::text[], u.created_at, u.updated_at, u.completed_at, u.version \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::timestamptz[], $8::text[], $9::timestamptz[], $10::timestamptz[], \
                     $11::timestamptz[], $12::bigint[]) \
              AS u (id, owner_id, title, description, status, priority, due_at, tags, \
                    created_at, updated_at, completed_at, version) \
         ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id, title = EXCLUDED.title, \
             description = EXCLUDED.description, status = EXCLUDED.status, \
             priority = EXCLUDED.priority, due_at = EXCLUDED.due_at, tags = EXCLUDED.tags, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             completed_at = EXCLUDED.completed_at, version = EXCLUDED.version",
        table(generation)
    );
    sqlx::query(&sql)
        .bind(&ids)
        .bind(&owners)
        .bind(&titles)
        .bind(&descriptions)
        .bind(&statuses)
        .bind(&priorities)
        .bind(&due)
        .bind(&tags)
        .bind(&created)
        .bind(&updated)
        .bind(&completed)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
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
