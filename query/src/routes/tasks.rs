//! `/v1/tasks`: the caller's task list, one task (now or as of an instant),
//! and a task's history.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tasklog_platform::http::{IdPath, etag};
use tasklog_platform::{ApiError, Problem};
use utoipa::ToSchema;

use crate::consistency::Reader;
use crate::listing::{ListQuery, Paging, QueryParams};
use crate::read_model::{self, TaskView, db_error};
use crate::state::AppState;
use crate::timeline::{self, HistoryEntry};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tasks", get(list))
        .route("/v1/tasks/{id}", get(show))
        .route("/v1/tasks/{id}/history", get(history))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CursorPage {
    tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Pagination {
    page: u32,
    limit: u32,
    total: u64,
    pages: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct NumberedPage {
    tasks: Vec<TaskView>,
    pagination: Pagination,
}

/// `{tasks, next_cursor}` when paging by cursor, `{tasks, pagination}` by page.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum TaskPage {
    Cursor(CursorPage),
    Numbered(NumberedPage),
}

/// About what one task takes as JSON with a short title, a few tags and no
/// description; longer ones grow the buffer as before.
const TASK_JSON_BYTES: usize = 512;

impl TaskPage {
    fn len(&self) -> usize {
        match self {
            Self::Cursor(page) => page.tasks.len(),
            Self::Numbered(page) => page.tasks.len(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct History {
    events: Vec<HistoryEntry>,
}

#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "todo, in_progress, done; repeatable or comma-separated (any of them)", pattern = r"^(todo|in_progress|done)(,(todo|in_progress|done))*$"),
        ("priority" = Option<String>, Query, description = "low, medium, high, urgent; repeatable or comma-separated (any of them)", pattern = r"^(low|medium|high|urgent)(,(low|medium|high|urgent))*$"),
        ("tag" = Option<String>, Query, description = "tasks carrying this tag (case-insensitive); repeatable (all of them)"),
        ("q" = Option<String>, Query, description = "case-insensitive substring of title or description, up to 200 characters", max_length = 200),
        ("due_before" = Option<String>, Query, description = "RFC 3339; due strictly before (tasks without a due date never match)"),
        ("due_after" = Option<String>, Query, description = "RFC 3339; due strictly after"),
        ("sort" = Option<String>, Query, description = "created_at, updated_at, due_at, priority or title, optionally prefixed with - for descending; default -created_at; ties break on id. Tasks without a due date sort last ascending, first descending. Titles sort by code point", pattern = r"^-?(created_at|updated_at|due_at|priority|title)$"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (same sort; opaque)"),
        ("page" = Option<u32>, Query, description = "1-based page number (instead of cursor)", minimum = 1),
        ("X-Min-Position" = Option<u64>, Header, nullable = false, description = "answer only once the read model has reached this log position"),
    ),
    responses(
        (status = 200, body = TaskPage, headers(("X-Projection-Position" = u64))),
        (status = 400, description = "a parameter is invalid; errors[0].field names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(user = %reader.user))]
pub(crate) async fn list(
    reader: Reader,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = raw.as_deref().unwrap_or_default();
    let cacheable = reader.cacheable();
    if let Some(body) = app.pages.get(reader.user, query).filter(|_| cacheable) {
        return Ok(json_body(body));
    }
    // Stamp, then choose the replica: any replica in the rotation from now
    // on has replayed whatever the stamp's generation announced.
    let stamp = app.pages.stamp(reader.user);
    let db = reader.db(&app);
    let q = ListQuery::parse(raw.as_deref())?;
    let page = match &q.paging {
        Paging::Cursor(cursor) => {
            let after = cursor
                .as_deref()
                .map(|c| app.cursor_key.decode(reader.user, q.sort, c))
                .transpose()?;
            let mut conn = db.get().await.map_err(db_error)?;
            let page = read_model::list(&mut *conn, reader.user, &q, after.as_ref()).await;
            let page = conn.settle(page).map_err(db_error)?;
            TaskPage::Cursor(CursorPage {
                tasks: page.tasks,
                next_cursor: page
                    .next
                    .map(|k| app.cursor_key.encode(reader.user, q.sort, &k)),
            })
        }
        Paging::Page(number) => {
            let mut conn = db.get().await.map_err(db_error)?;
            let page = read_model::numbered(&mut conn, reader.user, &q, *number).await;
            let (tasks, total) = conn.settle(page).map_err(db_error)?;
            TaskPage::Numbered(NumberedPage {
                tasks,
                pagination: Pagination {
                    page: *number,
                    limit: q.limit,
                    total,
                    pages: total.div_ceil(u64::from(q.limit)),
                },
            })
        }
    };
    // Sized for the page up front: grown from serde_json's 128 bytes, a
    // page of 20 tasks was copied about seven times on its way to ~8 KB.
    let mut body = Vec::with_capacity(TASK_JSON_BYTES * (page.len() + 1));
    serde_json::to_writer(&mut body, &page).map_err(ApiError::internal)?;
    let body = Bytes::from(body);
    if cacheable {
        app.pages.put(reader.user, query, stamp, body.clone());
    }
    Ok(json_body(body))
}

fn json_body(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Whether `If-None-Match` names this version (weak comparison, RFC 9110 §13.1.2).
fn not_modified(headers: &HeaderMap, version: i64) -> bool {
    let wanted = format!("\"{version}\"");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == wanted)
}

#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path),
        ("as_of" = Option<String>, Query, description = "RFC 3339: the task as it stood then, folded from its events"),
        ("If-None-Match" = Option<String>, Header, description = "\"<version>\": 304 when the task is still at it"),
        ("X-Min-Position" = Option<u64>, Header, nullable = false, description = "answer only once the read model has reached this log position"),
    ),
    responses(
        (status = 200, body = TaskView, headers(("ETag" = String), ("X-Projection-Position" = u64))),
        (status = 304, description = "still at the If-None-Match version"),
        (status = 400, description = "bad as_of or X-Min-Position", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent, deleted (by as_of), not yet created (by as_of) or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn show(
    reader: Reader,
    State(app): State<AppState>,
    IdPath(id): IdPath,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let as_of = QueryParams::parse(raw.as_deref(), &["as_of"])?.time("as_of")?;
    let task = match as_of {
        None => {
            let mut conn = reader.db(&app).get().await.map_err(db_error)?;
            let task = read_model::get(&mut *conn, reader.user, id).await;
            conn.settle(task).map_err(db_error)?
        }
        Some(at) => timeline::as_of(app.store.as_ref(), reader.user, id, at).await?,
    }
    .ok_or(ApiError::NotFound)?;
    let tag = etag(task.version);
    if not_modified(&headers, task.version) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    Ok(([(header::ETAG, tag)], Json(task)).into_response())
}

#[utoipa::path(get, path = "/v1/tasks/{id}/history", tag = "tasks", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, body = History, headers(("X-Projection-Position" = u64))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such task, or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the event log is down", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn history(
    reader: Reader,
    State(app): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let events = timeline::history(app.store.as_ref(), reader.user, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(History { events }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(not_modified(&with("\"3\""), 3));
        assert!(not_modified(&with("W/\"3\""), 3));
        assert!(not_modified(&with("\"1\", \"3\""), 3));
        assert!(not_modified(&with("*"), 3));
        assert!(!not_modified(&with("\"2\""), 3));
        assert!(!not_modified(&with("3"), 3));
        assert!(!not_modified(&HeaderMap::new(), 3));
    }
}
