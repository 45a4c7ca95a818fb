//! `/v1/trash`: the caller's deleted tasks, newest deletion first, each as
//! it was when deleted; `POST /v1/tasks/{id}/restore` (command service)
//! brings one back.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use tasklog_platform::auth::AuthUser;
use tasklog_platform::{ApiError, Problem};
use utoipa::ToSchema;

use super::changes::reach_min_position;
use crate::consistency::Observed;
use crate::listing::{DEFAULT_LIMIT, MAX_LIMIT, QueryParams};
use crate::read_model::{TrashedTask, db_error, trash};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/trash", get(list))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TrashPage {
    tasks: Vec<TrashedTask>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/trash", operation_id = "trash", tag = "tasks", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (opaque)"),
        ("X-Min-Position" = Option<u64>, Header, nullable = false, description = "answer only once the change feed, which the trash is read from, has reached this log position"),
    ),
    responses(
        (status = 200, description = "deleted tasks, most recently deleted first, each with deleted_at and its state when deleted", body = TrashPage, headers(("X-Projection-Position" = u64, description = "the position the change feed had reached"))),
        (status = 400, description = "a parameter is invalid; errors[0].field names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all, fields(user = %user.id))]
pub(crate) async fn list(
    user: AuthUser,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    observed: Option<Extension<Observed>>,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = params
        .single("cursor")?
        .map(|c| app.cursor_key.decode_trash(user.id, c))
        .transpose()?;
    reach_min_position(&app, &headers, observed).await?;
    let mut conn = app.reads.get().await.map_err(db_error)?;
    let page = trash(&mut conn, user.id, after, limit).await;
    let page = conn.settle(page).map_err(db_error)?;
    drop(conn);
    Ok(Json(TrashPage {
        tasks: page.tasks,
        next_cursor: page
            .next
            .map(|(at, id)| app.cursor_key.encode_trash(user.id, at, id)),
    })
    .into_response())
}
