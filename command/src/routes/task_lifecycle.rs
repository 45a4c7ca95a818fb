//! `/v1/tasks/{id}/restore` and `/v1/tasks/{id}/revert`: bringing a deleted
//! task back, and making a task what it was at an earlier version.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use tasklog_events::domain::TaskId;
use tasklog_platform::auth::AuthUser;
use tasklog_platform::http::{IdPath, RequestId};
use tasklog_platform::json::ApiJson;
use tasklog_platform::{ApiError, Problem};
use utoipa::ToSchema;

use super::headers::{IfMatch, MaybeIdempotencyKey};
use super::object::JsonObject;
use super::tasks::{ack_response, context, mark_replayed};
use crate::state::AppState;
use crate::tasks::{self, Ack, Change};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tasks/{id}/restore", post(restore))
        .route("/v1/tasks/{id}/revert", post(revert))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/restore", tag = "tasks", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "\"<version>\": restore only at that version"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "up to 255 characters; a retry replays the first response", min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$")),
    responses(
        (status = 200, description = "the task is live again, as it was when deleted", body = Ack, headers(("ETag" = String))),
        (status = 404, description = "absent or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the task is not deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "the task moved past If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused for another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn restore(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath<TaskId>,
    request_id: RequestId,
    IfMatch(precondition): IfMatch,
    key: MaybeIdempotencyKey,
) -> Result<Response, ApiError> {
    let ctx = context(user, request_id, key);
    let restored = tasks::restore_task(
        app.store.as_ref(),
        &app.recent,
        &app.db,
        id,
        &precondition,
        &ctx,
    )
    .await?;
    let mut response = ack_response(StatusCode::OK, restored.ack);
    mark_replayed(&mut response, restored.replayed);
    Ok(response)
}

/// `{"to_version": n}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevertRequest {
    /// A version the task had (`HistoryEntry.version`) at which it was live.
    to_version: u64,
}

#[utoipa::path(post, path = "/v1/tasks/{id}/revert", tag = "tasks", request_body = RevertRequest,
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "\"<version>\": revert only at that version")),
    responses(
        (status = 200, description = "the fields are what they were at to_version: one change event per field that differed (metadata reverted_to), after a TaskRestored when the task was deleted; none when nothing differed", body = Ack, headers(("ETag" = String))),
        (status = 400, description = "malformed JSON or If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "kept losing races with other writers", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "the task moved past If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "to_version missing, beyond the task's version, or one at which it was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn revert(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath<TaskId>,
    request_id: RequestId,
    IfMatch(precondition): IfMatch,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<RevertRequest>>,
) -> Result<Response, ApiError> {
    let ctx = context(user, request_id, MaybeIdempotencyKey(None));
    let change = Change::Revert {
        to_version: body.to_version,
    };
    let ack = tasks::change_task(
        app.store.as_ref(),
        &app.recent,
        id,
        &change,
        &precondition,
        &ctx,
    )
    .await?;
    Ok(ack_response(StatusCode::OK, ack))
}
