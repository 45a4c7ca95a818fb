//! `/v1/changes`: the caller's changes in log order, as pages (the activity
//! feed and sync API) and as a live Server-Sent Events stream.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use tasklog_platform::auth::AuthUser;
use tasklog_platform::{ApiError, Problem};
use tokio_stream::wrappers::ReceiverStream;
use utoipa::ToSchema;

use crate::changes::{FeedQuery, StreamTask, parse_after};
use crate::consistency::{Observed, min_position, refuse_beyond_head};
use crate::listing::QueryParams;
use crate::read_model::{Change, changes_after, changes_position, db_error, rest_of_commit};
use crate::state::AppState;

/// A comment line this often keeps proxies and clients from timing out.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
static ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/changes", get(feed))
        .route("/v1/changes/stream", get(stream))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ChangePage {
    changes: Vec<Change>,
    /// Pass as `after` for the next page. Pages end between commits, so this
    /// is always a whole position; it stays put when there is nothing new.
    next_after: i64,
}

#[utoipa::path(get, path = "/v1/changes", tag = "changes", security(("bearer" = [])),
    params(
        ("after" = Option<u64>, Query, description = "a log position (next_after of the previous page, an Ack.position, or an SSE event id); default 0, the beginning"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100; a page never splits one commit, so it may hold a few more"),
        ("type" = Option<String>, Query, description = "event types (TaskCreated, TaskTitleChanged, ...); repeatable or comma-separated (any of them)"),
        ("task_id" = Option<uuid::Uuid>, Query, description = "one task's changes"),
        ("since" = Option<String>, Query, description = "RFC 3339: recorded at or after"),
        ("until" = Option<String>, Query, description = "RFC 3339: recorded before"),
        ("X-Min-Position" = Option<u64>, Header, nullable = false, description = "answer only once the feed has reached this log position"),
    ),
    responses(
        (status = 200, body = ChangePage, headers(("X-Projection-Position" = u64, description = "the position the change feed had reached"))),
        (status = 400, description = "a parameter is invalid; errors[0].field names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn feed(
    user: AuthUser,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    observed: Option<Extension<Observed>>,
) -> Result<Response, ApiError> {
    let q = FeedQuery::parse(raw.as_deref())?;
    reach_min_position(&app, &headers, observed).await?;
    let mut conn = app.reads.get().await.map_err(db_error)?;
    let first = changes_after(&mut *conn, user.id, q.after, &q.filter, q.limit).await;
    let mut changes = conn.settle(first).map_err(db_error)?;
    if changes.len() == q.limit as usize {
        if let Some(last) = changes.last() {
            let rest =
                rest_of_commit(&mut *conn, user.id, last.position, last.prepare, &q.filter).await;
            changes.extend(conn.settle(rest).map_err(db_error)?);
        }
    }
    drop(conn);
    let next_after = changes.last().map_or(q.after.commit, |c| c.position);
    Ok(Json(ChangePage {
        changes,
        next_after,
    })
    .into_response())
}

/// Waits, when the request sends `X-Min-Position`, until the change feed has
/// reached it (a 503 after `MIN_POSITION_TIMEOUT_MS`), and reports the
/// feed's position as `X-Projection-Position`: for every read of
/// `readmodel.changes` (the feed, the trash).
///
/// # Errors
/// 400 for a bad header or a position beyond the log's head, 503 when the
/// feed does not get there in time.
pub(crate) async fn reach_min_position(
    app: &AppState,
    headers: &HeaderMap,
    observed: Option<Extension<Observed>>,
) -> Result<(), ApiError> {
    let min = min_position(headers)?;
    if let Some(min) = min {
        let current = u64::try_from(app.changes.current()).unwrap_or(0);
        refuse_beyond_head(app, min, current).await?;
    }
    let reached = match min.and_then(|m| i64::try_from(m).ok()) {
        None => app.changes.current(),
        Some(min) => app
            .changes
            .wait_for(min, app.min_position_timeout)
            .await
            .map_err(|at| ApiError::Unavailable {
                detail: format!(
                    "the change feed has not reached position {min} yet (it is at {at}); retry shortly"
                ),
                retry_after_secs: 1,
            })?,
    };
    if let Some(Extension(observed)) = observed {
        observed.set(u64::try_from(reached).unwrap_or(0));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/changes/stream", tag = "changes", security(("bearer" = [])),
    params(
        ("after" = Option<u64>, Query, description = "start after this log position; default: only changes from now on"),
        ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received: resume right after it (wins over after)"),
    ),
    responses(
        (status = 200, description = "text/event-stream: one event per change (id: its position, event: its type, data: the change as in the feed); a comment every 15 s", content_type = "text/event-stream"),
        (status = 400, description = "a bad after or Last-Event-ID", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "SSE_MAX_PER_USER streams are open already", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn stream(
    user: AuthUser,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = QueryParams::parse(raw.as_deref(), &["after"])?;
    let resume = match headers.get(&LAST_EVENT_ID) {
        Some(id) => Some(parse_after(
            "Last-Event-ID",
            id.to_str().unwrap_or_default(),
        )?),
        None => p
            .single("after")?
            .map(|v| parse_after("after", v))
            .transpose()?,
    };
    let after = match resume {
        Some(after) => after,
        None => {
            let mut conn = app.reads.get().await.map_err(db_error)?;
            let commit = changes_position(&mut *conn).await;
            crate::read_model::After {
                commit: conn.settle(commit).map_err(db_error)?,
                prepare: None,
            }
        }
    };
    let slot = app
        .streams
        .slots
        .claim(user.id)
        .await
        .ok_or(ApiError::TooManyRequests {
            retry_after_secs: HEARTBEAT.as_secs(),
        })?;
    let events = StreamTask {
        db: app.reads.clone(),
        hub: app.changes.clone(),
        owner: user.id,
        after,
        slot,
        settings: app.streams.settings,
        stop: app.streams.stop.clone(),
    }
    .spawn();
    let sse = Sse::new(ReceiverStream::new(events))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"));
    Ok((
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // nginx passes each event on at once instead of buffering it.
            (ACCEL_BUFFERING.clone(), HeaderValue::from_static("no")),
        ],
        sse,
    )
        .into_response())
}
